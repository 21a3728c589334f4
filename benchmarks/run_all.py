"""Benchmark every registered unlearning method on the embedded default and on TOFU forget01/05/10.

Every method in :data:`hf_unlearn.demo.DEMO_METHODS` (``name -> "module:function"``, signature
``fn(full_model_dir, data, out_dir, seed) -> (model, extra)``) runs on each setting, with full fine-tuning and
again with LoRA when its function takes ``lora`` (called with ``lora=True``) or forwards ``**overrides`` to its
``UnlearningConfig`` (called with ``lora_r=--lora_r``). For each setting a tiny Llama is
trained on forget + retain (the *full* model) and on retain only (the *gold*, retrained model); the method's
wall time divided by the gold model's training time is its *cost relative to retraining*.

    python benchmarks/run_all.py            # full run -> benchmarks/results/{<setting>.json,table.md,pareto.png}
    python benchmarks/run_all.py --quick    # small preset -> benchmarks/results/quick/
    python benchmarks/run_all.py --smoke    # minutes: end-to-end check of the machinery, numbers meaningless

Every setting runs once per ``--seeds`` (default 0 1 2; the seed changes the data order and initialisation, and
on the embedded default the forget/retain split of people) and its JSON holds, per model, ``<metric>_mean``,
``<metric>_sd``, ``n_seeds`` and the per-seed values (:func:`hf_unlearn.seeds.aggregate_results`); the table
prints mean ± sd. A finished seed is kept in ``<out>/per_seed/<setting>-s<seed>.json`` and reused by a rerun with
the same configuration, so seeds can run in separate sessions or processes (``--seeds 1``) and a final run over
all seeds aggregates them without training anything.

TOFU (``--tofu_dir``, default ``../shared/data/tofu`` beside the checkout) is read by path. Each TOFU author
owns 20 consecutive rows of ``retain90 + forget10``; the last ``--tofu_holdout_authors`` authors of retain90 are
never trained on (the holdout for membership attacks), all three forget splits share one full model, and with
``--tofu_retain_authors N`` only the first N retain authors are used (bounded training, also ``--tofu_epochs``).
Model utility is TOFU's: retain (the retained authors' rows of ``retain_perturbed.json``, with perturbed
answers; TOFU's 400 rows cover retain90's first 20 authors), real authors and world facts; each setting's JSON
names the sets in ``utility_sets``. The tiny
model needs about 30 epochs to memorise TOFU answers: on 12 authors, 30 epochs gave the full model forget EM
0.80 / ROUGE-L 0.67 against the retrained model's 0.00 / 0.10; at 8 epochs both were near 0.

The scores come from ``--evaluator`` (``module:function``, ``fn(model, tokenizer, data) -> dict``; default:
exact match and ROUGE-L on forget / retain / holdout). The Pareto plot uses ``forget_quality`` and
``model_utility`` when the evaluator reports them, else the proxies named on its axes.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import logging
import sys
import time
from pathlib import Path

from datasets import Dataset, DatasetDict

from hf_unlearn.data.synthetic import synthetic_splits
from hf_unlearn.demo import pipeline as demo
from hf_unlearn.hub.card import METRICS
from hf_unlearn.io import read_json, write_json_atomic
from hf_unlearn.seeds import aggregate_results, environment, mean_sd_table

logger = logging.getLogger("run_all")
ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("default", "tofu_forget01", "tofu_forget05", "tofu_forget10")
TOFU_AUTHOR_ROWS = 20
PRESETS = {
    "full": {
        "settings": list(SETTINGS),
        "modes": ["full", "lora"],
        "people": 200,
        "holdout": 20,
        "base_epochs": None,
        "tofu_holdout_authors": 10,
        "tofu_retain_authors": 30,
        "tofu_epochs": 40,
        "eval_rows": 400,
    },
    "quick": {
        "settings": ["default", "tofu_forget01"],
        "modes": ["full"],
        "people": 60,
        "holdout": 10,
        "base_epochs": None,
        "tofu_holdout_authors": 2,
        "tofu_retain_authors": 10,
        "tofu_epochs": 30,
        "eval_rows": 100,
    },
    "smoke": {
        "settings": ["default", "tofu_forget01"],
        "modes": ["full"],
        "people": 10,
        "holdout": 2,
        "base_epochs": 2,
        "tofu_holdout_authors": 1,
        "tofu_retain_authors": 2,
        "tofu_epochs": 1,
        "eval_rows": 8,
    },
}
DEFAULT_SEEDS = (0, 1, 2)
EXTRA_COLUMNS = ("seconds", "cost_vs_retrain")
DEFAULT_EVALUATOR = "hf_unlearn.demo.pipeline:evaluate_row"
LORA_R = 8
# Per setting family ("default", "tofu"), keyword arguments for a row ("<method>" or "<method>/lora") on top of
# the demo's settings (tuned on the embedded default with full fine-tuning). Learning rates for the other
# combinations are chosen by benchmarks/tune_settings.py and read from TUNING_FILE; the fixed ones are here.
FIXED_OVERRIDES = {
    "tofu": {"dp2": {"subject_column": "author"}}
}  # TOFU's `subject` is an entity, not a person
TUNING_FILE = ROOT / "benchmarks" / "results" / "tuning.json"


def family(setting: str) -> str:
    return "tofu" if setting.startswith("tofu_") else setting


def row_overrides(setting: str, tuning_file: Path | None = TUNING_FILE) -> dict[str, dict]:
    """``row -> keyword overrides`` for ``setting``: :data:`FIXED_OVERRIDES` plus the tuned ones in
    ``tuning_file`` (its ``chosen[family][row]``; none when the file is absent or ``None``)."""
    tuned = (
        read_json(tuning_file)["chosen"].get(family(setting), {})
        if tuning_file and tuning_file.exists()
        else {}
    )
    fixed = FIXED_OVERRIDES.get(family(setting), {})
    return {row: {**fixed.get(row, {}), **tuned.get(row, {})} for row in {*fixed, *tuned}}


def _call(spec: str):
    module, function = spec.split(":")
    return getattr(importlib.import_module(module), function)


def _author_blocks(rows: list[dict]) -> list[list[dict]]:
    return [rows[i : i + TOFU_AUTHOR_ROWS] for i in range(0, len(rows), TOFU_AUTHOR_ROWS)]


def _texts(authors: list[list[dict]], offset: int) -> Dataset:
    """One document per author: their answers joined (TOFU has no bios)."""
    names = [f"author-{offset + i}" for i in range(len(authors))]
    return Dataset.from_dict(
        {"text": [" ".join(r["answer"] for r in rows) for rows in authors], "subject": names, "author": names}
    )


def _with_author(authors: list[list[dict]], offset: int, columns: tuple[str, ...] = ("question", "answer")):
    """The QA rows of ``authors`` (only ``columns``) with an ``author`` column: TOFU's ``subject`` column names an
    entity of each question (a city, a book), which the ECO guard matches; DP2's subject-level privacy unit and
    its deletion requests need the person, so they use ``author`` (``subject_column="author"``)."""
    return Dataset.from_list(
        [
            {**{c: r[c] for c in columns}, "author": f"author-{offset + i}"}
            for i, a in enumerate(authors)
            for r in a
        ]
    )


def tofu_splits(
    tofu_dir: Path,
    forget_split: str,
    holdout_authors: int,
    retain_authors: int | None = None,
    pool_forget_split: str = "forget10",
) -> DatasetDict:
    """forget / retain / holdout (+ ``_text`` per author), ``retain_perturbed`` and the real_authors /
    world_facts utility sets for one TOFU forget split, read by path.

    The pool is ``retain90 + forget10`` (the original author order), cut to the last ``holdout_authors`` of
    retain90 (holdout), its first ``retain_authors`` (all others when None) and the authors of
    ``pool_forget_split`` (the largest forget split benchmarked; forget01 is in forget05, which is in forget10).
    The forget split's authors are forgotten and the other pool authors retained, so the forget splits share one
    full model. ``retain_perturbed`` is the rows of TOFU's ``retain_perturbed.json`` about retained authors (with
    ``perturbed_answer``: the retain part of model utility).
    """
    retain90, pool_forget, forget = (
        json.loads((tofu_dir / f"{name}.json").read_text())
        for name in ("retain90", pool_forget_split, forget_split)
    )
    others = _author_blocks(retain90)
    if holdout_authors < 1 or holdout_authors >= len(others):
        raise ValueError(
            f"holdout_authors={holdout_authors}; pass 1 to {len(others) - 1} (retain90 has {len(others)})."
        )
    holdout, others = others[-holdout_authors:], others[:-holdout_authors]
    kept = others[:retain_authors] + _author_blocks(pool_forget)
    forget_questions = {r["question"] for r in forget}
    forget_authors = [a for a in kept if a[0]["question"] in forget_questions]
    retain = [a for a in kept if a[0]["question"] not in forget_questions]
    if sum(len(a) for a in forget_authors) != len(forget) or any(
        r["question"] in forget_questions for a in retain for r in a
    ):
        raise ValueError(
            f"{tofu_dir / forget_split}.json does not cover whole 20-row author blocks of retain90 + "
            f"{pool_forget_split}; pass the original TOFU files and a pool split that contains the forget split."
        )
    return DatasetDict(
        retain_perturbed=_perturbed_rows(tofu_dir / "retain_perturbed.json", retain, len(forget_authors)),
        forget=_with_author(forget_authors, 0, tuple(forget[0])),
        retain=_with_author(retain, len(forget_authors)),
        holdout=_with_author(holdout, len(forget_authors) + len(retain)),
        forget_text=_texts(forget_authors, 0),
        retain_text=_texts(retain, len(forget_authors)),
        holdout_text=_texts(holdout, len(forget_authors) + len(retain)),
        # TOFU's utility sets (never trained on; scored by the evaluation suite's model utility)
        **{
            name: Dataset.from_list(json.loads((tofu_dir / f"{name}_perturbed.json").read_text()))
            for name in ("real_authors", "world_facts")
        },
    )


def _perturbed_rows(path: Path, authors: list[list[dict]], offset: int) -> Dataset:
    """The rows of a TOFU ``*_perturbed.json`` file that are one of ``authors``' QA pairs (same question and
    answer; numbered from ``offset`` as in :func:`_with_author`), with that ``author`` column; TOFU's columns
    kept."""
    author_of = {
        (r["question"], r["answer"]): f"author-{offset + i}" for i, a in enumerate(authors) for r in a
    }
    rows = [r for r in json.loads(path.read_text()) if (r["question"], r["answer"]) in author_of]
    return Dataset.from_list([{**r, "author": author_of[r["question"], r["answer"]]} for r in rows])


def evaluation_splits(data: DatasetDict, rows: int, seed: int) -> tuple[DatasetDict, dict]:
    """The splits models are scored on, and the utility sets used (``name -> source``).

    QA evaluation splits are cut to at most ``rows`` rows each (a fixed random subset); the text splits (used
    for VerbMem and membership attacks) and the TOFU utility sets are kept whole. Where ``data`` has a
    ``retain_perturbed`` split (TOFU), it is the retain set scored, so that model utility covers retain, real
    authors and world facts as TOFU defines it.
    """
    splits = dict(data)
    retain_source = "retain"
    if "retain_perturbed" in splits:
        splits["retain"], retain_source = splits.pop("retain_perturbed"), "retain_perturbed"
    capped = DatasetDict(
        {
            s: ds.shuffle(seed=seed).select(range(min(rows, len(ds)))) if s in demo.EVAL_SPLITS else ds
            for s, ds in splits.items()
        }
    )
    utility = {"retain": f"{retain_source} ({len(capped['retain'])} rows)"}
    utility.update(
        {s: f"{s} ({len(capped[s])} rows)" for s in ("real_authors", "world_facts") if s in capped}
    )
    return capped, utility


def lora_kwargs(spec: str, lora_r: int = LORA_R) -> dict | None:
    """How to ask a method function for LoRA: ``lora=True`` when it takes ``lora``, ``lora_r=r`` (the
    ``UnlearningConfig`` field) when it forwards ``**overrides`` to its config, else None (full only)."""
    params = inspect.signature(_call(spec)).parameters
    if "lora" in params:
        return {"lora": True}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {"lora_r": lora_r}
    return None


def _scorer(evaluator: str, gold_model, tokenizer, eval_data: DatasetDict):
    """(gold row, ``score(model) -> row``). With ``hf-unlearn eval``'s suite in the demo (``demo.gold_reference``)
    the gold model's statistics are computed once and every other model is compared with them."""
    evaluate = _call(evaluator)
    if evaluator == DEFAULT_EVALUATOR and hasattr(demo, "gold_reference"):
        gold_row, reference = demo.gold_reference(gold_model, tokenizer, eval_data)
        return gold_row, lambda model: evaluate(model, tokenizer, eval_data, reference)
    return evaluate(gold_model, tokenizer, eval_data), lambda model: evaluate(model, tokenizer, eval_data)


def train_full_and_gold(
    data: DatasetDict, base_dir: Path, work: Path, seed: int, overrides: dict, with_texts: bool
) -> tuple:
    """(tokenizer, ``{"full": (model, summary), "gold": (model, summary)}``): the shared tokenizer and the full
    model (forget + retain) in ``base_dir``, the gold model (retain only) in ``work``, each trained or reused
    (:func:`hf_unlearn.demo.pipeline.train_or_reuse`)."""
    tokenizer = demo.build_tokenizer(data, base_dir / "tokenizer")
    trained = {
        model_name: demo.train_or_reuse(
            model_dir, tokenizer, data, splits, seed, False, overrides, with_texts
        )
        for model_name, splits, model_dir in (
            ("full", ["forget", "retain"], base_dir / "full"),
            ("gold", ["retain"], work / "gold"),
        )
    }
    return tokenizer, trained


def run_setting(
    name: str,
    data: DatasetDict,
    base_dir: Path,
    work: Path,
    *,
    methods: list[str],
    modes: list[str],
    seed: int,
    evaluator: str,
    eval_rows: int,
    base_overrides: dict,
    with_texts: bool,
    lora_r: int = LORA_R,
    overrides: dict[str, dict] | None = None,
    methods_dir: Path | None = None,
) -> dict:
    """Train (or reuse) the full and gold models of one setting, run every method (into ``methods_dir``, default
    ``work/methods``), return its results.

    ``overrides`` maps a row (``"<method>"`` or ``"<method>/lora"``) to extra keyword arguments for its method
    function (see :func:`row_overrides`); they are recorded in the row as ``overrides``."""
    tokenizer, trained = train_full_and_gold(data, base_dir, work, seed, base_overrides, with_texts)
    eval_data, utility_sets = evaluation_splits(data, eval_rows, seed)
    results: dict = {
        "setting": name,
        "seed": seed,
        "sizes": {split: len(ds) for split, ds in data.items()},
        "eval_rows": {split: len(ds) for split, ds in eval_data.items()},
        "utility_sets": utility_sets,
        "evaluator": evaluator,
        "methods": {},
    }
    gold_row, score = _scorer(evaluator, trained["gold"][0], tokenizer, eval_data)
    for model_name, (model, summary) in trained.items():
        row = gold_row if model_name == "gold" else score(model)
        results[model_name] = {**row, "seconds": summary["seconds"], "epochs": summary["epochs"]}
    retrain_seconds = results["gold"]["seconds"]
    for method in methods:
        spec = demo.DEMO_METHODS[method]
        lora = lora_kwargs(spec, lora_r)
        for mode in [m for m in modes if m == "full" or lora is not None]:
            key = method if mode == "full" else f"{method}/lora"
            logger.info("%s: %s", name, key)
            kwargs = {**(lora if mode == "lora" else {}), **(overrides or {}).get(key, {})}
            try:
                start = time.perf_counter()
                model, extra = _call(spec)(
                    base_dir / "full",
                    data,
                    (methods_dir or work / "methods") / key.replace("/", "-"),
                    seed,
                    **kwargs,
                )
                row = {"seconds": time.perf_counter() - start, **extra, "mode": mode, "overrides": kwargs}
                row.update(score(model))
                row["cost_vs_retrain"] = row["seconds"] / retrain_seconds
            except Exception as err:  # one failing method must not lose the others' results
                logger.exception("%s failed on %s", key, name)
                row = {"mode": mode, "error": f"{type(err).__name__}: {err}"}
            results["methods"][key] = row
    return results


def has_reported_axes(row: dict) -> bool:
    return all(isinstance(row.get(k), (int, float)) for k in ("forget_quality", "model_utility"))


def pareto_point(row: dict, gold: dict, reported: bool | None = None) -> tuple[float, float, str, str]:
    """(x, y, x label, y label): forget quality vs model utility when ``reported`` (default: when the row has
    both), else proxies from ROUGE-L."""
    if has_reported_axes(row) if reported is None else reported:
        return row["forget_quality"], row["model_utility"], "forget quality", "model utility"
    x = 1 - abs(row["forget_rouge"] - gold["forget_rouge"])
    return x, row["retain_rouge"], "1 - |forget ROUGE-L - retrained's| (proxy)", "retain ROUGE-L (proxy)"


def means(row: dict) -> dict:
    """``metric -> mean over the seeds`` of an aggregated row."""
    return {k.removesuffix("_mean"): v for k, v in row.items() if k.endswith("_mean")}


def _columns(rows: list[dict]) -> list[str]:
    keys = {k for row in rows for k in means(row)}
    return [k for k in (*METRICS, *EXTRA_COLUMNS) if k in keys]


def markdown_table(all_results: list[dict]) -> str:
    """One Markdown table per setting: full, gold, then every method, each cell mean ± sd over the seeds
    (a model that failed on every seed shows its error)."""
    out = []
    for res in all_results:
        rows = [res["full"], res["gold"], *res["methods"].values()]
        seeds = " ".join(str(s) for s in res["seeds"])
        out += [f"### {res['setting']} (mean ± sd over seeds {seeds})", ""]
        out += [mean_sd_table(res, _columns(rows)), ""]
    return "\n".join(out)


def pareto_plot(all_results: list[dict], path: Path) -> None:
    """Forget quality (x) vs utility (y) per setting; marker area grows with cost relative to retraining."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_results), figsize=(5 * len(all_results), 4.5), squeeze=False)
    for ax, res in zip(axes[0], all_results):
        gold = means(res["gold"])
        points = [("full", means(res["full"]), None), ("gold", gold, 1.0)]
        points += [
            (k, means(r), r["cost_vs_retrain_mean"]) for k, r in res["methods"].items() if r["n_seeds"]
        ]
        reported = all(has_reported_axes(row) for _, row, _ in points)  # one pair of axes per panel
        for name, row, cost in points:
            x, y, xlabel, ylabel = pareto_point(row, gold, reported)
            size = 30 if cost is None else 30 + 300 * min(cost, 3.0)
            ax.scatter([x], [y], s=size, alpha=0.6, marker="s" if cost is None else "o")
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if reported and all(row["forget_quality"] > 0 for _, row, _ in points):
            ax.set_xscale("log")  # forget quality is a p-value: its scale is orders of magnitude
        ax.set(title=res["setting"], xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle("Unlearning trade-off (marker area ~ cost relative to retraining; gold = 1)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tofu_pool(settings: list[str]) -> str | None:
    """The TOFU forget split whose full model every TOFU setting in ``settings`` shares (the largest)."""
    tofu = [s.removeprefix("tofu_") for s in settings if s.startswith("tofu_")]
    return max(tofu) if tofu else None


def setting_inputs(
    setting: str,
    work: Path,
    *,
    settings: list[str],
    seed: int,
    people: int,
    holdout: int,
    base_epochs: float | None,
    tofu_dir: Path,
    tofu_holdout_authors: int,
    tofu_retain_authors: int | None,
    tofu_epochs: float,
) -> tuple[DatasetDict, Path, Path, dict, bool]:
    """(data, base dir of the full model and tokenizer, this setting's work dir, training overrides, whether to
    train on the ``<split>_text`` documents) for ``setting``. TOFU splits share the full model of the largest TOFU
    split in ``settings``."""
    quiet = {"save_strategy": "no", "disable_tqdm": True, "logging_steps": 10_000}
    if setting == "default":
        data = synthetic_splits(n_people=people, n_holdout=holdout, forget_pct=10, seed=seed)
        base_dir = work / f"default-p{people}-h{holdout}-e{base_epochs}-s{seed}"
        epochs = {} if base_epochs is None else {"num_train_epochs": base_epochs}
        return data, base_dir, base_dir, {**quiet, **epochs}, True
    if setting.startswith("tofu_"):
        split = setting.removeprefix("tofu_")
        pool = tofu_pool(settings)
        data = tofu_splits(tofu_dir, split, tofu_holdout_authors, tofu_retain_authors, pool)
        retain_tag = "all" if tofu_retain_authors is None else tofu_retain_authors
        base_dir = work / f"tofu-{pool}-h{tofu_holdout_authors}-r{retain_tag}-e{tofu_epochs}-s{seed}"
        return data, base_dir, base_dir / split, {**quiet, "num_train_epochs": tofu_epochs}, False
    raise ValueError(f"Unknown setting {setting!r}; choose from {SETTINGS}.")


def seed_record(seed_file: Path, config: dict, command: str, compute=None, **run_extra) -> dict | None:
    """One seed's record in ``seed_file`` (``config``, ``results``, ``run``): the finished one when its configuration
    equals ``config``, else ``compute()``'s results with ``run`` = the command, its wall seconds (models reused from
    a work dir not included) and ``run_extra``, written atomically; ``None`` when no finished record matches and
    ``compute`` is ``None``. (Benchmarks that run seed by seed, in several sessions or parallel processes, share it.)"""
    finished = read_json(seed_file) if seed_file.exists() else None
    if finished and finished["config"] == config:
        logger.info("reusing the finished run in %s", seed_file)
        return finished
    if compute is None:
        return None
    start = time.perf_counter()
    results = compute()
    run = {"command": command, "seconds": time.perf_counter() - start, **run_extra}
    record = {"config": config, "results": results, "run": run}
    write_json_atomic(seed_file, record)
    return record


def _seed_results(setting: str, work: Path, *, settings, seed, tofu_dir, sizes, **run_kwargs) -> dict:
    """One seed of ``setting``: :func:`run_setting`'s results with the machine they ran on (``environment``)."""
    data, base_dir, setting_dir, base_overrides, with_texts = setting_inputs(
        setting, work, settings=settings, seed=seed, tofu_dir=tofu_dir, **sizes
    )
    results = run_setting(
        setting, data, base_dir, setting_dir, seed=seed, base_overrides=base_overrides, with_texts=with_texts,
        **run_kwargs,
    )  # fmt: skip
    results["environment"] = environment()
    return results


def run_all(
    out: Path,
    work: Path,
    *,
    settings: list[str],
    methods: list[str],
    modes: list[str],
    seeds: list[int],
    evaluator: str,
    tofu_dir: Path,
    eval_rows: int,
    lora_r: int = LORA_R,
    tuning_file: Path | None = TUNING_FILE,
    aggregate_only: bool = False,
    command: str = "",
    **sizes,
) -> list[dict]:
    """Run every setting once per seed, write ``out/<setting>.json`` (aggregated over the seeds, see
    :func:`hf_unlearn.seeds.aggregate_results`), ``out/table.md`` (mean ± sd) and ``out/pareto.png`` (means).

    ``command`` is recorded with each seed it runs (see below). ``sizes`` are :func:`setting_inputs`' data sizes
    and epoch bounds (``people``, ``holdout``, ``base_epochs``, ``tofu_holdout_authors``, ``tofu_retain_authors``,
    ``tofu_epochs``).

    Full and gold models are reused from ``work`` when a finished one is there; their folder names carry the
    data sizes, epoch bound and seed, so changing those trains new ones. Each finished seed of a setting is
    written to ``out/per_seed/<setting>-s<seed>.json`` (its results, the machine it ran on, the run's
    configuration: methods, modes, evaluator, sizes, evaluation rows, row overrides, and under ``run`` the command
    and its wall seconds, which the setting's file lists per seed under ``runs``); a later run with the same
    configuration reuses it instead of running the seed again, so a long benchmark can be finished seed by seed,
    in several sessions or in parallel processes (one ``--seeds`` value each, then one run over all seeds to
    aggregate). With ``aggregate_only`` nothing is trained: a setting whose seeds have all finished is aggregated,
    one with a seed missing is skipped with a warning.
    """
    if any(s.startswith("tofu_") for s in settings) and not (tofu_dir / "retain90.json").exists():
        raise ValueError(
            f"No TOFU files in {tofu_dir}; pass --tofu_dir DIR (with retain90.json, forget10.json...)."
        )
    all_results = []
    for setting in settings:
        records = []
        for seed in seeds:
            config = {
                "methods": sorted(methods), "modes": sorted(modes), "evaluator": evaluator, "lora_r": lora_r,
                "eval_rows": eval_rows, "overrides": row_overrides(setting, tuning_file),
                "sizes": {**sizes, "pool": tofu_pool(settings) if setting.startswith("tofu_") else None},
            }  # fmt: skip
            seed_file = out / "per_seed" / f"{setting}-s{seed}.json"
            compute = functools.partial(
                _seed_results, setting, work, settings=settings, methods=methods, modes=modes, seed=seed,
                evaluator=evaluator, tofu_dir=tofu_dir, eval_rows=eval_rows, lora_r=lora_r,
                overrides=config["overrides"], sizes=sizes,
            )  # fmt: skip
            record = seed_record(seed_file, config, command, None if aggregate_only else compute)
            if record is None:
                logger.warning(
                    "%s seed %d: no finished run with this configuration in %s; %s not aggregated",
                    setting, seed, seed_file, setting,
                )  # fmt: skip
                break
            records.append(record)
        per_seed = [r["results"] for r in records]
        if len(per_seed) < len(seeds):
            continue
        first = per_seed[0]
        res = {
            **{k: first[k] for k in ("setting", "sizes", "eval_rows", "utility_sets", "evaluator")},
            **aggregate_results(per_seed, seeds),
            # the machine of each seed (a finished seed is reused from out/per_seed/, maybe from another machine)
            "environment": {str(seed): r["environment"] for seed, r in zip(seeds, per_seed)},
            "runs": {str(seed): r.get("run") for seed, r in zip(seeds, records)},
        }
        write_json_atomic(out / f"{setting}.json", res)
        all_results.append(res)
    # the table and the plot cover every setting aggregated in `out`, this run's and earlier ones'
    shown = [read_json(out / f"{s}.json") for s in SETTINGS if (out / f"{s}.json").exists()]
    (out / "table.md").write_text(markdown_table(shown))
    pareto_plot(shown, out / "pareto.png")
    return all_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    preset_flag = parser.add_mutually_exclusive_group()
    preset_flag.add_argument(
        "--quick", action="store_true", help="Small preset (fewer people, TOFU forget01)."
    )
    preset_flag.add_argument(
        "--smoke",
        action="store_true",
        help="Tiny preset that checks the whole pipeline end to end in minutes; its numbers mean nothing.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Results dir (default benchmarks/results[/quick])."
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="Models dir (default runs/benchmarks[-quick])."
    )
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=None, help="Settings to run.")
    parser.add_argument("--methods", nargs="*", default=None, help="Methods (default: every registered one).")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("full", "lora"),
        default=None,
        help="full and/or lora (quick: full only).",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        help="Seeds of data, base models and methods; every setting runs once per seed (default: 0 1 2).",
    )
    parser.add_argument("--evaluator", default=DEFAULT_EVALUATOR, help="module:function scorer.")
    parser.add_argument(
        "--aggregate_only",
        "--aggregate-only",
        action="store_true",
        help="Train nothing: aggregate the settings whose seeds have all finished (out/per_seed/), skip the rest.",
    )
    parser.add_argument("--lora_r", "--lora-r", type=int, default=LORA_R, help="LoRA rank for the LoRA runs.")
    parser.add_argument(
        "--tuning",
        type=Path,
        default=TUNING_FILE,
        help="Learning rates chosen by benchmarks/tune_settings.py (default results/tuning.json; a missing "
        "file means the demo's settings everywhere).",
    )
    parser.add_argument(
        "--tofu_dir",
        "--tofu-dir",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "tofu",
        help="Folder of the TOFU JSON files.",
    )
    for name, kind in (("people", int), ("holdout", int), ("base_epochs", float), ("tofu_holdout_authors", int),
                       ("tofu_retain_authors", int), ("tofu_epochs", float), ("eval_rows", int)):  # fmt: skip
        aliases = [f"--{name.replace('_', '-')}"] if "_" in name else []
        parser.add_argument(
            f"--{name}", *aliases, type=kind, default=None, help="Override the preset's value."
        )
    args = parser.parse_args(argv)
    command = " ".join(["python", "benchmarks/run_all.py", *(sys.argv[1:] if argv is None else argv)])
    preset_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    preset = dict(PRESETS[preset_name])
    for key in preset:
        if getattr(args, key, None) is not None:
            preset[key] = getattr(args, key)
    methods = list(demo.DEMO_METHODS) if args.methods is None else args.methods
    unknown = sorted(set(methods) - set(demo.DEMO_METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; registered: {sorted(demo.DEMO_METHODS)}")
    suffix = "" if preset_name == "full" else preset_name
    out = args.out or ROOT / "benchmarks" / "results" / suffix
    work = args.work or ROOT / "runs" / f"benchmarks-{suffix}".rstrip("-")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run_all(
        out, work, methods=methods, seeds=args.seeds, evaluator=args.evaluator,
        tofu_dir=args.tofu_dir, lora_r=args.lora_r, tuning_file=args.tuning, aggregate_only=args.aggregate_only,
        command=command, **preset,
    )  # fmt: skip
    print(markdown_table(results))
    print(f"Wrote {out}/{{{','.join(r['setting'] for r in results)}}}.json, table.md, pareto.png")
    return int(any(r.get("n_failed") for res in results for r in res["methods"].values()))


if __name__ == "__main__":
    sys.exit(main())
