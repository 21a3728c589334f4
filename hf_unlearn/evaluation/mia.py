"""Membership-inference attacks on per-token log-probabilities (Min-K % Prob, loss, zlib) and their AUC.

Every attack maps one text's token log-probs to a *membership score*: higher means "more likely trained on".
Scores are compared between members (the forget set) and non-members (the holdout set) with sklearn's ROC AUC.
"""

from __future__ import annotations

import math
import zlib
from functools import partial

import numpy as np


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


def _nonempty(token_log_probs) -> np.ndarray:
    logps = np.asarray(token_log_probs, dtype=float).reshape(-1)
    if logps.size == 0:
        raise ValueError("A membership score needs at least one scored token; got an empty sequence.")
    return logps


# name -> fn(token_log_probs, text) -> membership score (higher = member).
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


def attack_scores(token_log_probs: list, texts: list[str], min_k: float = 0.4) -> dict[str, list[float]]:
    """Every attack in :data:`ATTACKS` applied to every text: ``{attack: [score per text]}``."""
    attacks = {**ATTACKS, "min_k": partial(min_k_prob, k=min_k)}
    return {name: [fn(lp, t) for lp, t in zip(token_log_probs, texts)] for name, fn in attacks.items()}
