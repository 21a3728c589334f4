"""Refusal ("I don't know") answers for the IdkNLL / IdkDPO methods, and their pairing with forget questions.

The package ships :data:`REFUSALS_FILE` (``hf_unlearn/data/refusals.txt``, 55 refusals written for this project),
one answer a line; a user's own file has the same format (UTF-8 text, one refusal a line, blank lines ignored).

Pairing (:func:`pair_refusals`) is a seeded draw: ``rng = random.Random(seed)``, then for each forget row in
order ``refusals[rng.randrange(len(refusals))]``. The same rows, refusals and seed always give the same pairs
(``random.Random`` with an integer seed and ``randrange`` give the same stream on every platform and Python >= 3.2).
"""

from __future__ import annotations

import random
from pathlib import Path

from datasets import Dataset

from hf_unlearn.data.loading import require_columns

REFUSALS_FILE = Path(__file__).parent / "refusals.txt"
REFUSAL_COLUMN = "refusal"


def load_refusals(path: str | Path | None = None) -> list[str]:
    """The refusal answers of ``path`` (default: the packaged :data:`REFUSALS_FILE`), one a line, stripped.

    Raises:
        ValueError: the file does not exist, or holds no non-blank line.
    """
    source = Path(path) if path is not None else REFUSALS_FILE
    if not source.is_file():
        raise ValueError(
            f"Refusal file {str(source)!r} does not exist or is not a file; pass a UTF-8 text file with one refusal "
            'answer a line (e.g. "I don\'t know."), or leave refusals_file unset to use the packaged refusals.'
        )
    refusals = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not refusals:
        raise ValueError(
            f"Refusal file {str(source)!r} has no refusal in it (only blank lines, or empty); IdkNLL / IdkDPO need "
            "at least one answer to train towards. Write one refusal a line, or leave refusals_file unset."
        )
    return refusals


def pair_refusals(forget: Dataset, refusals: list[str], seed: int) -> Dataset:
    """``forget`` (QA rows) with a :data:`REFUSAL_COLUMN` column: each row's refusal, drawn as the module says.

    Raises:
        ValueError: ``forget`` has no ``question``/``answer`` columns, or ``refusals`` is empty.
    """
    require_columns(
        forget, ("question", "answer"), "forget_dataset (IdkNLL / IdkDPO pair QA rows with refusals)"
    )
    if not refusals:
        raise ValueError("pair_refusals got no refusals; load some with load_refusals().")
    rng = random.Random(seed)
    drawn = [refusals[rng.randrange(len(refusals))] for _ in range(len(forget))]
    kept = forget.remove_columns([c for c in (REFUSAL_COLUMN,) if c in forget.column_names])
    return kept.add_column(REFUSAL_COLUMN, drawn)


def with_refusal_answers(forget: Dataset) -> Dataset:
    """The paired ``forget`` rows with each ``answer`` replaced by its ``refusal`` (the refusal column dropped)."""
    return forget.remove_columns("answer").rename_column(REFUSAL_COLUMN, "answer")


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def refusal_rate(answers: list[str], refusals: list[str]) -> float:
    """Fraction of ``answers`` that are refusals: whose words (lower-cased, punctuation dropped) begin with the
    words of one of ``refusals`` (a refusal followed by more text counts; a truncated refusal does not)."""
    if not answers:
        return 0.0
    targets = [_words(r) for r in refusals]
    hits = [any(t and _words(a)[: len(t)] == t for t in targets) for a in answers]
    return sum(hits) / len(answers)
