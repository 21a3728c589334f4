"""Robustness probes: does the forgotten knowledge come back under a small change of the question, or after a
few steps of fine-tuning?

- paraphrased questions: the forget QA asked with ``paraphrased_question`` (never trained on);
- perturbed questions: the subject's name garbled (TOFU's ``perturbed_question`` when present, else
  :func:`perturb_subject`), which an unlearned model that only blocks the exact wording still answers;
- relearning attack: fine-tune a copy of the model for a few steps on half of the forget set and measure how
  much of the *other* half comes back, compared with the same attack on the retrained model.
"""

from __future__ import annotations

import copy
import random

import torch
from datasets import Dataset

from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.formats import tokenize_qa
from hf_unlearn.evaluation.metrics import normalised_prob
from hf_unlearn.evaluation.qa import score_answers


def perturb_subject(question: str, subject: str, seed: int = 0) -> str:
    """``question`` with every occurrence of ``subject`` replaced by a garbled copy (the letters inside each
    word shuffled, first and last letters kept), as TOFU's ``perturbed_question`` garbles its subject.

    Raises:
        ValueError: ``subject`` does not occur in ``question``.
    """
    if not subject or subject not in question:
        raise ValueError(
            f"Subject {subject!r} does not occur in question {question!r}; a perturbed question needs the "
            "subject spelled as in the question (or give the rows a 'perturbed_question' column)."
        )
    rng = random.Random(f"{seed}:{subject}")

    def garble(word: str) -> str:
        if len(word) <= 3:
            return word[::-1]
        inner = list(word[1:-1])
        for _ in range(10):  # a shuffle that changes the word, when one exists
            rng.shuffle(inner)
            if "".join(inner) != word[1:-1]:
                break
        return word[0] + "".join(inner) + word[-1]

    return question.replace(subject, " ".join(garble(w) for w in subject.split()))


def perturbed_questions(ds: Dataset, seed: int = 0) -> list[str]:
    """TOFU's ``perturbed_question`` column when present, else :func:`perturb_subject` on ``subject``.

    Raises:
        ValueError: neither ``perturbed_question`` nor ``subject`` is a column.
    """
    if "perturbed_question" in ds.column_names:
        return list(ds["perturbed_question"])
    if "subject" not in ds.column_names:
        raise ValueError(
            f"Perturbed-question probes need a 'perturbed_question' or a 'subject' column; got {ds.column_names}."
        )
    return [perturb_subject(q, s, seed) for q, s in zip(ds["question"], ds["subject"])]


def relearn_split(ds: Dataset) -> tuple[Dataset, Dataset]:
    """Interleaved halves of ``ds`` (even rows to relearn on, odd rows to measure), so both halves cover the
    same subjects and kinds of fact."""
    return ds.select(range(0, len(ds), 2)), ds.select(range(1, len(ds), 2))


def relearn_attack(
    model,
    tokenizer,
    forget: Dataset,
    steps: int = 10,
    learning_rate: float = 1e-3,
    batch_size: int = 16,
    seed: int = 0,
    eval_batch_size: int = 64,
) -> dict[str, float]:
    """Fine-tune a copy of ``model`` for ``steps`` AdamW steps on the even rows of ``forget`` (answer-only
    loss) and score teacher-forced exact match on the odd rows before and after; ``model`` is left unchanged.

    Returns:
        ``before``, ``after`` (exact match on the measured half) and ``recovery = after - before``; the same for
        the length-normalised answer probability (``prob_before``, ``prob_after``, ``prob_recovery``), which
        still moves where long answers are never matched exactly (TOFU).

    Raises:
        ValueError: ``forget`` has fewer than 2 rows or ``steps`` < 1.
    """
    if len(forget) < 2 or steps < 1:
        raise ValueError(
            f"A relearning attack needs >= 2 forget rows and >= 1 step; got {len(forget)} rows, {steps} steps."
        )
    train, held = relearn_split(forget)

    def held_scores(m) -> tuple[float, float]:
        scores = score_answers(m, tokenizer, held["question"], held["answer"], eval_batch_size)
        return scores["exact_match"].mean().item(), normalised_prob(
            scores["log_prob"], scores["n_tokens"]
        ).mean()

    before, prob_before = held_scores(model)
    attacked = copy.deepcopy(model)  # once per attack, so the evaluated model is never modified
    attacked.train()
    params = [p for p in attacked.parameters() if p.requires_grad]  # LoRA: the adapters only
    if not params:  # a frozen copy: relearn every floating-point weight
        params = [p.requires_grad_() for p in attacked.parameters() if p.is_floating_point()]
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    rows = [tokenize_qa(tokenizer, q, a) for q, a in zip(train["question"], train["answer"])]
    collate = PaddingCollator(tokenizer.pad_token_id)
    device = next(attacked.parameters()).device
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    with torch.enable_grad():
        for step in range(steps):
            picks = [order[(step * batch_size + i) % len(order)] for i in range(min(batch_size, len(order)))]
            batch = {k: v.to(device) for k, v in collate([rows[i] for i in picks]).items()}
            loss = attacked(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    after, prob_after = held_scores(attacked)
    return {
        "before": before,
        "after": after,
        "recovery": after - before,
        "prob_before": float(prob_before),
        "prob_after": float(prob_after),
        "prob_recovery": float(prob_after - prob_before),
    }
