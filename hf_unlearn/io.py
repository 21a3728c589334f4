"""Small file helpers: JSON written atomically, so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
from pathlib import Path


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
