"""Human-readable renderings of results dictionaries: text tables, Markdown, and PNG plots (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

TABLE_COLUMNS = (
    "forget_quality",
    "model_utility",
    "privleak",
    "forget_em",
    "retain_em",
    "holdout_em",
    "forget_rouge",
    "retain_rouge",
    "holdout_rouge",
    "seconds",
)


def result_rows(results: dict) -> list[tuple[str, dict]]:
    """``(name, row)`` for the full and gold models, then every unlearning method, in run order. A guarded
    method (ECO: ``*_api`` keys) gives two rows: ``NAME (weights)`` (the standard keys: what the checkpoint
    computes) and ``NAME (API)`` (the ``*_api`` keys: what the served, guarded endpoint answers)."""
    rows = [(name, results[name]) for name in ("full", "gold") if name in results]
    out = []
    for name, row in rows + list(results.get("methods", {}).items()):
        api = {k.removesuffix("_api"): v for k, v in row.items() if k.endswith("_api")}
        out += [(f"{name} (weights)", row), (f"{name} (API)", {**row, **api})] if api else [(name, row)]
    return out


def format_number(value) -> str:
    """Integers as they are, floats with three decimals or in scientific notation when tiny but non-zero (forget
    quality p-values), ``-`` when unset."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"


def text_table(results: dict, columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    """A fixed-width table of ``columns`` for every row (missing values shown as ``-``)."""
    rows = result_rows(results)
    width = max([len("model")] + [len(name) for name, _ in rows])
    header = f"{'model':<{width}}  " + "  ".join(f"{c:>13}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, row in rows:
        cells = [f"{format_number(row.get(c)):>13}" for c in columns]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


# --- hf-unlearn eval: Markdown and plots ---------------------------------------------------------------------

# The headline keys of a result row (hf-unlearn eval's results.json and every demo row).
RESULT_KEYS = (
    "forget_quality",
    "model_utility",
    "verbmem_forget",
    "knowmem_forget",
    "knowmem_retain",
    "privleak",
    "mia_auc",
    "relearn_recovery",
)
REPORT_COLUMNS = (
    *RESULT_KEYS,
    "forget_em",
    "retain_em",
    "forget_paraphrased_rouge",
    "forget_perturbed_question_rouge",
)

# The six axes of the summary plot, each mapped to [0, 1] with 1 = like the retrained model / best.
SUMMARY_AXES = {
    "forget quality": lambda r: 1 + math.log10(max(r["forget_quality"], 1e-10)) / 10,
    "model utility": lambda r: r["model_utility"],
    "no verbatim mem.": lambda r: 1 - r["verbmem_forget"],
    "no knowledge mem.": lambda r: 1 - r["knowmem_forget"],
    "utility preservation": lambda r: r["knowmem_retain"],
    "no privacy leak": lambda r: 1 - min(1.0, abs(r["privleak"]) / 100),
}


# The gold-free audit (hf-unlearn eval without --retain_model computes these too): membership AUCs against the
# holdout people, the relearning and mapping attacks against their held-out controls, the quantization attack.
AUDIT_COLUMNS = (
    "mia_auc_min_k",
    "mia_auc_min_k_pp",
    "mia_auc_loss",
    "mia_auc_zlib",
    "forget_paraphrased_em",
    "forget_perturbed_question_rouge",
    "relearn_recovery",
    "relearn_recovery_prob",
    "relearn_recovery_rouge",
    "relearn_control_recovery",
    "relearn_control_recovery_prob",
    "relearn_control_recovery_rouge",
    "mapping_recovery",
    "mapping_control_recovery",
    "forget_em",
    "quant8_forget_em",
    "quant4_forget_em",
    "forget_rouge",
    "quant8_forget_rouge",
    "quant4_forget_rouge",
)
# Through a guard (ECO): the served API's view, reported beside the weights' view.
API_COLUMNS = (
    "forget_quality",
    "model_utility",
    "privleak",
    "mia_auc",
    "forget_em",
    "retain_em",
    "forget_rouge",
)


def _table(models: dict[str, dict], columns, retrained: str | None, suffix: str = "") -> list[str]:
    lines = ["| model | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, row in models.items():
        label = f"{name} (retrained)" if name == retrained else name
        lines.append(f"| {label} | " + " | ".join(format_number(row.get(c + suffix)) for c in columns) + " |")
    return lines


def markdown_report(models: dict[str, dict], retrained: str | None, notes: list[str] = ()) -> str:
    """A Markdown report: the headline table (the retrained model marked), the gold-free audit table, the API
    view of guarded models, then for each model what could not be computed and why, its warnings, and ``notes``."""
    lines = ["# Unlearning evaluation", "", *_table(models, REPORT_COLUMNS, retrained)]
    lines += ["", "## Gold-free audit", "", *_table(models, AUDIT_COLUMNS, retrained)]
    guarded = {n: r for n, r in models.items() if any(k.endswith("_api") for k in r)}
    if guarded:
        lines += ["", "## Through the guard (the served API; the tables above are the weights)", ""]
        lines += _table(guarded, API_COLUMNS, None, "_api")
    for name, row in models.items():
        details = row.get("details", {})
        missing = details.get("not_computed", {})
        if missing or details.get("warnings"):
            lines += ["", f"### {name}: not computed, warnings", ""]
            lines += [f"- {key}: {reason}" for key, reason in missing.items()]
            lines += [f"- warning: {w}" for w in details.get("warnings", [])]
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(models: dict[str, dict], path: str | Path) -> None:
    """Forget quality (log scale) against model utility, one point per model, as TOFU plots it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, row in models.items():
        if row.get("forget_quality") is None or row.get("model_utility") is None:
            continue
        ax.scatter(row["model_utility"], max(row["forget_quality"], 1e-300))
        ax.annotate(name, (row["model_utility"], max(row["forget_quality"], 1e-300)), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("model utility")
    ax.set_ylabel("forget quality (KS p-value)")
    ax.set_title("Forget quality vs model utility")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _axis_value(fn, row: dict) -> float:
    try:
        return min(1.0, max(0.0, fn(row)))
    except TypeError:  # a metric this data does not allow (e.g. PrivLeak without a holdout set)
        return float("nan")


def plot_summary(models: dict[str, dict], path: str | Path) -> None:
    """A six-axis radar chart of :data:`SUMMARY_AXES` (1 = best), one polygon per model."""
    plt = _pyplot()
    names = list(SUMMARY_AXES)
    angles = [2 * math.pi * i / len(names) for i in range(len(names))]
    fig, ax = plt.subplots(figsize=(6, 6), subplot_kw={"projection": "polar"})
    for model, row in models.items():
        values = [_axis_value(fn, row) for fn in SUMMARY_AXES.values()]  # NaN (a gap) where a metric is unset
        ax.plot(angles + angles[:1], values + values[:1], marker="o", label=model)
    ax.set_xticks(angles)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
