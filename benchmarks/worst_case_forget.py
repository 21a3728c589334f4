"""Worst-case forget set (issue 18 item 5): one method on the random forget people and on the most memorised ones.

    python benchmarks/worst_case_forget.py --method nonmember --seeds 0 1 2   # -> results/worst_case_forget.json

Per seed, on ``run_all``'s default setting (its data, tokenizer, full model and recipe, reused from ``--work``, the
same folder layout): the full model's memorisation of each trained person (the mean length-normalised probability
of their answers, :mod:`hf_unlearn.evaluation.worst_case`; gold-free) picks the worst-case forget set, as many
people as the random one. Each forget set gets its own gold model (the retain people only, run_all's recipe) and
the method's row (run_all's settings and ``tuning.json`` overrides), scored with the whole suite against its own
gold model: forget quality, model utility, PrivLeak, the relearning and mapping attacks, the quantization attack.
The JSON holds, per forget set, the full / gold / method rows as mean ± sd over the seeds with every seed's row
under ``per_seed`` (:func:`hf_unlearn.seeds.aggregate_results`), the forget people's mean memorisation, and per
seed the command, wall seconds and environment (``runs``). A finished seed is kept in
``<out dir>/per_seed/<out name>-s<seed>.json`` and reused by a run with the same configuration, so seeds can run
in separate processes (``--seeds 1``) and a last run over all seeds aggregates them.

The tokenizer is the random split's (trained on its retain people only), so on the worst-case split the forget
people who were random-split retain people have their names in the vocabulary while the holdout people do not: the
membership attacks of the worst-case rows are not on the tokenizer footing of the random rows.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import sys
import time
from pathlib import Path

from datasets import concatenate_datasets

from hf_unlearn.evaluation.worst_case import subject_memorisation, worst_case_split
from hf_unlearn.io import write_json_atomic
from hf_unlearn.seeds import aggregate_results, environment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (the default setting's data, models, recipe, scorer and overrides)

ROOT = Path(__file__).resolve().parents[1]
FORGET_SETS = ("random", "worst_case")


def run_seed(
    method: str, seed: int, work: Path, tuning_file: Path | None, evaluator: str, **sizes
) -> dict[str, dict]:
    """``{"random": results, "worst_case": results}`` of one seed (``run_all.run_setting``'s results each)."""
    eval_rows = sizes.pop("eval_rows")
    data, base_dir, _, base_overrides, with_texts = run_all.setting_inputs(
        "default", work, settings=["default"], seed=seed,
        tofu_dir=run_all.ROOT.parent / "shared" / "data" / "tofu", **sizes,  # the default reads no TOFU file
    )  # fmt: skip
    tokenizer, trained = run_all.train_full_and_gold(
        data, base_dir, base_dir, seed, base_overrides, with_texts
    )
    trained_rows = concatenate_datasets([data["forget"], data["retain"]])
    memorisation = subject_memorisation(trained["full"][0], tokenizer, trained_rows)
    # the random split's gold model is run_all's; each split's method rows go to folders of their own, so that a
    # run_all process on the same work dir never shares a method folder with this one
    splits = {
        "random": (data, base_dir),
        "worst_case": (worst_case_split(data, memorisation), base_dir / "worst_case"),
    }
    out = {}
    for name, (split_data, folder) in splits.items():
        start = time.perf_counter()
        results = run_all.run_setting(
            f"default/{name}", split_data, base_dir, folder, methods=[method], modes=["full"], seed=seed,
            evaluator=evaluator, eval_rows=eval_rows, base_overrides=base_overrides,
            with_texts=with_texts, overrides=run_all.row_overrides("default", tuning_file),
            methods_dir=base_dir / "worst_case" / f"{name}-methods",
        )  # fmt: skip
        forget_people = set(split_data["forget"]["subject"])
        results["forget_memorisation"] = statistics.fmean(memorisation[p] for p in forget_people)
        results["retain_memorisation"] = statistics.fmean(
            v for p, v in memorisation.items() if p not in forget_people
        )
        results["seconds"] = time.perf_counter() - start
        out[name] = results
        row = results["methods"][method]
        shown = ("forget_quality", "forget_em", "retain_em")  # those the evaluator computes
        outcome = (
            row["error"] if "error" in row else ", ".join(f"{k} {row[k]:.3g}" for k in shown if k in row)
        )
        logging.info(
            "seed %d, %s forget set (memorisation %.3f): %s %s",
            seed, name, results["forget_memorisation"], method, outcome,
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="nonmember", help="A registered demo method (default nonmember).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds; mean ± sd over them.")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "benchmarks", help="Models dir (run_all's, reused)."
    )
    parser.add_argument(
        "--tuning", type=Path, default=run_all.TUNING_FILE, help="run_all's tuning file (row overrides)."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "worst_case_forget.json",
        help="Results JSON.",
    )
    for name in ("people", "holdout", "eval_rows"):
        default = run_all.PRESETS["full"][name]
        parser.add_argument(
            f"--{name}", type=int, default=default, help=f"run_all's default (default {default})."
        )
    parser.add_argument(
        "--base_epochs",
        type=float,
        default=None,
        help="Epoch bound of the full / gold models (default: none).",
    )
    parser.add_argument("--evaluator", default=run_all.DEFAULT_EVALUATOR, help="module:function scorer.")
    args = parser.parse_args(argv)
    if args.method not in run_all.demo.DEMO_METHODS:
        parser.error(f"unknown method {args.method!r}; registered: {sorted(run_all.demo.DEMO_METHODS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset = {k: v for k, v in run_all.PRESETS["full"].items() if k not in ("settings", "modes")}
    sizes = {**preset, "people": args.people, "holdout": args.holdout, "base_epochs": args.base_epochs,
             "eval_rows": args.eval_rows}  # fmt: skip
    command = " ".join(
        ["python", "benchmarks/worst_case_forget.py", *(sys.argv[1:] if argv is None else argv)]
    )
    config = {"method": args.method, "sizes": sizes, "evaluator": args.evaluator,
              "overrides": run_all.row_overrides("default", args.tuning)}  # fmt: skip
    # a finished seed with this configuration is reused, so seeds can run in parallel processes
    records = [
        run_all.seed_record(
            args.out.parent / "per_seed" / f"{args.out.stem}-s{seed}.json",
            config,
            command,
            functools.partial(run_seed, args.method, seed, args.work, args.tuning, args.evaluator, **sizes),
            environment=environment(),
        )  # fmt: skip
        for seed in args.seeds
    ]
    per_seed = [r["results"] for r in records]
    runs = {str(seed): r["run"] for seed, r in zip(args.seeds, records)}
    result = {"method": args.method, "seeds": args.seeds, "sizes": sizes, "runs": runs}
    for name in FORGET_SETS:
        rows = [r[name] for r in per_seed]
        result[name] = {
            **aggregate_results(rows, args.seeds),
            **{
                f"{key}_per_seed": [r[key] for r in rows]
                for key in ("forget_memorisation", "retain_memorisation", "seconds")
            },
        }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
