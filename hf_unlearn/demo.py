"""``hf-unlearn demo``: the embedded default end to end, offline, on a CPU.

1. Generate fictitious people (``DIR/data/*.jsonl``) and train a byte-level BPE tokenizer (``DIR/tokenizer``).
2. Train the *full* model on forget + retain people (``DIR/full``) and the *gold* model on retain people
   only (``DIR/gold``) — the retrained model that unlearning is measured against.
3. Run every unlearning method registered in :data:`DEMO_METHODS` on the full model (``DIR/methods/<name>``).
4. Score every model with the evaluation suite against the gold model (forget quality, model utility, VerbMem,
   KnowMem, PrivLeak, probes) plus exact match and ROUGE-L, print the table, write ``DIR/results.json``.

Finished stages are reused when the demo is run again on the same ``DIR`` (``--overwrite`` retrains).
``results.json`` records the seed, the package versions and the CPU it ran on. One seed is one run: with
``--seeds 0 1 2`` each seed runs in ``DIR/seed-<s>`` (the seed changes the forget/retain split of people, the
initialisation and the data order) and ``DIR/results_seeds.json`` holds every model's ``<metric>_mean``,
``<metric>_sd``, ``n_seeds`` and per-seed rows.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
from pathlib import Path

from datasets import DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data.formats import qa_as_text
from hf_unlearn.data.synthetic import FORGET_PERCENTAGES, synthetic_splits, write_synthetic
from hf_unlearn.evaluation.report import text_table
from hf_unlearn.evaluation.suite import EvalConfig, Reference, evaluate_model
from hf_unlearn.io import read_json, write_json_atomic
from hf_unlearn.models import build_tiny_llama, train_bpe_tokenizer
from hf_unlearn.seeds import aggregate_results, environment, mean_sd_table
from hf_unlearn.train import SUMMARY_FILE, TrainConfig, train_lm

logger = logging.getLogger(__name__)
EVAL_SPLITS = ("forget", "retain", "holdout")
SEEDS_FILE = "results_seeds.json"
SEEDS_TABLE_COLUMNS = ("forget_quality", "model_utility", "privleak", "forget_em", "retain_em", "holdout_em")
DEMO_EVAL_CONFIG = EvalConfig()

# Unlearning methods in the demo: name -> "module:function". The function has the signature
#   fn(full_model_dir: Path, data: DatasetDict, out_dir: Path, seed: int) -> tuple[model, dict]
# It unlearns data["forget"] (+ "forget_text") from the full model, saves what it made under out_dir, and
# returns the model to score (anything the QA scorers can call like a causal LM) and extra result keys;
# a "seconds" key there reports the unlearning wall time itself (else the call is timed).
DEMO_METHODS: dict[str, str] = {
    "ga": "hf_unlearn.trainer.demo_methods:ga",
    "ga_gdr": "hf_unlearn.trainer.demo_methods:ga_gdr",
    "ga_klr": "hf_unlearn.trainer.demo_methods:ga_klr",
    "npo": "hf_unlearn.trainer.demo_methods:npo",
    "npo_gdr": "hf_unlearn.trainer.demo_methods:npo_gdr",
    "npo_klr": "hf_unlearn.trainer.demo_methods:npo_klr",
    "simnpo": "hf_unlearn.trainer.demo_methods:simnpo",
    "whp": "hf_unlearn.trainer.whp_demo:whp",
    "eco": "hf_unlearn.serving.eco.fit:eco_demo",
    "dp2": "hf_unlearn.trainer.dp2_trainer:demo_dp2",
}


def build_tokenizer(data: DatasetDict, out_dir: Path):
    """Train the shared tokenizer on the retain people's bios and QA pairs only.

    Forgotten and held-out people are both left out, so that (1) no forgotten name becomes a vocabulary entry of a
    published tokenizer (the vocabulary lies outside any unlearning or DP guarantee) and (2) forget and holdout names
    are encoded on the same footing, which the forget-vs-holdout membership attacks need.
    """
    if (out_dir / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(out_dir)
    corpus = list(data["retain_text"]["text"])
    corpus += [f"{q} {a}" for q, a in zip(data["retain"]["question"], data["retain"]["answer"])]
    tokenizer = train_bpe_tokenizer(corpus)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def train_or_reuse(
    out_dir: Path,
    tokenizer,
    data: DatasetDict,
    splits: list[str],
    seed: int,
    overwrite: bool,
    config_overrides: dict | None = None,
    with_texts: bool = True,
):
    """Train a tiny model on ``splits`` (QA + bios) into ``out_dir``, or reuse a finished one there.

    ``config_overrides`` are extra :class:`TrainConfig` fields (e.g. a bounded ``num_train_epochs``);
    ``with_texts=False`` trains on the QA rows only (the ``<split>_text`` sets are then not needed).
    """
    summary_path = out_dir / SUMMARY_FILE
    if summary_path.exists() and not overwrite:
        logger.info("Reusing the finished model in %s (pass --overwrite to retrain).", out_dir)
        return AutoModelForCausalLM.from_pretrained(out_dir), read_json(summary_path)
    model = build_tiny_llama(tokenizer, seed=seed)
    args = TrainConfig(output_dir=str(out_dir), seed=seed, **(config_overrides or {}))
    texts = [data[f"{s}_text"] for s in splits] if with_texts else []
    summary = train_lm(model, tokenizer, args, [data[s] for s in splits], texts)
    return model, summary


def evaluate_row(model, tokenizer, data: DatasetDict, reference: Reference | None = None) -> dict:
    """Every ``hf-unlearn eval`` metric (forget quality, model utility, VerbMem, KnowMem, PrivLeak, relearning
    attack, ...) plus exact match and ROUGE-L on forget, retain and holdout, for one model.

    ``reference`` is the gold model's statistics (from :func:`gold_reference`), computed once and reused for
    every row; ``None`` scores the gold model against itself. The embedded default has no real-authors /
    world-facts sets, so model utility here is TOFU's harmonic mean over the retain set only.
    """
    return evaluate_model(model, tokenizer, data, reference, DEMO_EVAL_CONFIG)[0]


def gold_reference(gold_model, tokenizer, data: DatasetDict) -> tuple[dict, Reference]:
    """The gold model's result row and the statistics every other row is compared with."""
    return evaluate_model(gold_model, tokenizer, data, None, DEMO_EVAL_CONFIG)


def run_demo(
    out: Path,
    n_people: int = 200,
    n_holdout: int = 20,
    forget_pct: int = 10,
    seed: int = 0,
    overwrite: bool = False,
    methods: list[str] | None = None,
) -> dict:
    """Run the demo into ``out`` and return (and write) the results dictionary."""
    demo_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = synthetic_splits(n_people=n_people, n_holdout=n_holdout, forget_pct=forget_pct, seed=seed)
    write_synthetic(out / "data", n_people=n_people, n_holdout=n_holdout, forget_pct=forget_pct, seed=seed)
    tokenizer = build_tokenizer(data, out / "tokenizer")
    results: dict = {
        "seed": seed,
        "environment": environment(),
        "config": {
            "n_people": n_people,
            "n_holdout": n_holdout,
            "forget_pct": forget_pct,
            "seed": seed,
            "prompt_example": qa_as_text(
                tokenizer, data["forget"][0]["question"], data["forget"][0]["answer"]
            ),
        },
        "methods": {},
    }
    trained = {
        name: train_or_reuse(out / name, tokenizer, data, splits, seed, overwrite)
        for name, splits in (("full", ["forget", "retain"]), ("gold", ["retain"]))
    }
    gold_row, reference = gold_reference(trained["gold"][0], tokenizer, data)
    for name, (model, summary) in trained.items():
        row = gold_row if name == "gold" else evaluate_row(model, tokenizer, data, reference)
        results[name] = {**row, "seconds": summary["seconds"], "epochs": summary["epochs"]}
    for name in methods if methods is not None else list(DEMO_METHODS):
        method_dir = out / "methods" / name
        module, function = DEMO_METHODS[name].split(":")
        start = time.perf_counter()
        model, extra = getattr(importlib.import_module(module), function)(
            out / "full", data, method_dir, seed
        )
        results["methods"][name] = {
            "seconds": time.perf_counter() - start,
            **extra,
            **evaluate_row(model, tokenizer, data, reference),
        }
    results["demo_seconds"] = time.perf_counter() - demo_start
    write_json_atomic(out / "results.json", results)
    return results


def run_demo_seeds(out: Path, seeds: list[int], **kwargs) -> dict:
    """:func:`run_demo` once per seed (into ``out/seed-<s>``), aggregated into ``out/results_seeds.json``."""
    per_seed = [run_demo(out / f"seed-{seed}", seed=seed, **kwargs) for seed in seeds]
    summary = {**aggregate_results(per_seed, seeds), "environment": per_seed[0]["environment"]}
    write_json_atomic(out / SEEDS_FILE, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="Output directory (default: runs/demo)."
    )
    parser.add_argument(
        "--people", type=int, default=200, help="Fictitious people to train on (default: 200)."
    )
    parser.add_argument(
        "--holdout", type=int, default=20, help="Extra people never trained on (default: 20)."
    )
    parser.add_argument(
        "--forget-pct",
        type=int,
        default=10,
        choices=FORGET_PERCENTAGES,
        help="Share of people to forget, in percent (default: 10).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed for data and training (default: 0).")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="Run once per seed (DIR/seed-<s>) and write mean and sd over them to DIR/results_seeds.json.",
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=None,
        help=f"Unlearning methods to run (default: all registered: {', '.join(DEMO_METHODS) or 'none yet'}).",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Retrain models even if DIR holds finished ones."
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods or []) - set(DEMO_METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; registered: {sorted(DEMO_METHODS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sizes = {"n_people": args.people, "n_holdout": args.holdout, "forget_pct": args.forget_pct}
    if args.seeds:
        summary = run_demo_seeds(
            args.out, args.seeds, **sizes, overwrite=args.overwrite, methods=args.methods
        )
        print()
        print(mean_sd_table(summary, SEEDS_TABLE_COLUMNS))
        print(f"\nWrote {args.out / SEEDS_FILE} (seeds {args.seeds})")
        return 0
    results = run_demo(args.out, **sizes, seed=args.seed, overwrite=args.overwrite, methods=args.methods)
    print()
    print(text_table(results))
    print(f"\nWrote {args.out / 'results.json'} (one run, seed {args.seed})")
    return 0
