"""Non-member stand-ins for forget rows: each forget person renamed to a person the model never saw.

A retrained (gold) model treats a forgotten person as it treats any stranger: it never saw either. The non-member
distillation method (:mod:`hf_unlearn.trainers.nonmember_trainer`) needs, for every forget row, the same row about
a stranger: :func:`assign_stand_ins` gives each forget subject a never-seen name (from a user's file, or
:func:`~hf_unlearn.data.synthetic.fictitious_names`), :func:`renamed` rewrites the row, and :func:`align_positions`
pairs each token position of the original with the renamed row's position that plays its part.
"""

from __future__ import annotations

import random
import re
from difflib import SequenceMatcher
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
    """``row`` with every whole-word occurrence of ``subject`` in its question, answer or text replaced by
    ``stand_in``, and then, when both names have as many words, each word of ``subject`` left on its own (a
    surname in a relative's name, "Ms Lee") by the stand-in's word in the same place."""
    pairs = [(subject, stand_in)]
    words, stand_in_words = subject.split(), stand_in.split()
    if len(words) == len(stand_in_words) > 1:
        pairs += list(zip(words, stand_in_words))
    out = dict(row)
    for key in RENAMED_FIELDS:
        if isinstance(out.get(key), str):
            for old, new in pairs:
                out[key] = _pattern(old).sub(new, out[key])
    return out


def assign_stand_ins(
    rows: list[dict], names: list[str], column: str = "subject", seed: int = 0
) -> dict[str, str]:
    """``forget subject -> stand-in``: each subject (in order of first appearance) gets its own name, drawn from
    ``names`` with ``seed``, the same in all its rows.

    Raises:
        ValueError: a row lacks ``column``, or a question/text does not name its subject in full (row numbers are
            given, not text: error messages end up in logs); a name is a forget subject; fewer names than subjects.
    """
    if any(column not in r for r in rows):
        raise ValueError(
            f"The forget rows need a {column!r} column naming each row's person (columns: {sorted(rows[0])}). "
            "Pass subject_column=<the column that names them>."
        )
    subjects = list(dict.fromkeys(r[column] for r in rows))
    if set(names) & set(subjects):
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
    distinct = list(dict.fromkeys(names))
    if len(distinct) < len(subjects):
        raise ValueError(
            f"{len(distinct)} distinct non-member names for {len(subjects)} forget subjects; give at least one "
            "name per subject."
        )
    return dict(zip(subjects, random.Random(seed).sample(distinct, len(subjects))))


def align_positions(original: list[int], renamed_ids: list[int]) -> list[int]:
    """For each position of ``original`` (token ids), the position of ``renamed_ids`` (the same row, its person
    renamed) that plays its part: tokens outside the names match one to one; the tokens of a name are spread
    evenly over the stand-in's tokens (first to first, last to last), so the position after which a name ends
    maps to the one after which the stand-in ends."""
    out = [0] * len(original)
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, original, renamed_ids, autojunk=False).get_opcodes():
        if tag == "equal":
            out[i1:i2] = range(j1, j2)
            continue
        n, m = i2 - i1, max(j2 - j1, 1)
        last = j1 + m - 1 if j2 > j1 else max(j1 - 1, 0)  # a deleted span maps to the token before it
        for k in range(n):
            out[i1 + k] = last if n == 1 or j2 == j1 else j1 + round(k * (m - 1) / (n - 1))
    return out
