"""Non-member stand-ins for forget rows: each forget person's name swapped for a person the model never saw.

A retrained (gold) model answers a forget question the way it answers any question about a stranger. The
non-member distillation method (:mod:`hf_unlearn.trainers.nonmember_trainer`) needs, for every forget row, the same
question about a stranger: :func:`swap_subjects` renames each forget subject, wherever the question names it in
full, to a name from a list of never-seen people (a user's file, or :func:`~hf_unlearn.data.synthetic.fictitious_names`).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from datasets import Dataset


def load_names(path: str | Path) -> list[str]:
    """Names from a UTF-8 text file, one a line (blank lines ignored).

    Raises:
        ValueError: the file holds no name.
    """
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path} holds no names; write one never-seen person's name a line.")
    return names


def swap_subjects(ds: Dataset, names: list[str], column: str = "subject", seed: int = 0) -> Dataset:
    """``ds`` with every question's ``column`` value (a forget person's name), where it appears as whole words,
    replaced by one of ``names``: each subject gets its own name (drawn with ``seed``), the same in all its rows.
    Answers and the other columns are kept.

    Raises:
        ValueError: no ``column`` or ``question`` column; fewer ``names`` than distinct subjects, or a name that
            is also a subject; a question that does not name its subject (its row numbers are given, not its text:
            error messages end up in logs).
    """
    missing = [c for c in (column, "question") if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"The forget rows need a {column!r} column naming each question's person and a 'question' column; "
            f"missing {missing} (columns: {ds.column_names}). Pass subject_column=<the column that names them>."
        )
    subjects = list(dict.fromkeys(ds[column]))
    if set(names) & set(subjects):
        raise ValueError(
            "The non-member names include forget subjects; list only people the model never saw."
        )
    if len(set(names)) < len(subjects):
        raise ValueError(
            f"{len(set(names))} distinct non-member names for {len(subjects)} forget subjects; give at least one "
            "name per subject."
        )
    mapping = dict(zip(subjects, random.Random(seed).sample(sorted(set(names)), len(subjects))))
    patterns = {s: re.compile(rf"(?<!\w){re.escape(s)}(?!\w)") for s in subjects}
    unnamed = [i for i, (q, s) in enumerate(zip(ds["question"], ds[column])) if not patterns[s].search(q)]
    if unnamed:
        raise ValueError(
            f"{len(unnamed)} forget question(s) do not name their {column!r} in full (rows {unnamed[:10]}); the "
            "non-member target needs the person named in each question. Fix the column or leave those rows out."
        )
    return ds.map(
        lambda row: {"question": patterns[row[column]].sub(mapping[row[column]], row["question"])},
        desc="Swapping forget subjects for non-members",
    )
