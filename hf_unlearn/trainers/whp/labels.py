"""WHP's model side: the reinforced adapter, term mining by log-likelihood ratio, and the generic labels.

1. :func:`train_reinforced_adapter` fine-tunes a LoRA adapter on the forget data on top of the model being
   unlearned. With the adapter on, the model is the *reinforced* model; with it off, the *baseline* — one set
   of base weights, no copy.
2. :func:`mine_dictionary` scores candidate spans of the forget data by how much the reinforced model raised
   their log-likelihood over the baseline, keeps the subjects and the top spans as anchored terms, and maps
   each to a generic term of the same kind from the retain data.
3. :func:`generic_label_rows` translates every forget row with the dictionary, runs the baseline on the
   translated tokens and the reinforced model on the original tokens, combines their log-probabilities with
   :func:`hf_unlearn.losses.whp_generic_logits`, and maps the result back to the original tokens as hard
   (argmax) or sparse soft targets.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments, set_seed

from hf_unlearn.data.forget_retain import PaddingCollator, lm_dataset
from hf_unlearn.data.formats import IGNORE_INDEX, qa_as_text
from hf_unlearn.losses import token_log_probs, whp_generic_logits
from hf_unlearn.trainers.whp.terms import (
    MinedDictionary,
    Translation,
    generic_replacements,
    score_spans,
    select_terms,
    translate_rows,
    vocabulary_filters,
)

logger = logging.getLogger(__name__)
REINFORCED_ADAPTER = "reinforced"


def train_reinforced_adapter(
    model,
    tokenizer,
    qa_sets: list[Dataset],
    text_sets: list[Dataset],
    epochs: float = 3.0,
    learning_rate: float = 3e-3,
    lora_r: int = 8,
    batch_size: int = 16,
    max_length: int = 256,
    seed: int = 0,
    output_dir: str = "whp_reinforced",
):
    """Wrap ``model`` with a LoRA adapter (named ``"reinforced"``) trained on the forget data; return the
    ``PeftModel``. ``peft_model.unload()`` gives the untouched base model back afterwards.

    ``epochs=0`` trains nothing: LoRA starts as the identity, so the "reinforced" model equals the baseline
    (no log-likelihood ratio to mine, no ``alpha`` correction): WHP with the dictionary alone."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from hf_unlearn.trainers.utils import is_quantized, lora_config

    if is_quantized(model):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = lora_config(r=lora_r, alpha=2 * lora_r)
    set_seed(seed)  # the adapter's initialisation, so that the mined dictionary is reproducible
    peft_model = get_peft_model(model, config, adapter_name=REINFORCED_ADAPTER)
    if epochs > 0:
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=epochs,
            learning_rate=learning_rate,
            per_device_train_batch_size=batch_size,
            lr_scheduler_type="constant",
            save_strategy="no",
            report_to="none",
            logging_steps=1000,
            disable_tqdm=True,
            seed=seed,
            dataloader_pin_memory=False,
        )
        Trainer(
            model=peft_model,
            args=args,
            train_dataset=lm_dataset(tokenizer, qa_sets, text_sets, max_length),
            data_collator=PaddingCollator(tokenizer.pad_token_id),
        ).train()
    peft_model.eval()
    return peft_model


@contextlib.contextmanager
def baseline(peft_model):
    """The reinforced ``PeftModel`` with its adapter off: the baseline model."""
    with peft_model.disable_adapter():
        yield peft_model


def _padded(rows: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    feats = [{"input_ids": r, "attention_mask": [1] * len(r), "labels": r} for r in rows]
    return {k: v.to(device) for k, v in PaddingCollator(pad_id)(feats).items()}


@torch.no_grad()
def token_llr(peft_model, tokenizer, texts: list[str], batch_size: int = 64):
    """Per-token log-likelihood ratio ``log p_reinforced - log p_baseline`` of each text's tokens.

    Returns:
        ``(offsets, ratios)``: for each text, the character span and the ratio of each of its tokens.
    """
    device = next(peft_model.parameters()).device
    offsets, ratios = [], []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        enc = [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in chunk]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        batch = _padded([bos + e["input_ids"] for e in enc], tokenizer.pad_token_id, device)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        reinforced, _ = token_log_probs(peft_model(**inputs).logits, batch["labels"])  # (B, T-1)
        with baseline(peft_model):
            base, _ = token_log_probs(peft_model(**inputs).logits, batch["labels"])
        llr = (reinforced - base).cpu()
        for i, e in enumerate(enc):
            n = len(e["input_ids"])  # ratio index j scores input token j + 1
            ratios.append(llr[i, :n].tolist() if bos else [0.0] + llr[i, : n - 1].tolist())
            offsets.append(e["offset_mapping"])
    return offsets, ratios


def forget_texts(tokenizer, qa_sets: list[Dataset], text_sets: list[Dataset]) -> list[str]:
    """The forget data as plain strings: QA pairs in the QA template, then raw texts."""
    texts = [qa_as_text(tokenizer, q, a) for ds in qa_sets for q, a in zip(ds["question"], ds["answer"])]
    return texts + [t for ds in text_sets for t in ds["text"]]


def mine_dictionary(
    peft_model,
    tokenizer,
    forget_qa: list[Dataset],
    forget_text: list[Dataset],
    retain: Dataset,
    retain_text: Dataset | None = None,
    max_terms: int = 200,
    min_llr: float = 0.05,
    min_fraction: float = 0.25,
    max_words: int = 3,
    shared_ratio: float = 0.5,
    include_subjects: bool = True,
    seed: int = 0,
) -> MinedDictionary:
    """Anchored terms of the forget data and their generic replacements (see the module docstring).

    Candidates are the word n-grams of the forget rows (questions, answers and texts) that do not begin or end
    with a stop word and are not common in the retain rows (:func:`~hf_unlearn.trainers.whp.terms.
    vocabulary_filters`); they are ranked by how much the reinforced model raised their log-likelihood. No
    ``subject`` or ``fact`` column is needed; with them, subjects are always terms and fact answers get retain
    answers of the same fact.

    Args:
        max_terms: spans kept besides the subjects, best log-likelihood ratio first.
        min_llr: minimum mean summed log-likelihood ratio (nats) of a kept span.
        min_fraction: minimum score of a kept span relative to the best span of its kind.
        shared_ratio: a word whose rate among retain rows is at least this times its rate among forget rows is
            shared vocabulary, not an anchored term.
        include_subjects: always include the forget rows' ``subject`` values.
    """
    texts = forget_texts(tokenizer, forget_qa, forget_text)
    retain_texts = forget_texts(tokenizer, [retain], [retain_text] if retain_text is not None else [])
    subjects = []
    if include_subjects:
        subjects = sorted(
            {s for ds in forget_qa + forget_text if "subject" in ds.column_names for s in ds["subject"]}
        )
    spans = {"max_words": max_words, **vocabulary_filters(texts, retain_texts, shared_ratio)}
    offsets, ratios = token_llr(peft_model, tokenizer, texts)
    scores = score_spans(texts, offsets, ratios, always=frozenset(subjects), **spans)
    terms = select_terms(scores, max_terms, min_llr, subjects, min_fraction)
    forget_rows = Dataset.from_dict(
        {
            col: [v for ds in forget_qa for v in ds[col]]
            for col in ("answer", "subject", "fact")
            if all(col in ds.column_names for ds in forget_qa) and forget_qa
        }
        or {"answer": []}
    )
    dictionary, kinds = generic_replacements(
        tokenizer, terms, forget_rows, retain, texts, retain_texts, seed, **spans
    )
    return MinedDictionary(dictionary, kinds, {t: scores.get(t, 0.0) for t in terms})


@torch.no_grad()
def generic_label_rows(
    peft_model,
    tokenizer,
    translations: list[Translation],
    alpha: float = 5.0,
    target: str = "argmax",
    top_k: int = 8,
    batch_size: int = 64,
) -> Dataset:
    """Training rows whose targets are WHP's generic predictions, aligned to the original tokens.

    For each original labelled position ``t`` whose token has a translated counterpart ``s = source[t]``, the
    baseline's log-probs at translated position ``s - 1`` (next-token prediction in the translated context)
    and the reinforced model's log-probs at original position ``t - 1`` give
    ``v = whp_generic_logits(base, reinforced, alpha)``. Both are log-softmax normalised so that the two
    contexts share a scale. ``target="argmax"`` keeps ``argmax v`` (probability 1); ``"soft"`` keeps the
    ``top_k`` tokens of ``softmax(v)``, renormalised.

    Returns:
        A dataset with ``input_ids``, ``attention_mask``, ``labels`` (the argmax generic token, -100 where
        not trained), ``target_ids`` and ``target_probs`` (``T x K`` each, probabilities 0 where not trained).
    """
    if target not in ("argmax", "soft"):
        raise ValueError(f"target={target!r} is not supported; use 'argmax' (hard labels) or 'soft' (top-k).")
    k = 1 if target == "argmax" else top_k
    device = next(peft_model.parameters()).device
    rows = {"input_ids": [], "attention_mask": [], "labels": [], "target_ids": [], "target_probs": []}
    for start in range(0, len(translations), batch_size):
        chunk = translations[start : start + batch_size]
        orig = _padded([t.original_ids for t in chunk], tokenizer.pad_token_id, device)
        trans = _padded([t.translated_ids for t in chunk], tokenizer.pad_token_id, device)
        reinforced = peft_model(input_ids=orig["input_ids"], attention_mask=orig["attention_mask"]).logits
        with baseline(peft_model):
            base = peft_model(input_ids=trans["input_ids"], attention_mask=trans["attention_mask"]).logits
        reinforced, base = reinforced.float().log_softmax(-1), base.float().log_softmax(-1)  # (B, T, V)
        for i, tr in enumerate(chunk):
            n = len(tr.original_ids)
            positions = [t for t in range(1, n) if tr.labels[t] != IGNORE_INDEX and tr.source[t] >= 1]
            ids = [[0] * k for _ in range(n)]
            probs = [[0.0] * k for _ in range(n)]
            labels = [IGNORE_INDEX] * n
            if positions:
                src = torch.tensor([tr.source[t] - 1 for t in positions], device=device)
                dst = torch.tensor([t - 1 for t in positions], device=device)
                v = whp_generic_logits(base[i, src], reinforced[i, dst], alpha)  # (P, V)
                top_p, top_i = v.softmax(-1).topk(k, dim=-1)  # (P, K)
                top_p = top_p / top_p.sum(-1, keepdim=True)
                for j, t in enumerate(positions):
                    ids[t], probs[t], labels[t] = top_i[j].tolist(), top_p[j].tolist(), int(top_i[j, 0])
            rows["input_ids"].append(tr.original_ids)
            rows["attention_mask"].append([1] * n)
            rows["labels"].append(labels)
            rows["target_ids"].append(ids)
            rows["target_probs"].append(probs)
    return Dataset.from_dict(rows)


def build_generic_dataset(
    peft_model,
    tokenizer,
    forget_qa: list[Dataset],
    forget_text: list[Dataset],
    dictionary: dict[str, str],
    **kwargs,
) -> Dataset:
    """Translate every forget row with ``dictionary`` and return :func:`generic_label_rows` for them."""
    max_length = kwargs.pop("max_length", 256)
    translations = [
        tr for ds in forget_qa + forget_text for tr in translate_rows(tokenizer, ds, dictionary, max_length)
    ]
    return generic_label_rows(peft_model, tokenizer, translations, **kwargs)
