"""``NPOConfig`` and ``SimNPOConfig``: negative preference optimisation, with and without a reference."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.base_config import UnlearningConfig


@dataclass
class NPOConfig(UnlearningConfig):
    """NPO (Zhang et al. 2024), NPO+GDR (``regularizer="gdr"``) and NPO+KLR (``"klr"``).

    ``L = (2/beta) * E_forget[log(1 + (pi_theta(y|x) / pi_ref(y|x)) ** beta)] [+ retain_weight * reg]`` on
    sequence log-probs of the answer tokens. With ``precompute_ref_log_probs`` (the default) the reference
    runs once over the forget set before training.
    """

    beta: float = field(
        default=1.0,
        metadata={
            "help": "NPO inverse temperature (> 0); small beta behaves like gradient ascent. The paper uses 0.1; "
            "1.0 stops pushing on answers already forgotten, which spares the retain set."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta={self.beta} must be > 0 (the default is 1.0, the NPO paper's 0.1).")


@dataclass
class SimNPOConfig(UnlearningConfig):
    """SimNPO (Fan et al. 2024): NPO on length-normalised log-probs, with a margin and no reference model.

    ``L = (2/beta) * E_forget[softplus(beta * log pi_theta(y|x) / |y| + gamma)] [+ retain_weight * reg]``.
    The regulariser defaults to ``gdr`` (as the paper and docs/unlearning.md run it), so a retain set is needed.
    """

    beta: float = field(default=2.5, metadata={"help": "SimNPO inverse temperature (> 0)."})
    gamma: float = field(default=0.0, metadata={"help": "SimNPO reward margin."})
    regularizer: str = field(
        default="gdr",
        metadata={
            "help": "Retain regulariser: 'gdr' (the paper's retain NLL term; the default), 'klr' or 'none'.",
            "choices": ["none", "gdr", "klr"],
        },
    )
    retain_weight: float = field(default=3.0, metadata={"help": "Weight of the retain regulariser."})

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta={self.beta} must be > 0 (SimNPO's paper uses 2.5 and more).")
