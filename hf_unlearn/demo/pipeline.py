"""The embedded default end to end, offline, on a CPU: the pipeline behind ``hf-unlearn demo``.

:func:`run_demo` runs the stages :mod:`hf_unlearn.cli.demo` describes (data and tokenizer, full and gold models,
every row of :data:`~hf_unlearn.demo.methods.DEMO_METHODS`, the evaluation) into one folder and writes
``results.json``; :func:`run_demo_seeds` repeats it per seed and aggregates.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from datasets import DatasetDict
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data.formats import qa_as_text
from hf_unlearn.data.synthetic import synthetic_splits, write_synthetic
from hf_unlearn.demo.methods import DEMO_METHODS
from hf_unlearn.evaluation.suite import EvalConfig, Reference, evaluate_model
from hf_unlearn.hub.card import CARD_FILE, METRICS, export_model_card
from hf_unlearn.io import read_json, write_json_atomic
from hf_unlearn.models import build_tiny_llama, train_bpe_tokenizer
from hf_unlearn.seeds import aggregate_results, environment
from hf_unlearn.trainers import import_path
from hf_unlearn.trainers.finetune import SUMMARY_FILE, TrainConfig, train_lm

logger = logging.getLogger(__name__)
EVAL_SPLITS = ("forget", "retain", "holdout")
SEEDS_FILE = "results_seeds.json"
DEMO_EVAL_CONFIG = EvalConfig()


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


def summary_line(name: str, row: dict) -> str:
    """One line per model for the demo's log: its name, forget / retain exact match (and, for a guard, the
    forget exact match of its served view) and training seconds."""
    served = f" (served {row['forget_em_api']:.3f})" if "forget_em_api" in row else ""
    return (
        f"{name}: forget_em {row['forget_em']:.3f}{served}, retain_em {row['retain_em']:.3f}, "
        f"{row['seconds']:.1f} s"
    )


def evaluate_row(
    model, tokenizer, data: DatasetDict, reference: Reference | None = None, progress: bool = False
) -> dict:
    """Every ``hf-unlearn eval`` metric (forget quality, model utility, VerbMem, KnowMem, PrivLeak, relearning
    attack, ...) plus exact match and ROUGE-L on forget, retain and holdout, for one model.

    ``reference`` is the gold model's statistics (from :func:`gold_reference`), computed once and reused for
    every row; ``None`` scores the gold model against itself. The embedded default has no real-authors /
    world-facts sets, so model utility here is TOFU's harmonic mean over the retain set only. ``progress`` shows
    the evaluation's own bars.
    """
    return evaluate_model(model, tokenizer, data, reference, DEMO_EVAL_CONFIG, progress=progress)[0]


def gold_reference(
    gold_model, tokenizer, data: DatasetDict, progress: bool = False
) -> tuple[dict, Reference]:
    """The gold model's result row and the statistics every other row is compared with."""
    return evaluate_model(gold_model, tokenizer, data, None, DEMO_EVAL_CONFIG, progress=progress)


def run_demo(
    out: Path,
    n_people: int = 200,
    n_holdout: int = 20,
    forget_pct: int = 10,
    seed: int = 0,
    overwrite: bool = False,
    methods: list[str] | None = None,
    model_cards_dir: Path | None = None,
    verbose: bool = False,
) -> dict:
    """Run the demo into ``out`` and return (and write) the results dictionary.

    With ``model_cards_dir`` each method's model card is also written there, with the metrics of its row
    (:func:`export_cards`). The log is one progress bar per stage (full model, gold model, methods) and one
    :func:`summary_line` per model; ``verbose`` adds the Trainer's and the evaluation's own bars.
    """
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
    quiet_trainer = {"disable_tqdm": not verbose}
    trained = {}
    for name, splits in (("full", ["forget", "retain"]), ("gold", ["retain"])):
        with tqdm(total=1, desc=f"{name} model") as bar:
            trained[name] = train_or_reuse(
                out / name, tokenizer, data, splits, seed, overwrite, quiet_trainer
            )
            bar.update()
    gold_row, reference = gold_reference(trained["gold"][0], tokenizer, data, verbose)
    for name, (model, summary) in trained.items():
        row = gold_row if name == "gold" else evaluate_row(model, tokenizer, data, reference, verbose)
        results[name] = {**row, "seconds": summary["seconds"], "epochs": summary["epochs"]}
        tqdm.write(summary_line(name, results[name]))
    names = methods if methods is not None else list(DEMO_METHODS)
    with tqdm(names, desc="methods") as bar:
        for name in bar:
            bar.set_postfix_str(name)
            method_dir = out / "methods" / name
            method = import_path(DEMO_METHODS[name])
            start = time.perf_counter()
            model, extra = method(out / "full", data, method_dir, seed)
            row = {"seconds": time.perf_counter() - start, **extra}
            results["methods"][name] = row = {
                **row,
                **evaluate_row(model, tokenizer, data, reference, verbose),
            }
            tqdm.write(summary_line(name, row))
            if model_cards_dir is not None:
                export_cards(method_dir, name, row, data, model_cards_dir)
    results["demo_seconds"] = time.perf_counter() - demo_start
    write_json_atomic(out / "results.json", results)
    return results


def export_cards(method_dir: Path, name: str, row: dict, data: DatasetDict, cards_dir: Path) -> list[Path]:
    """Write the model card(s) a method saved under ``method_dir`` to ``cards_dir/<name>.md``, re-rendered with
    the row's metrics (those the card knows, :data:`hf_unlearn.hub.card.METRICS`) and checked for forget-set text.

    A method that saved one card (DP2's is in its ``request-1`` folder) gets ``<name>.md``, one that saved several
    ``<name>-<folder>.md``; a method that saves none (ECO: the weights are unchanged, and the guard it saves names
    the forget subjects) writes none.
    """
    cards = sorted(method_dir.rglob(CARD_FILE))
    written = []
    for card in cards:
        stem = name if len(cards) == 1 else f"{name}-{card.parent.name}"
        path = cards_dir / f"{stem}.md"
        metrics = {k: row[k] for k in METRICS if k in row}
        forget = {"forget": data["forget"], "forget_text": data["forget_text"]}
        export_model_card(card.parent, path, model_name=stem, eval_results=metrics, forget_dataset=forget)
        written.append(path)
    return written


def run_demo_seeds(out: Path, seeds: list[int], model_cards_dir: Path | None = None, **kwargs) -> dict:
    """:func:`run_demo` once per seed (into ``out/seed-<s>``), aggregated into ``out/results_seeds.json``;
    model cards go to ``model_cards_dir/seed-<s>``."""
    per_seed = [
        run_demo(
            out / f"seed-{seed}",
            seed=seed,
            model_cards_dir=None if model_cards_dir is None else model_cards_dir / f"seed-{seed}",
            **kwargs,
        )
        for seed in seeds
    ]
    summary = {**aggregate_results(per_seed, seeds), "environment": per_seed[0]["environment"]}
    write_json_atomic(out / SEEDS_FILE, summary)
    return summary
