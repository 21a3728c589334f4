"""Results over several seeds, and the machine they ran on.

A single seed's table is one run, not evidence: PyTorch does not promise bitwise-equal training across CPUs, and
on the tiny models a method's row moves a lot from one run to the next. :func:`aggregate_rows` turns the per-seed
result rows of one model into ``<metric>_mean`` / ``<metric>_sd`` / ``n_seeds`` (used by ``hf-unlearn demo
--seeds`` and ``benchmarks/run_all.py --seeds``); :func:`environment` records the versions and the CPU.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import statistics
from pathlib import Path

PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "hf-unlearn")
CPU_FLAGS = (
    "avx",
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "amx_bf16",
    "fma",
    "sse4_2",
    "neon",
    "asimd",
)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aggregate_rows(rows: list[dict]) -> dict:
    """``<metric>_mean`` and ``<metric>_sd`` (sample standard deviation, ``None`` for one seed) of every metric
    that is a finite number in each of ``rows``, plus ``n_seeds`` (rows that did not fail).

    Rows with an ``error`` key (a failed run) are left out and counted in ``n_failed`` with their ``errors``;
    a metric missing or non-numeric in some rows (``None``, a string, a nested dict) is left out of the
    aggregate, since a mean over a different set of seeds would not be comparable.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("aggregate_rows needs at least one result row (one per seed); got none.")
    ok = [r for r in rows if "error" not in r]
    out: dict = {"n_seeds": len(ok)}
    if len(ok) < len(rows):
        out["n_failed"] = len(rows) - len(ok)
        out["errors"] = [r["error"] for r in rows if "error" in r]
    keys = [k for k in ok[0] if all(_number(r.get(k)) for r in ok)] if ok else []
    for key in keys:
        values = [float(r[key]) for r in ok]
        out[f"{key}_mean"] = statistics.fmean(values)
        out[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    return out


def scalars(row: dict) -> dict:
    """The scalar entries of a result row (numbers, strings, ``None``): what a per-seed record keeps."""
    return {k: v for k, v in row.items() if v is None or isinstance(v, (int, float, str))}


def aggregate_results(per_seed: list[dict], seeds: list[int]) -> dict:
    """One results dictionary over seeds: ``per_seed[i]`` is seed ``seeds[i]``'s results (``full`` and ``gold``
    rows, ``methods``: name -> row). Every model gets :func:`aggregate_rows` of its rows and ``per_seed``, its
    scalar entries per seed (``seed`` added). A method missing from some seeds' results is aggregated over the
    seeds that ran it.

    Raises:
        ValueError: ``per_seed`` and ``seeds`` differ in length, or are empty.
    """
    if not per_seed or len(per_seed) != len(seeds):
        raise ValueError(
            f"aggregate_results needs one results dictionary per seed; got {len(per_seed)} for seeds {seeds}."
        )

    def model(rows: list[tuple[int, dict]]) -> dict:
        return {
            **aggregate_rows([r for _, r in rows]),
            "per_seed": [{"seed": s, **scalars(r)} for s, r in rows],
        }

    out: dict = {"seeds": list(seeds), "n_seeds": len(seeds)}
    for name in ("full", "gold"):
        out[name] = model([(s, res[name]) for s, res in zip(seeds, per_seed)])
    names = list(dict.fromkeys(m for res in per_seed for m in res["methods"]))
    out["methods"] = {
        m: model([(s, res["methods"][m]) for s, res in zip(seeds, per_seed) if m in res["methods"]])
        for m in names
    }
    return out


def mean_sd_text(row: dict, metric: str, digits: int = 3) -> str:
    """``"0.512 ± 0.031"`` for ``metric`` of an aggregated row (``"-"`` when absent; no ``±`` for one seed)."""
    mean = row.get(f"{metric}_mean")
    if mean is None:
        return "-"
    sd = row.get(f"{metric}_sd")
    return f"{mean:.{digits}g}" if sd is None else f"{mean:.{digits}g} ± {sd:.2g}"


def mean_sd_table(results: dict, columns: list[str] | tuple[str, ...]) -> str:
    """A Markdown table of :func:`aggregate_results`' output: one row per model (full, gold, then every method),
    each cell ``mean ± sd`` over the seeds, and the seed count; a model whose every seed failed shows its error."""
    from hf_unlearn.evaluation.report import result_rows

    labels = {"full": "full (original)", "gold": "gold (retrained)"}
    lines = ["| model | " + " | ".join(columns) + " | seeds |", "|---" * (len(columns) + 2) + "|"]
    for name, row in result_rows(results):
        name = labels.get(name, name)
        if row["n_seeds"] == 0:
            error = row["errors"][0][:80].replace("|", "/")
            lines.append(f"| {name} | failed: {error} |" + " |" * len(columns))
            continue
        cells = [mean_sd_text(row, c) for c in columns]
        failed = f" ({row['n_failed']} failed)" if row.get("n_failed") else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['n_seeds']}{failed} |")
    return "\n".join(lines)


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's model name, the vector-instruction flags that change float results (AVX2, AVX-512, ...), and
    the core count; on a machine without ``/proc/cpuinfo`` only what :mod:`platform` knows."""
    info: dict = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "model": platform.processor() or None,
    }
    if cpuinfo.exists():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        info["model"] = fields.get("model name") or fields.get("Model") or info["model"]
        flags = set((fields.get("flags") or fields.get("Features") or "").split())
        info["flags"] = [f for f in CPU_FLAGS if f in flags]
    return info


def environment() -> dict:
    """Python and package versions (``None`` for a package that is not installed) and :func:`cpu_info`."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"versions": versions, "cpu": cpu_info()}
