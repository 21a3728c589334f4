"""The ceiling of "indistinguishable from retraining": an independent retrain scored against the gold model.

    python benchmarks/retrain_ceiling.py --setting default --retrain_seeds 1 2 3
    python benchmarks/retrain_ceiling.py --setting tofu_forget01 --retrain_seeds 1 2 3 --tofu_retain_authors 12 \
        --tofu_holdout_authors 4 --tofu_epochs 30 --eval_rows 200

The gold model is the retain-only model of a setting (:mod:`run_all`'s data, tokenizer and training recipe, seed
``--seed``); each *independent retrain* is the same recipe on the same data with another training seed (another
initialisation and data order). Each retrain is scored exactly like a method row — against the gold model's
statistics (``forget_quality`` is the KS p-value of its forget truth ratios against the gold model's, the
membership AUCs compare forget and holdout people) — so its numbers say how far from gold a model that truly never
saw the forget set lands: no unlearning method can be asked to be closer to gold than that. One pair (gold seed,
retrain seed) per ``--retrain_seeds``; the JSON holds each pair's row and the mean ± sd over pairs
(:func:`hf_unlearn.seeds.aggregate_rows`), with versions and CPU.

Models are reused from ``--work`` (``run_all``'s folder layout, so a ``run_all`` work dir's gold model is reused;
``--setting default`` with ``--people 200 --holdout 20`` is the demo's data and recipe, and a demo folder's
``tokenizer/`` and ``gold/`` can be linked into ``WORK/default-p200-h20-eNone-s0``). The demo scores every
evaluation row (no cap): pass ``--eval_rows`` only for TOFU, as ``run_all`` does.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hf_unlearn.demo import pipeline as demo
from hf_unlearn.io import read_json, write_json_atomic
from hf_unlearn.seeds import aggregate_rows, environment, scalars

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (the settings' data, recipe, model folders and scorer)

ROOT = Path(__file__).resolve().parents[1]
UNCAPPED = 10**9


def retrain_ceiling(
    setting: str,
    work: Path,
    *,
    seed: int,
    retrain_seeds: list[int],
    eval_rows: int | None,
    tofu_dir: Path,
    **sizes,
) -> dict:
    """Train (or reuse) the gold model of ``setting`` and one retrain per ``retrain_seeds``; score each retrain
    against the gold model. Returns the results dictionary (pairs, their aggregate, gold row, sizes)."""
    if seed in retrain_seeds:
        raise ValueError(
            f"retrain seed {seed} is the gold model's seed: an independent retrain needs another seed "
            f"(got --seed {seed} and --retrain_seeds {retrain_seeds})."
        )
    data, base_dir, setting_dir, overrides, with_texts = run_all.setting_inputs(
        setting, work, settings=[setting], seed=seed, tofu_dir=tofu_dir, **sizes
    )
    tokenizer = demo.build_tokenizer(data, base_dir / "tokenizer")
    eval_data, utility_sets = run_all.evaluation_splits(data, eval_rows or UNCAPPED, seed)

    def train(folder: str, train_seed: int):
        return demo.train_or_reuse(
            setting_dir / folder, tokenizer, data, ["retain"], train_seed, False, overrides, with_texts
        )

    gold, gold_summary = train("gold", seed)
    gold_row, score = run_all._scorer(run_all.DEFAULT_EVALUATOR, gold, tokenizer, eval_data)
    pairs = []
    for retrain_seed in retrain_seeds:
        model, summary = train(f"retrain-{retrain_seed}", retrain_seed)
        pairs.append({"seconds": summary["seconds"], **score(model)})
        logging.info(
            "%s retrain seed %d: forget_quality %.3g", setting, retrain_seed, pairs[-1]["forget_quality"]
        )
    return {
        "setting": setting,
        "sizes": {split: len(ds) for split, ds in data.items()},
        "eval_rows": {split: len(ds) for split, ds in eval_data.items()},
        "utility_sets": utility_sets,
        "gold": {**scalars(gold_row), "seconds": gold_summary["seconds"]},
        "retrain": {
            **aggregate_rows(pairs),
            "pairs": [
                {"gold_seed": seed, "retrain_seed": r, **scalars(p)} for r, p in zip(retrain_seeds, pairs)
            ],
        },
        "environment": environment(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--setting", default="default", help="A run_all setting (default, tofu_forget01, ...)."
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the data and the gold model (default 0)."
    )
    parser.add_argument(
        "--retrain_seeds", type=int, nargs="+", default=[1, 2, 3], help="Training seeds of the retrains."
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "ceiling", help="Models dir.")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrain_ceiling.json",
        help="JSON to write; one key per setting, other settings already there are kept.",
    )  # fmt: skip
    parser.add_argument(
        "--tofu_dir", type=Path, default=ROOT.parent / "shared" / "data" / "tofu", help="TOFU JSON files."
    )
    sizes = {"people": 200, "holdout": 20, "base_epochs": None, "tofu_holdout_authors": 4,
             "tofu_retain_authors": 12, "tofu_epochs": 30.0}  # fmt: skip
    for name, default in sizes.items():
        kind = int if isinstance(default, int) else float
        parser.add_argument(
            f"--{name}", type=kind, default=default, help=f"Data size / epochs (default {default})."
        )
    parser.add_argument(
        "--eval_rows", type=int, default=None, help="Cap on QA evaluation rows (default none)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    result = retrain_ceiling(
        args.setting, args.work, seed=args.seed, retrain_seeds=args.retrain_seeds,
        eval_rows=args.eval_rows, tofu_dir=args.tofu_dir, **{k: getattr(args, k) for k in sizes},
    )  # fmt: skip
    result["command"] = " ".join(["python", "benchmarks/retrain_ceiling.py", *(argv or sys.argv[1:])])
    result["seconds"] = time.perf_counter() - start
    everything = read_json(args.out) if args.out.exists() else {}
    everything[args.setting] = result
    write_json_atomic(args.out, everything)
    keys = ("forget_quality", "mia_auc", "forget_em", "retain_em", "model_utility")
    print({k: (result["retrain"].get(f"{k}_mean"), result["retrain"].get(f"{k}_sd")) for k in keys})
    return 0


if __name__ == "__main__":
    sys.exit(main())
