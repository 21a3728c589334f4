"""``UNDIALConfig``: self-distillation toward the reference with the answer token's logit lowered."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.base_config import UnlearningConfig


@dataclass
class UNDIALConfig(UnlearningConfig):
    """UNDIAL (Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
    Language Models"), UNDIAL+GDR (``regularizer="gdr"``) and UNDIAL+KLR (``"klr"``).

    On the forget answer tokens the model is distilled toward the frozen reference's next-token distribution
    with the answer token's logit lowered by ``beta``:
    ``L = CE(softmax(ref_logits - beta * onehot(y)), model) [+ retain_weight * reg]``. The target stays a
    distribution the reference finds plausible, so the loss is bounded (it stops once the answer token has lost
    ``beta`` nats of logit) and does not run away as gradient ascent does.
    """

    beta: float = field(
        default=10.0,
        metadata={
            "help": "How far the answer token's reference logit is lowered (>= 0; open-unlearning's default 10). "
            "Larger forgets more; 0 distills toward the reference unchanged."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.beta < 0:
            raise ValueError(
                f"beta={self.beta} must be >= 0: it is subtracted from the answer token's logit (a negative beta "
                "would reinforce the answer); UNDIAL's default is 10."
            )
