"""Membership-inference attacks on per-token log-probabilities (Min-K % Prob, Min-K %++, loss, zlib) and their AUC.

Every attack maps one text's token log-probs to a *membership score*: higher means "more likely trained on".
Scores are compared between members (the forget set) and non-members (the holdout set) with sklearn's ROC AUC.
Min-K %++ also needs, per scored token, the mean and standard deviation of the log-probs under the model's
next-token distribution (:func:`next_token_moments`).
"""

from __future__ import annotations

import math
import zlib
from functools import partial

import numpy as np
import torch


def min_k_prob(token_log_probs, text: str | None = None, k: float = 0.4) -> float:
    """Min-K % Prob (Shi et al., 2023): the mean of the lowest ``k`` fraction of the token log-probs (at least
    one token). MUSE uses ``k = 0.4``.

    Raises:
        ValueError: ``k`` is not in (0, 1] or there are no tokens.
    """
    if not 0 < k <= 1:
        raise ValueError(f"k={k} must be a fraction in (0, 1], e.g. 0.4 for Min-40 % Prob.")
    logps = np.sort(_nonempty(token_log_probs))
    return float(logps[: max(1, math.ceil(k * len(logps)))].mean())


def loss_score(token_log_probs, text: str | None = None) -> float:
    """The loss attack (Yeom et al., 2018): the mean token log-prob, i.e. minus the loss."""
    return float(_nonempty(token_log_probs).mean())


def zlib_score(token_log_probs, text: str) -> float:
    """The zlib attack (Carlini et al., 2021): the mean token log-prob divided by the zlib-compressed length of
    the text in bytes, so that texts that are simply easy (repetitive) do not look like members."""
    return float(_nonempty(token_log_probs).mean() / len(zlib.compress(text.encode("utf-8"))))


MIN_STD = 1e-4  # below this sigma is float rounding, not spread


def next_token_moments(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``log p(z)`` for ``z`` drawn from each next-token distribution.

    Args:
        log_probs: ``(..., V)`` log-softmax over the vocabulary.

    Returns:
        ``mu = sum_z p(z) log p(z)`` and ``sigma = sqrt(sum_z p(z) (log p(z) - mu)^2)``, each ``(...)``.
    """
    probs = log_probs.exp()
    safe = torch.where(probs > 0, log_probs, torch.zeros_like(log_probs))  # 0 * log 0 = 0
    mu = (probs * safe).sum(-1)
    var = (probs * (safe - mu.unsqueeze(-1)) ** 2).sum(-1)
    return mu, var.clamp_min(0).sqrt()


def min_k_plus_plus(token_log_probs, token_means, token_stds, k: float = 0.4) -> float:
    """Min-K %++ (Zhang et al., 2024): each token's log-prob standardised by its next-token distribution,
    ``(log p(x_t) - mu_t) / sigma_t``, then the mean of the lowest ``k`` fraction (at least one token).
    A token whose ``sigma_t`` is ~0 (below :data:`MIN_STD`: every token equally surprising, as under a point
    mass or a uniform distribution) counts as 0, exactly as likely as expected.

    Raises:
        ValueError: ``k`` is not in (0, 1], there are no tokens, or the three sequences differ in length.
    """
    logps, means, stds = (_nonempty(x) for x in (token_log_probs, token_means, token_stds))
    if not logps.shape == means.shape == stds.shape:
        raise ValueError(
            f"Min-K%++ needs one mean and one std per token; got {logps.size} log-probs, {means.size} means, "
            f"{stds.size} stds."
        )
    z = np.divide(logps - means, stds, out=np.zeros_like(logps), where=stds > MIN_STD)
    return min_k_prob(z, k=k)


def _nonempty(token_log_probs) -> np.ndarray:
    logps = np.asarray(token_log_probs, dtype=float).reshape(-1)
    if logps.size == 0:
        raise ValueError("A membership score needs at least one scored token; got an empty sequence.")
    return logps


# name -> fn(token_log_probs, text) -> membership score (higher = member); Min-K %++ (``min_k_pp``) needs the
# next-token moments as well and is added by :func:`attack_scores` when they are given.
ATTACKS = {"min_k": min_k_prob, "loss": loss_score, "zlib": zlib_score}
PRIVLEAK_ATTACK = "min_k"


def attack_auc(member_scores, nonmember_scores) -> float:
    """ROC AUC of telling members from non-members by score: 1.0 = perfect attack, 0.5 = chance.

    Raises:
        ValueError: either group is empty.
    """
    from sklearn.metrics import roc_auc_score

    if len(member_scores) == 0 or len(nonmember_scores) == 0:
        raise ValueError(
            f"An attack AUC needs members and non-members; got {len(member_scores)} and {len(nonmember_scores)}."
        )
    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    return float(roc_auc_score(labels, list(member_scores) + list(nonmember_scores)))


def attack_scores(
    token_log_probs: list, texts: list[str], min_k: float = 0.4, moments: list | None = None
) -> dict[str, list[float]]:
    """Every attack in :data:`ATTACKS` applied to every text: ``{attack: [score per text]}``; with ``moments``
    (one ``(means, stds)`` pair per text, from :func:`next_token_moments`) also ``min_k_pp`` (Min-K %++)."""
    attacks = {**ATTACKS, "min_k": partial(min_k_prob, k=min_k)}
    scores = {name: [fn(lp, t) for lp, t in zip(token_log_probs, texts)] for name, fn in attacks.items()}
    if moments is not None:
        scores["min_k_pp"] = [
            min_k_plus_plus(lp, mu, sd, min_k) for lp, (mu, sd) in zip(token_log_probs, moments)
        ]
    return scores
