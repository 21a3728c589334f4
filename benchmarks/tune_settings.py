"""Choose the learning rate of each benchmark row that the demo's settings do not cover, without the gold model.

The demo's settings (:data:`hf_unlearn.demo.methods.DEMO_SETTINGS`, WHP's config defaults) were tuned on
the embedded default with full fine-tuning. On TOFU they erase the retain authors too, and with LoRA they barely
move the forget set. For every method whose demo function forwards ``**overrides`` to its config, this script
tries a small grid of learning rates on one setting per family (the embedded default for LoRA; TOFU forget05 for
full and LoRA — the other TOFU splits reuse its choice).

No oracle: a real user has no retrained model, and settings chosen on the reported forget set overfit it. Each
trial forgets a **validation forget set** — as many retained people (authors) as the reported forget set has,
drawn with the seed from the retain set, so disjoint from the reported forget set — and keeps the other retained
people as its retain set. It is scored gold-free (at most ``--eval_rows`` QA rows per split):

1. retain exact match must stay >= ``--retain_floor`` x the full model's on the same rows, and among those
2. the forget-vs-holdout membership AUC (Min-K% Prob; the holdout people were never trained on) nearest 0.5 —
   forgotten people look like people the model never saw — wins, where distances within ``--tie`` count as
   equal and the higher retain exact match wins;

when no rate keeps the floor, the one with the largest ``retain ratio - |AUC - 0.5|``. It writes every trial and
the choice to ``benchmarks/results/tuning.json``, which ``run_all.py`` reads. The full model comes from
``run_all.py``'s work folder (trained there when missing, with the full preset's sizes); no gold model is used.

    python benchmarks/tune_settings.py      # ~20 min on 2 CPU cores -> benchmarks/results/tuning.json
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

from datasets import DatasetDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (the benchmark's data, models and method registry)

from hf_unlearn.demo import pipeline as demo  # noqa: E402
from hf_unlearn.evaluation.mia import PRIVLEAK_ATTACK, attack_auc, attack_scores  # noqa: E402
from hf_unlearn.evaluation.qa import exact_match, text_token_scores  # noqa: E402
from hf_unlearn.evaluation.suite import membership_texts  # noqa: E402
from hf_unlearn.io import read_json, write_json_atomic  # noqa: E402

logger = logging.getLogger("tune_settings")
# (setting tuned on, mode) -> learning rates tried
GRID = {
    ("default", "lora"): [3e-3, 1e-2, 3e-2],
    ("tofu_forget05", "full"): [1e-4, 3e-4, 1e-3],
    ("tofu_forget05", "lora"): [3e-3, 1e-2, 3e-2],
}
# the column naming the person of a row: TOFU's `subject` names an entity of the question, `author` the person
PERSON_COLUMNS = ("author", "subject")


def tunable_methods() -> list[str]:
    """Registered methods whose demo function forwards ``**overrides`` (so it takes ``learning_rate``)."""
    return [m for m, spec in demo.DEMO_METHODS.items() if run_all.lora_kwargs(spec) is not None]


def person_column(ds) -> str:
    for column in PERSON_COLUMNS:
        if column in ds.column_names:
            return column
    raise ValueError(f"No person column ({' or '.join(PERSON_COLUMNS)}) in the rows {ds.column_names}.")


def validation_split(data: DatasetDict, seed: int) -> DatasetDict:
    """A stand-in deletion request that never touches the reported forget set: ``forget`` (and ``forget_text``)
    are the rows of as many retained people as ``data["forget"]`` has, drawn with ``seed``; ``retain`` (and
    ``retain_text``) the other retained people; ``holdout`` (and ``holdout_text``) as in ``data``.

    Raises:
        ValueError: the retain set has no more people than the forget set (nothing would be left to retain).
    """
    column = person_column(data["retain"])
    n_forget = len(set(data["forget"][column]))
    people = sorted(set(data["retain"][column]))
    if len(people) <= n_forget:
        raise ValueError(
            f"A validation forget set of {n_forget} people needs more retained people; the retain set has "
            f"{len(people)}. Use more retain people (authors) for tuning."
        )
    chosen = set(random.Random(seed).sample(people, n_forget))
    out = {}
    for suffix in ("", "_text"):
        if f"retain{suffix}" not in data:
            continue
        rows = data[f"retain{suffix}"]
        member = [p in chosen for p in rows[person_column(rows)]]
        out[f"forget{suffix}"] = rows.select([i for i, m in enumerate(member) if m])
        out[f"retain{suffix}"] = rows.select([i for i, m in enumerate(member) if not m])
        if f"holdout{suffix}" in data:
            out[f"holdout{suffix}"] = data[f"holdout{suffix}"]
    return DatasetDict(out)


def score(model, tokenizer, data: DatasetDict, rows: int, seed: int) -> dict:
    """Gold-free trial scores: forget / retain exact match and the forget-vs-holdout membership AUC."""
    capped, _ = run_all.evaluation_splits(data, rows, seed)
    groups = {}
    for prefix in ("forget", "holdout"):
        texts, prompt_lengths = membership_texts(capped, tokenizer, prefix)
        log_probs = text_token_scores(model, tokenizer, texts, prompt_lengths)["log_prob"]
        groups[prefix] = attack_scores(log_probs, texts)[PRIVLEAK_ATTACK]
    return {
        "forget_em": exact_match(model, tokenizer, capped["forget"]),
        "retain_em": exact_match(model, tokenizer, capped["retain"]),
        "mia_auc": attack_auc(groups["forget"], groups["holdout"]),
    }


def choose(runs: list[dict], full: dict, retain_floor: float, tie: float) -> float:
    """The learning rate of ``runs`` (one row's grid) picked by the rule in the module docstring."""

    def ratio(run):
        return run["retain_em"] / max(full["retain_em"], 1e-9)

    def distance(run):
        return abs(run["mia_auc"] - 0.5)

    kept = [r for r in runs if ratio(r) >= retain_floor]
    if not kept:
        return max(runs, key=lambda r: ratio(r) - distance(r))["learning_rate"]
    closest = min(distance(r) for r in kept)
    return max((r for r in kept if distance(r) <= closest + tie), key=ratio)["learning_rate"]


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
        "--tofu_dir",
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
    parser.add_argument(
        "--eval_rows", "--eval-rows", type=int, default=100, help="Rows per split scored for each trial."
    )
    parser.add_argument(
        "--retain_floor",
        "--retain-floor",
        type=float,
        default=0.9,
        help="A trial must keep retain exact match >= this x the full model's.",
    )
    parser.add_argument(
        "--tie", type=float, default=0.02, help="Membership AUC distances to 0.5 this close count as equal."
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of data, base models, validation split, trials."
    )
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
        full, _ = demo.train_or_reuse(
            base_dir / "full", tokenizer, data, ["forget", "retain"], args.seed, False, overrides, with_texts
        )
        validation = validation_split(data, args.seed)
        people = sorted(set(validation["forget"][person_column(validation["forget"])]))
        block = {
            "validation_forget_people": len(people),
            "reference": {"full": score(full, tokenizer, validation, args.eval_rows, args.seed)},
            "rates": rates,
            "runs": {},
        }
        for method in methods:
            spec = demo.DEMO_METHODS[method]
            row = method if mode == "full" else f"{method}/lora"
            kwargs = run_all.lora_kwargs(spec) if mode == "lora" else {}
            runs = []
            for lr in rates:
                logger.info("%s %s lr=%g", setting, row, lr)
                start = time.perf_counter()
                model, _ = run_all._call(spec)(
                    base_dir / "full", validation, setting_dir / "tuning" / row.replace("/", "-"), args.seed,
                    learning_rate=lr, **kwargs,
                )  # fmt: skip
                runs.append(
                    {
                        "learning_rate": lr,
                        "seconds": time.perf_counter() - start,
                        **score(model, tokenizer, validation, args.eval_rows, args.seed),
                    }
                )
            block["runs"][row] = runs
            lr = choose(runs, block["reference"]["full"], args.retain_floor, args.tie)
            result["chosen"].setdefault(run_all.family(setting), {})[row] = {"learning_rate": lr}
        result["grid"][f"{setting}/{mode}"] = block
        merge_into(
            args.out, result, criterion="gold-free: validation forget people disjoint from the reported forget "
            "set; membership AUC nearest 0.5 under a retain exact-match floor", retain_floor=args.retain_floor,
            tie=args.tie, eval_rows=args.eval_rows, seed=args.seed,
        )  # fmt: skip
    print(f"Wrote {args.out}: {result['chosen']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
