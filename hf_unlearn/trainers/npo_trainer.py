"""``NPOTrainer`` and ``SimNPOTrainer``."""

from __future__ import annotations

from hf_unlearn.losses import npo_loss, simnpo_loss
from hf_unlearn.trainers.base_trainer import UnlearningTrainer


class NPOTrainer(UnlearningTrainer):
    """NPO against the reference model's sequence log-probs (cached before training by default)."""

    method_name = "npo"

    uses_forget_reference = True

    def forget_loss(self, model, forget, logits, logps, counts):
        ref_logps = self.forget_reference_log_probs(model, forget)
        self._metrics["forget_log_ratio"].append((logps.detach() - ref_logps).mean().item())
        return npo_loss(logps, ref_logps, self.args.beta)


class SimNPOTrainer(UnlearningTrainer):
    """SimNPO: no reference model, length-normalised sequence log-probs and a margin ``gamma``."""

    method_name = "simnpo"

    def forget_loss(self, model, forget, logits, logps, counts):
        return simnpo_loss(logps, counts, self.args.beta, self.args.gamma)
