"""Tokenized datasets and the padding collator shared by training, unlearning and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset

from hf_unlearn.data.formats import IGNORE_INDEX, framed_ids, pack_texts, qa_as_text, tokenize_qa
from hf_unlearn.data.loading import row_kind


def tokenize_dataset(ds: Dataset, tokenizer, max_length: int = 256, origin: str = "dataset") -> Dataset:
    """Tokenize QA rows (answer-only labels) or text rows (every token labelled, truncated to ``max_length``).

    The result has ``input_ids``, ``attention_mask``, ``labels`` and keeps ``subject`` when present.
    """
    kind = row_kind(ds, origin)
    keep = [c for c in ("subject",) if c in ds.column_names]
    drop = [c for c in ds.column_names if c not in keep]
    return ds.map(
        lambda row: encode_row(row, kind, tokenizer, max_length),
        remove_columns=drop,
        desc=f"Tokenizing {origin}",
    )


def encode_row(row: dict, kind: str, tokenizer, max_length: int = 256) -> dict[str, list[int]]:
    """One row as :func:`tokenize_dataset` tokenizes it: a QA pair (``kind="qa"``, answer-only labels) or a text
    (``"text"``: BOS + tokens, every token labelled, truncated to ``max_length``)."""
    if kind == "qa":
        return tokenize_qa(tokenizer, row["question"], row["answer"], max_length)
    ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    ids = ids[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}


def lm_dataset(
    tokenizer, qa: list[Dataset], text: list[Dataset], max_length: int = 256, packing: bool = False
) -> Dataset:
    """A language-modelling dataset of QA pairs (rendered with the QA template) and raw texts.

    Every token is labelled. Without ``packing`` each document is one example (BOS + tokens + EOS, truncated
    to ``max_length``); with ``packing`` all documents are concatenated and cut into ``max_length`` blocks.
    Packing wastes no padding, but fixed blocks let a small model memorise each block's neighbouring
    documents instead of the facts, so it suits large corpora rather than fact memorisation.
    """
    docs = [qa_as_text(tokenizer, q, a) for ds in qa for q, a in zip(ds["question"], ds["answer"])]
    docs += [t for ds in text for t in ds["text"]]
    if packing:
        return Dataset.from_dict(pack_texts(tokenizer, docs, max_length))
    rows = [framed_ids(tokenizer, doc)[:max_length] for doc in docs]
    return Dataset.from_dict(
        {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows], "labels": rows}
    )


@dataclass
class PaddingCollator:
    """Right-pads ``input_ids`` (with ``pad_token_id``), ``attention_mask`` (0) and ``labels`` (-100).

    Extra tensor-like fields with one value per example (e.g. cached reference log-probs) are stacked.
    """

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        pads = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        batch = {
            key: torch.tensor(
                [list(f[key]) + [value] * (width - len(f[key])) for f in features], dtype=torch.long
            )
            for key, value in pads.items()
        }
        for key in features[0]:
            if key not in pads and isinstance(features[0][key], (int, float)):
                batch[key] = torch.tensor([f[key] for f in features])
        return batch


@dataclass
class PairedPaddingCollator(PaddingCollator):
    """:class:`PaddingCollator` that also pads a second tokenization of each row, held in the columns
    ``<prefix>input_ids`` / ``<prefix>attention_mask`` / ``<prefix>labels`` (to their own width): IdkDPO's refusal
    (``chosen_``), the non-member target's renamed question (``target_``)."""

    prefix: str = "chosen_"

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)
        keys = ("input_ids", "attention_mask", "labels")
        if self.prefix + "input_ids" in features[0]:
            paired = super().__call__([{k: f[self.prefix + k] for k in keys} for f in features])
            batch.update({self.prefix + k: paired[k] for k in keys})
        return batch
