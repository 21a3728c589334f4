"""DP2Unlearning on the embedded default: forget/retain EM and cost against retraining.

Needs a finished ``hf-unlearn demo`` directory (tokenizer, gold model, results.json). Arms, all on the demo's
200 people (20 to forget), scored on forget / retain / holdout exact match:

- ``dp2_scratch``: DP stage from scratch (subject-level, epsilon 8), deletion stage = retain fine-tune with the
  gold model's early stopping (no epoch cap), so its cost is directly comparable to the gold retrain.
- ``public``: a model trained (non-privately) on 200 *other* people (a disjoint population, seed + 100) —
  the "pretrained model" of the DP2Unlearning paper.
- ``retrain_public``: the fair gold when a public model exists: fine-tune ``public`` on retain people.
- ``dp2_public``: DP fine-tune ``public`` on forget + retain (subject-level, epsilon 8), then retain fine-tune.
- ``gold_rerun``: the demo's gold retrain again, to measure its CPU seconds (wall time here depends on load).

Each demo folder is one seed (``hf-unlearn demo --seeds 0 1 2 --methods`` writes ``DIR/seed-<s>``); every arm runs
once per seed and ``summary`` holds ``<metric>_mean`` / ``<metric>_sd`` over the seeds (``per_seed`` the rows,
``environment`` each seed's machine; ``epochs_vs_gold`` = an arm's training epochs over the seed's gold model's).

Run: ``PYTHONPATH=. python benchmarks/dp2_cost.py --demo_dirs runs/demo3/seed-{0,1,2} --work /tmp/dp2-bench``;
writes ``benchmarks/results/dp2_cost.json``. Finished arms (in the JSON and in ``--work``) are reused.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from datasets import concatenate_datasets
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data.synthetic import synthetic_splits
from hf_unlearn.demo.methods import dp2_on_splits
from hf_unlearn.demo.pipeline import evaluate_row
from hf_unlearn.hub.card import PRIVACY_FILE
from hf_unlearn.io import read_json, write_json_atomic
from hf_unlearn.models import load_model_and_tokenizer
from hf_unlearn.seeds import aggregate_rows, environment
from hf_unlearn.trainers.dp2.config import DP2Config
from hf_unlearn.trainers.dp2.trainer import DELETION_FILE
from hf_unlearn.trainers.finetune import SUMMARY_FILE, TrainConfig, train_lm

RESULTS = Path(__file__).parent / "results" / "dp2_cost.json"
PUBLIC_SEED_OFFSET = (
    100  # the public model's people: synthetic_splits(seed=demo seed + 100), minus collisions
)


def other_people(data, seed: int):
    """200 people from another seed, minus anyone whose name or bio collides with the demo population."""
    taken = {s for split in ("forget", "retain", "holdout") for s in data[split]["subject"]}
    other = synthetic_splits(n_people=200, n_holdout=1, forget_pct=10, seed=seed)
    keep = lambda ds: ds.filter(lambda r: r["subject"] not in taken)  # noqa: E731
    qa = keep(concatenate_datasets([other["forget"], other["retain"]]))
    text = keep(concatenate_datasets([other["forget_text"], other["retain_text"]]))
    return qa, text


def trained(out: Path, model_fn, tokenizer, qa, text, seed: int) -> dict:
    """Train with the gold model's settings (TrainConfig defaults, early stopping), or reuse."""
    if not (out / SUMMARY_FILE).exists():
        args = TrainConfig(
            output_dir=str(out), seed=seed, save_strategy="no", disable_tqdm=True, logging_steps=1000
        )
        cpu_start = time.process_time()
        summary = train_lm(model_fn(), tokenizer, args, qa, text)
        write_json_atomic(out / SUMMARY_FILE, {**summary, "cpu_seconds": time.process_time() - cpu_start})
    return read_json(out / SUMMARY_FILE)


def dp2(out: Path, model_fn, tokenizer, data, seed: int, dp_epochs: int, epsilon: float, dp_lr: float):
    request = out / "request-1"
    if not (request / DELETION_FILE).exists():
        args = DP2Config(
            output_dir=str(out),
            seed=seed,
            dp_epochs=dp_epochs,
            target_epsilon=epsilon,
            dp_learning_rate=dp_lr,
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
        )
        dp2_on_splits(model_fn(), tokenizer, args, data)
    return read_json(out / "dp_base" / PRIVACY_FILE), read_json(request / DELETION_FILE)


def run_seed(demo_dir: Path, work: Path, args, saved: dict, save) -> dict:
    """Every arm in ``args.arms`` on one finished demo folder (its seed is the training seed of every arm and
    picks the people); arms already in ``saved`` are kept. Calls ``save`` after each arm."""
    demo = read_json(demo_dir / "results.json")
    cfg = demo["config"]
    seed = cfg["seed"]
    data = synthetic_splits(cfg["n_people"], cfg["n_holdout"], cfg["forget_pct"], seed)
    tokenizer = AutoTokenizer.from_pretrained(demo_dir / "tokenizer")
    config = AutoConfig.from_pretrained(demo_dir / "full")

    def scratch():
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config)

    def public():
        return load_model_and_tokenizer(str(work / "public"))[0]

    saved["gold"] = {
        k: demo["gold"][k] for k in ("forget_em", "retain_em", "holdout_em", "seconds", "epochs")
    }
    for arm in args.arms:
        key = (
            arm
            if args.dp_learning_rate == 5e-3 or not arm.startswith("dp2")
            else f"{arm}_dp_lr{args.dp_learning_rate:g}"
        )
        if key in saved:
            continue
        out = work / key
        if arm == "public":
            qa, text = other_people(data, seed + PUBLIC_SEED_OFFSET)
            summary = trained(out, scratch, tokenizer, [qa], [text], seed)
            row = {
                "seconds": summary["seconds"],
                "epochs": summary["epochs"],
                "people": len(set(qa["subject"])),
            }
            model = load_model_and_tokenizer(str(out))[0]
        elif arm in ("retrain_public", "gold_rerun"):
            init = public if arm == "retrain_public" else scratch
            summary = trained(out, init, tokenizer, [data["retain"]], [data["retain_text"]], seed)
            row = {k: summary.get(k) for k in ("seconds", "cpu_seconds", "epochs")}
            model = load_model_and_tokenizer(str(out))[0]
        else:
            init = scratch if arm == "dp2_scratch" else public
            privacy, deletion = dp2(
                out, init, tokenizer, data, seed, args.dp_epochs, args.epsilon, args.dp_learning_rate
            )
            row = {
                "epsilon": privacy["epsilon"],
                "delta": privacy["delta"],
                "n_units": privacy["n_units"],
                "noise_multiplier": privacy["noise_multiplier"],
                "dp_seconds": privacy["seconds"],
                "dp_cpu_seconds": privacy.get("cpu_seconds"),
                "seconds": deletion["training"]["seconds"],
                "cpu_seconds": deletion["training"].get("cpu_seconds"),
                "epochs": deletion["training"]["epochs"],
            }
            model = load_model_and_tokenizer(str(out / "request-1"))[0]
        row.update(evaluate_row(model, tokenizer, data))
        row["epochs_vs_gold"] = row["epochs"] / saved["gold"]["epochs"] if arm != "public" else None
        saved[key] = row
        save()
        logging.info("seed %d %s: %s", seed, key, row)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--demo_dirs",
        "--demo-dirs",
        type=Path,
        nargs="+",
        required=True,
        help="Finished hf-unlearn demo folders, one per seed (e.g. runs/demo3/seed-0 runs/demo3/seed-1 ...).",
    )
    parser.add_argument(
        "--work", type=Path, required=True, help="Models of the arms; finished arms found here are reused."
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results JSON (finished arms are kept).")
    parser.add_argument("--dp_epochs", "--dp-epochs", type=int, default=3, help="Epochs of each DP stage.")
    parser.add_argument(
        "--epsilon", type=float, default=8.0, help="Target epsilon of each DP stage (subject-level)."
    )
    parser.add_argument(
        "--dp_learning_rate",
        "--dp-learning-rate",
        type=float,
        default=5e-3,
        help="DP stage lr (a rate other than 5e-3 gets its own arm key)",
    )
    parser.add_argument(
        "--arms",
        nargs="*",
        default=["dp2_scratch", "public", "retrain_public", "dp2_public", "gold_rerun"],
        help="Arms to run (module docstring).",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = read_json(args.out) if args.out.exists() else {}
    per_seed, machines = results.get("per_seed", {}), results.get("environment", {})

    def save() -> None:
        arms = list(dict.fromkeys(a for rows in per_seed.values() for a in rows))
        summary = {a: aggregate_rows([rows[a] for rows in per_seed.values() if a in rows]) for a in arms}
        settings = {"dp_epochs": args.dp_epochs, "epsilon": args.epsilon, "public_seed": "seed + 100"}
        write_json_atomic(
            args.out,
            {"settings": settings, "seeds": sorted(map(int, per_seed)), "environment": machines,
             "summary": summary, "per_seed": per_seed},
        )  # fmt: skip

    for demo_dir in args.demo_dirs:
        seed = str(read_json(demo_dir / "results.json")["config"]["seed"])
        machines.setdefault(seed, environment())
        run_seed(demo_dir, args.work / f"seed-{seed}", args, per_seed.setdefault(seed, {}), save)
    save()


if __name__ == "__main__":
    main()
