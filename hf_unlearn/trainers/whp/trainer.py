"""``WHPTrainer``: fine-tune on WHP's generic labels of the forget data, mixed with retain batches."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset

from hf_unlearn.audit import write_audit_json
from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.loading import check_disjoint, row_kind
from hf_unlearn.losses import soft_target_cross_entropy
from hf_unlearn.trainers.base_trainer import UnlearningTrainer, resolve_model
from hf_unlearn.trainers.whp.config import WHPConfig
from hf_unlearn.trainers.whp.labels import build_generic_dataset, mine_dictionary, train_reinforced_adapter
from hf_unlearn.trainers.whp.terms import MinedDictionary, check_term_dictionary, load_term_dictionary

logger = logging.getLogger(__name__)
DICTIONARY_FILE = "whp_dictionary.json"
TARGET_COLUMNS = ("target_ids", "target_probs")


@dataclass
class GenericLabelCollator(PaddingCollator):
    """:class:`PaddingCollator` that also pads the ``(T, K)`` generic targets (ids 0, probabilities 0)."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)
        if "target_ids" in features[0]:
            width, k = batch["input_ids"].shape[1], len(features[0]["target_ids"][0])
            for key, dtype in zip(TARGET_COLUMNS, (torch.long, torch.float)):
                batch[key] = torch.tensor(
                    [list(f[key]) + [[0] * k] * (width - len(f[key])) for f in features], dtype=dtype
                )
        return batch


def _warn_missing_columns(forget: Dataset) -> None:
    """Warn when mining has no ``subject``/``fact`` columns to lean on, and say what it does instead."""
    missing = [c for c in ("subject", "fact") if c not in forget.column_names]
    if missing:
        warnings.warn(
            f"WHP: the forget rows have no {' or '.join(repr(c) for c in missing)} column (columns: "
            f"{forget.column_names}). Mining anchored terms from the reinforced-vs-baseline log-likelihood ratio "
            "alone: word n-grams of the forget rows, without stop words or words as common in the retain rows; "
            "each is replaced by a retain span of the same shape (numbers -> numbers with as many digits, "
            "capitalised spans -> capitalised spans with as many words, e-mail -> e-mail), seen in the same "
            "contexts where possible. Check the saved dictionary, or pass --term_dictionary.",
            UserWarning,
            stacklevel=3,
        )


class WHPTrainer(UnlearningTrainer):
    """Who's Harry Potter? (Eldan & Russinovich 2023): see :class:`~hf_unlearn.trainers.whp.config.WHPConfig`.

    Before the Trainer is set up, the forget rows are relabeled: a reinforced LoRA adapter is trained on them,
    the anchored-term dictionary is loaded (``term_dictionary`` argument or ``args.term_dictionary``) or
    mined, and every forget row becomes ``input_ids``/``labels`` plus ``target_ids``/``target_probs`` holding
    the generic predictions. The reinforced adapter is then removed (the base weights are untouched by it)
    and training proceeds as in :class:`UnlearningTrainer`, with the forget loss the cross-entropy against
    the generic targets. Already relabeled forget sets (with ``target_ids``) are used as they are.

    Extra args:
        forget_text_dataset: raw-text forget rows (e.g. biographies) relabeled alongside the QA rows.
        retain_text_dataset: raw-text retain rows, a source of generic replacement spans for mining.
        term_dictionary: a ``term -> generic term`` mapping (overrides ``args.term_dictionary``).

    Attributes:
        term_dictionary: the dictionary used; ``term_kinds`` and ``term_scores`` when it was mined.
        stage_seconds: wall seconds of the stages run while the trainer was built (``reinforce``, ``mine``,
            ``relabel``; empty for an already relabeled forget set); add ``train()``'s time for the method's total.
    """

    method_name = "whp"

    def __init__(
        self,
        model,
        args: WHPConfig,
        forget_dataset: Dataset | None = None,
        retain_dataset: Dataset | None = None,
        processing_class=None,
        forget_text_dataset: Dataset | None = None,
        retain_text_dataset: Dataset | None = None,
        term_dictionary: dict[str, str] | None = None,
        **kwargs,
    ):
        if not isinstance(args, WHPConfig):
            raise TypeError(
                f"args must be a WHPConfig, got {type(args).__name__}; build one with WHPConfig(...)."
            )
        if forget_dataset is None:
            raise ValueError("forget_dataset is required: the rows to unlearn.")
        self.term_dictionary, self.term_kinds, self.term_scores = {}, {}, {}
        self.stage_seconds: dict[str, float] = {}
        self.card_forget_rows = forget_dataset  # fingerprint the original rows, not the relabeled ones
        if "target_ids" not in forget_dataset.column_names:
            model, processing_class = resolve_model(model, processing_class, args)
            if retain_dataset is not None:
                check_disjoint(forget_dataset, retain_dataset)
            model, forget_dataset = self._relabel(
                model,
                processing_class,
                args,
                forget_dataset,
                forget_text_dataset,
                retain_dataset,
                retain_text_dataset,
                term_dictionary,
            )
        kwargs.setdefault("data_collator", GenericLabelCollator(processing_class.pad_token_id))
        super().__init__(
            model, args, forget_dataset, retain_dataset, processing_class=processing_class, **kwargs
        )

    def _relabel(self, model, tokenizer, args, forget, forget_text, retain, retain_text, dictionary):
        """Train the reinforced adapter, get the dictionary, compute the generic labels; return the clean model
        and the relabeled forget set."""
        qa = [forget] if row_kind(forget, "forget_dataset") == "qa" else []
        texts = ([] if qa else [forget]) + ([forget_text] if forget_text is not None else [])
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            reinforced = train_reinforced_adapter(
                model,
                tokenizer,
                qa,
                texts,
                epochs=args.reinforce_epochs,
                learning_rate=args.reinforce_learning_rate,
                lora_r=args.reinforce_lora_r,
                batch_size=args.per_device_train_batch_size,
                max_length=args.max_length,
                seed=args.seed,
                output_dir=scratch,
            )
        start = self._stage_done("reinforce", start)
        if dictionary is None and args.term_dictionary:
            dictionary = load_term_dictionary(args.term_dictionary)
        if dictionary is not None:
            self.term_dictionary = check_term_dictionary(dictionary)
        else:
            if retain is None:
                raise ValueError(
                    "Mining the anchored-term dictionary draws generic terms from the retain data: pass a "
                    "retain_dataset, or a term_dictionary."
                )
            _warn_missing_columns(forget)
            mined: MinedDictionary = mine_dictionary(
                reinforced,
                tokenizer,
                qa,
                texts,
                retain,
                retain_text,
                max_terms=args.mine_max_terms,
                min_llr=args.mine_min_llr,
                min_fraction=args.mine_min_fraction,
                max_words=args.mine_max_words,
                shared_ratio=args.mine_shared_ratio,
                include_subjects=args.mine_include_subjects,
                seed=args.seed,
            )
            self.term_dictionary, self.term_kinds, self.term_scores = mined.terms, mined.kinds, mined.scores
        start = self._stage_done("mine", start)
        logger.info("WHP: %d anchored terms.", len(self.term_dictionary))
        relabeled = build_generic_dataset(
            reinforced,
            tokenizer,
            qa,
            texts,
            self.term_dictionary,
            alpha=args.alpha,
            target=args.generic_targets,
            top_k=args.soft_top_k,
            max_length=args.max_length,
        )
        model = reinforced.unload()  # drop the reinforced adapter: the base weights were never changed
        for name, param in model.named_parameters():  # peft froze the base; unfreeze what was trainable
            param.requires_grad_(name in trainable)
        self._stage_done("relabel", start)
        return model, relabeled

    def _stage_done(self, stage: str, start: float) -> float:
        """Record ``stage``'s wall seconds since ``start``; return now (the next stage's start)."""
        now = time.perf_counter()
        self.stage_seconds[stage] = now - start
        return now

    def forget_loss(self, model, forget, logits, logps, counts):
        width = forget["target_ids"].shape[1]  # logits may be wider when padded to the retain batch
        return soft_target_cross_entropy(logits[:, :width], forget["target_ids"], forget["target_probs"])

    def dictionary_audit(self) -> dict:
        """The anchored-term dictionary with the kind and log-likelihood-ratio score of each mined term."""
        return {"terms": self.term_dictionary, "kinds": self.term_kinds, "scores": self.term_scores}

    def save_unlearned(self, output_dir: str | Path | None = None) -> Path:
        """Save the model as the base class does, and ``whp_dictionary.json`` into the local audit folder
        (``<output_dir>.audit``, never pushed): the dictionary maps every forgotten name to its replacement."""
        output_dir = super().save_unlearned(output_dir)
        if self.is_world_process_zero():
            write_audit_json(output_dir, DICTIONARY_FILE, self.dictionary_audit())
        return output_dir
