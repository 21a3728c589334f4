"""``hf-unlearn demo``: the embedded default end to end, offline, on a CPU.

1. Generate fictitious people (``DIR/data/*.jsonl``) and train a byte-level BPE tokenizer (``DIR/tokenizer``).
2. Train the *full* model on forget + retain people (``DIR/full``) and the *gold* model on retain people
   only (``DIR/gold``) — the retrained model that unlearning is measured against.
3. Run every unlearning method registered in ``DEMO_METHODS`` on the full model (``DIR/methods/<name>``).
4. Score every model with the evaluation suite against the gold model (forget quality, model utility, VerbMem,
   KnowMem, PrivLeak, probes) plus exact match and ROUGE-L, print the table, write ``DIR/results.json``.

Finished stages are reused when the demo is run again on the same ``DIR`` (``--overwrite`` retrains).
``results.json`` records the seed, the package versions and the CPU it ran on. One seed is one run: with
``--seeds 0 1 2`` each seed runs in ``DIR/seed-<s>`` (the seed changes the forget/retain split of people, the
initialisation and the data order) and ``DIR/results_seeds.json`` holds every model's ``<metric>_mean``,
``<metric>_sd``, ``n_seeds`` and per-seed rows.

The log is one progress bar per stage and one line per model (forget / retain exact match, seconds), then the
table; ``--verbose`` also shows the Trainer's, the evaluation's and the libraries' progress bars, logs and warnings.

``--model_cards_dir DIR`` also writes each method's model card, re-rendered with the metrics of its row, to
``DIR/<method>.md`` (the repository's ``model_cards/`` folder is made this way).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_unlearn.cli.parsing import add_flag
from hf_unlearn.data.synthetic import FORGET_PERCENTAGES
from hf_unlearn.demo.methods import DEMO_METHODS

SEEDS_TABLE_COLUMNS = ("forget_quality", "model_utility", "privleak", "forget_em", "retain_em", "holdout_em")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flag(
        parser, "out", type=Path, default=Path("runs/demo"), help="Output directory (default: runs/demo)."
    )
    add_flag(parser, "people", type=int, default=200, help="Fictitious people to train on (default: 200).")
    add_flag(parser, "holdout", type=int, default=20, help="Extra people never trained on (default: 20).")
    add_flag(
        parser,
        "forget_pct",
        type=int,
        default=10,
        choices=FORGET_PERCENTAGES,
        help="Share of people to forget, in percent (default: 10).",
    )
    add_flag(parser, "seed", type=int, default=0, help="Seed for data and training (default: 0).")
    add_flag(
        parser,
        "seeds",
        type=int,
        nargs="+",
        default=None,
        help="Run once per seed (DIR/seed-<s>) and write mean and sd over them to DIR/results_seeds.json.",
    )
    add_flag(
        parser,
        "methods",
        nargs="*",
        default=None,
        help=f"Unlearning methods to run (default: all registered: {', '.join(DEMO_METHODS)}).",
    )
    add_flag(
        parser,
        "model_cards_dir",
        type=Path,
        default=None,
        help="Also write each method's model card, with the demo's metrics, to DIR/<method>.md (e.g. model_cards).",
    )
    add_flag(parser, "overwrite", action="store_true", help="Retrain models even if DIR holds finished ones.")
    add_flag(
        parser,
        "verbose",
        action="store_true",
        help="Show every progress bar, log line and library warning (default: one bar per stage).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods or []) - set(DEMO_METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; registered: {sorted(DEMO_METHODS)}")
    from hf_unlearn.console import configure_logging, quiet_output
    from hf_unlearn.demo import pipeline
    from hf_unlearn.evaluation.report import text_table
    from hf_unlearn.seeds import mean_sd_table

    configure_logging(args.verbose)
    options = {
        "n_people": args.people,
        "n_holdout": args.holdout,
        "forget_pct": args.forget_pct,
        "overwrite": args.overwrite,
        "methods": args.methods,
        "model_cards_dir": args.model_cards_dir,
        "verbose": args.verbose,
    }
    if args.seeds:
        with quiet_output(args.verbose):
            summary = pipeline.run_demo_seeds(args.out, args.seeds, **options)
        print()
        print(mean_sd_table(summary, SEEDS_TABLE_COLUMNS))
        print(f"\nWrote {args.out / pipeline.SEEDS_FILE} (seeds {args.seeds})")
        return 0
    with quiet_output(args.verbose):
        results = pipeline.run_demo(args.out, seed=args.seed, **options)
    print()
    print(text_table(results))
    print(f"\nWrote {args.out / 'results.json'} (one run, seed {args.seed})")
    return 0
