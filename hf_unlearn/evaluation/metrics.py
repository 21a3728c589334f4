"""Pure metric functions on strings and numbers."""

from __future__ import annotations

from functools import lru_cache


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
