"""How a model is scored (:class:`EvalConfig`): the options of ``hf-unlearn eval`` and the demo's evaluation.

Kept apart from :mod:`hf_unlearn.evaluation.suite` (which imports torch and the metric stack) so that parsing
the options, ``--help`` included, loads neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GENERATION_MARGIN = 8  # tokens beyond the longest reference answer
GENERATION_CAP = 256


@dataclass
class EvalConfig:
    """How ``hf-unlearn eval`` (and the demo) score a model; defaults suit the tiny embedded models."""

    batch_size: int = field(default=64, metadata={"help": "Rows per forward pass / generation batch."})
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": f"Greedy answer length cap. Default: the longest reference answer in tokens + "
            f"{GENERATION_MARGIN}, at most {GENERATION_CAP}, so that no reference answer is cut short."
        },
    )
    retain_rows: int = field(
        default=400,
        metadata={
            "help": "Score at most this many retain rows, evenly spread over the set (TOFU scores the 400 rows of "
            "retain_perturbed). 0 = all."
        },
    )
    verbmem_prefix_tokens: int = field(
        default=32, metadata={"help": "VerbMem prompt length in tokens (capped at half of each text)."}
    )
    verbmem_max_new_tokens: int = field(default=64, metadata={"help": "VerbMem continuation length."})
    min_k: float = field(default=0.4, metadata={"help": "Min-K%% Prob and Min-K%%++ fraction (MUSE: 0.4)."})
    relearn_steps: int = field(
        default=10,
        metadata={
            "help": "Relearning attack: fine-tuning steps on half the forget set, and the same on half the "
            "holdout set as the control (0 = skip)."
        },
    )
    relearn_learning_rate: float = field(
        default=1e-3, metadata={"help": "Relearning attack: AdamW learning rate."}
    )
    relearn_batch_size: int = field(default=16, metadata={"help": "Relearning attack: rows per step."})
    mapping_steps: int = field(
        default=20,
        metadata={
            "help": "Mapping attack: projected gradient steps on each question's token embeddings towards its "
            "answer, on the forget set and on the holdout set as the control (0 = skip)."
        },
    )
    mapping_budget: float = field(
        default=0.05,
        metadata={
            "help": "Mapping attack: largest perturbation per prompt token, as a fraction of the mean norm of the "
            "input-embedding rows (L2)."
        },
    )
    quant_bits: list[int] = field(
        default_factory=lambda: [8, 4],
        metadata={
            "help": "Quantization attack: reload the weights with bitsandbytes in these bit widths (8, 4) and "
            "re-measure forget EM / ROUGE. 0 (or an empty list) skips it."
        },
    )
    probes: bool = field(default=True, metadata={"help": "Run the paraphrased / perturbed question probes."})
    seed: int = field(default=0, metadata={"help": "Seed for the probes and the relearning attack."})
