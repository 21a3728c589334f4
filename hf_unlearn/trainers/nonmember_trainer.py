"""``NonMemberTrainer``: non-member distillation (see :class:`~hf_unlearn.trainers.nonmember_config.NonMemberConfig`)."""

from __future__ import annotations

from datasets import Dataset

from hf_unlearn.data.forget_retain import PairedPaddingCollator, add_paired_rows, tokenize_dataset
from hf_unlearn.data.loading import check_disjoint
from hf_unlearn.data.nonmembers import load_names, swap_subjects
from hf_unlearn.data.synthetic import fictitious_names
from hf_unlearn.losses import nonmember_kl
from hf_unlearn.trainers.base_trainer import MODEL_INPUTS, UnlearningTrainer, resolve_model
from hf_unlearn.trainers.nonmember_config import NonMemberConfig

TARGET = "target_"  # prefix of the renamed question's columns in the forget rows


class NonMemberTrainer(UnlearningTrainer):
    """Non-member distillation against the reference model (under LoRA, the model with adapters disabled) run on
    each forget row with its person renamed; the retain set is held by ``args.regularizer``.

    The forget rows are tokenized here, as they are (``input_ids``/``labels``, so the logged ``forget_logp`` is
    the forget answers') and renamed (``target_*`` columns). The renamed questions never leave this process: the
    model card fingerprints the original rows, and the stand-in names are not saved.

    Raises:
        ValueError: as :func:`~hf_unlearn.data.nonmembers.swap_subjects`; a renamed row whose answer was truncated
            differently (raise ``max_length``).
    """

    method_name = "nonmember"

    uses_reference_forward = True

    def __init__(
        self,
        model,
        args: NonMemberConfig,
        forget_dataset: Dataset | None = None,
        retain_dataset: Dataset | None = None,
        processing_class=None,
        **kwargs,
    ):
        if not isinstance(args, NonMemberConfig):
            raise TypeError(
                f"args must be a NonMemberConfig, got {type(args).__name__}; build one with "
                "NonMemberConfig(output_dir=...)."
            )
        if forget_dataset is None:
            raise ValueError("forget_dataset is required: the rows to unlearn.")
        if retain_dataset is not None:
            check_disjoint(
                forget_dataset, retain_dataset
            )  # the tokenized rows below no longer hold the questions
        self.card_forget_rows = forget_dataset
        column = args.subject_column
        if args.nonmember_names_file:
            names = load_names(args.nonmember_names_file)
        else:
            subjects = set(forget_dataset[column]) if column in forget_dataset.column_names else set()
            known = subjects | set(
                retain_dataset[column] if retain_dataset and column in retain_dataset.column_names else []
            )
            names = fictitious_names(len(subjects), f"nonmember-{args.seed}", exclude=known)
        renamed = swap_subjects(forget_dataset, names, column, args.seed)
        model, processing_class = resolve_model(model, processing_class, args)
        rows = tokenize_dataset(forget_dataset, processing_class, args.max_length, "forget_dataset")
        target = tokenize_dataset(renamed, processing_class, args.max_length, "forget_dataset (renamed)")
        answer_tokens = lambda ds: [sum(t != -100 for t in labels) for labels in ds["labels"]]  # noqa: E731
        if answer_tokens(rows) != answer_tokens(target):
            raise ValueError(
                f"Some forget answers are cut differently once their person is renamed (max_length="
                f"{args.max_length}); raise max_length so that every prompt and answer fit."
            )
        rows = add_paired_rows(rows, target, TARGET)
        kwargs.setdefault("data_collator", PairedPaddingCollator(processing_class.pad_token_id, TARGET))
        super().__init__(model, args, rows, retain_dataset, processing_class=processing_class, **kwargs)

    def forget_loss(self, model, forget, logits, logps, counts):
        target = {k: forget[TARGET + k] for k in MODEL_INPUTS}
        return nonmember_kl(logits, forget["labels"], self.reference_logits(model, target), target["labels"])
