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


def evaluate(name, train_pos, train_neg, test_pos, test_neg, subjects, encoder) -> dict:
    out = {}
    for head, entities in (("embedding+subject", subjects), ("embedding_only", [])):
        start = time.perf_counter()
        clf = PromptClassifier.fit(train_pos, train_neg, ClassifierConfig(entities=entities), encoder)
        seconds = time.perf_counter() - start
        rates = detection_rates(clf, test_pos, test_neg)
        decided_by = dict(clf.counts)
        full = [clf.scores(texts) > clf.threshold for texts in (test_pos, test_neg)]
        served = [clf.predict(texts) for texts in (test_pos, test_neg)]
        agreement = float(np.mean(np.concatenate(full) == np.concatenate(served)))
        out[head] = {
            **rates,
            "full_classifier": {"recall": float(full[0].mean()), "fpr": float(full[1].mean())},
            "agreement": agreement,
            "decided_by": decided_by,
            "threshold": clf.threshold,
            **clf.stats,
            "seconds": seconds,
        }
        print(
            f"{name} {head}: recall {rates['recall']:.4f}  fpr {rates['fpr']:.4f}  agreement with the full "
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
    args = parser.parse_args()
    encoder = CachedEncoder()
    results = {}

    data = synthetic_splits(n_people=200, n_holdout=20, forget_pct=10, seed=0)
    fmt = lambda qs: [QA_PROMPT_TEMPLATE.format(question=q) for q in qs]  # noqa: E731
    forget, retain = data["forget"], data["retain"]
    results["embedded_default"] = evaluate(
        "embedded default",
        fmt(forget["question"]),
        fmt(retain["question"]),
        fmt(forget["paraphrased_question"]),
        fmt(retain["paraphrased_question"]),
        sorted(set(forget["subject"])),
        encoder,
    )

    def tofu(split):
        return json.loads((args.tofu / f"{split}.json").read_text())

    forget10, retain90, held = tofu("forget10"), tofu("retain90"), tofu("retain_perturbed")
    held_questions = {row["question"] for row in held}
    results["tofu_forget10_vs_retain90"] = evaluate(
        "TOFU forget10",
        [r["question"] for r in forget10],
        [r["question"] for r in retain90 if r["question"] not in held_questions],
        [r["paraphrased_question"] for r in forget10],
        [r["paraphrased_question"] for r in held],
        sorted({r["subject"] for r in forget10}),
        encoder,
    )
    results["config"] = {"target_fpr": ClassifierConfig().target_fpr, "encoder": ClassifierConfig().encoder}
    write_json_atomic(args.out, results)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
