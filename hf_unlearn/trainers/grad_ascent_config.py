"""``GradientAscentConfig``: gradient ascent on the forget set, optionally regularised on the retain set."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.base_config import UnlearningConfig


@dataclass
class GradientAscentConfig(UnlearningConfig):
    """Gradient ascent (GA) and its MUSE variants GA+GDR (``regularizer="gdr"``) and GA+KLR (``"klr"``).

    ``L = -NLL(forget) [+ retain_weight * (NLL(retain) | KL(ref || model on retain))]``. Plain GA drives the
    forget likelihood down without bound; the retain-loss safety rail (``max_retain_loss_ratio``) stops it.
    """

    learning_rate: float = field(default=3e-4, metadata={"help": "Peak AdamW learning rate."})
