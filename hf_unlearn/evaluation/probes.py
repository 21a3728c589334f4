"""Robustness probes: does the forgotten knowledge come back under a small change of the question, or after a
few steps of fine-tuning?

- paraphrased questions: the forget QA asked with ``paraphrased_question`` (never trained on);
- perturbed questions: the subject's name garbled (TOFU's ``perturbed_question`` when present, else
  :func:`perturb_subject`), which an unlearned model that only blocks the exact wording still answers;
- relearning attack: fine-tune a copy of the model for a few steps on half of the forget set and measure how
  much of the *other* half comes back (exact match, answer probability, ROUGE), compared with the same attack on
  held-out people (the gold-free control) and on the retrained model;
- quantization attack (Zhang et al., ICLR 2025): reload the weights in 8-bit and 4-bit (bitsandbytes) and
  re-measure the forget set; quantization can undo an unlearning update that is smaller than its rounding;
- mapping attack (in the spirit of UMA, "Verifying Robust Unlearning", 2025): a small, bounded perturbation of the
  question's token embeddings, optimised per question to bring the forgotten answer back; the same attack on the
  retrained model, or on held-out people, is the chance level.

The attacks that change or reload weights act on the *weights*, as an attacker holding them would: an ECO
``GuardedModel`` is unwrapped (its ``unguarded`` model) first.
"""

from __future__ import annotations

import copy
import logging
import random
import tempfile
from collections import defaultdict

import torch
from datasets import Dataset

from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.formats import IGNORE_INDEX, tokenize_qa
from hf_unlearn.evaluation.metrics import mean, normalised_prob, rouge_l
from hf_unlearn.evaluation.qa import answer_scores, generate_answers, score_answers

QUANT_BITS = (8, 4)


def weights_of(model):
    """The model an attacker holding the weights runs: an ECO ``GuardedModel``'s wrapped model, else ``model``."""
    return getattr(model, "unguarded", model)


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
    max_new_tokens: int = 32,
) -> dict[str, float]:
    """Fine-tune a copy of the weights of ``model`` (a guard is unwrapped, see :func:`weights_of`) for ``steps``
    AdamW steps on the even rows of ``forget`` (answer-only loss) and score the odd rows before and after;
    ``model`` is left unchanged. Pass held-out people's rows as ``forget`` for the control attack.

    Returns:
        ``before``, ``after`` (teacher-forced exact match on the measured half) and ``recovery = after -
        before``; the same for the length-normalised answer probability (``prob_*``) and the ROUGE-L recall of
        greedy answers (``rouge_*``), which still move where long answers are never matched exactly (TOFU).

    Raises:
        ValueError: ``forget`` has fewer than 2 rows or ``steps`` < 1.
    """
    if len(forget) < 2 or steps < 1:
        raise ValueError(
            f"A relearning attack needs >= 2 forget rows and >= 1 step; got {len(forget)} rows, {steps} steps."
        )
    model = weights_of(model)
    train, held = relearn_split(forget)

    def held_scores(m) -> dict[str, float]:
        scores = score_answers(m, tokenizer, held["question"], held["answer"], eval_batch_size)
        answers = generate_answers(m, tokenizer, held["question"], max_new_tokens, eval_batch_size)
        return {
            "": scores["exact_match"].mean().item(),
            "prob_": float(normalised_prob(scores["log_prob"], scores["n_tokens"]).mean()),
            "rouge_": mean(rouge_l(p, a)["recall"] for p, a in zip(answers, held["answer"])),
        }

    before = held_scores(model)
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
    after = held_scores(attacked)
    out = {}
    for prefix in before:
        out |= {
            f"{prefix}before": before[prefix],
            f"{prefix}after": after[prefix],
            f"{prefix}recovery": after[prefix] - before[prefix],
        }
    return out


def quantized_copy(model, bits: int):
    """The weights of ``model`` (a guard unwrapped; LoRA adapters merged) reloaded with bitsandbytes in
    ``bits`` = 8 (LLM.int8) or 4 (NF4, float32 compute); works on CPU.

    Raises:
        ValueError: ``bits`` is not 8 or 4.
        TypeError: ``model`` is not a transformers / peft model (nothing to save and reload).
        ImportError: bitsandbytes is not installed (the ``quant`` extra).
    """
    if bits not in QUANT_BITS:
        raise ValueError(
            f"bits={bits}: the quantization attack reloads in 8 or 4 bits; pass one of {QUANT_BITS}."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ImportError(
            'The quantization attack needs bitsandbytes: pip install "hf-unlearn[quant]".'
        ) from err
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = weights_of(model)
    if not hasattr(model, "save_pretrained"):
        raise TypeError(
            f"The quantization attack saves and reloads the weights; a {type(model).__name__} has no "
            "save_pretrained. Pass a transformers (or peft) model."
        )
    if hasattr(model, "merge_and_unload"):  # a peft model: quantize what it computes
        model = copy.deepcopy(model).merge_and_unload()
    config = (
        BitsAndBytesConfig(load_in_8bit=True)
        if bits == 8
        else BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=config, dtype=torch.float32)


def quantization_attack(
    model,
    tokenizer,
    forget: Dataset,
    bits: tuple[int, ...] = QUANT_BITS,
    batch_size: int = 64,
    max_new_tokens: int = 32,
) -> dict[str, float]:
    """Forget-set exact match and ROUGE-L recall of the weights reloaded in each of ``bits``:
    ``quant{b}_forget_em`` and ``quant{b}_forget_rouge`` (compare with the unquantized ``forget_em`` /
    ``forget_rouge``: a rise means quantization restored forgotten answers)."""
    out = {}
    bnb_logger = logging.getLogger("bitsandbytes")  # int8 matmuls log a float16-cast notice on every call
    level = bnb_logger.level
    bnb_logger.setLevel(logging.ERROR)
    try:
        for b in bits:
            out |= _quantized_forget_scores(model, tokenizer, forget, b, batch_size, max_new_tokens)
    finally:
        bnb_logger.setLevel(level)
    return out


def _quantized_forget_scores(model, tokenizer, forget, bits, batch_size, max_new_tokens) -> dict[str, float]:
    quantized = quantized_copy(model, bits)
    em = score_answers(quantized, tokenizer, forget["question"], forget["answer"], batch_size)["exact_match"]
    answers = generate_answers(quantized, tokenizer, forget["question"], max_new_tokens, batch_size)
    return {
        f"quant{bits}_forget_em": em.mean().item(),
        f"quant{bits}_forget_rouge": mean(rouge_l(p, a)["recall"] for p, a in zip(answers, forget["answer"])),
    }


def mapping_attack(
    model, tokenizer, rows: Dataset, budget: float = 0.1, steps: int = 20, batch_size: int = 64
) -> dict[str, float]:
    """Per-question projected gradient ascent on the prompt's token embeddings of the weights of ``model`` (a
    guard is unwrapped, see :func:`weights_of`): each prompt position gets a perturbation ``delta`` with
    ``||delta||_2 <= budget x`` the mean norm of the input-embedding rows, moved ``steps`` times by a normalised
    gradient step of ``2.5 x radius / steps`` (Madry et al.'s step size) towards a higher teacher-forced
    log-probability of the row's answer, then projected back onto the ball. Answer tokens are never perturbed.
    ``model`` is left unchanged.

    Returns:
        ``em_before`` / ``em_after`` (teacher-forced exact match without / with the perturbation), ``recovery``
        (their difference), ``prob_before`` / ``prob_after`` / ``prob_recovery`` (length-normalised answer
        probability) and ``radius`` (the budget in embedding units).

    Raises:
        ValueError: ``rows`` is empty, ``budget`` <= 0 or ``steps`` < 1.
    """
    if len(rows) == 0 or budget <= 0 or steps < 1:
        raise ValueError(
            f"A mapping attack needs >= 1 row, budget > 0 and steps >= 1; got {len(rows)} rows, "
            f"budget {budget}, {steps} steps."
        )
    model = weights_of(model)
    was_training = model.training
    model.eval()
    embed = model.get_input_embeddings()
    radius = float(budget * embed.weight.detach().float().norm(dim=-1).mean())
    collate = PaddingCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    qa_rows = [tokenize_qa(tokenizer, q, a) for q, a in zip(rows["question"], rows["answer"])]
    scores: dict[str, list[torch.Tensor]] = defaultdict(list)
    for start in range(0, len(qa_rows), batch_size):
        batch = {k: v.to(device) for k, v in collate(qa_rows[start : start + batch_size]).items()}
        for key, value in _mapped_batch(model, embed, batch, radius, steps).items():
            scores[key].append(value.cpu())
    model.train(was_training)
    got = {k: torch.cat(v) for k, v in scores.items()}
    out = {"radius": radius}
    for when in ("before", "after"):
        out[f"em_{when}"] = got[f"em_{when}"].mean().item()
        out[f"prob_{when}"] = float(normalised_prob(got[f"lp_{when}"], got["n"]).mean())
    out["recovery"] = out["em_after"] - out["em_before"]
    out["prob_recovery"] = out["prob_after"] - out["prob_before"]
    return out


def _answer_scores(model, inputs_embeds, attention_mask, labels):
    """:func:`~hf_unlearn.evaluation.qa.answer_scores` of the model run on embedded inputs."""
    return answer_scores(model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits, labels)


def _mapped_batch(model, embed, batch, radius: float, steps: int) -> dict[str, torch.Tensor]:
    """:func:`mapping_attack` on one padded batch: the scores before and after ``steps`` projected steps."""
    labels, attention = batch["labels"], batch["attention_mask"]
    base = embed(batch["input_ids"]).detach()
    prompt = ((labels == IGNORE_INDEX) & attention.bool()).unsqueeze(-1).to(base.dtype)  # (B, T, 1)
    delta = torch.zeros_like(base, requires_grad=True)
    with torch.no_grad():
        lp_before, em_before, n = _answer_scores(model, base, attention, labels)
    for _ in range(steps):
        with torch.enable_grad():
            log_prob = _answer_scores(model, base + delta * prompt, attention, labels)[0]
            (grad,) = torch.autograd.grad(log_prob.sum(), delta)
        with torch.no_grad():
            delta += (2.5 * radius / steps) * grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            delta *= (radius / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    with torch.no_grad():
        lp_after, em_after, _ = _answer_scores(model, base + delta * prompt, attention, labels)
    return {
        "em_before": em_before,
        "em_after": em_after,
        "lp_before": lp_before,
        "lp_after": lp_after,
        "n": n,
    }
