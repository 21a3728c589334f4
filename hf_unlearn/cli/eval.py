"""``hf-unlearn eval``: score unlearned models against the retrained ("gold") model, TOFU- and MUSE-style.

Writes ``OUT/results.json`` (the first ``--model``'s metrics at the top level, every model under ``models``),
``OUT/report.md``, ``OUT/tradeoff.png`` (forget quality vs model utility) and ``OUT/summary.png`` (six axes).

Data (``--data``):

- ``synthetic``: the embedded default (fictitious people; ``--people``, ``--holdout_people``, ``--forget_pct``);
- a directory written by ``hf-unlearn demo`` (``DIR/data``: ``forget.jsonl``, ``retain.jsonl``,
  ``holdout.jsonl``, ``forget_text.jsonl``, ``holdout_text.jsonl``);
- a directory holding the TOFU files (``locuslab/TOFU``'s ``forget10.json``, ``retain_perturbed.json``,
  ``real_authors_perturbed.json``, ``world_facts_perturbed.json``; ``--forget_split forget05`` for another
  size);
- a Hub dataset id with TOFU's configs (``locuslab/TOFU``).

Any split can be given or replaced by a file with ``--forget``, ``--retain``, ``--holdout``, ``--real_authors``,
``--world_facts``, ``--forget_text``, ``--holdout_text``. Files given without ``--data`` are the whole data: no
split is filled from the synthetic default (that is used only when neither ``--data`` nor a split file is
given), and a split that is missing is reported as missing with what it leaves out. TOFU has no holdout set, so
PrivLeak / MIA AUC are reported only when ``--holdout`` is given.

Without ``--retain_model`` the command runs the gold-free audit: every metric that needs the retrained model
(forget quality, PrivLeak) is reported as not computed, and the audit keys (membership AUCs with Min-K %,
Min-K %++, loss and zlib against the holdout people; paraphrase and perturbed-question probes; the relearning
attack with the same attack on the holdout people as control; the 8-bit / 4-bit quantization attack) are what
the report shows.

Example::

    hf-unlearn eval --model runs/demo/methods/npo --retain_model runs/demo/gold --data runs/demo/data --out runs/eval
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hf_unlearn.cli.parsing import dataclass_parser, verbose_field
from hf_unlearn.console import quiet_output
from hf_unlearn.evaluation.config import EvalConfig
from hf_unlearn.io import check_model_source, check_output_dir, write_json_atomic, written_atomically

logger = logging.getLogger(__name__)
SPLIT_OPTIONS = ("forget", "retain", "holdout", "real_authors", "world_facts", "forget_text", "holdout_text")
DEMO_LAYOUT = {s: f"{s}.jsonl" for s in ("forget", "retain", "holdout", "forget_text", "holdout_text")}
TOFU_LAYOUT = {
    "retain": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
}
RETRAINED_NAME = "retrained"


@dataclass
class EvalScriptArguments:
    """Which models to evaluate, against which retrained model, on which data."""

    model: list[str] = field(
        metadata={"help": "Model directories (or Hub ids) to evaluate, optionally named: NAME=DIR."}
    )
    retain_model: str | None = field(
        default=None,
        metadata={
            "help": "The retrained (gold) model: trained without the forget set. Its scores are the reference. "
            "Without it: the gold-free audit (forget quality and PrivLeak not computed)."
        },
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "'synthetic', a demo data directory, a directory of TOFU json files, or a Hub id. Default: "
            "the split files given (--forget, --retain, ...) and nothing else; 'synthetic' when none is given."
        },
    )
    out: str = field(default="runs/eval", metadata={"help": "Output directory."})
    verbose: bool = verbose_field()
    overwrite: bool = field(
        default=False, metadata={"help": "Replace an --out folder that already holds results."}
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer for every model (default: each model's own)."}
    )
    forget_split: str = field(
        default="forget10", metadata={"help": "TOFU forget split (file stem or Hub config): forget01/05/10."}
    )
    forget: str | None = field(default=None, metadata={"help": "Forget QA file (replaces the --data one)."})
    retain: str | None = field(default=None, metadata={"help": "Retain QA file."})
    holdout: str | None = field(default=None, metadata={"help": "Holdout QA file (MIA non-members)."})
    real_authors: str | None = field(default=None, metadata={"help": "TOFU real-authors QA file."})
    world_facts: str | None = field(default=None, metadata={"help": "TOFU world-facts QA file."})
    forget_text: str | None = field(default=None, metadata={"help": "Raw forget texts (VerbMem, MIA)."})
    holdout_text: str | None = field(default=None, metadata={"help": "Raw holdout texts (MIA)."})
    people: int = field(default=200, metadata={"help": "synthetic: trained people."})
    holdout_people: int = field(default=20, metadata={"help": "synthetic: held-out people."})
    forget_pct: int = field(default=10, metadata={"help": "synthetic: share of people to forget (1, 5, 10)."})
    data_seed: int = field(default=0, metadata={"help": "synthetic: generator seed."})
    unlearn_fn: str | None = field(
        default=None,
        metadata={
            "help": "'module:function' with signature fn(model_dir, forget, retain, out_dir) -> model: run MUSE's "
            "scalability (nested 10/50/100 %% of the forget set) and sustainability sweeps from the first --model."
        },
    )
    sustainability_requests: int = field(
        default=4, metadata={"help": "Sequential deletion requests of the sustainability sweep."}
    )


def load_eval_splits(script: EvalScriptArguments) -> dict:
    """The evaluation splits named by ``--data`` and the per-split options.

    Raises:
        ValueError: ``--data`` is a directory in neither the demo nor the TOFU layout, or names nothing.
    """
    from hf_unlearn.data.loading import load_rows, require_columns

    files = [name for name in SPLIT_OPTIONS if getattr(script, name)]
    source = script.data if script.data is not None else (None if files else "synthetic")
    splits: dict = {}
    path = Path(source or "")
    if source is None:  # the given files and nothing else
        pass
    elif source == "synthetic":
        from hf_unlearn.data.synthetic import synthetic_splits

        data = synthetic_splits(script.people, script.holdout_people, script.forget_pct, script.data_seed)
        splits = {s: data[s] for s in DEMO_LAYOUT}
    elif path.is_dir():
        if (path / DEMO_LAYOUT["forget"]).exists():
            splits = {s: load_rows(path / f) for s, f in DEMO_LAYOUT.items() if (path / f).exists()}
        elif (path / f"{script.forget_split}.json").exists():
            splits = {"forget": load_rows(path / f"{script.forget_split}.json")}
            splits |= {
                s: load_rows(path / f"{f}.json")
                for s, f in TOFU_LAYOUT.items()
                if (path / f"{f}.json").exists()
            }
        else:
            raise ValueError(
                f"--data {source!r} is a directory without {DEMO_LAYOUT['forget']} (demo layout) or "
                f"{script.forget_split}.json (TOFU layout); point it at one, or pass --forget/--retain files."
            )
    elif path.is_file():
        raise ValueError(
            f"--data {source!r} is one file, but evaluation needs separate forget, retain (and holdout) splits; "
            f"pass --data synthetic, a demo or TOFU folder, or the files as --forget {source} --retain FILE ..."
        )
    elif source:
        splits = {"forget": load_rows(source, script.forget_split)}
        splits |= {s: load_rows(source, config) for s, config in TOFU_LAYOUT.items()}
    for name in files:
        splits[name] = load_rows(getattr(script, name))
    for name, ds in splits.items():
        columns = ("text",) if name.endswith("_text") else ("question", "answer")
        require_columns(ds, columns, f"the {name} split")
    return splits


# What each split serves, for the report of missing ones.
SPLIT_USES = {
    "forget": "every forget metric",
    "retain": "model utility, KnowMem retain",
    "holdout": "membership AUCs, PrivLeak, the relearning control",
    "real_authors": "TOFU model utility (real authors)",
    "world_facts": "TOFU model utility (world facts)",
    "forget_text": "VerbMem on raw text (the forget QA rendered as text is used instead), MIA on texts",
    "holdout_text": "MIA on raw texts",
}


def data_source(script: EvalScriptArguments) -> str:
    """Where the splits came from, in words."""
    files = {name: getattr(script, name) for name in SPLIT_OPTIONS if getattr(script, name)}
    given = ", ".join(f"{k}={v}" for k, v in files.items())
    if script.data is None:
        return f"files only ({given})" if files else "synthetic (the embedded default)"
    return script.data + (f" + files ({given})" if files else "")


def missing_splits(splits: dict) -> dict[str, str]:
    """``{split: what its absence leaves out}`` for every split of :data:`SPLIT_OPTIONS` not in ``splits``."""
    return {name: SPLIT_USES[name] for name in SPLIT_OPTIONS if name not in splits}


def parse_model(spec: str) -> tuple[str, str]:
    """``NAME=DIR`` -> (NAME, DIR); a bare ``DIR`` is named after its last path component."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name, path
    return Path(spec.rstrip("/")).name or spec, spec


def load_function(spec: str):
    """The callable named by ``'package.module:function'``.

    Raises:
        ValueError: ``spec`` has no ``:function`` part, or the module has no such attribute.
    """
    module, _, function = spec.partition(":")
    fn = getattr(importlib.import_module(module), function, None) if function else None
    if not callable(fn):
        raise ValueError(f"--unlearn_fn {spec!r} must name a function as 'package.module:function'.")
    return fn


def run_sweeps(
    script: EvalScriptArguments,
    unlearn,
    model_dir: str,
    splits: dict,
    config: EvalConfig,
    max_new_tokens: int,
    out: Path,
) -> dict:
    """MUSE scalability and sustainability of ``unlearn`` starting from ``model_dir``."""
    from hf_unlearn.evaluation.muse import forget_size_sweep, scalability, sustainability

    kw = {"batch_size": config.batch_size, "max_new_tokens": max_new_tokens}
    forget, retain = splits["forget"], splits["retain"]
    requests = forget_size_sweep(forget, retain)
    return {
        "scalability": scalability(model_dir, requests, unlearn, out / "scalability", **kw),
        "sustainability": sustainability(
            model_dir, forget, retain, unlearn, out / "sustainability", script.sustainability_requests, **kw
        ),
    }


def sweep_line(entry: dict) -> str:
    from hf_unlearn.evaluation.report import format_number

    return ", ".join(f"{k} {format_number(v)}" for k, v in entry.items() if k != "request")


def main(argv: list[str] | None = None) -> int:
    parser = dataclass_parser((EvalScriptArguments, EvalConfig), prog="hf-unlearn eval")
    script, config = parser.parse_args_and_config(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    unlearn = load_function(script.unlearn_fn) if script.unlearn_fn else None  # fail before the slow part
    specs = [parse_model(s) for s in script.model]
    if RETRAINED_NAME in {n for n, _ in specs}:
        raise SystemExit(f"hf-unlearn eval: the name {RETRAINED_NAME!r} is reserved for --retain_model.")
    checks = [("--model", p) for _, p in specs]
    if script.retain_model is not None:
        checks.insert(0, ("--retain_model", script.retain_model))
    for option, path in checks:
        check_model_source(path, option)
    final_out = check_output_dir(script.out, script.overwrite, "--out")
    splits = load_eval_splits(script)
    with written_atomically(final_out) as out, quiet_output(script.verbose):
        out.mkdir(parents=True)
        return _evaluate(script, config, unlearn, specs, splits, out)


def _evaluate(script, config, unlearn, specs, splits, out: Path) -> int:
    """Score the retrained model (when given) and ``specs``, and write results.json, report.md and the plots
    into ``out``."""
    from hf_unlearn.evaluation.report import markdown_report, plot_summary, plot_tradeoff
    from hf_unlearn.evaluation.suite import evaluate_model
    from hf_unlearn.models import load_model_and_tokenizer

    missing = missing_splits(splits)
    for name, uses in missing.items():
        print(f"WARNING: split {name} missing: not computed from it: {uses}")
    gold_free = script.retain_model is None
    reference, models = None, {}
    if gold_free:
        logger.info(
            "No --retain_model: the gold-free audit (forget quality and PrivLeak need the retrained model)"
        )
    else:
        logger.info("Evaluating the retrained model %s (the reference)", script.retain_model)
        gold, tokenizer = load_model_and_tokenizer(script.retain_model, script.tokenizer)
        gold_row, reference = evaluate_model(gold, tokenizer, splits, None, config)
    for name, path in specs:
        logger.info("Evaluating %s (%s)", name, path)
        model, tokenizer = load_model_and_tokenizer(path, script.tokenizer)
        models[name] = evaluate_model(model, tokenizer, splits, reference, config, gold_free=gold_free)[0]
    if not gold_free:
        models[RETRAINED_NAME] = gold_row
    first = models[specs[0][0]]
    results = {
        **{k: v for k, v in first.items() if k != "details"},
        "details": first["details"],
        "models": models,
        "retrained_model": None if gold_free else RETRAINED_NAME,
        "gold_free": gold_free,
        "paths": {name: path for name, path in specs}
        | ({} if gold_free else {RETRAINED_NAME: script.retain_model}),
        "data": {
            "source": data_source(script),
            "splits": {s: len(ds) for s, ds in splits.items()},
            "missing": missing,
        },
        "config": asdict(config) | {"max_new_tokens_used": first["details"]["max_new_tokens"]},
    }
    notes = [
        f"Data: {data_source(script)} ({', '.join(f'{s}: {len(ds)}' for s, ds in splits.items())} rows).",
        *[f"Missing split {name}: not computed from it: {uses}." for name, uses in missing.items()],
        "Model utility is the harmonic mean of probability, ROUGE-L and truth ratio over "
        f"{', '.join(first['model_utility_sets']) or 'no set (not computed)'}.",
        f"Greedy answers: at most {first['details']['max_new_tokens']} new tokens.",
        "PrivLeak is in percent in MUSE's orientation (-100 = the forget set is as familiar as when trained, "
        "0 = like the retrained model); MIA AUC is the Min-40 % Prob attack's AUC (1 = every forget row detected).",
    ]
    if gold_free:
        notes.append(
            "Gold-free audit (no --retain_model): compare mia_auc_* with 0.5 (chance: the forget people look like "
            "never-seen ones), relearn_recovery* and mapping_recovery* with relearn_control_recovery* and "
            "mapping_control_recovery* (the same attacks on the holdout people), quant*_forget_* with forget_em / "
            "forget_rouge (a rise = quantization restores answers)."
        )
    if script.unlearn_fn:
        results |= run_sweeps(
            script, unlearn, specs[0][1], splits, config, first["details"]["max_new_tokens"], out / "sweeps"
        )
        notes.append(f"Sweeps ({script.unlearn_fn}, from {specs[0][0]}):")
        notes += [f"- scalability {k}: {sweep_line(v)}" for k, v in results["scalability"].items()]
        notes += [
            f"- sustainability request {v['request']}: {sweep_line(v)}" for v in results["sustainability"]
        ]
    write_json_atomic(out / "results.json", results)
    report = markdown_report(models, None if gold_free else RETRAINED_NAME, notes)
    (out / "report.md").write_text(report)
    plot_tradeoff(models, out / "tradeoff.png")
    plot_summary(models, out / "summary.png")
    print(report)
    for name, row in models.items():
        for key, reason in row["details"]["not_computed"].items():
            print(f"WARNING: {name}: {key}: {reason}")
        for warning in row["details"]["warnings"]:
            print(f"WARNING: {name}: {warning}")
    print(f"Wrote {Path(script.out) / 'results.json'}, report.md, tradeoff.png, summary.png")
    return 0
