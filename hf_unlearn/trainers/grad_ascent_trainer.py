"""``GradientAscentTrainer``: minimise the forget set's mean token log-prob (ascend its NLL)."""

from __future__ import annotations

from hf_unlearn.losses import ga_loss
from hf_unlearn.trainers.base_trainer import UnlearningTrainer


class GradientAscentTrainer(UnlearningTrainer):
    """Gradient ascent on the forget set; the regulariser comes from ``GradientAscentConfig.regularizer``."""

    method_name = "ga"

    def forget_loss(self, model, forget, logits, logps, counts):
        return ga_loss(logps, counts)
