"""Loading forget / retain / holdout sets from local files or the Hub, with errors that say how to fix them.

A *source* is a local ``.json`` / ``.jsonl`` / ``.parquet`` / ``.csv`` file, a Hub dataset id (with an
optional config, e.g. ``locuslab/TOFU`` + ``forget10``), an in-memory ``datasets.Dataset``, or
``synthetic:<split>`` for a split of the embedded default (``synthetic:forget``, ``synthetic:retain_text``...).
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
from datasets import Dataset

QA_COLUMNS = ("question", "answer")
TEXT_COLUMNS = ("text",)
_LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SYNTHETIC_PREFIX = "synthetic:"


def load_rows(
    source: str | Path | Dataset, name: str | None = None, split: str = "train", **synthetic_kwargs
) -> Dataset:
    """Load one split as a ``datasets.Dataset``.

    Args:
        source: a local file, a Hub dataset id, ``synthetic:<split>``, or a ``Dataset`` (returned as is).
        name: the Hub dataset config (e.g. ``forget10`` for ``locuslab/TOFU``).
        split: the split to read from a Hub dataset.
        synthetic_kwargs: ``n_people``, ``n_holdout``, ``forget_pct``, ``seed`` for ``synthetic:`` sources.

    Raises:
        ValueError: the file does not exist, has an unsupported suffix, cannot be parsed, or is empty.
    """
    if isinstance(source, Dataset):
        ds = source
        origin = "the given Dataset"
    elif str(source).startswith(SYNTHETIC_PREFIX):
        from hf_unlearn.data.synthetic import synthetic_splits

        key = str(source)[len(SYNTHETIC_PREFIX) :]
        splits = synthetic_splits(**synthetic_kwargs)
        if key not in splits:
            raise ValueError(
                f"Unknown synthetic split {key!r} in {str(source)!r}; choose one of {sorted(splits)}."
            )
        ds, origin = splits[key], str(source)
    else:
        ds, origin = _load_file_or_hub(source, name, split)
    if len(ds) == 0:
        raise ValueError(f"{origin} has no rows; an unlearning split must hold at least one example.")
    return ds


def _load_file_or_hub(source: str | Path, name: str | None, split: str) -> tuple[Dataset, str]:
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise ValueError(
                f"{str(path)!r} is a directory; pass one file per split (e.g. {str(path / 'forget.jsonl')!r})."
            )
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(
                f"Cannot read {str(path)!r}: unsupported suffix {path.suffix!r}; use one of {sorted(_LOCAL_BUILDERS)}."
            )
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train"), repr(str(path))
        except Exception as err:  # datasets raises several error types for malformed files
            if builder == "json" and path.read_text(errors="replace").strip() in ("", "[]"):
                raise ValueError(
                    f"{str(path)!r} has no rows; an unlearning split must hold at least one example."
                ) from err
            where = _first_bad_json_line(path) if builder == "json" else None
            raise ValueError(
                f"Cannot parse {str(path)!r} as {builder}"
                + (
                    f": line {where[0]} is not valid JSON ({where[1]})"
                    if where
                    else f": {type(err).__name__}: {err}"
                )
                + ". Check the file is valid (JSON: a list of objects or one object per line)."
            ) from err
    if _HUB_ID.match(str(source)):
        try:
            return datasets.load_dataset(
                str(source), name, split=split
            ), f"Hub dataset {source!r} ({name}, {split})"
        except Exception as err:
            raise ValueError(
                f"Cannot load Hub dataset {source!r} (config={name!r}, split={split!r}): {type(err).__name__}: {err}. "
                "Check the id and config, your network and HF token, or download it and pass the local file."
            ) from err
    raise ValueError(
        f"{str(source)!r} is neither an existing file nor a Hub dataset id ('org/name'); check the path."
    )


def _first_bad_json_line(path: Path) -> tuple[int, str] | None:
    """``(line number, reason)`` of the first line of a JSON / JSON Lines file that does not parse."""
    import json

    text = path.read_text(errors="replace")
    if text.lstrip().startswith("["):  # one JSON document
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            return err.lineno, err.msg
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return number, err.msg
        if not isinstance(row, dict):
            return number, f"a {type(row).__name__}, not an object"
    return None


# A row longer than this many characters per token of max_length is far past what is kept: the tokenizer still
# reads all of it (a 10 MB answer costs ~20 s), then truncation throws most of it away.
LONG_ROW_CHARS_PER_TOKEN = 32


def warn_long_rows(ds: Dataset, max_length: int, origin: str = "dataset") -> None:
    """Warn, before tokenizing, about rows whose answer or text is far longer than ``max_length`` tokens keep."""
    import logging

    limit = max_length * LONG_ROW_CHARS_PER_TOKEN
    for column in ("answer", "text"):
        if column not in ds.column_names:
            continue
        lengths = [len(v) if isinstance(v, str) else 0 for v in ds[column]]
        longest = max(lengths, default=0)
        if longest > limit:
            logging.getLogger(__name__).warning(
                "%s: %d row(s) have a %s longer than %d characters (the longest, row %d, has %d); only the first "
                "max_length=%d tokens are kept, after tokenizing all of it. Shorten those rows or raise max_length.",
                origin,
                sum(n > limit for n in lengths),
                column,
                limit,
                lengths.index(longest),
                longest,
                max_length,
            )


def row_kind(ds: Dataset, origin: str = "dataset") -> str:
    """``"qa"`` when the rows have ``question`` and ``answer``, ``"text"`` when they have ``text``.

    Raises:
        ValueError: neither set of columns is present.
    """
    cols = set(ds.column_names)
    if set(QA_COLUMNS) <= cols:
        return "qa"
    if set(TEXT_COLUMNS) <= cols:
        return "text"
    missing = sorted(set(QA_COLUMNS) - cols)
    raise ValueError(
        f"{origin} has columns {sorted(cols)}; it needs {list(QA_COLUMNS)} for QA rows (missing {missing}) "
        f"or {list(TEXT_COLUMNS)} for raw text. Rename the columns with Dataset.rename_column."
    )


def require_columns(ds: Dataset, columns: tuple[str, ...] | list[str], origin: str = "dataset") -> None:
    """Raise a ``ValueError`` naming the columns ``ds`` lacks."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"{origin} lacks column(s) {missing} (it has {ds.column_names}); they are needed here."
        )


def _normalise(question: str) -> str:
    return " ".join(question.lower().split())


def check_disjoint(forget: Dataset, retain: Dataset) -> None:
    """Forget and retain must not share a subject (when both have ``subject``) nor a question.

    Raises:
        ValueError: listing up to five overlapping subjects or questions.
    """
    if "subject" in forget.column_names and "subject" in retain.column_names:
        shared = sorted(set(forget["subject"]) & set(retain["subject"]) - {None, ""})
        if shared:
            raise ValueError(
                f"Forget and retain share {len(shared)} subject(s), e.g. {shared[:5]}: the retain set would teach "
                "back what is being forgotten. Drop those rows from the retain set."
            )
    if "question" in forget.column_names and "question" in retain.column_names:
        shared = sorted(
            {_normalise(q) for q in forget["question"]} & {_normalise(q) for q in retain["question"]}
        )
        if shared:
            raise ValueError(
                f"Forget and retain share {len(shared)} question(s), e.g. {shared[:5]}. Drop them from the retain set."
            )
