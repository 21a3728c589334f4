"""``UNDIALTrainer``: self-distillation with adjusted logits (Dong et al. 2024)."""

from __future__ import annotations

from hf_unlearn.losses import undial_loss
from hf_unlearn.trainers.base_trainer import UnlearningTrainer


class UNDIALTrainer(UnlearningTrainer):
    """UNDIAL against the reference model's logits on each forget batch (under LoRA, the model with adapters
    disabled); the retain set is held by ``args.regularizer`` as in the other methods."""

    method_name = "undial"

    uses_reference_forward = True

    def forget_loss(self, model, forget, logits, logps, counts):
        return undial_loss(logits, self.reference_logits(model, forget), forget["labels"], self.args.beta)
