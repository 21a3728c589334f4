"""The evaluation suite: every TOFU / MUSE metric and probe of one model against the retrained ("gold") model,
and the gold-free audit for users who cannot retrain.

:func:`evaluate_model` returns a flat result row (the keys of ``hf-unlearn eval``'s results.json) and the raw
statistics that other models are compared with. Evaluate the retrained model first with ``reference=None``
(it is its own reference: forget quality 1.0, PrivLeak 0), then pass its statistics as ``reference`` for every
other model, so the gold model is scored once. Without a retrained model pass ``gold_free=True``: the metrics
that need it are reported as not computed, the audit (membership AUCs against the holdout people, probes,
relearning against the held-out control, quantization) is what remains.

Splits (a mapping of name -> ``Dataset``): ``forget`` and ``retain`` QA rows are required; ``holdout`` QA rows
(never-trained subjects: the non-members of the membership attack, and the relearning control), ``real_authors``
and ``world_facts`` (TOFU's utility sets), ``forget_text`` / ``holdout_text`` (raw text rows) are used when
present. A metric that cannot be computed is ``None`` in the row and its reason is in
``details["not_computed"]``; data problems that bias a metric are in ``details["warnings"]``.

A guarded model (an ECO ``GuardedModel``: it has an ``unguarded`` model) is scored as its users meet it: the
standard keys are the weights' (white-box: what anyone holding the checkpoint gets; ECO leaves them unchanged),
and the same metrics through the guard (black-box: what the served API answers) carry an ``_api`` suffix
(``forget_em_api``, ``privleak_api``, ...). The guard corrupts prompts only, never the answers or texts scored.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from hf_unlearn.data.formats import answer_text, encode_prompt, qa_as_text
from hf_unlearn.evaluation.config import GENERATION_CAP, GENERATION_MARGIN, EvalConfig
from hf_unlearn.evaluation.metrics import forget_quality, mean, model_utility, privleak, rouge_l
from hf_unlearn.evaluation.mia import PRIVLEAK_ATTACK, attack_auc, attack_scores
from hf_unlearn.evaluation.muse import verbmem
from hf_unlearn.evaluation.probes import (
    mapping_attack,
    perturbed_questions,
    quantization_attack,
    relearn_attack,
    weights_of,
)
from hf_unlearn.evaluation.qa import generate_answers, text_token_scores
from hf_unlearn.evaluation.tofu import qa_scores, tofu_stats

logger = logging.getLogger(__name__)
UTILITY_SETS = ("retain", "real_authors", "world_facts")
REQUIRED_SPLITS = ("forget", "retain")


QA_SPLITS = ("forget", "retain", "holdout", "real_authors", "world_facts")
NAME_TOKEN_RATIO = 1.2  # warn when holdout names take this many times the forget names' tokens
NO_GOLD = "no retrained model given (--retain_model)"
NO_HOLDOUT = "no holdout split (never-trained people) given (--holdout)"


@dataclass
class Reference:
    """The retrained model's statistics that every other model is compared with."""

    forget_truth_ratios: np.ndarray | None
    mia_auc: dict[str, float]
    relearn: dict[str, float] | None
    mapping: dict[str, float] | None = None


def _check(splits: Mapping[str, Dataset]) -> None:
    missing = [s for s in REQUIRED_SPLITS if s not in splits]
    if missing:
        raise ValueError(
            f"Evaluation needs QA splits {list(REQUIRED_SPLITS)}; got {sorted(splits)} (missing {missing})."
        )


def utility_sets(splits: Mapping[str, Dataset]) -> tuple[list[str], str | None]:
    """The sets TOFU's model utility is computed over (every given one of retain / real_authors / world_facts),
    or ``([], reason)`` when the retain set, the only one given, has no perturbed answers.

    Raises:
        ValueError: a given utility set has no ``perturbed_answer`` column while the utility could otherwise be
            computed (another set has them, or it is real_authors / world_facts, which serve nothing else):
            leaving it out silently would make "model utility" a different quantity.
    """
    given = [s for s in UTILITY_SETS if s in splits]
    lacking = [s for s in given if "perturbed_answer" not in splits[s].column_names]
    if not lacking:
        return given, None
    if lacking == given == ["retain"]:
        return [], "not computed — retain rows have no perturbed_answer (TOFU: use retain_perturbed)"
    raise ValueError(
        f"Model utility is TOFU's harmonic mean over {given}, but {lacking} have no 'perturbed_answer' column "
        "(needed for the truth ratio, one of its three numbers), so they would be dropped silently. Give those "
        "rows perturbed answers (TOFU: retain_perturbed.json, real_authors_perturbed.json, "
        "world_facts_perturbed.json) or leave the sets out."
    )


def generation_length(tokenizer, splits: Mapping[str, Dataset], config: EvalConfig) -> int:
    """``config.max_new_tokens`` when set, else the longest reference answer of the QA splits in tokens (EOS
    included) + :data:`GENERATION_MARGIN`, capped at :data:`GENERATION_CAP`."""
    if config.max_new_tokens is not None:
        return config.max_new_tokens
    answers = [a for s in QA_SPLITS if s in splits for a in splits[s]["answer"]]
    longest = max(
        len(tokenizer(answer_text(tokenizer, a), add_special_tokens=False)["input_ids"]) for a in answers
    )
    return min(GENERATION_CAP, longest + 1 + GENERATION_MARGIN)


def name_token_lengths(tokenizer, names: list[str]) -> float:
    """Mean number of tokens of ``names`` as they appear inside a sentence (after a space)."""
    return mean(len(tokenizer(" " + n, add_special_tokens=False)["input_ids"]) for n in names)


def tokenizer_footing(tokenizer, splits: Mapping[str, Dataset]) -> str | None:
    """A warning when the holdout people's names tokenize into clearly more tokens than the forget people's
    (a tokenizer trained without the holdout people): the membership attack then partly detects tokenization,
    and even a model that never saw the forget people scores an AUC far from 0.5."""
    if "holdout" not in splits or not all("subject" in splits[s].column_names for s in ("forget", "holdout")):
        return None
    forget, holdout = (
        name_token_lengths(tokenizer, sorted(set(splits[s]["subject"]))) for s in ("forget", "holdout")
    )
    if holdout <= NAME_TOKEN_RATIO * forget:
        return None
    return (
        f"holdout names take {holdout:.1f} tokens on average, forget names {forget:.1f}: the tokenizer was trained "
        "without the holdout people, so the membership attack (mia_auc, privleak) partly measures tokenization. "
        "Train the tokenizer on text that treats both alike: retain-only or public text (hf-unlearn demo trains it on "
        "the retain people), or every person with the holdout included (hf-unlearn train --tiny "
        "--tokenizer_extra_files holdout.json)."
    )


def retain_subset(ds: Dataset, rows: int) -> Dataset:
    """At most ``rows`` rows of ``ds`` at evenly spaced positions (all of them when ``rows`` is 0 or more than
    ``len(ds)``), so that every subject of the retain set is represented."""
    if rows <= 0 or rows >= len(ds):
        return ds
    return ds.select(np.linspace(0, len(ds) - 1, rows).round().astype(int).tolist())


def membership_texts(splits: Mapping[str, Dataset], tokenizer, prefix: str) -> tuple[list[str], list[int]]:
    """The texts a membership attack scores for ``prefix`` (``forget`` or ``holdout``) and the prompt length of
    each in tokens: the QA rows rendered as trained (prompt + answer; the prompt is BOS + the formatted question)
    and, when given, the raw ``{prefix}_text`` rows (no prompt: length 0, nothing for a guard to corrupt)."""
    ds = splits[prefix]
    texts = [qa_as_text(tokenizer, q, a) for q, a in zip(ds["question"], ds["answer"])]
    lengths = [len(encode_prompt(tokenizer, q)) for q in ds["question"]]
    if f"{prefix}_text" in splits:
        raw = list(splits[f"{prefix}_text"]["text"])
        texts, lengths = texts + raw, lengths + [0] * len(raw)
    return texts, lengths


def evaluate_model(
    model,
    tokenizer,
    splits: Mapping[str, Dataset],
    reference: Reference | None = None,
    config: EvalConfig | None = None,
    progress: bool = True,
    gold_free: bool = False,
) -> tuple[dict, Reference]:
    """Score ``model`` on every metric and probe.

    Args:
        reference: the retrained model's :class:`Reference`; ``None`` when ``model`` *is* the retrained model
            (or when there is none, with ``gold_free``).
        gold_free: no retrained model exists: forget quality and PrivLeak are not computed, the audit keys are.

    Returns:
        The result row (``forget_quality``, ``model_utility``, ``verbmem_forget``, ``knowmem_forget``,
        ``knowmem_retain``, ``privleak``, ``mia_auc`` and ``mia_auc_{min_k,min_k_pp,loss,zlib}``, the
        relearning keys ``relearn_recovery[_prob|_rouge]`` and ``relearn_control_recovery[_prob|_rouge]``,
        the mapping-attack keys ``mapping_recovery[_prob]`` and ``mapping_control_recovery[_prob]``,
        ``quant{8,4}_forget_{em,rouge}``, per-split ``{split}_em`` / ``_rouge`` / ``_prob`` / ``_truth_ratio``,
        probe keys, ``*_api`` keys for a guarded model, and ``details``), and this model's own
        :class:`Reference` statistics.
    """
    _check(splits)
    config = config or EvalConfig()
    start = time.perf_counter()
    weights = weights_of(model)
    row, own = _score(weights, tokenizer, splits, reference, config, progress, gold_free, attacks=True)
    if weights is not model:  # a guard: the weights above, the served API below
        api, _ = _score(model, tokenizer, splits, reference, config, progress, gold_free, attacks=False)
        row |= {f"{k}_api": v for k, v in api.items() if v is None or isinstance(v, float)}
        row["details"]["api"] = api["details"]
        row["details"]["views"] = (
            "standard keys: the weights (white-box, no guard); *_api keys: through the guard, as the served API "
            "answers (prompts corrupted, answers and texts scored as they are)"
        )
    row["eval_seconds"] = time.perf_counter() - start
    return row, own


def _score(
    model, tokenizer, splits, reference, config, progress, gold_free, attacks
) -> tuple[dict, Reference]:
    """One view of :func:`evaluate_model`; ``attacks`` adds the weight attacks (relearning, mapping,
    quantization)."""
    max_new_tokens = generation_length(tokenizer, splits, config)
    kw = {"batch_size": config.batch_size, "max_new_tokens": max_new_tokens}
    wanted, utility_reason = utility_sets(splits)

    def desc(what: str) -> str | None:
        return what if progress else None

    row: dict = {}
    not_computed: dict[str, str] = {}
    warnings = [w for w in (tokenizer_footing(tokenizer, splits),) if w]
    details: dict = {
        "splits": {},
        "max_new_tokens": max_new_tokens,
        "not_computed": not_computed,
        "warnings": warnings,
    }
    # TOFU statistics per QA set ------------------------------------------------------------------------------
    forget = qa_scores(model, tokenizer, splits["forget"], desc=desc("forget QA"), **kw)
    retain = qa_scores(
        model, tokenizer, retain_subset(splits["retain"], config.retain_rows), desc=desc("retain QA"), **kw
    )
    stats = {"forget": tofu_stats(forget, "forget"), "retain": tofu_stats(retain, "retain")}
    per_split = {"forget": forget, "retain": retain}
    for name in ("real_authors", "world_facts"):
        if name in splits:
            per_split[name] = qa_scores(model, tokenizer, splits[name], desc=desc(name), **kw)
            stats[name] = tofu_stats(per_split[name], "factual")
    if "holdout" in splits:
        per_split["holdout"] = qa_scores(
            model, tokenizer, splits["holdout"], perturbed=False, desc=desc("holdout QA"), **kw
        )
    for name, scores in per_split.items():
        row[f"{name}_em"] = float(scores["em"].mean())
        row[f"{name}_rouge"] = mean(scores["rouge_recall"])
        split_detail = {
            "em": row[f"{name}_em"],
            "rouge": row[f"{name}_rouge"],
            "rouge_f1": mean(scores["rouge_f1"]),
        }
        if name in stats:
            row[f"{name}_prob"] = stats[name]["prob"]
            row[f"{name}_truth_ratio"] = stats[name]["truth_ratio"]
            split_detail.update({k: stats[name][k] for k in ("prob", "truth_ratio")})
        details["splits"][name] = split_detail
        if name in stats and stats[name]["truth_ratio"] is None:
            not_computed[f"{name}_truth_ratio"] = f"not computed — {name} rows have no perturbed_answer"
    row["model_utility"] = model_utility({s: stats[s] for s in wanted}) if wanted else None
    if utility_reason:
        not_computed["model_utility"] = utility_reason
    details["model_utility_sets"] = row["model_utility_sets"] = wanted
    own_ratios = stats["forget"]["truth_ratios"]
    ref_ratios = own_ratios if reference is None else reference.forget_truth_ratios
    row["forget_quality"] = None
    if own_ratios is None:
        not_computed["forget_quality"] = "not computed — forget rows have no perturbed_answer"
    elif gold_free:
        not_computed["forget_quality"] = f"not computed — {NO_GOLD}"
    elif ref_ratios is not None:
        row["forget_quality"] = forget_quality(own_ratios, ref_ratios)
    # MUSE ---------------------------------------------------------------------------------------------------
    row["knowmem_forget"] = mean(forget["rouge_f1"])
    row["knowmem_retain"] = mean(retain["rouge_f1"])
    texts = (
        list(splits["forget_text"]["text"])
        if "forget_text" in splits
        else [
            qa_as_text(tokenizer, q, a)
            for q, a in zip(splits["forget"]["question"], splits["forget"]["answer"])
        ]
    )
    if "forget_text" not in splits:
        warnings.append(
            "verbmem_forget: no forget_text split; VerbMem continues the forget QA rendered as text"
        )
    row["verbmem_forget"] = verbmem(
        model,
        tokenizer,
        texts,
        config.verbmem_prefix_tokens,
        config.verbmem_max_new_tokens,
        config.batch_size,
        desc("VerbMem"),
    )["verbmem"]
    aucs: dict[str, float] = {}
    if "holdout" in splits:
        scores = {}
        for prefix in ("forget", "holdout"):
            group, prompt_lengths = membership_texts(splits, tokenizer, prefix)
            tokens = text_token_scores(
                model, tokenizer, group, prompt_lengths, config.batch_size, desc=desc(f"MIA {prefix}")
            )
            moments = list(zip(tokens["mean"], tokens["std"]))
            scores[prefix] = attack_scores(tokens["log_prob"], group, config.min_k, moments)
        aucs = {a: attack_auc(scores["forget"][a], scores["holdout"][a]) for a in scores["forget"]}
    else:
        not_computed["mia_auc"] = f"not computed — {NO_HOLDOUT}"
    row["mia_auc"] = aucs.get(PRIVLEAK_ATTACK)
    row |= {f"mia_auc_{a}": v for a, v in aucs.items()}
    if gold_free:
        leaks = {}
        not_computed["privleak"] = f"not computed — {NO_GOLD}"
    elif reference is None:  # the retrained model against itself: no leak by definition
        leaks = {a: 0.0 for a in aucs}
    else:
        leaks = {a: privleak(aucs[a], reference.mia_auc[a]) for a in aucs if a in reference.mia_auc}
    if not aucs:
        not_computed["privleak"] = f"not computed — {NO_HOLDOUT}"
    row["privleak"] = leaks.get(PRIVLEAK_ATTACK)
    details["mia_auc"] = aucs
    details["privleak"] = leaks
    # Probes -------------------------------------------------------------------------------------------------
    forget_ds = splits["forget"]
    if config.probes:
        if "paraphrased_question" in forget_ds.column_names:
            para = qa_scores(
                model,
                tokenizer,
                forget_ds,
                "paraphrased_question",
                perturbed=False,
                desc=desc("paraphrased"),
                **kw,
            )
            row["forget_paraphrased_em"] = float(para["em"].mean())
            row["forget_paraphrased_rouge"] = mean(para["rouge_recall"])
        else:
            for key in ("forget_paraphrased_em", "forget_paraphrased_rouge"):
                not_computed[key] = "not computed — forget rows have no paraphrased_question"
        try:
            questions = perturbed_questions(forget_ds, config.seed)
        except ValueError as err:  # no perturbed_question / subject column, or a subject not in its question
            not_computed["forget_perturbed_question_rouge"] = f"not computed — {err}"
        else:
            answers = generate_answers(
                model, tokenizer, questions, max_new_tokens, config.batch_size, desc("perturbed questions")
            )
            row["forget_perturbed_question_rouge"] = mean(
                rouge_l(p, a)["recall"] for p, a in zip(answers, forget_ds["answer"])
            )
    relearn = mapping = None
    if attacks:
        relearn = _relearn(
            model, tokenizer, splits, reference, gold_free, config, max_new_tokens, row, details, not_computed
        )
        mapping = _mapping(model, tokenizer, splits, reference, gold_free, config, row, details, not_computed)
        _quantization(model, tokenizer, forget_ds, config, max_new_tokens, row, not_computed)
    for key, reason in not_computed.items():
        logger.warning("%s: %s", key, reason)
    for warning in warnings:
        logger.warning("%s", warning)
    row["details"] = details
    return row, Reference(own_ratios, aucs, relearn, mapping)


RELEARN_VIEWS = {"recovery": "", "prob_recovery": "_prob", "rouge_recovery": "_rouge"}
MAPPING_VIEWS = {"recovery": "", "prob_recovery": "_prob"}


def _relearn(
    model, tokenizer, splits, reference, gold_free, config, max_new_tokens, row, details, not_computed
):
    """The relearning attack on the forget people and, as the control, on the holdout people."""
    attack = {
        "steps": config.relearn_steps,
        "learning_rate": config.relearn_learning_rate,
        "batch_size": config.relearn_batch_size,
        "seed": config.seed,
        "eval_batch_size": config.batch_size,
        "max_new_tokens": max_new_tokens,
    }
    skip = "relearn_steps is 0" if config.relearn_steps <= 0 else None
    run = functools.partial(relearn_attack, model, tokenizer, **attack)
    return _controlled(
        "relearn", run, RELEARN_VIEWS, skip, splits, reference, gold_free, row, details, not_computed
    )


def _mapping(model, tokenizer, splits, reference, gold_free, config, row, details, not_computed):
    """The mapping attack on the forget people and, as the control, on the holdout people."""
    skip = "mapping_steps is 0" if config.mapping_steps <= 0 else None
    run = functools.partial(
        mapping_attack, model, tokenizer, budget=config.mapping_budget, steps=config.mapping_steps,
        batch_size=config.batch_size,
    )  # fmt: skip
    return _controlled(
        "mapping", run, MAPPING_VIEWS, skip, splits, reference, gold_free, row, details, not_computed
    )


def _controlled(name, attack, views, skip, splits, reference, gold_free, row, details, not_computed):
    """``attack(rows)`` on the forget people (``{name}_recovery*`` keys) and, as the gold-free control, on the
    holdout people (``{name}_control_recovery*``); ``details[name]`` also holds the retrained model's numbers
    under the same attack: ``reference.<name>`` (absent when not known), this model's own when ``reference`` is
    ``None`` (it is the retrained model), none with ``gold_free``.
    Returns the forget-set result (``None`` when ``skip`` says why the attack is off)."""
    keys = [f"{name}{infix}_recovery{suffix}" for infix in ("", "_control") for suffix in views.values()]
    row |= dict.fromkeys(keys)
    if skip:
        not_computed |= {key: f"not computed — {skip}" for key in keys}
        return None
    result = attack(splits["forget"])
    row |= {f"{name}_recovery{suffix}": result[k] for k, suffix in views.items()}
    control = None
    if "holdout" in splits and len(splits["holdout"]) >= 2:
        control = attack(splits["holdout"])
        row |= {f"{name}_control_recovery{suffix}": control[k] for k, suffix in views.items()}
    else:
        for suffix in views.values():
            not_computed[f"{name}_control_recovery{suffix}"] = f"not computed — {NO_HOLDOUT}"
    retrained = None if gold_free else result if reference is None else getattr(reference, name)
    details[name] = {
        **result,
        **({f"control_{k}": v for k, v in control.items()} if control else {}),
        **({f"retrained_{k}": v for k, v in retrained.items()} if retrained else {}),
    }
    return result


def _quantization(model, tokenizer, forget, config, max_new_tokens, row, not_computed) -> None:
    """The quantization attack's ``quant{b}_forget_em`` / ``_rouge`` keys (or the reason they are missing)."""
    bits = tuple(b for b in config.quant_bits if b != 0)
    keys = [f"quant{b}_forget_{m}" for b in bits for m in ("em", "rouge")]
    try:
        row |= quantization_attack(model, tokenizer, forget, bits, config.batch_size, max_new_tokens)
    except (ImportError, TypeError) as err:  # no bitsandbytes, or weights that cannot be saved and reloaded
        row |= dict.fromkeys(keys)
        not_computed |= {k: f"not computed — {err}" for k in keys}
