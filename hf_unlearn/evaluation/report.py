"""Human-readable renderings of results dictionaries."""

from __future__ import annotations

TABLE_COLUMNS = (
    "forget_em",
    "retain_em",
    "holdout_em",
    "forget_rouge",
    "retain_rouge",
    "holdout_rouge",
    "seconds",
)


def result_rows(results: dict) -> list[tuple[str, dict]]:
    """``(name, row)`` for the full and gold models, then every unlearning method, in run order."""
    rows = [(name, results[name]) for name in ("full", "gold") if name in results]
    return rows + list(results.get("methods", {}).items())


def text_table(results: dict, columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    """A fixed-width table of ``columns`` for every row (missing values shown as ``-``)."""
    rows = result_rows(results)
    width = max([len("model")] + [len(name) for name, _ in rows])
    header = f"{'model':<{width}}  " + "  ".join(f"{c:>13}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, row in rows:
        cells = [
            f"{row[c]:>13.3f}" if isinstance(row.get(c), (int, float)) else f"{'-':>13}" for c in columns
        ]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
