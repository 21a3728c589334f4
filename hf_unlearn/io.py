"""Small file helpers: outputs checked before work starts and written atomically, so an interrupted run never
leaves a half-written file or folder that looks complete, and an existing result is replaced only on request."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Files whose presence marks a folder as an hf-unlearn result (a model, adapters, a guard, an eval): such a folder
# is replaced only with --overwrite, and a folder holding none of them is never deleted.
RESULT_MARKERS = (
    "config.json",
    "adapter_config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "guard_config.json",
    "results.json",
    "training_summary.json",
    "unlearning_summary.json",
    "dp_privacy.json",
)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


TMP_SUFFIX = ".tmp"


def final_path(path: str | Path) -> Path:
    """The path that :func:`written_atomically`'s temporary ``path`` will be renamed to (``path`` itself when it
    is not such a temporary), so that what is derived from a folder's name (its audit folder) is derived from
    the final name while the folder is still being written."""
    path = Path(path)
    return path.with_name(path.name[: -len(TMP_SUFFIX)]) if path.name.endswith(TMP_SUFFIX) else path


@contextmanager
def written_atomically(
    path: str | Path, clear_leftover: bool = True, keep_on_error: bool = False
) -> Iterator[Path]:
    """A temporary path beside ``path`` (``path`` + ``.tmp``) to write a file or a folder to; renamed onto ``path``
    when the block ends without error and removed when it fails, so ``path`` is either absent, the old one or the
    complete new one. An existing folder at ``path`` is replaced as a whole (the result starts from an empty folder).

    Args:
        clear_leftover: remove what a killed run left at the temporary path first (off to resume from it).
        keep_on_error: keep the temporary folder when the block fails (its checkpoints let a run resume).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    if clear_leftover:
        _remove(tmp)
    try:
        yield tmp
    except BaseException:
        if not keep_on_error:
            _remove(tmp)
        raise
    if path.is_dir():
        old = path.with_name(path.name + ".old")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def check_output_dir(path: str | Path, overwrite: bool = False, option: str = "--output_dir") -> Path:
    """Refuse an output folder before any work starts: one that is a file, one that already holds a result
    (unless ``overwrite``), one that holds other files (never deleted, even with ``overwrite``), or one that cannot
    be written to.

    Raises:
        ValueError: the folder cannot be used, with how to fix it.
    """
    if not path:
        raise ValueError(f"No {option} given; pass the folder to write the result to.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a file; pass a folder (it is created when missing).")
    if path.is_dir() and any(path.iterdir()):
        held = sorted(
            p.name for p in path.iterdir() if p.name in RESULT_MARKERS or p.name.startswith("checkpoint-")
        )
        if not held:
            raise ValueError(
                f"{option} {str(path)!r} is a non-empty folder that holds no hf-unlearn result; it is not replaced "
                "(that would delete its files). Pass a new or empty folder."
            )
        if not overwrite:
            raise ValueError(
                f"{option} {str(path)!r} already holds a result ({', '.join(held[:4])}); pass --overwrite to replace "
                "it (the whole folder is replaced once the new result is complete) or choose another folder."
            )
    parent = next(p for p in (path, *path.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise ValueError(
            f"{option} {str(path)!r} cannot be written ({type(err).__name__} in {str(parent)!r}: {err.strerror}); "
            "pass a folder you can write to."
        ) from err
    return path


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON through a temporary file renamed into place."""
    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def check_model_source(source: str | Path | None, option: str = "--model") -> None:
    """Refuse a model source that is neither a saved model folder nor a possible Hub id, before anything loads.

    Raises:
        ValueError: nothing given, a missing local path, a file, or a folder without ``config.json`` /
            ``adapter_config.json``.
    """
    if not source:
        raise ValueError(
            f"No {option} given; pass a saved model folder (with config.json) or a Hub id 'org/name'."
        )
    path, text = Path(source), str(source)
    if path.is_dir():
        if not any((path / name).exists() for name in ("config.json", "adapter_config.json")):
            raise ValueError(
                f"{option} {text!r} is a folder without config.json or adapter_config.json, so not a saved model; "
                "pass the folder a train/unlearn run wrote."
            )
    elif path.exists():
        raise ValueError(f"{option} {text!r} is a file; pass the model's folder (with config.json).")
    elif text.startswith(("/", ".", "~")) or text.count("/") > 1:
        raise ValueError(
            f"{option} {text!r} does not exist; pass a saved model folder (with config.json) or a Hub id 'org/name'."
        )


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
