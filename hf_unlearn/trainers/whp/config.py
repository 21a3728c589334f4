"""``WHPConfig``: Who's Harry Potter? (Eldan & Russinovich 2023) generic-label relabeling."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.base_config import REGULARIZERS, UnlearningConfig

GENERIC_TARGETS = ("argmax", "soft")


@dataclass
class WHPConfig(UnlearningConfig):
    """WHP: fine-tune on *generic labels* of the forget data, mixed with retain data.

    The pipeline (:class:`~hf_unlearn.trainers.whp.trainer.WHPTrainer`): (1) a LoRA *reinforced* adapter is
    fine-tuned on the forget data on top of the model; (2) an anchored-term dictionary is read from
    ``term_dictionary`` or mined (the word n-grams of the forget rows whose reinforced-vs-baseline
    log-likelihood ratio is highest, stop words and vocabulary common in the retain rows left out, plus the forget
    ``subject`` values where rows have them; each mapped to a same-kind generic term from the retain data); (3) the
    baseline runs on the dictionary-translated forget text and the reinforced model on the original, and
    ``v_generic = v_base - alpha * ReLU(v_reinforced - v_base)`` (on log-probs, aligned token for token) gives
    the targets; (4) the model is fine-tuned on those targets, with ``regularizer="gdr"`` (NLL on retain
    batches) by default. The dictionary is saved with the model as ``whp_dictionary.json``.

    Defaults suit the embedded tiny model (on the 200-person demo, one seed, before the mining rewrite: forget EM
    0.99 -> 0.03, retain EM 0.98 -> 0.94, generic answers of the right type 99 %); on a pretrained model lower
    ``learning_rate`` (e.g. 1e-5) and ``reinforce_learning_rate``. ``alpha`` (default 5) only pushes down tokens
    that the reinforced adapter raised; in that run the anchored-term translation did the work (``alpha=0``
    scored about the same; see ``benchmarks/whp_ablation.py``), so tune it on data where the reinforced model
    generalises beyond the anchored terms.
    """

    alpha: float = field(
        default=5.0,
        metadata={
            "help": "Strength of the reinforced-model correction in v_base - alpha * ReLU(v_reinforced - v_base) "
            "(>= 0; 0 uses the baseline's predictions on the translated text alone)."
        },
    )
    generic_targets: str = field(
        default="argmax",
        metadata={
            "help": "'argmax': train on the most likely generic token; 'soft': on the top-k generic distribution.",
            "choices": list(GENERIC_TARGETS),
        },
    )
    soft_top_k: int = field(
        default=8, metadata={"help": "Tokens kept per position with generic_targets='soft'."}
    )
    term_dictionary: str | None = field(
        default=None,
        metadata={
            "help": "JSON/YAML file mapping anchored term -> generic term. Default: mine one from the forget data."
        },
    )
    mine_max_terms: int = field(
        default=200, metadata={"help": "Mined spans kept besides the forget subjects (best ratio first)."}
    )
    mine_min_llr: float = field(
        default=0.05,
        metadata={"help": "Minimum mean reinforced-vs-baseline log-likelihood ratio (nats) of a mined span."},
    )
    mine_min_fraction: float = field(
        default=0.25,
        metadata={
            "help": "Minimum score of a mined span as a fraction of the best score of its kind (entity, e-mail, ...)."
        },
    )
    mine_max_words: int = field(default=3, metadata={"help": "Longest mined span, in words."})
    mine_shared_ratio: float = field(
        default=0.5,
        metadata={
            "help": "A word whose share of retain rows is at least this times its share of forget rows is common "
            "vocabulary, not an anchored term (it never forms a term alone nor, in lower case, edges one)."
        },
    )
    mine_include_subjects: bool = field(
        default=True, metadata={"help": "Always make the forget rows' subject values anchored terms."}
    )
    reinforce_epochs: float = field(
        default=2.0,
        metadata={
            "help": "Epochs of the reinforced LoRA adapter over the forget data (0: no reinforced model, the "
            "dictionary alone: nothing is mined beyond the subjects and alpha has no effect)."
        },
    )
    reinforce_learning_rate: float = field(
        default=3e-3, metadata={"help": "Learning rate of the reinforced LoRA adapter."}
    )
    reinforce_lora_r: int = field(default=8, metadata={"help": "LoRA rank of the reinforced adapter."})
    regularizer: str = field(
        default="gdr",
        metadata={
            "help": "Retain regulariser: 'gdr' (NLL on retain batches, the paper's mix of retain data), 'klr' "
            "or 'none'.",
            "choices": list(REGULARIZERS),
        },
    )
    retain_weight: float = field(
        default=2.0, metadata={"help": "Weight of the retain regulariser (ignored with regularizer='none')."}
    )
    retain_batch_size: int | None = field(
        default=64,
        metadata={"help": "Retain rows per device and step (more retain rows hold retain accuracy better)."},
    )
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate."})
    num_train_epochs: float = field(
        default=8.0, metadata={"help": "Passes over the generic-label forget set."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.alpha < 0:
            raise ValueError(
                f"alpha={self.alpha} must be >= 0 (0 keeps the baseline's translated predictions)."
            )
        if self.generic_targets not in GENERIC_TARGETS:
            raise ValueError(
                f"generic_targets={self.generic_targets!r} is not one of {GENERIC_TARGETS}: use 'argmax' for hard "
                "labels or 'soft' for the top-k distribution."
            )
        if self.soft_top_k < 1:
            raise ValueError(f"soft_top_k={self.soft_top_k} must be >= 1.")
        if self.mine_shared_ratio <= 0:
            raise ValueError(
                f"mine_shared_ratio={self.mine_shared_ratio} must be > 0 (e.g. 0.5: a word as common among the "
                "retain rows as half its rate among the forget rows is shared vocabulary)."
            )
        if self.reinforce_epochs < 0:
            raise ValueError(
                f"reinforce_epochs={self.reinforce_epochs} must be >= 0 (0: no reinforced model)."
            )
        if self.reinforce_lora_r < 1:
            raise ValueError(
                f"reinforce_lora_r={self.reinforce_lora_r} must be >= 1 (the reinforced adapter's rank)."
            )
