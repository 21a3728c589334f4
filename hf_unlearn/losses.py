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
