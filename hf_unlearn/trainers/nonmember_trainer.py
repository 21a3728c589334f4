"""``NonMemberTrainer``: non-member distillation (see :class:`~hf_unlearn.trainers.nonmember_config.NonMemberConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset

from hf_unlearn.data.forget_retain import PairedPaddingCollator, encode_row
from hf_unlearn.data.loading import check_disjoint, row_kind
from hf_unlearn.data.nonmembers import align_positions, assign_stand_ins, load_names, renamed
from hf_unlearn.data.synthetic import fictitious_names
from hf_unlearn.losses import nonmember_kl
from hf_unlearn.trainers.base_trainer import UnlearningTrainer, resolve_model
from hf_unlearn.trainers.nonmember_config import NonMemberConfig

TARGET = "target_"  # prefix of the renamed row's columns in the forget rows
INDEX = TARGET + "index"  # per position of a forget row, the renamed row's position it is compared with


@dataclass
class NonMemberCollator(PairedPaddingCollator):
    """:class:`PairedPaddingCollator` that also pads the ``target_index`` column (with -1: not counted)."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)
        if INDEX in features[0]:  # forget rows (retain batches go through the same collator)
            width = batch["input_ids"].shape[1]
            batch[INDEX] = torch.tensor([list(f[INDEX]) + [-1] * (width - len(f[INDEX])) for f in features])
        return batch


class NonMemberTrainer(UnlearningTrainer):
    """Non-member distillation against the reference model (under LoRA, the model with adapters disabled) run on
    each forget row with its person renamed; the retain set is held by ``args.regularizer``.

    Args:
        forget_text_dataset: optional raw texts about the forget people (``text`` + the subject column, e.g.
            biographies), distilled the same way alongside the QA rows.
        (the rest as :class:`~hf_unlearn.trainers.base_trainer.UnlearningTrainer`)

    The forget rows are tokenized here, as they are (``input_ids``/``labels``: the logged ``forget_logp`` is the
    forget answers') and renamed (``target_*`` columns). The renamed rows and the stand-in names never leave this
    process: the model card fingerprints the original rows and the stand-ins are not saved.

    Raises:
        ValueError: as :func:`~hf_unlearn.data.nonmembers.assign_stand_ins`.
    """

    position_pads = {INDEX: -1}  # a position added by padding is compared with nothing

    method_name = "nonmember"

    uses_reference_forward = True

    def __init__(
        self,
        model,
        args: NonMemberConfig,
        forget_dataset: Dataset | None = None,
        retain_dataset: Dataset | None = None,
        processing_class=None,
        forget_text_dataset: Dataset | None = None,
        **kwargs,
    ):
        if not isinstance(args, NonMemberConfig):
            raise TypeError(
                f"args must be a NonMemberConfig, got {type(args).__name__}; build one with "
                "NonMemberConfig(output_dir=...)."
            )
        if forget_dataset is None:
            raise ValueError("forget_dataset is required: the rows to unlearn.")
        sets = [forget_dataset] + ([forget_text_dataset] if forget_text_dataset is not None else [])
        if retain_dataset is not None:
            for ds in sets:
                check_disjoint(ds, retain_dataset)  # the tokenized rows below no longer hold the questions
        self.card_forget_rows = forget_dataset
        model, processing_class = resolve_model(model, processing_class, args)
        kinds = [row_kind(ds, "forget_dataset") for ds in sets]  # QA or text rows, or a clear error
        rows = [row for ds in sets for row in ds]
        row_kinds = [kind for ds, kind in zip(sets, kinds) for _ in range(len(ds))]
        column = args.subject_column
        if args.nonmember_names_file:
            candidates = load_names(args.nonmember_names_file)
        else:
            subjects = {r.get(column) for r in rows} - {None}
            known = subjects | set(
                retain_dataset[column] if retain_dataset and column in retain_dataset.column_names else []
            )
            candidates = fictitious_names(len(subjects), f"nonmember-{args.seed}", known)

        stand_ins = assign_stand_ins(rows, candidates, column, args.seed)
        paired = []
        for row, kind in zip(rows, row_kinds):
            renamed_row = renamed(row, row[column], stand_ins[row[column]])
            original, target = (
                encode_row(r, kind, processing_class, args.max_length) for r in (row, renamed_row)
            )
            index = align_positions(original["input_ids"], target["input_ids"])
            index[-1] = -1  # the last token predicts nothing
            paired.append({**original, **{TARGET + k: v for k, v in target.items()}, INDEX: index})
        kwargs.setdefault("data_collator", NonMemberCollator(processing_class.pad_token_id, TARGET))
        super().__init__(
            model,
            args,
            Dataset.from_list(paired),
            retain_dataset,
            processing_class=processing_class,
            **kwargs,
        )

    def forget_loss(self, model, forget, logits, logps, counts):
        target = {
            "input_ids": forget[TARGET + "input_ids"],
            "attention_mask": forget[TARGET + "attention_mask"],
        }
        target_logits = self.reference_logits(model, target)
        return nonmember_kl(logits, target_logits, forget[INDEX], forget["input_ids"], target["input_ids"])
