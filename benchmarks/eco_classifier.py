"""ECO prompt-classifier quality on held-out paraphrases: the embedded default and TOFU forget10 vs retain90.

    python benchmarks/eco_classifier.py [--tofu ../shared/data/tofu] [--out benchmarks/results/eco_classifier.json]

For each data set the classifier is trained on the forget questions (positives) and the retain questions
(negatives; 20 % of them held out to calibrate the threshold for a 1 % false-positive rate), then measured on
*paraphrased* questions that no training or calibration step saw: recall on forget paraphrases, false-positive
rate on retain paraphrases. TOFU: forget10's ``paraphrased_question`` vs the ``paraphrased_question`` of
``retain_perturbed.json``, whose rows (a subset of retain90) are kept out of training. Two heads are reported:
the default (sentence embedding + "mentions a forget subject" feature, subjects from forget10's ``subject``)
and the embedding alone. Embedded default: prompts are rendered with the QA template the served model sees.

Recall and FPR are the classifier's decisions as served, through its cascade (exact bounds, n-gram screen,
encoder; see :mod:`hf_unlearn.eco.classifier`). ``full_classifier`` holds the same rates with the encoder
scoring every prompt, ``agreement`` the share of test prompts on which both decide alike, and ``decided_by`` how
many test prompts each cascade step decided.

Every rate is reported as ``<metric>_mean`` / ``<metric>_sd`` over ``--seeds`` (default 0 1 2) with the per-seed
rows in ``per_seed``: the seed draws the embedded default's people and its forget / retain split
(``synthetic_splits(seed=...)``) and, on both data sets, which retain prompts are held out for calibration
(``ClassifierConfig.calibration_seed``). ``seconds`` is the head's fit time; each distinct prompt is encoded
once for the whole run, so the first fit to meet a prompt pays for its encoding.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hf_unlearn.data.formats import QA_PROMPT_TEMPLATE
from hf_unlearn.data.synthetic import synthetic_splits
from hf_unlearn.eco.classifier import (
    ClassifierConfig,
    PromptClassifier,
    SentenceEncoder,
    detection_rates,
)
from hf_unlearn.io import write_json_atomic
from hf_unlearn.seeds import aggregate_rows, environment

ROOT = Path(__file__).resolve().parents[1]


class CachedEncoder:
    """A :class:`SentenceEncoder` that encodes each distinct text once (both heads read the same prompts)."""

    def __init__(self):
        self.encoder = SentenceEncoder()
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            self.cache.update(zip(todo, self.encoder.encode(todo)))
        return np.stack([self.cache[t] for t in texts])


def evaluate(name, train_pos, train_neg, test_pos, test_neg, subjects, encoder, seed: int) -> dict:
    """``{head: row}`` for both heads, each row flat (scalars only) so that seeds can be aggregated."""
    out = {}
    for head, entities in (("embedding+subject", subjects), ("embedding_only", [])):
        start = time.perf_counter()
        config = ClassifierConfig(entities=entities, calibration_seed=seed)
        clf = PromptClassifier.fit(train_pos, train_neg, config, encoder)
        seconds = time.perf_counter() - start
        rates = detection_rates(clf, test_pos, test_neg)
        decided_by = dict(clf.counts)
        full = [clf.scores(texts) > clf.threshold for texts in (test_pos, test_neg)]
        served = [clf.predict(texts) for texts in (test_pos, test_neg)]
        agreement = float(np.mean(np.concatenate(full) == np.concatenate(served)))
        out[head] = {
            **rates,
            "full_classifier_recall": float(full[0].mean()),
            "full_classifier_fpr": float(full[1].mean()),
            "agreement": agreement,
            **{f"decided_by_{step}": decided_by.get(step, 0) for step in ("bound", "screen", "encoder")},
            "threshold": clf.threshold,
            **clf.stats,
            "seconds": seconds,
        }
        print(
            f"seed {seed} {name} {head}: recall {rates['recall']:.4f}  fpr {rates['fpr']:.4f}  agreement with the full "
            f"classifier {agreement:.4f}  decided by {decided_by}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tofu",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "tofu",
        help="Folder of the TOFU JSON files.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "eco_classifier.json",
        help="Results JSON.",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds (data split and calibration split)."
    )
    args = parser.parse_args()
    encoder = CachedEncoder()

    def tofu(split):
        return json.loads((args.tofu / f"{split}.json").read_text())

    forget10, retain90, held = tofu("forget10"), tofu("retain90"), tofu("retain_perturbed")
    held_questions = {row["question"] for row in held}
    fmt = lambda qs: [QA_PROMPT_TEMPLATE.format(question=q) for q in qs]  # noqa: E731
    rows: dict[str, list[dict]] = {"embedded_default": [], "tofu_forget10_vs_retain90": []}
    for seed in args.seeds:
        data = synthetic_splits(n_people=200, n_holdout=20, forget_pct=10, seed=seed)
        forget, retain = data["forget"], data["retain"]
        rows["embedded_default"].append(
            evaluate(
                "embedded default",
                fmt(forget["question"]),
                fmt(retain["question"]),
                fmt(forget["paraphrased_question"]),
                fmt(retain["paraphrased_question"]),
                sorted(set(forget["subject"])),
                encoder,
                seed,
            )
        )
        rows["tofu_forget10_vs_retain90"].append(
            evaluate(
                "TOFU forget10",
                [r["question"] for r in forget10],
                [r["question"] for r in retain90 if r["question"] not in held_questions],
                [r["paraphrased_question"] for r in forget10],
                [r["paraphrased_question"] for r in held],
                sorted({r["subject"] for r in forget10}),
                encoder,
                seed,
            )
        )
    results = {
        data_set: {
            head: {
                **aggregate_rows([r[head] for r in seed_rows]),
                "per_seed": {str(seed): r[head] for seed, r in zip(args.seeds, seed_rows)},
            }
            for head in seed_rows[0]
        }
        for data_set, seed_rows in rows.items()
    }
    results["config"] = {
        "target_fpr": ClassifierConfig().target_fpr,
        "encoder": ClassifierConfig().encoder,
        "seeds": args.seeds,
    }
    results["environment"] = environment()
    write_json_atomic(args.out, results)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
