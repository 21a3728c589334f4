"""The local audit folder: what a run keeps about its forget set, apart from anything that can be published.

A model directory may be pushed to the Hub. Its audit folder — ``<model_dir>.audit/`` beside it, which
``hf-unlearn push`` never stages — holds what the model's owner and an auditor need and nobody else may see:

- ``salt``: 32 random bytes (hex) from ``os.urandom``, the key of every fingerprint of the run (HMAC-SHA256).
  Without it a published fingerprint cannot be used to test whether a given name or row was forgotten; an
  auditor given it verifies with :func:`verify_fingerprint`.
- ``scan_record.json``: keyed hashes of the forget set's subjects, name parts, short strings (answers) and word
  n-grams, no plaintext. ``push`` scans every staged file against it (:func:`scan_folder`).
- method audit material written with :func:`write_audit_json`, e.g. WHP's ``whp_dictionary.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hf_unlearn.io import final_path, read_json, write_json_atomic

AUDIT_SUFFIX = ".audit"
SALT_FILE = "salt"
SCAN_RECORD_FILE = "scan_record.json"
NGRAM_WORDS = 6  # strings longer than this are recorded as their 6-word windows
# Columns that hold no forget-set facts: wrong answers and other subjects made up for the truth ratio (TOFU), and
# the kind of a fact (the embedded default).
NOT_FORGET_TEXT = ("perturbed_answer", "perturbed_subject", "fact")
NORMALISATION = (
    "NFKC, casefolded, split into runs of letters/digits; strings of up to 6 words whole, longer ones as their "
    "6-word windows; each joined by one space and hashed with HMAC-SHA256 keyed by the salt"
)
CANONICALISATION = (
    "each row as JSON with sorted keys, no whitespace, UTF-8; rows sorted; joined by newlines; "
    "HMAC-SHA256 keyed by the salt of the run's audit folder"
)


def audit_dir_for(model_dir: str | Path, audit_dir: str | Path | None = None) -> Path:
    """The audit folder of ``model_dir``: ``audit_dir`` when given, else ``<model_dir>.audit`` beside it (for a
    folder being written atomically, ``<model_dir>.tmp``, the audit folder of the name it will be renamed to)."""
    if audit_dir is not None:
        return Path(audit_dir)
    model_dir = final_path(model_dir)  # a model folder still being written (NAME.tmp) has NAME's audit folder
    return model_dir.parent / f"{model_dir.name}{AUDIT_SUFFIX}"


def salt_of(audit_dir: str | Path, create: bool = True) -> bytes:
    """The salt of ``audit_dir`` (created from ``os.urandom`` on first use, readable by the owner only).

    Raises:
        ValueError: ``create`` is false and the folder has no salt.
    """
    path = Path(audit_dir) / SALT_FILE
    if not path.exists():
        if not create:
            raise ValueError(
                f"No {SALT_FILE} in {str(audit_dir)!r}: it is not the audit folder of an hf-unlearn run. Pass "
                "the folder the training run wrote (default: <model_dir>.audit beside the model)."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    return bytes.fromhex(path.read_text().strip())


def keyed_digest(salt: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` (UTF-8) keyed by ``salt``, as hex."""
    return hmac.new(salt, text.encode("utf-8"), hashlib.sha256).hexdigest()


def canonical_rows(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each row as canonical JSON (sorted keys, no whitespace, non-ASCII kept), the rows sorted."""
    return sorted(
        json.dumps(dict(r), sort_keys=True, ensure_ascii=False, separators=(",", ":")) for r in rows
    )


def forget_fingerprint(dataset: Iterable[Mapping[str, Any]], salt: bytes) -> dict:
    """``{"count", "hmac_sha256"}`` of a forget set (a ``datasets.Dataset`` or a list of dicts).

    The keyed hash is over the canonicalised rows (see :data:`CANONICALISATION`), so it depends on neither row
    nor key order. Only who holds ``salt`` can recompute it: a published fingerprint lets nobody else test a
    guessed forget set.
    """
    rows = canonical_rows(dataset)
    return {"count": len(rows), "hmac_sha256": keyed_digest(salt, "\n".join(rows))}


def verify_fingerprint(dataset: Iterable[Mapping[str, Any]], salt: bytes, fingerprint: Mapping) -> bool:
    """Whether ``dataset`` is the forget set that ``fingerprint`` (from a card) was computed from with ``salt``."""
    expected = forget_fingerprint(dataset, salt)
    return expected["count"] == fingerprint.get("count") and hmac.compare_digest(
        expected["hmac_sha256"], str(fingerprint.get("hmac_sha256", ""))
    )


def forget_strings(forget_sets: Iterable[Iterable[Mapping[str, Any]]], min_chars: int = 4) -> set[str]:
    """Every string in the forget rows (lists flattened) worth searching for in a published file.

    Strings shorter than ``min_chars`` and purely numeric ones (years, counts) are left out: on their own they
    identify nobody and they collide with metric values and hashes. So are the columns of
    :data:`NOT_FORGET_TEXT` (made-up wrong answers, fact kinds).
    """
    found: set[str] = set()

    def collect(value):
        if isinstance(value, str):
            value = value.strip()
            if len(value) >= min_chars and not re.fullmatch(r"[\d\s.,:/+-]*", value):
                found.add(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)
        elif isinstance(value, Mapping):
            for v in value.values():
                collect(v)

    for rows in forget_sets:
        for row in rows:
            collect({k: v for k, v in dict(row).items() if k not in NOT_FORGET_TEXT})
    return found


def words(text: str) -> list[str]:
    """``text`` normalised for the scan: NFKC, casefolded, runs of letters and digits."""
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())


def _grams(tokens: list[str]) -> list[tuple[str, ...]]:
    if len(tokens) <= NGRAM_WORDS:
        return [tuple(tokens)] if tokens else []
    return [tuple(tokens[i : i + NGRAM_WORDS]) for i in range(len(tokens) - NGRAM_WORDS + 1)]


def _identifying(gram: tuple[str, ...]) -> bool:
    """Not a lone short word or a run of numbers (years, counts): those identify nobody."""
    return not all(w.isdigit() for w in gram) and (len(gram) > 1 or len(gram[0]) >= 4)


def forget_subjects(forget_sets: Iterable[Iterable[Mapping]], subject_column: str = "subject") -> set[str]:
    """The values of ``subject_column`` in the forget rows (none when the rows have no such column)."""
    return {s for rows in forget_sets for row in rows if isinstance(s := dict(row).get(subject_column), str)}


def scan_grams(forget_sets, retain_sets=(), subject_column: str = "subject") -> set[tuple[str, ...]]:
    """The word sequences the scan looks for (see :data:`NORMALISATION`).

    Every forget subject name, whole, and each of its parts of 4+ letters; every forget string of up to 6 words
    and every 6-word window of longer ones. Left out is what a retained string holds too: a city, a sentence
    template or a TOFU "subject" that is a place, shared with a retained person, says nothing about who was
    forgotten.
    """
    forget_sets, retain_sets = list(forget_sets), list(retain_sets)
    subjects = forget_subjects(forget_sets, subject_column)
    candidates = {tuple(words(s)) for s in subjects if words(s)}
    candidates |= {(w,) for s in subjects for w in words(s) if len(w) >= 4}
    for s in forget_strings(forget_sets):
        candidates |= {g for g in _grams(words(s)) if _identifying(g)}
    lengths = {len(g) for g in candidates}
    for s in forget_strings(retain_sets, min_chars=1):  # drop what a retained string holds too
        tokens = words(s)
        candidates -= {tuple(tokens[i : i + n]) for n in lengths for i in range(len(tokens) - n + 1)}
    return candidates


def write_scan_record(audit_dir: str | Path, forget_sets, retain_sets=(), subject_column="subject") -> dict:
    """Write ``scan_record.json`` (keyed hashes of :func:`scan_grams`) into ``audit_dir`` and return it."""
    salt = salt_of(audit_dir)
    grams = scan_grams(forget_sets, retain_sets, subject_column)
    record = {
        "normalisation": NORMALISATION,
        "lengths": sorted({len(g) for g in grams}),
        "hashes": sorted({keyed_digest(salt, " ".join(g)) for g in grams}),
    }
    write_json_atomic(Path(audit_dir) / SCAN_RECORD_FILE, record)
    return record


def _unescaped(text: str) -> str:
    """JSON's ``\\uXXXX`` escapes decoded in place (line structure kept), so escaped names are scanned too."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


def scan_text(text: str, salt: bytes, lengths: Iterable[int], hashes: set[str]) -> list[int]:
    """Line numbers (1-based, sorted) of ``text`` where a recorded word sequence starts; empty when clean."""
    tokens, lines = [], []
    for number, line in enumerate(_unescaped(text).splitlines(), start=1):
        found = words(line)
        tokens += found
        lines += [number] * len(found)
    hits = set()
    for n in lengths:
        for i in range(len(tokens) - n + 1):
            if keyed_digest(salt, " ".join(tokens[i : i + n])) in hashes:
                hits.add(lines[i])
    return sorted(hits)


def scan_folder(
    folder: str | Path, audit_dir: str | Path, skip: Iterable[str] = (), skip_dirs: Iterable[str] = ()
) -> dict[str, list[int]]:
    """``relative path -> line numbers`` of recorded forget-set text in the files of ``folder``.

    Files matching a glob of ``skip`` (weights, tokenizer vocabularies) and files under the top-level folders
    ``skip_dirs`` are not read.

    Raises:
        ValueError: ``audit_dir`` holds no salt or no scan record.
    """
    salt = salt_of(audit_dir, create=False)
    if not (Path(audit_dir) / SCAN_RECORD_FILE).exists():
        raise ValueError(
            f"No {SCAN_RECORD_FILE} in {str(audit_dir)!r}; it is written when a trainer saves its model card."
        )
    record = read_json(Path(audit_dir) / SCAN_RECORD_FILE)
    hashes, skip, skip_dirs = set(record["hashes"]), tuple(skip), set(skip_dirs)
    folder = Path(folder)
    hits = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if relative.parts[0] in skip_dirs or any(relative.match(pattern) for pattern in skip):
            continue
        found = scan_text(path.read_text(errors="replace"), salt, record["lengths"], hashes)
        if found:
            hits[str(relative)] = found
    return hits


def write_audit_json(
    model_dir: str | Path, name: str, payload: dict, audit_dir: str | Path | None = None
) -> Path:
    """Write ``payload`` as ``name`` into the audit folder of ``model_dir`` (never into ``model_dir``)."""
    path = audit_dir_for(model_dir, audit_dir) / name
    write_json_atomic(path, payload)
    return path
