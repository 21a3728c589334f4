"""``IdkNLLTrainer`` and ``IdkDPOTrainer``: answer the forget questions with a refusal (TOFU, Maini et al. 2024)."""

from __future__ import annotations

from datasets import Dataset

from hf_unlearn.data.forget_retain import PairedPaddingCollator, tokenize_dataset
from hf_unlearn.data.loading import check_disjoint
from hf_unlearn.data.refusals import load_refusals, pair_refusals, with_refusal_answers
from hf_unlearn.losses import dpo_loss, idk_nll_loss, mean_token_log_prob, sequence_log_probs
from hf_unlearn.trainers.base_trainer import MODEL_INPUTS, UnlearningTrainer, resolve_model
from hf_unlearn.trainers.idk_config import IdkDPOConfig, IdkNLLConfig

CHOSEN = "chosen_"  # prefix of the refusal's (chosen answer's) columns in IdkDPO's forget rows


def paired_forget_rows(trainer: UnlearningTrainer, args, forget: Dataset | None, config_cls) -> Dataset:
    """``forget`` with a seeded refusal per row (:func:`~hf_unlearn.data.refusals.pair_refusals`, seed
    ``args.seed``); sets ``trainer.refusals`` and the card's forget rows (the original ones)."""
    if not isinstance(args, config_cls):
        raise TypeError(
            f"args must be an {config_cls.__name__}, got {type(args).__name__}; build one with "
            f"{config_cls.__name__}(output_dir=...)."
        )
    if forget is None:
        raise ValueError("forget_dataset is required: the rows to unlearn.")
    trainer.refusals = load_refusals(args.refusals_file)
    trainer.card_forget_rows = forget  # fingerprint the original rows, not the relabeled ones
    return pair_refusals(forget, trainer.refusals, args.seed)


class IdkNLLTrainer(UnlearningTrainer):
    """IdkNLL: fine-tune on ``(forget question, refusal)`` pairs; see
    :class:`~hf_unlearn.trainers.idk_config.IdkNLLConfig`. The logged ``forget_logp`` is the refusals' mean token
    log-prob (it rises as the model learns to refuse).

    Attributes:
        refusals: the refusal answers the forget questions were paired with.
    """

    method_name = "idknll"

    def __init__(
        self,
        model,
        args: IdkNLLConfig,
        forget_dataset: Dataset | None = None,
        retain_dataset: Dataset | None = None,
        **kwargs,
    ):
        paired = paired_forget_rows(self, args, forget_dataset, IdkNLLConfig)
        super().__init__(model, args, with_refusal_answers(paired), retain_dataset, **kwargs)

    def forget_loss(self, model, forget, logits, logps, counts):
        return idk_nll_loss(logps, counts)


class IdkDPOTrainer(UnlearningTrainer):
    """IdkDPO: DPO against the reference model, the refusal chosen and the forget answer rejected; see
    :class:`~hf_unlearn.trainers.idk_config.IdkDPOConfig`.

    The forget rows are tokenized here: the true answer as the usual ``input_ids``/``labels`` (so the logged
    ``forget_logp`` is still the forget answers') and the refusal as ``chosen_*`` columns. With
    ``args.precompute_ref_log_probs`` both answers' reference log-probs are cached before training (``ref_logps``
    and ``chosen_ref_logps``). Logs ``refusal_logp`` (the refusals' mean token log-prob) and ``reward_margin``
    (the mean of ``(c - c_ref) - (r - r_ref)``).

    Attributes:
        refusals: the refusal answers the forget questions were paired with.
    """

    method_name = "idkdpo"

    uses_forget_reference = True

    def __init__(
        self,
        model,
        args: IdkDPOConfig,
        forget_dataset: Dataset | None = None,
        retain_dataset: Dataset | None = None,
        processing_class=None,
        **kwargs,
    ):
        paired = paired_forget_rows(self, args, forget_dataset, IdkDPOConfig)
        if retain_dataset is not None:
            check_disjoint(paired, retain_dataset)  # the tokenized rows below no longer hold the questions
        model, processing_class = resolve_model(model, processing_class, args)
        rows = tokenize_dataset(paired, processing_class, args.max_length, "forget_dataset")
        chosen = tokenize_dataset(
            with_refusal_answers(paired), processing_class, args.max_length, "forget_dataset's refusals"
        )
        for key in MODEL_INPUTS:
            rows = rows.add_column(CHOSEN + key, chosen[key])
        kwargs.setdefault("data_collator", PairedPaddingCollator(processing_class.pad_token_id, CHOSEN))
        super().__init__(model, args, rows, retain_dataset, processing_class=processing_class, **kwargs)

    def add_ref_log_probs(self, ds: Dataset, batch_size: int = 64) -> Dataset:
        """The base class's ``ref_logps`` (the forget answers'), plus ``chosen_ref_logps`` (the refusals')."""
        ds = super().add_ref_log_probs(ds, batch_size)
        chosen = ds.select_columns([CHOSEN + k for k in MODEL_INPUTS])
        chosen = chosen.rename_columns({CHOSEN + k: k for k in MODEL_INPUTS})
        values = super().add_ref_log_probs(chosen, batch_size)["ref_logps"]
        column = CHOSEN + "ref_logps"
        return ds.remove_columns([c for c in (column,) if c in ds.column_names]).add_column(column, values)

    def forget_loss(self, model, forget, logits, logps, counts):
        chosen = {k: forget[CHOSEN + k] for k in MODEL_INPUTS}
        if CHOSEN + "ref_logps" in forget:
            chosen["ref_logps"] = forget[CHOSEN + "ref_logps"]
        chosen_logits = model(input_ids=chosen["input_ids"], attention_mask=chosen["attention_mask"]).logits
        chosen_logps, chosen_counts = sequence_log_probs(chosen_logits, chosen["labels"])
        ref_chosen = self.forget_reference_log_probs(model, chosen)
        ref_rejected = self.forget_reference_log_probs(model, forget)
        margin = (chosen_logps.detach() - ref_chosen) - (logps.detach() - ref_rejected)
        self._metrics["refusal_logp"].append(mean_token_log_prob(chosen_logps, chosen_counts).item())
        self._metrics["reward_margin"].append(margin.mean().item())
        return dpo_loss(chosen_logps, ref_chosen, logps, ref_rejected, self.args.beta)
