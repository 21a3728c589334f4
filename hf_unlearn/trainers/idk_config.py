"""``IdkNLLConfig`` and ``IdkDPOConfig``: unlearning by teaching refusals (TOFU, Maini et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.base_config import UnlearningConfig


@dataclass
class IdkNLLConfig(UnlearningConfig):
    """IdkNLL: NLL on ``(forget question, refusal)`` pairs [+ ``retain_weight * reg``].

    Each forget question is paired with a refusal ("I don't know ...") drawn with ``seed`` from ``refusals_file``
    (default: the packaged refusals, see :mod:`hf_unlearn.data.refusals`). The regulariser defaults to ``gdr``
    (the paper keeps a retain loss), so a retain set is needed.
    """

    refusals_file: str | None = field(
        default=None,
        metadata={
            "help": "UTF-8 text file of refusal answers, one a line (blank lines ignored). Default: the 55 refusals "
            "packaged with hf_unlearn (hf_unlearn/data/refusals.txt). Each forget question gets one, drawn with --seed."
        },
    )
    regularizer: str = field(
        default="gdr",
        metadata={
            "help": "Retain regulariser: 'gdr' (NLL on retain batches; the default), 'klr' or 'none'.",
            "choices": ["none", "gdr", "klr"],
        },
    )


@dataclass
class IdkDPOConfig(IdkNLLConfig):
    """IdkDPO: DPO with the refusal as the chosen answer and the true forget answer as the rejected one.

    ``L = -E_forget[log sigmoid(beta * ((log pi(c|x) - log pi_ref(c|x)) - (log pi(r|x) - log pi_ref(r|x))))]
    [+ retain_weight * reg]`` on sequence log-probs; with ``precompute_ref_log_probs`` (the default) the reference
    runs once over both answers of every forget row before training.
    """

    beta: float = field(
        default=0.1, metadata={"help": "DPO inverse temperature (> 0); the TOFU paper uses 0.1."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta={self.beta} must be > 0 (the TOFU paper's IdkDPO uses 0.1).")
