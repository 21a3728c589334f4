"""Batched, model-level scoring of QA rows: teacher-forced answer exact match and log-probs, greedy answers."""

from __future__ import annotations

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.formats import IGNORE_INDEX, encode_prompt, framed_ids, tokenize_qa
from hf_unlearn.evaluation.metrics import mean, rouge_l
from hf_unlearn.evaluation.mia import next_token_moments
from hf_unlearn.losses import token_log_probs


def answer_scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Teacher-forced ``(summed answer log-prob, exact match, answer tokens)``, each ``(B,)``, of ``(B, T, V)``
    logits against ``labels`` (``-100`` where a position is not an answer token); exact match is 1.0 where the
    argmax prediction equals every answer token."""
    logps, mask = token_log_probs(logits, labels)  # (B, T-1)
    hits = (logits[:, :-1].argmax(-1) == labels[:, 1:]) | ~mask
    return logps.sum(-1), hits.all(-1).float(), mask.sum(-1)


@torch.no_grad()
def score_answers(
    model, tokenizer, questions: list[str], answers: list[str], batch_size: int = 64, desc: str | None = None
) -> dict[str, torch.Tensor]:
    """Teacher-forced scores of ``answers`` given ``questions``.

    Returns:
        ``exact_match`` ``(N,)`` 1.0 where the argmax prediction equals every answer token (EOS included),
        ``log_prob`` ``(N,)`` summed answer log-probability, ``n_tokens`` ``(N,)`` answer lengths.

    A model with ``accepts_prompt_lengths = True`` (e.g. an ECO ``GuardedModel``, which corrupts prompts only)
    also receives ``prompt_lengths`` ``(B,)``, the number of prompt tokens at the start of each row.
    """
    was_training = model.training
    model.eval()
    collate = PaddingCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    em, logp, count = [], [], []
    rows = [tokenize_qa(tokenizer, q, a) for q, a in zip(questions, answers)]
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, disable=desc is None, leave=False):
        batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_size]).items()}
        extra = {}
        if getattr(model, "accepts_prompt_lengths", False):
            extra["prompt_lengths"] = (batch["labels"] != IGNORE_INDEX).int().argmax(-1)  # first answer token
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra).logits
        for values, scores in zip((logp, em, count), answer_scores(logits, batch["labels"])):
            values.append(scores.cpu())
    model.train(was_training)
    return {"exact_match": torch.cat(em), "log_prob": torch.cat(logp), "n_tokens": torch.cat(count)}


def exact_match(model, tokenizer, ds: Dataset, batch_size: int = 64) -> float:
    """Fraction of QA rows whose whole answer is the model's teacher-forced argmax."""
    scores = score_answers(model, tokenizer, ds["question"], ds["answer"], batch_size)
    return scores["exact_match"].mean().item()


def generate_answers(
    model,
    tokenizer,
    questions: list[str],
    max_new_tokens: int = 24,
    batch_size: int = 64,
    desc: str | None = None,
) -> list[str]:
    """Greedy answers to ``questions`` (left-padded batches), decoded without special tokens and stripped."""
    prompts = [encode_prompt(tokenizer, q) for q in questions]
    return generate_continuations(model, tokenizer, prompts, max_new_tokens, batch_size, desc)


@torch.no_grad()
def generate_continuations(
    model,
    tokenizer,
    prefixes: list[list[int]],
    max_new_tokens: int = 24,
    batch_size: int = 64,
    desc: str | None = None,
) -> list[str]:
    """Greedy continuations of token-id ``prefixes`` (left-padded batches), decoded without special tokens and
    stripped."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    for start in tqdm(range(0, len(prefixes), batch_size), desc=desc, disable=desc is None, leave=False):
        prompts = prefixes[start : start + batch_size]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor(
            [[tokenizer.pad_token_id] * (width - len(p)) + list(p) for p in prompts], device=device
        )
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        out += [t.strip() for t in tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)]
    model.train(was_training)
    return out


@torch.no_grad()
def text_token_scores(
    model,
    tokenizer,
    texts: list[str],
    prompt_lengths: list[int] | None = None,
    batch_size: int = 64,
    max_length: int = 256,
    desc: str | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Per-token scores of each text, framed as in training (BOS + text + EOS, truncated to ``max_length``), for
    membership-inference attacks: ``log_prob`` (the token's log-probability), ``mean`` and ``std`` (of the
    log-probs under the model's next-token distribution, for Min-K %++); one ``(n_i,)`` tensor per text each.

    ``prompt_lengths`` (tokens, BOS included) says how much of each framed text is a prompt; a model with
    ``accepts_prompt_lengths`` (an ECO ``GuardedModel``) corrupts that part only and never the scored rest.
    Default: 0 for every text (a raw text has no prompt, so a guard corrupts nothing of it).
    """
    was_training = model.training
    model.eval()
    collate = PaddingCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    rows = []
    for text in texts:
        ids = framed_ids(tokenizer, text)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids})
    lengths = torch.tensor(prompt_lengths if prompt_lengths is not None else [0] * len(rows))
    out: dict[str, list[torch.Tensor]] = {"log_prob": [], "mean": [], "std": []}
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, disable=desc is None, leave=False):
        batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_size]).items()}
        extra = {}
        if getattr(model, "accepts_prompt_lengths", False):
            extra["prompt_lengths"] = lengths[start : start + batch_size].to(device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra).logits
        logps, mask = token_log_probs(logits, batch["labels"])  # (B, T-1)
        means, stds = next_token_moments(logits[:, :-1].float().log_softmax(-1))  # (B, T-1) each
        for key, values in (("log_prob", logps), ("mean", means), ("std", stds)):
            out[key] += [v[m].cpu() for v, m in zip(values, mask)]
    model.train(was_training)
    return out


def qa_split_metrics(
    model, tokenizer, ds: Dataset, batch_size: int = 64, desc: str | None = None
) -> dict[str, float]:
    """``em`` (teacher-forced answer exact match) and ``rouge`` (mean ROUGE-L recall of greedy answers)."""
    em = (
        score_answers(model, tokenizer, ds["question"], ds["answer"], batch_size, desc)["exact_match"]
        .mean()
        .item()
    )
    predictions = generate_answers(model, tokenizer, ds["question"], batch_size=batch_size, desc=desc)
    rouge = mean(rouge_l(p, a)["recall"] for p, a in zip(predictions, ds["answer"]))
    return {"em": em, "rouge": rouge}
