"""Score the ECO guard with ``token_selection='subjects'`` on the embedded default, over seeds, gold-free.

    python benchmarks/eco_guard.py --seeds 0 1 2      # -> benchmarks/results/eco_guard_subjects.json

For each seed, the benchmark's default setting (``run_all.py``'s data and full / gold models, trained or reused
in ``--work``, which it shares with ``run_all.py``) gets a guard fitted as ``hf-unlearn eco-fit`` fits it, with
the corruption on the forget subjects' name tokens only and the strength searched against the **held-out
people** (the full model's forget metric on people it never saw: no gold model is used to fit it). The gold model
is only scored, beside the unguarded and the guarded full model: forget / retain / holdout exact match and
ROUGE-L (the demo's scorers). The two checks of the ECO issue are kept per seed: guarded forget EM within 0.10 of
the gold model's, guarded retain EM >= 0.98 x unguarded. Every row is aggregated as mean ± sd over the seeds
(:func:`hf_unlearn.seeds.aggregate_rows`); per-seed rows and each seed's machine are in the JSON.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (the default setting's data and full / gold models)

from hf_unlearn.demo.pipeline import EVAL_SPLITS  # noqa: E402
from hf_unlearn.eco.fit import fit_guard  # noqa: E402
from hf_unlearn.eco.guard import GuardConfig  # noqa: E402
from hf_unlearn.evaluation.qa import qa_split_metrics  # noqa: E402
from hf_unlearn.io import write_json_atomic  # noqa: E402
from hf_unlearn.seeds import aggregate_rows, environment  # noqa: E402

FIT_KEYS = ("strength", "target", "reached", "gap", "classifier_seconds", "search_seconds")


def run_seed(work: Path, seed: int, token_selection: str, **sizes) -> dict:
    """One seed: the unguarded, guarded and gold rows, the fit's numbers and the two checks."""
    data, base_dir, setting_dir, overrides, with_texts = run_all.setting_inputs(
        "default",
        work,
        settings=["default"],
        seed=seed,
        tofu_dir=run_all.ROOT.parent / "shared" / "data" / "tofu",
        **sizes,  # the default setting reads no TOFU file
    )
    tokenizer, trained = run_all.train_full_and_gold(data, base_dir, setting_dir, seed, overrides, with_texts)
    full, gold = trained["full"][0], trained["gold"][0]
    start = time.perf_counter()
    guarded, report = fit_guard(
        full, tokenizer, data["forget"], data["retain"], GuardConfig(token_selection=token_selection, seed=seed),
        holdout=data["holdout"],
    )  # fmt: skip
    fit_seconds = time.perf_counter() - start
    rows = {
        name: {f"{s}_{k}": v for s in EVAL_SPLITS for k, v in qa_split_metrics(m, tokenizer, data[s]).items()}
        for name, m in (("full", full), ("guarded", guarded), ("gold", gold))
    }
    rows["fit"] = {"seconds": fit_seconds, "target_source": report["target_source"]}
    rows["fit"].update({k: report[k] for k in FIT_KEYS if k in report})
    full_retain = rows["full"]["retain_em"]
    rows["checks"] = {
        "forget_em_gap_to_gold": abs(rows["guarded"]["forget_em"] - rows["gold"]["forget_em"]),
        # None (and the check fails) when the full model answers no retain question: there is nothing to keep
        "retain_em_ratio": rows["guarded"]["retain_em"] / full_retain if full_retain else None,
    }
    ratio = rows["checks"]["retain_em_ratio"]
    rows["checks"]["holds"] = (
        rows["checks"]["forget_em_gap_to_gold"] <= 0.10 and ratio is not None and ratio >= 0.98
    )
    return {**rows, "environment": environment()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds (data, models, guard)."
    )
    parser.add_argument(
        "--work", type=Path, default=run_all.ROOT / "runs" / "benchmarks",
        help="Full / gold models, shared with run_all.py (trained there when missing).",
    )  # fmt: skip
    parser.add_argument(
        "--token_selection", default="subjects", help="GuardConfig.token_selection of the fitted guard."
    )
    preset = {k: v for k, v in run_all.PRESETS["full"].items() if k not in ("settings", "modes", "eval_rows")}
    parser.add_argument(
        "--people", type=int, default=preset["people"], help="People of the default (run_all's full preset)."
    )
    parser.add_argument(
        "--holdout", type=int, default=preset["holdout"], help="Held-out people (run_all's full preset)."
    )
    parser.add_argument(
        "--base_epochs",
        type=float,
        default=preset["base_epochs"],
        help="Epoch bound of the full / gold models (run_all's full preset: none).",
    )
    parser.add_argument(
        "--out", type=Path, default=run_all.ROOT / "benchmarks" / "results" / "eco_guard_subjects.json",
        help="JSON file to write.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sizes = {**preset, "people": args.people, "holdout": args.holdout, "base_epochs": args.base_epochs}
    per_seed = [run_seed(args.work, s, args.token_selection, **sizes) for s in args.seeds]
    result = {
        name: {**aggregate_rows([r[name] for r in per_seed]), "per_seed": [r[name] for r in per_seed]}
        for name in ("full", "guarded", "gold", "fit", "checks")
    }
    result["checks"]["holds_on_every_seed"] = all(r["checks"]["holds"] for r in per_seed)
    result.update(
        seeds=args.seeds, token_selection=args.token_selection, n_seeds=len(per_seed),
        target="gold-free: the full model's forget metric on the held-out people",
        environment={str(s): r["environment"] for s, r in zip(args.seeds, per_seed)},
    )  # fmt: skip
    write_json_atomic(args.out, result)
    for name in ("full", "guarded", "gold"):
        print(name, {k: round(v, 4) for k, v in result[name].items() if k.endswith("_mean")})
    print("checks", {k: v for k, v in result["checks"].items() if k != "per_seed"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
