"""Pure metric functions on strings and numbers: ROUGE-L, TOFU's probability / truth ratio / forget quality /
model utility, MUSE's PrivLeak."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-L ``recall``, ``precision`` and ``f1`` of ``prediction`` against ``reference`` (rouge-score, stemmed)."""
    score = _rouge_scorer().score(reference, prediction)["rougeL"]
    return {"recall": score.recall, "precision": score.precision, "f1": score.fmeasure}


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


# --- TOFU (Maini et al., 2024) -------------------------------------------------------------------------------
# Per-row inputs are summed answer log-probabilities ``log_prob`` and answer lengths ``n_tokens`` (the
# ``score_answers`` outputs); perturbed answers come as ``(N, K)`` arrays, one column per wrong answer.


def normalised_prob(log_prob, n_tokens) -> np.ndarray:
    """Length-normalised answer probability ``P(a|q) ** (1 / |a|) = exp(log_prob / n_tokens)``, per row."""
    return np.exp(np.asarray(log_prob, dtype=float) / np.asarray(n_tokens, dtype=float))


def choice_prob(log_prob, n_tokens, perturbed_log_prob, perturbed_n_tokens) -> np.ndarray:
    """TOFU's probability on real-authors / world-facts: the correct answer's length-normalised probability
    divided by the sum over the correct and the ``K`` perturbed answers (a ``K + 1``-way choice), per row."""
    true = normalised_prob(log_prob, n_tokens)  # (N,)
    wrong = normalised_prob(perturbed_log_prob, perturbed_n_tokens)  # (N, K)
    return true / (true + wrong.sum(-1))


def truth_ratio(
    paraphrased_log_prob, paraphrased_n_tokens, perturbed_log_prob, perturbed_n_tokens
) -> np.ndarray:
    """TOFU's truth ratio ``R`` per row: the geometric mean of the perturbed answers' length-normalised
    probabilities over the paraphrased answer's, ``R = exp(mean_k(lp_k / n_k) - lp_para / n_para)``.

    ``R << 1``: the model prefers the true answer; ``R ~ 1``: it cannot tell true from false (a model that never
    saw the fact).
    """
    pert = np.asarray(perturbed_log_prob, dtype=float) / np.asarray(perturbed_n_tokens, dtype=float)  # (N, K)
    para = np.asarray(paraphrased_log_prob, dtype=float) / np.asarray(paraphrased_n_tokens, dtype=float)
    return np.exp(pert.mean(-1) - para)


def truth_ratio_score(ratios, forget: bool) -> float:
    """TOFU's aggregate truth ratio: on the forget set ``mean(min(R, 1/R))`` (1 = indifferent, like a model that
    never saw the data); on retain-like sets ``mean(max(0, 1 - R))`` (1 = always prefers the truth)."""
    ratios = np.asarray(ratios, dtype=float)
    if forget:
        return float(np.minimum(ratios, 1 / ratios).mean())
    return float(np.maximum(0.0, 1 - ratios).mean())


def forget_quality(ratios, retrained_ratios) -> float:
    """TOFU's forget quality: the p-value of a two-sample Kolmogorov-Smirnov test between the forget-set truth
    ratios of the evaluated model and of the retrained ("gold") model. 1.0 = indistinguishable."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(ratios, dtype=float), np.asarray(retrained_ratios, dtype=float)).pvalue)


def harmonic_mean(values) -> float:
    """Harmonic mean; 0 when any value is 0 (TOFU's model utility is 0 if any of its parts collapses).

    Raises:
        ValueError: no values, or a negative one.
    """
    values = np.asarray(list(values), dtype=float)
    if values.size == 0 or (values < 0).any():
        raise ValueError(f"harmonic_mean needs at least one non-negative value, got {values.tolist()}.")
    if (values == 0).any():
        return 0.0
    return float(len(values) / (1 / values).sum())


UTILITY_STATS = ("prob", "rouge", "truth_ratio")


def model_utility(split_stats: dict[str, dict[str, float]]) -> float:
    """TOFU's model utility: the harmonic mean of ``prob``, ``rouge`` and ``truth_ratio`` over every given set
    (TOFU: retain, real_authors, world_facts — 9 numbers).

    Raises:
        ValueError: a set lacks one of the three statistics.
    """
    values = []
    for name, stats in split_stats.items():
        missing = [k for k in UTILITY_STATS if stats.get(k) is None]
        if missing:
            raise ValueError(
                f"Model utility needs {list(UTILITY_STATS)} for set {name!r}; it lacks {missing}."
            )
        values += [stats[k] for k in UTILITY_STATS]
    return harmonic_mean(values)


# --- MUSE (Shi et al., 2024) ---------------------------------------------------------------------------------


def privleak(auc: float, retrained_auc: float) -> float:
    """MUSE's PrivLeak in percent, ``(AUC - AUC_retrain) / AUC_retrain * 100``, in MUSE's orientation.

    ``auc`` and ``retrained_auc`` are ordinary membership-attack AUCs (forget = members, holdout = non-members,
    1.0 = the attack finds every forget row, 0.5 = chance; see :mod:`hf_unlearn.evaluation.mia`). MUSE's AUC is
    the other way round (``1 - auc``: ranking holdout above forget), which gives PrivLeak its published sign:
    about -100 % when the model still holds the forget set, 0 for the retrained model, > 0 when unlearning
    overshoots and the forget set looks *less* familiar than never-seen data.

    Raises:
        ValueError: ``retrained_auc`` is 1, where MUSE's denominator is 0.
    """
    if retrained_auc >= 1.0:
        raise ValueError(
            f"retrained_auc={retrained_auc}: the retrained model separates forget from holdout perfectly, so "
            "PrivLeak's denominator (1 - AUC) is 0; check that the retrained model never saw the forget set."
        )
    return ((1 - auc) - (1 - retrained_auc)) / (1 - retrained_auc) * 100.0
