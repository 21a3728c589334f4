"""Non-member stand-ins for forget rows: each forget person renamed to a person the model never saw.

A retrained (gold) model treats a forgotten person as it treats any stranger: it never saw either. The non-member
distillation method (:mod:`hf_unlearn.trainers.nonmember_trainer`) needs, for every forget row, the same row about
a stranger, token for token: :func:`choose_stand_ins` gives each forget subject a never-seen name (from a user's
file, or :func:`~hf_unlearn.data.synthetic.fictitious_names`) whose substitution keeps every one of the subject's
rows the same number of tokens, with labels at the same positions, so the two rows align position by position.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

RENAMED_FIELDS = ("question", "answer", "text")


def load_names(path: str | Path) -> list[str]:
    """Names from a UTF-8 text file, one a line (blank lines ignored).

    Raises:
        ValueError: the file holds no name.
    """
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path} holds no names; write one never-seen person's name a line.")
    return names


def _pattern(subject: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(subject)}(?!\w)")


def renamed(row: dict, subject: str, stand_in: str) -> dict:
    """``row`` with every whole-word occurrence of ``subject`` in its question, answer or text replaced."""
    pattern = _pattern(subject)
    return {k: pattern.sub(stand_in, v) if k in RENAMED_FIELDS else v for k, v in row.items()}


def choose_stand_ins(
    rows: list[dict],
    candidates: list[str],
    encode: Callable[[dict], dict],
    column: str = "subject",
    seed: int = 0,
) -> dict[str, str]:
    """``forget subject -> stand-in``: for each subject (in order of first appearance) the first unused candidate,
    in an order shuffled with ``seed``, for which every row of that subject encodes (``encode(row)``, e.g.
    :func:`~hf_unlearn.data.forget_retain.encode_row`) to as many tokens as the renamed row, with labels at the
    same positions.

    Raises:
        ValueError: a row lacks ``column``, or a question/text does not name its subject in full (row numbers are
            given, not text: error messages end up in logs); a candidate is a forget subject; no candidate fits a
            subject.
    """
    if any(column not in r for r in rows):
        raise ValueError(
            f"The forget rows need a {column!r} column naming each row's person (columns: {sorted(rows[0])}). "
            "Pass subject_column=<the column that names them>."
        )
    subjects = list(dict.fromkeys(r[column] for r in rows))
    if set(candidates) & set(subjects):
        raise ValueError(
            "The non-member names include forget subjects; list only people the model never saw."
        )
    unnamed = [
        i
        for i, r in enumerate(rows)
        if not _pattern(r[column]).search(r.get("question") or r.get("text") or "")
    ]
    if unnamed:
        raise ValueError(
            f"{len(unnamed)} forget row(s) do not name their {column!r} in full in the question or text (rows "
            f"{unnamed[:10]}); the non-member target needs the person named. Fix the column or leave them out."
        )
    order = random.Random(seed).sample(list(dict.fromkeys(candidates)), len(set(candidates)))

    def layout(row: dict) -> tuple[int, tuple[bool, ...]]:
        labels = encode(row)["labels"]
        return len(labels), tuple(t != -100 for t in labels)

    chosen: dict[str, str] = {}
    for subject in subjects:
        own = [r for r in rows if r[column] == subject]
        want = [layout(r) for r in own]
        for name in order:
            if name not in chosen.values() and [layout(renamed(r, subject, name)) for r in own] == want:
                chosen[subject] = name
                break
        else:
            raise ValueError(
                f"None of the {len(order)} non-member names keeps forget subject #{subjects.index(subject)}'s rows "
                "the same number of tokens once renamed; give more names (nonmember_names_file), of a length "
                "similar to the forget people's."
            )
    return chosen
