"""Worst-case forget sets (issue 18): forget the people the model has memorised most instead of a random choice.

Fan et al. 2024 ("Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine Unlearning", ECCV 2024)
search for the forget set hardest to unlearn by bi-level optimisation; Zhao et al. 2024 ("What makes unlearning
hard and what to do about it", NeurIPS 2024) find that the more memorised a forget set is, the harder it is to
unlearn. This is the memorisation proxy: gold-free (the trained model only) and one teacher-forced pass over the
training rows. The re-split keeps every row as it was trained; only which people are forgotten changes.
"""

from __future__ import annotations

from collections import defaultdict

from datasets import DatasetDict, concatenate_datasets

from hf_unlearn.evaluation.metrics import normalised_prob
from hf_unlearn.evaluation.qa import score_answers


def subject_memorisation(model, tokenizer, rows, batch_size: int = 64) -> dict[str, float]:
    """Per ``subject`` of the QA ``rows``: the mean length-normalised probability ``model`` gives its answers."""
    scores = score_answers(model, tokenizer, rows["question"], rows["answer"], batch_size)
    probs = normalised_prob(scores["log_prob"], scores["n_tokens"])
    by_subject: dict[str, list[float]] = defaultdict(list)
    for subject, prob in zip(rows["subject"], probs):
        by_subject[subject].append(float(prob))
    return {s: sum(v) / len(v) for s, v in by_subject.items()}


def worst_case_split(
    data: DatasetDict, memorisation: dict[str, float], n_forget: int | None = None
) -> DatasetDict:
    """``data`` with its trained people (``forget`` ∪ ``retain``, and ``forget_text`` ∪ ``retain_text`` when
    present) split again: the ``n_forget`` people with the highest ``memorisation`` (ties broken by name) are the
    forget set, the others the retain set. Every other split is kept as it is. ``n_forget`` defaults to the number
    of people in ``data["forget"]``.

    Raises:
        ValueError: a trained person has no memorisation score, or ``n_forget`` leaves no forget or no retain
            person.
    """
    trained = concatenate_datasets([data["forget"], data["retain"]])
    people = sorted(set(trained["subject"]))
    missing = [p for p in people if p not in memorisation]
    if missing:
        raise ValueError(
            f"No memorisation score for {len(missing)} trained people (e.g. {missing[0]!r}); score every subject "
            "of the forget and retain rows (subject_memorisation on both)."
        )
    n_forget = len(set(data["forget"]["subject"])) if n_forget is None else n_forget
    if not 1 <= n_forget < len(people):
        raise ValueError(
            f"n_forget={n_forget}: choose between 1 and {len(people) - 1} of the {len(people)} people."
        )
    forget = set(sorted(people, key=lambda p: (-memorisation[p], p))[:n_forget])
    out = dict(data)
    for suffix in ("", "_text"):
        if f"forget{suffix}" not in data:
            continue
        rows = concatenate_datasets([data[f"forget{suffix}"], data[f"retain{suffix}"]])
        out[f"forget{suffix}"] = rows.filter(lambda r: r["subject"] in forget)
        out[f"retain{suffix}"] = rows.filter(lambda r: r["subject"] not in forget)
    return DatasetDict(out)
