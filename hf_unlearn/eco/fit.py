"""Fitting an ECO guard for a model: classifier, subjects, and the corruption strength (:func:`fit_guard`).

The strength search needs a target for the forget metric: the retrained model's (``target_model``), the
unguarded model's on people it never saw (``holdout``, a proxy needing no retraining), or a number
(``target``). ``hf-unlearn eco-fit`` (:mod:`hf_unlearn.cli.eco_fit`) is the command-line face.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import replace
from pathlib import Path

from datasets import Dataset, DatasetDict

from hf_unlearn.data.formats import format_prompt
from hf_unlearn.eco.classifier import (
    ClassifierConfig,
    PromptClassifier,
    SentenceEncoder,
    detection_rates,
)
from hf_unlearn.eco.corruption import TUNABLE
from hf_unlearn.eco.guard import ECOGuard, GuardConfig, GuardedModel
from hf_unlearn.eco.names import NameMatcher, namesakes
from hf_unlearn.eco.optimize import forget_metric, zeroth_order_search
from hf_unlearn.eco.response import fact_hashes, identifying_facts
from hf_unlearn.io import write_json_atomic

logger = logging.getLogger(__name__)
FIT_REPORT_FILE = "fit_report.json"
SEARCH_EPS = 1e-3
SEARCH_TOL = 0.02**2  # stop once the metric is within ~2 % (relative) of the target


def question_prompts(tokenizer, questions: list[str]) -> list[str]:
    """The prompt texts the served model sees for ``questions`` (what the classifier must read)."""
    return [format_prompt(tokenizer, q) for q in questions]


def name_variants(tokenizer, rows: Dataset) -> list[str]:
    """Each question with its ``subject`` named by the last and by the first name part alone, templated, and the
    plain question without the QA template (none for rows without a two-part ``subject``)."""
    if "subject" not in rows.column_names:
        return []
    out = []
    for question, subject in zip(rows["question"], rows["subject"]):
        parts = subject.split()
        if len(parts) > 1 and subject in question:
            out += question_prompts(
                tokenizer, [question.replace(subject, parts[-1]), question.replace(subject, parts[0])]
            )
            out.append(question)
    return out


def fit_classifier(
    tokenizer,
    forget: Dataset,
    retain: Dataset,
    config: ClassifierConfig | None = None,
    encoder: SentenceEncoder | None = None,
) -> PromptClassifier:
    """Train the prompt classifier on the forget prompts (positives) vs the retain prompts (negatives), with
    :func:`name_variants` of both when ``config.augment_names`` (so that the embedding part of the head does not
    tell forget from retain by how a person is named)."""
    config = config or ClassifierConfig()
    positives = question_prompts(tokenizer, forget["question"])
    negatives = question_prompts(tokenizer, retain["question"])
    if config.augment_names:
        positives += name_variants(tokenizer, forget)
        negatives += name_variants(tokenizer, retain)
    return PromptClassifier.fit(positives, negatives, config, encoder)


def forget_facts(classifier: PromptClassifier, forget: Dataset) -> list[tuple[str, str]]:
    """``(subject, answer)`` for each forget answer under every subject its question names."""
    return [
        (subject, answer)
        for question, answer in zip(forget["question"], forget["answer"])
        for subject in classifier.matcher.matched(question)
    ]


def resolve_target(
    model,
    tokenizer,
    forget: Dataset,
    metric: str,
    target=None,
    target_model=None,
    holdout: Dataset | None = None,
) -> tuple[float, str]:
    """The forget-metric value the guarded model should reach, and where it came from.

    Raises:
        ValueError: none or several of ``target`` / ``target_model`` / ``holdout`` given.
    """
    given = [x is not None for x in (target, target_model, holdout)]
    if sum(given) != 1:
        raise ValueError(
            f"Give exactly one target for the strength search (got target={target}, target_model="
            f"{'set' if target_model is not None else None}, holdout={'set' if holdout is not None else None}): "
            "a number, the retrained model, or QA rows about never-seen subjects."
        )
    if target is not None:
        return float(target), "given"
    if target_model is not None:
        return forget_metric(
            target_model, tokenizer, forget["question"], forget["answer"], metric
        ), "target_model"
    return forget_metric(model, tokenizer, holdout["question"], holdout["answer"], metric), "holdout"


def search_strength(
    guarded: GuardedModel, tokenizer, forget: Dataset, target: float, metric: str, steps, lr, mu, seed
) -> dict:
    """Set ``guarded.guard.config.strength`` to the strength whose forget metric is closest to ``target``.

    The objective is the squared log gap ``(log(m + eps) - log(target + eps))^2`` (``eps = 1e-3``): metrics
    fall over orders of magnitude as the strength grows, and a log gap keeps the steps even along the way.
    """
    guard = guarded.guard
    reached: dict[float, float] = {}

    def objective(strength: float) -> float:
        guard.config.strength = strength
        value = forget_metric(guarded, tokenizer, forget["question"], forget["answer"], metric)
        reached[strength] = value
        logger.info("strength %.4g: forget %s %.4f (target %.4f)", strength, metric, value, target)
        return (math.log(value + SEARCH_EPS) - math.log(target + SEARCH_EPS)) ** 2

    result = zeroth_order_search(
        objective, guard.config.strength, steps=steps, lr=lr, mu=mu, seed=seed, tol=SEARCH_TOL
    )
    guard.config.strength = result.best
    return {
        "strength": result.best,
        "reached": reached[result.best],
        "gap": abs(reached[result.best] - target),
        "history": [(s, reached[s]) for s, _ in result.history],
    }


def fit_guard(
    model,
    tokenizer,
    forget: Dataset,
    retain: Dataset,
    guard_config: GuardConfig | None = None,
    classifier_config: ClassifierConfig | None = None,
    target=None,
    target_model=None,
    holdout: Dataset | None = None,
    metric: str = "prob",
    steps: int = 20,
    lr: float = 0.05,
    mu: float = 0.25,
    encoder: SentenceEncoder | None = None,
) -> tuple[GuardedModel, dict]:
    """Fit a guard for ``model``: classifier, subjects, and a strength whose forget metric matches the target.

    The strength is searched for tunable corruptions (Gaussian noise); the others are applied as configured.

    Subjects default to the forget rows' ``subject`` column; they feed the classifier's entity feature (unless
    ``classifier_config.entities`` is set) and ``token_selection='subjects'``.
    The retain rows' ``subject`` column, when there is one, decides which name parts are distinctive enough to
    flag a prompt alone and which retain full names hold a forget subject's name part (``namesakes``).

    Returns:
        The guarded model (its ``.guard`` is the fitted :class:`ECOGuard`) and a report dictionary.
    """
    guard_config = replace(guard_config or GuardConfig())
    classifier_config = replace(classifier_config or ClassifierConfig())
    if not guard_config.subjects and "subject" in forget.column_names:
        guard_config.subjects = sorted(set(forget["subject"]))
    if not classifier_config.entities:
        classifier_config.entities = list(guard_config.subjects)
    retain_subjects = sorted(set(retain["subject"])) if "subject" in retain.column_names else []
    if not guard_config.namesakes:
        guard_config.namesakes = namesakes(guard_config.subjects, retain_subjects)
    if classifier_config.fuzzy_names and classifier_config.entities and not classifier_config.entity_parts:
        classifier_config.entity_parts = NameMatcher.distinctive_parts(
            classifier_config.entities, retain_subjects, retain["question"]
        )
    start = time.perf_counter()
    classifier = fit_classifier(tokenizer, forget, retain, classifier_config, encoder)
    classifier_seconds = time.perf_counter() - start
    if not guard_config.response_facts:
        guard_config.response_key = guard_config.response_key or secrets.token_hex(16)
        key, facts = bytes.fromhex(guard_config.response_key), forget_facts(classifier, forget)
        guard_config.response_facts = fact_hashes(key, facts)
        guard_config.identifying_facts = identifying_facts(key, facts, retain["answer"])
    value, source = resolve_target(model, tokenizer, forget, metric, target, target_model, holdout)
    guarded = GuardedModel(model, ECOGuard(classifier, tokenizer, guard_config))
    start = time.perf_counter()
    if guard_config.corruption in TUNABLE:
        search = search_strength(guarded, tokenizer, forget, value, metric, steps, lr, mu, guard_config.seed)
    else:  # nothing to tune: record how far the fixed corruption lands from the target
        reached = forget_metric(guarded, tokenizer, forget["question"], forget["answer"], metric)
        search = {"strength": guard_config.strength, "gap": abs(reached - value), "history": []}
    report = {
        "metric": metric,
        "target": value,
        "target_source": source,
        **search,
        "classifier": classifier.stats,
        "classifier_seconds": classifier_seconds,
        "search_seconds": time.perf_counter() - start,
    }
    return guarded, report


def save_guard(guarded: GuardedModel, report: dict, out: str | Path) -> None:
    guarded.guard.save_pretrained(out)
    write_json_atomic(Path(out) / FIT_REPORT_FILE, report)


def unseen_prompt_rates(guard: ECOGuard, data: DatasetDict) -> dict:
    """Classifier recall / FPR on prompts it never trained on, as the served model would receive them.

    Positives are the forget rows' paraphrased questions. Negatives are the retain rows' paraphrased questions,
    or, when the retain rows have none (TOFU), the questions about the held-out, never-trained-on people.
    """
    paraphrased = "paraphrased_question" in data["retain"].column_names
    negatives = data["retain"]["paraphrased_question"] if paraphrased else data["holdout"]["question"]
    rates = detection_rates(
        guard.classifier,
        question_prompts(guard.tokenizer, data["forget"]["paraphrased_question"]),
        question_prompts(guard.tokenizer, negatives),
    )
    return {**rates, "negatives": "retain paraphrases" if paraphrased else "holdout questions"}
