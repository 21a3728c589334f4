"""TOFU statistics of a model on one QA set: answer probability, ROUGE-L of greedy answers, truth ratio.

One call scores every distinct (question, answer) pair of a set once — the answer, its paraphrase and the
perturbed answers — and, optionally, generates greedy answers once; the pure formulas live in
:mod:`hf_unlearn.evaluation.metrics`.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from hf_unlearn.evaluation.metrics import (
    choice_prob,
    mean,
    normalised_prob,
    rouge_l,
    truth_ratio,
    truth_ratio_score,
)
from hf_unlearn.evaluation.qa import generate_answers, score_answers


def perturbed_matrix(ds: Dataset, origin: str = "dataset") -> list[list[str]]:
    """The ``perturbed_answer`` column as an ``N x K`` list (a single string counts as ``K = 1``).

    Raises:
        ValueError: rows have different numbers of perturbed answers.
    """
    rows = [[p] if isinstance(p, str) else list(p) for p in ds["perturbed_answer"]]
    widths = {len(r) for r in rows}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(
            f"{origin}: every row needs the same number (>= 1) of perturbed answers for the truth ratio; found "
            f"{sorted(widths)}. Trim the perturbed_answer lists to a common length."
        )
    return rows


def qa_scores(
    model,
    tokenizer,
    ds: Dataset,
    question_column: str = "question",
    generate: bool = True,
    perturbed: bool = True,
    batch_size: int = 64,
    max_new_tokens: int = 32,
    desc: str | None = None,
) -> dict[str, np.ndarray | list[str]]:
    """Per-row scores of ``model`` on QA rows.

    Returns:
        ``em``, ``log_prob``, ``n_tokens`` of the answer; with ``generate`` the greedy ``predictions`` and their
        ROUGE-L ``rouge_recall`` / ``rouge_f1``; with ``perturbed`` (and a ``perturbed_answer`` column)
        ``paraphrased_log_prob`` / ``paraphrased_n_tokens`` (the ``paraphrased_answer``, else the answer itself,
        as TOFU does for real authors and world facts) and ``perturbed_log_prob`` / ``perturbed_n_tokens``
        ``(N, K)``.
    """
    questions, answers = ds[question_column], ds["answer"]
    pairs = list(zip(questions, answers))
    perturbed = perturbed and "perturbed_answer" in ds.column_names
    if perturbed:
        paraphrased = ds["paraphrased_answer"] if "paraphrased_answer" in ds.column_names else answers
        wrong = perturbed_matrix(ds, desc or "dataset")
        pairs += list(zip(questions, paraphrased))
        pairs += [(q, w) for q, ws in zip(questions, wrong) for w in ws]
    unique = list(dict.fromkeys(pairs))  # score each distinct pair once (paraphrase == answer is common)
    scored = score_answers(model, tokenizer, [q for q, _ in unique], [a for _, a in unique], batch_size, desc)
    index = {pair: i for i, pair in enumerate(unique)}

    def take(key, some):
        return scored[key][[index[p] for p in some]].numpy().astype(float)

    n = len(answers)
    out: dict = {
        "em": take("exact_match", pairs[:n]),
        "log_prob": take("log_prob", pairs[:n]),
        "n_tokens": take("n_tokens", pairs[:n]),
    }
    if perturbed:
        k = len(wrong[0])
        out["paraphrased_log_prob"] = take("log_prob", pairs[n : 2 * n])
        out["paraphrased_n_tokens"] = take("n_tokens", pairs[n : 2 * n])
        out["perturbed_log_prob"] = take("log_prob", pairs[2 * n :]).reshape(n, k)
        out["perturbed_n_tokens"] = take("n_tokens", pairs[2 * n :]).reshape(n, k)
    if generate:
        predictions = generate_answers(model, tokenizer, questions, max_new_tokens, batch_size, desc)
        rouge = [rouge_l(p, a) for p, a in zip(predictions, answers)]
        out["predictions"] = predictions
        out["rouge_recall"] = np.array([r["recall"] for r in rouge])
        out["rouge_f1"] = np.array([r["f1"] for r in rouge])
    return out


def tofu_stats(scores: dict, kind: str) -> dict[str, float | np.ndarray | None]:
    """TOFU's ``prob``, ``rouge`` and ``truth_ratio`` of a set from :func:`qa_scores`, plus the per-row
    ``truth_ratios`` (``None`` without perturbed answers).

    ``kind``: ``"forget"`` (probability ``P(a|q)^(1/|a|)``, truth ratio ``mean(min(R, 1/R))``), ``"retain"``
    (same probability, truth ratio ``mean(max(0, 1 - R))``) or ``"factual"`` (real authors / world facts:
    probability normalised over the correct and the perturbed answers, truth ratio as for retain).

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in ("forget", "retain", "factual"):
        raise ValueError(f"kind={kind!r}; choose 'forget', 'retain' or 'factual'.")
    has_perturbed = "perturbed_log_prob" in scores
    if kind == "factual" and has_perturbed:
        prob = choice_prob(
            scores["log_prob"], scores["n_tokens"], scores["perturbed_log_prob"], scores["perturbed_n_tokens"]
        )
    else:
        prob = normalised_prob(scores["log_prob"], scores["n_tokens"])
    ratios = None
    if has_perturbed:
        ratios = truth_ratio(
            scores["paraphrased_log_prob"],
            scores["paraphrased_n_tokens"],
            scores["perturbed_log_prob"],
            scores["perturbed_n_tokens"],
        )
    return {
        "prob": float(prob.mean()),
        "rouge": mean(scores["rouge_recall"]) if "rouge_recall" in scores else None,
        "truth_ratio": None if ratios is None else truth_ratio_score(ratios, forget=kind == "forget"),
        "truth_ratios": ratios,
    }
