"""Choose the learning rate of each benchmark row that the demo's settings do not cover.

The demo's settings (:data:`hf_unlearn.trainer.demo_methods.DEMO_SETTINGS`, WHP's config defaults) were tuned on
the embedded default with full fine-tuning. On TOFU they erase the retain authors too, and with LoRA they barely
move the forget set. For every method whose demo function forwards ``**overrides`` to its config, this script
tries a small grid of learning rates on one setting per family (the embedded default for LoRA; TOFU forget05 for
full and LoRA — the other TOFU splits reuse its choice), scores forget and retain answers (exact match and
ROUGE-L recall of greedy answers, at most ``--eval-rows`` rows each) and keeps, per row, the learning rate that

1. keeps retain ROUGE-L at >= ``--retain-floor`` x the full model's, and among those
2. brings forget ROUGE-L closest to the retrained (gold) model's, where gaps within ``--tie`` of the closest count
   as equal and the one with the higher retain ROUGE-L wins;

when no rate keeps the floor, the one with the largest ``retain ratio - forget gap``. It writes every run and the
choice to ``benchmarks/results/tuning.json``, which ``run_all.py`` reads. Models come from ``run_all.py``'s work
folder (trained there when missing, with the full preset's sizes).

    python benchmarks/tune_settings.py      # ~20 min on 2 CPU cores -> benchmarks/results/tuning.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from datasets import DatasetDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (the benchmark's data, models and method registry)

from hf_unlearn import demo  # noqa: E402
from hf_unlearn.evaluation.qa import qa_split_metrics  # noqa: E402
from hf_unlearn.io import read_json, write_json_atomic  # noqa: E402

logger = logging.getLogger("tune_settings")
# (setting tuned on, family it is applied to, mode) -> learning rates tried
GRID = {
    ("default", "lora"): [3e-3, 1e-2, 3e-2],
    ("tofu_forget05", "full"): [1e-4, 3e-4, 1e-3],
    ("tofu_forget05", "lora"): [3e-3, 1e-2, 3e-2],
}


def tunable_methods() -> list[str]:
    """Registered methods whose demo function forwards ``**overrides`` (so it takes ``learning_rate``)."""
    return [m for m, spec in demo.DEMO_METHODS.items() if run_all.lora_kwargs(spec) is not None]


def score(model, tokenizer, data: DatasetDict) -> dict:
    return {
        f"{split}_{k}": v
        for split in ("forget", "retain")
        for k, v in qa_split_metrics(model, tokenizer, data[split]).items()
    }


def choose(runs: list[dict], full: dict, gold: dict, retain_floor: float, tie: float) -> float:
    """The learning rate of ``runs`` (one row's grid) picked by the rule in the module docstring."""

    def ratio(run):
        return run["retain_rouge"] / full["retain_rouge"]

    def gap(run):
        return abs(run["forget_rouge"] - gold["forget_rouge"])

    kept = [r for r in runs if ratio(r) >= retain_floor]
    if not kept:
        return max(runs, key=lambda r: ratio(r) - gap(r))["learning_rate"]
    closest = min(gap(r) for r in kept)
    return max((r for r in kept if gap(r) <= closest + tie), key=ratio)["learning_rate"]


def merge_into(path: Path, result: dict, **settings) -> None:
    """Write ``result`` into ``path``, keeping the blocks and choices of settings it did not tune; called after
    every block, so an interrupted run keeps what it measured."""
    saved = read_json(path) if path.exists() else {"grid": {}, "chosen": {}}
    saved["grid"].update(result["grid"])
    for fam, rows in result["chosen"].items():
        saved["chosen"].setdefault(fam, {}).update(rows)
    write_json_atomic(path, {**saved, **settings})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=run_all.TUNING_FILE, help="Tuning JSON that run_all.py reads."
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=run_all.ROOT / "runs" / "benchmarks",
        help="Base models (shared with run_all.py) and trial models.",
    )
    parser.add_argument(
        "--tofu-dir",
        type=Path,
        default=run_all.ROOT.parent / "shared" / "data" / "tofu",
        help="Folder of the TOFU JSON files.",
    )
    parser.add_argument(
        "--methods", nargs="*", default=None, help="Default: every tunable registered method."
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=sorted({s for s, _ in GRID}),
        help="Tune only these settings; other settings' results already in --out are kept.",
    )
    parser.add_argument("--eval-rows", type=int, default=100, help="Rows per split scored for each trial.")
    parser.add_argument(
        "--retain-floor",
        type=float,
        default=0.85,
        help="A trial must keep retain ROUGE-L >= this x the full model's.",
    )
    parser.add_argument(
        "--tie", type=float, default=0.05, help="Forget ROUGE-L gaps this close count as equal."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of data, base models and trials.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset = {k: v for k, v in run_all.PRESETS["full"].items() if k not in ("modes", "eval_rows")}
    methods = args.methods or tunable_methods()
    result: dict = {"grid": {}, "chosen": {}}
    for (setting, mode), rates in GRID.items():
        if setting not in args.settings:
            continue
        data, base_dir, setting_dir, overrides, with_texts = run_all.setting_inputs(
            setting, args.work, tofu_dir=args.tofu_dir, seed=args.seed, **preset
        )
        tokenizer = demo.build_tokenizer(data, base_dir / "tokenizer")
        eval_data = run_all._cap(data, args.eval_rows, args.seed)
        reference = {}
        for name, splits, model_dir in (
            ("full", ["forget", "retain"], base_dir / "full"),
            ("gold", ["retain"], setting_dir / "gold"),
        ):
            model, _ = demo.train_or_reuse(
                model_dir, tokenizer, data, splits, args.seed, False, overrides, with_texts
            )
            reference[name] = score(model, tokenizer, eval_data)
        block = {"reference": reference, "rates": rates, "runs": {}}
        for method in methods:
            spec = demo.DEMO_METHODS[method]
            row = method if mode == "full" else f"{method}/lora"
            kwargs = run_all.lora_kwargs(spec) if mode == "lora" else {}
            runs = []
            for lr in rates:
                logger.info("%s %s lr=%g", setting, row, lr)
                start = time.perf_counter()
                model, _ = run_all._call(spec)(
                    base_dir / "full", data, setting_dir / "tuning" / row.replace("/", "-"), args.seed,
                    learning_rate=lr, **kwargs,
                )  # fmt: skip
                runs.append(
                    {
                        "learning_rate": lr,
                        "seconds": time.perf_counter() - start,
                        **score(model, tokenizer, eval_data),
                    }
                )
            block["runs"][row] = runs
            lr = choose(runs, reference["full"], reference["gold"], args.retain_floor, args.tie)
            result["chosen"].setdefault(run_all.family(setting), {})[row] = {"learning_rate": lr}
        result["grid"][f"{setting}/{mode}"] = block
        merge_into(args.out, result, retain_floor=args.retain_floor, tie=args.tie, eval_rows=args.eval_rows)
    print(f"Wrote {args.out}: {result['chosen']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
