"""WHP ablation on the embedded default: does the reinforced model (and alpha) matter, or the dictionary alone?

For each seed (which changes the people, the forget/retain split, the tokenizer corpus order, the full model's
initialisation and data order) the script builds the synthetic data and trains the full model as
``hf-unlearn demo`` does, then runs the demo's WHP row (:func:`hf_unlearn.demo.methods.whp`) in these arms:

- ``alpha5``: the default (reinforced adapter, mined dictionary, ``alpha=5``, argmax targets);
- ``alpha0``: the same dictionary mining, ``alpha=0`` (the baseline's predictions on the translated text);
- ``dictionary_only``: no reinforced model (``reinforce_epochs=0``: the adapter is the identity, so nothing is
  mined beyond the forget subjects and alpha has no effect);
- ``soft_alpha5`` / ``soft_alpha0``: ``generic_targets="soft"`` (top-8 distribution) with ``alpha`` 5 / 0.

Each arm reports forget / retain / holdout exact match and ``type_match`` (greedy forget answers that are an
entity of the asked kind), and the summary their mean and sample sd over the seeds. The output JSON is
rewritten after every arm, and finished arms (and trained full models under ``--work``) are reused, so an
interrupted run resumes where it stopped.

Run: ``PYTHONPATH=. python benchmarks/whp_ablation.py --people 60 --seeds 0 1 2 --work /tmp/whp-ablation``;
writes ``benchmarks/results/whp_ablation.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_unlearn.io import read_json, write_json_atomic
from hf_unlearn.seeds import mean_sd_text

RESULTS = Path(__file__).parent / "results" / "whp_ablation.json"
ARMS: dict[str, dict] = {
    "alpha5": {"alpha": 5.0},
    "alpha0": {"alpha": 0.0},
    "dictionary_only": {"reinforce_epochs": 0.0},
    "soft_alpha5": {"alpha": 5.0, "generic_targets": "soft"},
    "soft_alpha0": {"alpha": 0.0, "generic_targets": "soft"},
}
METRICS = ("forget_em", "retain_em", "holdout_em", "type_match", "n_terms", "seconds")


def scores(model, tokenizer, data) -> dict[str, float]:
    from hf_unlearn.evaluation.qa import exact_match

    return {
        f"{split}_em": exact_match(model, tokenizer, data[split]) for split in ("forget", "retain", "holdout")
    }


def summarise(runs: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per arm (and the full model), :func:`hf_unlearn.seeds.aggregate_rows` of its rows over the seeds that
    finished it: ``<metric>_mean`` / ``<metric>_sd`` and ``n_seeds``."""
    from hf_unlearn.seeds import aggregate_rows

    rows = {
        arm: [seed_runs[arm] for seed_runs in runs.values() if arm in seed_runs] for arm in ["full", *ARMS]
    }
    return {arm: aggregate_rows(arm_rows) for arm, arm_rows in rows.items() if arm_rows}


def run_seed(seed: int, people: int, work: Path, runs: dict, save) -> None:
    """Train (or reuse) the full model of ``seed`` and run every arm not in ``runs`` yet."""
    from hf_unlearn.data.synthetic import synthetic_splits
    from hf_unlearn.demo.methods import whp
    from hf_unlearn.demo.pipeline import build_tokenizer, train_or_reuse
    from hf_unlearn.models import load_model_and_tokenizer
    from hf_unlearn.seeds import environment

    runs.setdefault("environment", environment())  # the machine this seed's arms ran on
    data = synthetic_splits(n_people=people, n_holdout=max(4, people // 10), forget_pct=10, seed=seed)
    tokenizer = build_tokenizer(data, work / f"seed{seed}" / "tokenizer")
    full_dir = work / f"seed{seed}" / "full"
    train_or_reuse(full_dir, tokenizer, data, ["forget", "retain"], seed, overwrite=False)
    if "full" not in runs:
        model, _ = load_model_and_tokenizer(full_dir)
        runs["full"] = scores(model, tokenizer, data)
        save()
    for arm, overrides in ARMS.items():
        if arm in runs:
            continue
        model, extra = whp(full_dir, data, work / f"seed{seed}" / arm, seed, **overrides)
        runs[arm] = {**scores(model, tokenizer, data), **extra, "overrides": overrides}
        save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--people", type=int, default=60, help="Trained people per seed (10 %% are forgotten)."
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds to run (>= 3 for sd).")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/whp-ablation"), help="Models and WHP outputs (reused)."
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results JSON (resumed when it exists).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    previous = read_json(args.out) if args.out.exists() else {}
    if previous and previous.get("config", {}).get("people") != args.people:
        raise SystemExit(
            f"{args.out} holds a run with --people {previous['config']['people']}; pass another --out."
        )
    runs: dict[str, dict] = previous.get("runs", {})

    def save() -> None:
        config = {
            "people": args.people,
            "forget_pct": 10,
            "seeds": sorted(int(s) for s in runs),
            "arms": ARMS,
        }
        write_json_atomic(args.out, {"config": config, "summary": summarise(runs), "runs": runs})

    for seed in args.seeds:
        run_seed(seed, args.people, args.work, runs.setdefault(str(seed), {}), save)
    save()
    for arm, row in summarise(runs).items():
        cells = [f"{m} {mean_sd_text(row, m)}" for m in METRICS if m + "_mean" in row]
        print(f"{arm:16s} n={row['n_seeds']}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
