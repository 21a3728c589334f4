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


def whp_generic_logits(
    base_logits: torch.Tensor, reinforced_logits: torch.Tensor, alpha: float = 5.0
) -> torch.Tensor:
    """WHP's generic prediction (Eldan & Russinovich 2023): ``v_base - alpha * ReLU(v_reinforced - v_base)``.

    Tokens whose score the reinforced model (the baseline fine-tuned further on the forget data) raised are
    pushed down in proportion to the rise; tokens it did not raise keep the baseline's score. Both inputs must
    be on the same scale for the difference to mean something (e.g. both log-softmax normalised).

    Args:
        base_logits: ``(..., V)`` scores of the baseline model.
        reinforced_logits: ``(..., V)`` scores of the reinforced model at the same positions.
        alpha: strength of the push-down (>= 0); 0 returns the baseline scores.
    """
    if alpha < 0:
        raise ValueError(f"whp_generic_logits needs alpha >= 0, got {alpha}; alpha=0 keeps the baseline.")
    base = base_logits.float()
    return base - alpha * torch.relu(reinforced_logits.float() - base)


def soft_target_cross_entropy(
    logits: torch.Tensor, target_ids: torch.Tensor, target_probs: torch.Tensor
) -> torch.Tensor:
    """Token-mean cross-entropy against sparse soft targets (a one-hot target is a hard label).

    Position ``t``'s target is a distribution over ``K`` token ids: ``target_ids[b, t, k]`` with probability
    ``target_probs[b, t, k]``. Positions whose probabilities sum to 0 do not count. As with labels, the
    target at position ``t`` is predicted by the logits at ``t - 1``.

    Args:
        logits: ``(B, T, V)`` model outputs.
        target_ids: ``(B, T, K)`` token ids (any valid id where the probability is 0).
        target_probs: ``(B, T, K)`` probabilities, each counting position summing to 1.

    Returns:
        ``-sum_k p_k log q(id_k)`` averaged over counting positions (0 when none count).
    """
    logps = logits[:, :-1, :].float().log_softmax(-1)  # (B, T-1, V)
    ids, probs = target_ids[:, 1:], target_probs[:, 1:].float()  # (B, T-1, K)
    picked = torch.gather(logps, 2, ids)  # (B, T-1, K)
    per_position = -(probs * picked).sum(-1)  # (B, T-1)
    counts = probs.sum(-1) > 0
    return (per_position * counts).sum() / counts.sum().clamp(min=1)
