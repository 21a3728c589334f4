"""TOFU on a real pretrained LLM, offline: SmolLM2-135M-Instruct (``packaged:smollm2-135m-instruct``).

The TOFU paper's protocol on a slice that fits two CPU cores: the pretrained model is fine-tuned on
``--retain_authors`` retain authors plus the two forget01 authors (the *full* model), and again, with the same
recipe, on the retain authors only (the *gold*, retrained model); every method then unlearns the forget authors
from the full model, with full fine-tuning and with LoRA. Every model -- the pretrained *base* too -- is scored by
``hf-unlearn eval``'s suite: forget quality (against the gold model's truth ratios), model utility over retain
(TOFU's ``retain_perturbed`` rows of the retain authors) + real authors + world facts, PrivLeak and the
forget-vs-holdout membership attacks (two never-trained authors), VerbMem, the paraphrase / perturbation probes,
the relearning and quantization attacks.

    python benchmarks/real_model.py                       # -> benchmarks/results/real_smollm2_tofu.json
    python benchmarks/real_model.py --methods ga npo --modes full

The run resumes: every finished row is written to the results file at once (atomically) and a rerun with the same
configuration keeps it and goes on with the next; the fine-tuned models and the gold model's statistics are kept
in ``--work``. A row that fails records its error and the run goes on. The method settings are *untuned*:
open-unlearning's TOFU recipe (learning rate 1e-5, NPO beta 0.1, retain weight 1) at forget batch 8 for 20 steps
(4 passes over the 40 forget rows), LoRA at 10x the learning rate; nothing here was chosen by looking at the gold
model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from datasets import DatasetDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import _call, lora_kwargs, tofu_splits  # noqa: E402

from hf_unlearn.demo.methods import DEMO_METHODS  # noqa: E402
from hf_unlearn.evaluation.config import EvalConfig  # noqa: E402
from hf_unlearn.io import file_sha256, read_json, write_json_atomic  # noqa: E402
from hf_unlearn.seeds import environment  # noqa: E402

logger = logging.getLogger("real_model")
ROOT = Path(__file__).resolve().parents[1]
MODEL = "packaged:smollm2-135m-instruct"
METHODS = ("ga", "ga_gdr", "ga_klr", "npo", "npo_gdr", "npo_klr", "simnpo", "whp", "eco", "dp2")
REPORTED = ("forget_quality", "model_utility", "forget_rouge", "retain_rouge", "privleak", "seconds")
EVAL_SPLITS = ("forget", "retain", "holdout", "real_authors", "world_facts")
# the fine-tuning recipe of the full and gold models (chosen on how well the full model learns its training
# answers, which needs no gold model)
FINETUNE = {
    "learning_rate": 1e-4,
    "per_device_train_batch_size": 8,
    "warmup_steps": 10,
}  # epochs: --finetune_epochs
UNLEARN_LR, LORA_LR = 1e-5, 1e-4
_STEPS = {"per_device_train_batch_size": 8, "retain_batch_size": 8, "retain_weight": 1.0}
# method -> overrides of its demo settings (hf_unlearn.demo.methods.DEMO_SETTINGS; those suit the tiny model)
ROW_SETTINGS: dict[str, dict] = {
    **{m: dict(_STEPS) for m in ("ga", "ga_gdr", "ga_klr", "simnpo")},
    **{m: {**_STEPS, "beta": 0.1} for m in ("npo", "npo_gdr", "npo_klr")},
    "whp": {**_STEPS, "reinforce_learning_rate": LORA_LR},
    "eco": {},
    "dp2": {},
}
DP2 = {
    "dp_lora_r": 8,
    "dp_epochs": 3,
    "dp_learning_rate": 1e-3,
    "dp_batch_size": 2,
    "dp_physical_batch_rows": 8,
}


def eval_data(data: DatasetDict, rows: int, seed: int) -> DatasetDict:
    """The scored splits: each QA split cut to ``rows`` rows (a fixed random subset; ``retain`` is the retain
    authors' ``retain_perturbed`` rows, which carry perturbed answers), the text splits whole."""
    splits = dict(data)
    splits["retain"] = splits.pop("retain_perturbed")
    return DatasetDict(
        {
            s: ds.shuffle(seed=seed).select(range(min(rows, len(ds)))) if s in EVAL_SPLITS else ds
            for s, ds in splits.items()
            if s != "retain_text"
        }
    )


def finetune(
    base_dir: Path, data: DatasetDict, splits: list[str], out_dir: Path, seed: int, epochs: float
) -> dict:
    """Fine-tune the pretrained model on the QA rows of ``splits`` (answer-only loss, chat template) into
    ``out_dir``, resuming from its last epoch checkpoint; a finished model is reused."""
    import torch

    from hf_unlearn.models import load_model_and_tokenizer
    from hf_unlearn.trainers.finetune import SUMMARY_FILE, TrainConfig, train_lm

    if (out_dir / SUMMARY_FILE).exists():
        return read_json(out_dir / SUMMARY_FILE)
    model, tokenizer = load_model_and_tokenizer(base_dir, dtype=torch.float32)
    args = TrainConfig(
        output_dir=str(out_dir), seed=seed, use_cpu=True, target_exact_match=0.0, monitor_max_rows=40,
        logging_steps=5, **{**FINETUNE, "num_train_epochs": epochs},
    )  # fmt: skip
    resume = any(out_dir.glob("checkpoint-*"))
    return train_lm(model, tokenizer, args, [data[s] for s in splits], resume_from_checkpoint=resume or None)


def dp2_pretrained(base_dir: Path, data: DatasetDict, out_dir: Path, seed: int, epochs: float) -> tuple:
    """DP2 as its paper runs it: subject-level DP-SGD fine-tuning (LoRA, epsilon 8) of the *pretrained* model on
    forget + retain authors, then the deletion request by fine-tuning that DP model on the retain authors (half the
    gold model's epochs)."""
    import torch

    from hf_unlearn.demo.methods import dp2_on_splits
    from hf_unlearn.models import load_model_and_tokenizer
    from hf_unlearn.trainers.dp2.config import DP2Config

    model, tokenizer = load_model_and_tokenizer(base_dir, dtype=torch.float32)
    args = DP2Config(
        output_dir=str(out_dir), seed=seed, subject_column="author", use_cpu=True, save_strategy="no",
        target_exact_match=0.0, monitor_max_rows=40, logging_steps=5,
        **{**FINETUNE, "num_train_epochs": epochs / 2}, **DP2,
    )  # fmt: skip
    return dp2_on_splits(model, tokenizer, args, data)


def row_plan(methods: list[str], modes: list[str], steps: int) -> list[tuple[str, str, dict]]:
    """(row key, method, keyword arguments) for every method and mode, full rows first; each unlearning run
    takes ``steps`` optimiser steps."""
    plan = []
    for mode in modes:
        for method in methods:
            if method == "dp2":  # its DP stage is LoRA already; one row
                if mode == "full":
                    plan.append(("dp2", method, {}))
                continue
            lora = lora_kwargs(DEMO_METHODS[method])
            if mode == "lora" and lora is None:
                continue
            kwargs = dict(ROW_SETTINGS[method])
            if method != "eco":
                kwargs["learning_rate"] = LORA_LR if mode == "lora" else UNLEARN_LR
                kwargs["max_steps"] = steps
            if mode == "lora":
                kwargs.update(lora)
            plan.append((method if mode == "full" else f"{method}_lora", method, kwargs))
    return plan


def _row(result: dict, seconds: float, **extra) -> dict:
    """The reported keys first, then every other score (the suite's ``eval_seconds`` among them; ``details``
    dropped: per-split copies of the same)."""
    scores = {k: v for k, v in result.items() if k != "details"}
    return {**{k: scores.get(k) for k in REPORTED if k != "seconds"}, "seconds": seconds, **extra, **scores}


def run(args) -> dict:
    import torch
    from transformers import AutoTokenizer

    from hf_unlearn.evaluation.suite import Reference, evaluate_model
    from hf_unlearn.models import load_model_and_tokenizer
    from hf_unlearn.packaged import resolve_model_source

    torch.manual_seed(args.seed)
    data = tofu_splits(args.tofu_dir, "forget01", args.holdout_authors, args.retain_authors, "forget01")
    scored = eval_data(data, args.eval_rows, args.seed)
    eval_config = EvalConfig(
        batch_size=16, relearn_steps=5, relearn_batch_size=8, relearn_learning_rate=1e-4, mapping_steps=10,
        seed=args.seed,
    )  # fmt: skip
    config = {
        "model": args.model, "seed": args.seed, "retain_authors": args.retain_authors,
        "holdout_authors": args.holdout_authors, "eval_rows": args.eval_rows,
        "finetune": {**FINETUNE, "num_train_epochs": args.finetune_epochs}, "unlearn_steps": args.unlearn_steps,
        "eval": asdict(eval_config), "unlearn_lr": UNLEARN_LR, "lora_lr": LORA_LR, "dp2": DP2,
    }  # fmt: skip
    results = read_json(args.out) if args.out.exists() else {}
    if results.get("config") != config:
        if results:
            logger.warning("%s was made with another configuration; starting it again", args.out)
        results = {"config": config, "methods": {}}
    results.update(
        model=args.model,
        n_authors=args.retain_authors + 2,
        forget_authors=2,
        holdout_authors=args.holdout_authors,
        sizes={s: len(ds) for s, ds in data.items()},
        eval_rows={s: len(ds) for s, ds in scored.items()},
    )
    results.setdefault("environment", environment())
    base_dir = Path(resolve_model_source(args.model))
    work = args.work

    earlier, start = results.get("seconds", 0.0), time.perf_counter()  # wall time over every resumed run

    def save():
        results["seconds"] = earlier + time.perf_counter() - start
        write_json_atomic(args.out, results)

    def score(model, tokenizer, reference):
        return evaluate_model(model, tokenizer, scored, reference, eval_config, progress=not args.quiet)

    # the gold model first: every other model is compared with its statistics (kept in work/gold_reference.json)
    trained = {}
    for name, splits in (("gold", ["retain"]), ("full", ["forget", "retain"])):
        logger.info("fine-tuning %s on %s", name, splits)
        trained[name] = finetune(base_dir, data, splits, work / name, args.seed, args.finetune_epochs)
    # rows scored on other fine-tunes (e.g. made on another machine, whose models are not in --work) are not mixed
    # with rows of these: a changed full or gold model starts every row that depends on it again
    weights = {name: file_sha256(work / name / "model.safetensors") for name in trained}
    if results.get("weights_sha256", weights) != weights:
        logger.warning(
            "the full / gold models in %s are not the ones %s was scored on; scoring again", work, args.out
        )
        for key in ("full", "gold"):
            results.pop(key, None)
        results["methods"] = {}
    results["weights_sha256"] = weights
    reference_file = work / "gold_reference.json"
    if "gold" not in results or not reference_file.exists():
        model, tokenizer = load_model_and_tokenizer(work / "gold", dtype=torch.float32)
        row, own = score(model, tokenizer, None)
        write_json_atomic(
            reference_file, {**asdict(own), "forget_truth_ratios": own.forget_truth_ratios.tolist()}
        )
        results["gold"] = _row(row, trained["gold"]["seconds"], epochs=trained["gold"]["epochs"])
        save()
    ref = read_json(reference_file)
    # a reference cached before the mapping attack existed has no "mapping" key
    reference = Reference(
        np.asarray(ref["forget_truth_ratios"]), ref["mia_auc"], ref["relearn"], ref.get("mapping")
    )
    for name, model_dir in (("base", base_dir), ("full", work / "full")):
        if name not in results:
            logger.info("scoring %s", name)
            model, tokenizer = load_model_and_tokenizer(model_dir, dtype=torch.float32)
            row, _ = score(model, tokenizer, reference)
            extra = {"epochs": trained["full"]["epochs"]} if name == "full" else {}
            results[name] = _row(row, trained[name]["seconds"] if name == "full" else 0.0, **extra)
            save()
    for key, method, kwargs in row_plan(args.methods, args.modes, args.unlearn_steps):
        if key in results["methods"] and "error" not in results["methods"][key]:
            continue
        logger.info("method row %s %s", key, kwargs)
        out_dir = work / "methods" / key
        try:
            t = time.perf_counter()
            if method == "dp2":
                model, extra = dp2_pretrained(base_dir, data, out_dir, args.seed, args.finetune_epochs)
            else:
                model, extra = _call(DEMO_METHODS[method])(work / "full", data, out_dir, args.seed, **kwargs)
            seconds = extra.pop("seconds", time.perf_counter() - t)
            tokenizer = AutoTokenizer.from_pretrained(work / "full")
            row, _ = score(model, tokenizer, reference)
            results["methods"][key] = _row(
                row,
                seconds,
                cost_vs_retrain=seconds / results["gold"]["seconds"],
                overrides=kwargs,
                **extra,
            )
        except Exception as err:  # one failing row must not lose the others
            logger.exception("%s failed", key)
            results["methods"][key] = {"error": f"{type(err).__name__}: {err}", "overrides": kwargs}
        save()
    return results


def markdown_table(results: dict) -> str:
    """One row per model (base, full, gold, then every finished method row) with the reported keys."""
    head = "| model | " + " | ".join(REPORTED) + " | eval s |"
    lines = [head, "|" + "---|" * (len(REPORTED) + 2)]
    rows = {k: results[k] for k in ("base", "full", "gold") if k in results} | results["methods"]
    for key, row in rows.items():
        if "error" in row:
            lines.append(f"| {key} | failed: {row['error']} |")
            continue
        cells = [f"{row[k]:.3g}" if isinstance(row.get(k), float) else str(row.get(k)) for k in REPORTED]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {row['eval_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=MODEL, help="Model to fine-tune (any Hub id, path or packaged:<name>)."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "real_smollm2_tofu.json",
        help="Results JSON (kept and resumed when its configuration matches).",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "real_model", help="Models dir.")
    parser.add_argument(
        "--tofu_dir",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "tofu",
        help="Folder of the TOFU JSON files (retain90, forget01, retain_perturbed, ...).",
    )
    parser.add_argument("--retain_authors", type=int, default=8, help="Retain authors fine-tuned on (1-20).")
    parser.add_argument("--holdout_authors", type=int, default=2, help="Never-trained authors (non-members).")
    parser.add_argument("--eval_rows", type=int, default=40, help="Rows scored per QA split.")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="Method rows (default: all)."
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("full", "lora"),
        default=["full", "lora"],
        help="Full and/or LoRA rows.",
    )
    parser.add_argument(
        "--finetune_epochs", type=float, default=6, help="Epochs of the full and gold fine-tunes."
    )
    parser.add_argument(
        "--unlearn_steps", type=int, default=20, help="Optimiser steps of each unlearning run."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of fine-tunes, methods and eval subsets.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")
    args = parser.parse_args(argv)
    if not 1 <= args.retain_authors <= 20:
        parser.error(
            f"--retain_authors {args.retain_authors}: pass 1 to 20 (the retain part of model utility is TOFU's "
            "retain_perturbed.json, which covers the first 20 authors of retain90 only)."
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run(args)
    print(markdown_table(results))
    return int(any("error" in r for r in results["methods"].values()))


if __name__ == "__main__":
    sys.exit(main())
