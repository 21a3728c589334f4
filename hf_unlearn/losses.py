"""Pure tensor functions shared by the trainers and the evaluation suite.

Shapes: ``B`` batch, ``T`` sequence length, ``V`` vocabulary. ``labels`` use ``-100`` for positions that do
not count (prompt tokens, padding); logits at position ``t`` predict the token at ``t + 1``.
"""

from __future__ import annotations

import torch

from hf_unlearn.data.formats import IGNORE_INDEX


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next label token, and the mask of positions that count.

    Args:
        logits: ``(B, T, V)`` model outputs.
        labels: ``(B, T)`` token ids, ``-100`` where ignored.

    Returns:
        ``(B, T-1)`` log-probs (0 where masked) and the ``(B, T-1)`` boolean mask.
    """
    shift_logits = logits[:, :-1, :].float()  # (B, T-1, V)
    shift_labels = labels[:, 1:]  # (B, T-1)
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.masked_fill(~mask, 0)
    logps = torch.gather(shift_logits.log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return logps * mask, mask


def sequence_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each sequence's labelled tokens, and their count.

    Returns:
        ``(B,)`` sums of log-probs over labelled tokens and ``(B,)`` numbers of labelled tokens.
    """
    logps, mask = token_log_probs(logits, labels)
    return logps.sum(-1), mask.sum(-1)


def mean_token_log_prob(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean log-probability per labelled token over a batch: ``sum(seq_logps) / sum(counts)``.

    Args:
        seq_logps: ``(B,)`` summed log-probs per sequence (from :func:`sequence_log_probs`).
        counts: ``(B,)`` labelled tokens per sequence.
    """
    return seq_logps.sum() / counts.sum().clamp(min=1)


def ga_loss(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the forget set: the negated token-mean NLL, i.e. the mean token log-prob.

    Minimising it pushes the forget answers' likelihood down without bound (hence the safety rail).
    """
    return mean_token_log_prob(seq_logps, counts)


def retain_nll(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Gradient-descent regulariser (GDR): the token-mean negative log-likelihood on a retain batch."""
    return -mean_token_log_prob(seq_logps, counts)


def npo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Negative preference optimisation (Zhang et al. 2024) on forget sequences.

    ``L = (2/beta) * mean_i log(1 + (pi_theta(y_i|x_i) / pi_ref(y_i|x_i)) ** beta)``, computed stably as
    ``(2/beta) * mean(softplus(beta * (log pi_theta - log pi_ref)))`` on *sequence* log-probs (sums over the
    answer tokens), not on raw logits.

    Args:
        policy_logps: ``(B,)`` sequence log-probs under the model being unlearned.
        ref_logps: ``(B,)`` sequence log-probs under the reference (the model before unlearning).
        beta: inverse temperature; as ``beta -> 0`` NPO tends to gradient ascent.
    """
    if beta <= 0:
        raise ValueError(f"npo_loss needs beta > 0, got {beta}; NPO's default is 0.1.")
    return 2.0 / beta * torch.nn.functional.softplus(beta * (policy_logps - ref_logps)).mean()


def simnpo_loss(
    policy_logps: torch.Tensor, counts: torch.Tensor, beta: float = 2.5, gamma: float = 0.0
) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): NPO without a reference model, on length-normalised log-probs.

    ``L = -(2/beta) * mean_i log sigmoid(-(beta / |y_i|) * log pi_theta(y_i|x_i) - gamma)``
    ``  = (2/beta) * mean_i softplus(beta * log pi_theta(y_i|x_i) / |y_i| + gamma)``.

    Args:
        policy_logps: ``(B,)`` sequence log-probs; counts: ``(B,)`` answer lengths ``|y_i|`` in tokens.
        beta: inverse temperature (> 0); gamma: reward margin.
    """
    if beta <= 0:
        raise ValueError(f"simnpo_loss needs beta > 0, got {beta}.")
    per_token = policy_logps / counts.clamp(min=1)  # (B,)
    return 2.0 / beta * torch.nn.functional.softplus(beta * per_token + gamma).mean()


def retain_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL regulariser (KLR): ``KL(pi_ref || pi_theta)`` of the next-token distributions, averaged over labelled
    positions of a retain batch.

    Args:
        logits: ``(B, T, V)`` outputs of the model being unlearned.
        ref_logits: ``(B, T, V)`` outputs of the reference model on the same batch.
        labels: ``(B, T)`` with ``-100`` where the position does not count.
    """
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
    logp = logits[:, :-1, :].float().log_softmax(-1)  # (B, T-1, V)
    ref_logp = ref_logits[:, :-1, :].float().log_softmax(-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)  # (B, T-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)
