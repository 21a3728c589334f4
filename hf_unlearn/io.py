"""Small file helpers: files and folders written atomically, so an interrupted run never leaves a half-written one."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def written_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write a file or a folder to; renamed onto ``path`` when the block ends
    without error and removed when it fails, so ``path`` is either absent, the old one or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    _remove(tmp)  # left by a run that was killed
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON through a temporary file renamed into place."""
    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
