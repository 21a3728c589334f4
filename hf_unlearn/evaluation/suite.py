"""The evaluation suite: every TOFU / MUSE metric and probe of one model against the retrained ("gold") model.

:func:`evaluate_model` returns a flat result row (the keys of ``hf-unlearn eval``'s results.json) and the raw
statistics that other models are compared with. Evaluate the retrained model first with ``reference=None``
(it is its own reference: forget quality 1.0, PrivLeak 0), then pass its statistics as ``reference`` for every
other model, so the gold model is scored once.

Splits (a mapping of name -> ``Dataset``): ``forget`` and ``retain`` QA rows are required; ``holdout`` QA rows
(never-trained subjects: the non-members of the membership attack), ``real_authors`` and ``world_facts``
(TOFU's utility sets), ``forget_text`` / ``holdout_text`` (raw text rows) are used when present.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset

from hf_unlearn.data.formats import qa_as_text
from hf_unlearn.evaluation.metrics import forget_quality, mean, model_utility, privleak, rouge_l
from hf_unlearn.evaluation.mia import PRIVLEAK_ATTACK, attack_auc, attack_scores
from hf_unlearn.evaluation.muse import verbmem
from hf_unlearn.evaluation.probes import perturbed_questions, relearn_attack
from hf_unlearn.evaluation.qa import generate_answers, text_token_log_probs
from hf_unlearn.evaluation.tofu import qa_scores, tofu_stats

logger = logging.getLogger(__name__)
UTILITY_SETS = ("retain", "real_authors", "world_facts")
REQUIRED_SPLITS = ("forget", "retain")


@dataclass
class EvalConfig:
    """How ``hf-unlearn eval`` (and the demo) score a model; defaults suit the tiny embedded models."""

    batch_size: int = field(default=64, metadata={"help": "Rows per forward pass / generation batch."})
    max_new_tokens: int = field(
        default=32, metadata={"help": "Greedy answer length cap (raise it for long answers, e.g. TOFU: 64)."}
    )
    retain_rows: int = field(
        default=400,
        metadata={
            "help": "Score at most this many retain rows, evenly spread over the set (TOFU scores the 400 rows of "
            "retain_perturbed). 0 = all."
        },
    )
    verbmem_prefix_tokens: int = field(
        default=32, metadata={"help": "VerbMem prompt length in tokens (capped at half of each text)."}
    )
    verbmem_max_new_tokens: int = field(default=64, metadata={"help": "VerbMem continuation length."})
    min_k: float = field(default=0.4, metadata={"help": "Min-K%% Prob fraction (MUSE: 0.4)."})
    relearn_steps: int = field(
        default=10,
        metadata={"help": "Relearning attack: fine-tuning steps on half the forget set (0 = skip)."},
    )
    relearn_learning_rate: float = field(
        default=1e-3, metadata={"help": "Relearning attack: AdamW learning rate."}
    )
    relearn_batch_size: int = field(default=16, metadata={"help": "Relearning attack: rows per step."})
    probes: bool = field(default=True, metadata={"help": "Run the paraphrased / perturbed question probes."})
    seed: int = field(default=0, metadata={"help": "Seed for the probes and the relearning attack."})


@dataclass
class Reference:
    """The retrained model's statistics that every other model is compared with."""

    forget_truth_ratios: np.ndarray | None
    mia_auc: dict[str, float]
    relearn: dict[str, float] | None


def _check(splits: Mapping[str, Dataset]) -> None:
    missing = [s for s in REQUIRED_SPLITS if s not in splits]
    if missing:
        raise ValueError(
            f"Evaluation needs QA splits {list(REQUIRED_SPLITS)}; got {sorted(splits)} (missing {missing})."
        )


def retain_subset(ds: Dataset, rows: int) -> Dataset:
    """At most ``rows`` rows of ``ds`` at evenly spaced positions (all of them when ``rows`` is 0 or more than
    ``len(ds)``), so that every subject of the retain set is represented."""
    if rows <= 0 or rows >= len(ds):
        return ds
    return ds.select(np.linspace(0, len(ds) - 1, rows).round().astype(int).tolist())


def membership_texts(splits: Mapping[str, Dataset], tokenizer, prefix: str) -> list[str]:
    """The texts a membership attack scores for ``prefix`` (``forget`` or ``holdout``): the QA rows rendered as
    trained (prompt + answer) and, when given, the raw ``{prefix}_text`` rows."""
    ds = splits[prefix]
    texts = [qa_as_text(tokenizer, q, a) for q, a in zip(ds["question"], ds["answer"])]
    if f"{prefix}_text" in splits:
        texts += list(splits[f"{prefix}_text"]["text"])
    return texts


def evaluate_model(
    model,
    tokenizer,
    splits: Mapping[str, Dataset],
    reference: Reference | None = None,
    config: EvalConfig | None = None,
    progress: bool = True,
) -> tuple[dict, Reference]:
    """Score ``model`` on every metric and probe.

    Args:
        reference: the retrained model's :class:`Reference`; ``None`` when ``model`` *is* the retrained model.

    Returns:
        The result row (``forget_quality``, ``model_utility``, ``verbmem_forget``, ``knowmem_forget``,
        ``knowmem_retain``, ``privleak``, ``mia_auc``, ``relearn_recovery``, per-split ``{split}_em`` /
        ``_rouge`` / ``_prob`` / ``_truth_ratio``, probe keys, and ``details``), and this model's own
        :class:`Reference` statistics.
    """
    _check(splits)
    config = config or EvalConfig()
    start = time.perf_counter()
    kw = {"batch_size": config.batch_size, "max_new_tokens": config.max_new_tokens}

    def desc(what: str) -> str | None:
        return what if progress else None

    row: dict = {}
    details: dict = {"splits": {}}
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
    utility_sets = [s for s in UTILITY_SETS if s in stats and stats[s]["truth_ratio"] is not None]
    row["model_utility"] = model_utility({s: stats[s] for s in utility_sets}) if utility_sets else None
    details["model_utility_sets"] = utility_sets
    own_ratios = stats["forget"]["truth_ratios"]
    ref_ratios = own_ratios if reference is None else reference.forget_truth_ratios
    row["forget_quality"] = (
        None if own_ratios is None or ref_ratios is None else forget_quality(own_ratios, ref_ratios)
    )
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
            group = membership_texts(splits, tokenizer, prefix)
            logps = text_token_log_probs(
                model, tokenizer, group, config.batch_size, desc=desc(f"MIA {prefix}")
            )
            scores[prefix] = attack_scores(logps, group, min_k=config.min_k)
        aucs = {a: attack_auc(scores["forget"][a], scores["holdout"][a]) for a in scores["forget"]}
    row["mia_auc"] = aucs.get(PRIVLEAK_ATTACK)
    if reference is None:  # the retrained model against itself: no leak by definition
        leaks = {a: 0.0 for a in aucs}
    else:
        leaks = {a: privleak(aucs[a], reference.mia_auc[a]) for a in aucs if a in reference.mia_auc}
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
        try:
            questions = perturbed_questions(forget_ds, config.seed)
        except ValueError as err:  # no perturbed_question / subject column, or a subject not in its question
            logger.warning("Skipping the perturbed-question probe: %s", err)
            details["skipped_probes"] = {"perturbed_questions": str(err)}
        else:
            answers = generate_answers(
                model,
                tokenizer,
                questions,
                config.max_new_tokens,
                config.batch_size,
                desc("perturbed questions"),
            )
            row["forget_perturbed_question_rouge"] = mean(
                rouge_l(p, a)["recall"] for p, a in zip(answers, forget_ds["answer"])
            )
    relearn = None
    if config.relearn_steps > 0:
        relearn = relearn_attack(
            model,
            tokenizer,
            forget_ds,
            config.relearn_steps,
            config.relearn_learning_rate,
            config.relearn_batch_size,
            config.seed,
            config.batch_size,
        )
        gold = relearn if reference is None else reference.relearn
        details["relearn"] = {**relearn, **({f"retrained_{k}": v for k, v in gold.items()} if gold else {})}
    row["relearn_recovery"] = None if relearn is None else relearn["recovery"]
    row["eval_seconds"] = time.perf_counter() - start
    row["details"] = details
    return row, Reference(own_ratios, aucs, relearn)
