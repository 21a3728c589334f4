"""Leak checks: is any forget-set text in a card, a folder, or a staged release?

A release is checked against the keyed scan record of the model's audit folder (:mod:`hf_unlearn.audit`) and,
when given, the plaintext of the forget-set files; weights and tokenizer vocabularies are not scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from hf_unlearn.audit import forget_strings, scan_folder

# Published files that may legitimately hold forget-set *pieces*: weights, and tokenizer vocabularies (names
# are often single tokens). The leak scan skips them.
_SCAN_SKIPPED = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf", "tokenizer.json", "vocab.json",
                 "merges.txt", "tokenizer.model", "*.png")  # fmt: skip


def find_forget_text(text: str, strings: Iterable[str]) -> list[str]:
    """The forget strings that occur in ``text`` (case-sensitive), sorted.

    Strings of 12 characters or more match anywhere; shorter ones (a city, a profession) only as whole words.
    """
    return sorted(
        s
        for s in strings
        if (s in text if len(s) >= 12 else re.search(rf"(?<!\w){re.escape(s)}(?!\w)", text))
    )


def scan_for_forget_text(folder: str | Path, forget_sets: Iterable) -> dict[str, list[str]]:
    """``relative path -> forget strings found`` over the text files of ``folder`` (weights and tokenizer
    vocabularies skipped); empty when nothing leaks."""
    strings = forget_strings(forget_sets)
    folder = Path(folder)
    hits = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(path.match(pattern) for pattern in _SCAN_SKIPPED):
            continue
        found = find_forget_text(path.read_text(errors="replace"), strings)
        if found:
            hits[str(path.relative_to(folder))] = found
    return hits


def _leak_report(hits: Mapping[str, list]) -> str:
    return ", ".join(
        f"{path} (line{'s' if len(found) > 1 else ''} {', '.join(map(str, found[:5]))})"
        if found and isinstance(found[0], int)
        else f"{path} ({len(found)} --forget_data string(s))"
        for path, found in sorted(hits.items())
    )


def check_release(
    staging: Path,
    audit_dir: Path | None,
    forget_data: Iterable[str | Path] = (),
    skip_dirs: Iterable[str] = (),
) -> None:
    """Refuse a staged release holding forget-set text: every file (weights and tokenizer vocabularies aside)
    is scanned against the keyed scan record of ``audit_dir`` and, as an extra source, the plaintext of the
    ``forget_data`` files. Files under the top-level folders ``skip_dirs`` are not read.

    Raises:
        ValueError: naming every file with a hit and its lines, and how to fix it.
    """
    from hf_unlearn.data.loading import load_rows

    skip_dirs = tuple(skip_dirs)
    hits: dict[str, list] = {}
    if audit_dir is not None:
        hits.update(scan_folder(staging, audit_dir, _SCAN_SKIPPED, skip_dirs))
    if forget_data:
        plain = scan_for_forget_text(staging, [load_rows(path) for path in forget_data])
        hits.update({k: v for k, v in plain.items() if k not in hits and Path(k).parts[0] not in skip_dirs})
    if hits:
        raise ValueError(
            f"Forget-set text found in the files to upload: {_leak_report(hits)}; nothing was uploaded and no "
            "staging folder was left. Remove the names and per-example outputs from those files (keep summary "
            "metrics in eval/; audit material belongs in the audit folder) and push again."
        )
