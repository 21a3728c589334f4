"""How rows become tokens: the QA prompt template, answer-only labels, and packing of raw text.

QA rows are rendered as ``Question: {question}\\nAnswer: {answer}`` — or with the tokenizer's chat template
when it has one — and only the answer tokens (plus the end-of-sequence token) carry labels; prompt positions
are ``-100``. The prompt and the answer are tokenized separately and concatenated, so the label boundary is
exact whatever the tokenizer merges across it.
"""

from __future__ import annotations

from collections.abc import Iterable

IGNORE_INDEX = -100
QA_PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


def format_prompt(tokenizer, question: str) -> str:
    """The text the model sees before the answer."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    return QA_PROMPT_TEMPLATE.format(question=question)


def answer_text(tokenizer, answer: str) -> str:
    """The answer as it follows the prompt (a leading space after the plain template's ``Answer:``)."""
    return answer if getattr(tokenizer, "chat_template", None) else " " + answer


def encode_prompt(tokenizer, question: str) -> list[int]:
    """Token ids of the prompt, with the tokenizer's BOS when it uses one (and the chat template adds none)."""
    return encode_text(tokenizer, format_prompt(tokenizer, question))


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of an already formatted prompt, led by the tokenizer's BOS when it has one (added once)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def tokenize_qa(tokenizer, question: str, answer: str, max_length: int = 256) -> dict[str, list[int]]:
    """Token ids, attention mask and answer-only labels for one QA pair.

    Raises:
        ValueError: the prompt alone fills ``max_length``, leaving no answer token to learn or score.
    """
    prompt_ids = encode_prompt(tokenizer, question)
    answer_ids = tokenizer(answer_text(tokenizer, answer), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        raise ValueError(
            f"The prompt of question {question[:60]!r}... is {len(prompt_ids)} tokens, which fills "
            f"max_length={max_length} and leaves no answer token; raise max_length or shorten the question."
        )
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def qa_as_text(tokenizer, question: str, answer: str) -> str:
    """A QA pair as one training string (prompt + answer), for packed language-model training."""
    return format_prompt(tokenizer, question) + answer_text(tokenizer, answer)


def framed_ids(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` framed by the tokenizer's BOS and EOS (where it has them)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return bos + ids + eos


def pack_texts(tokenizer, texts: Iterable[str], block_size: int = 128) -> dict[str, list[list[int]]]:
    """Tokenize ``texts`` (each framed by BOS/EOS), concatenate them and cut fixed ``block_size`` blocks.

    The tail that does not fill a block is padded into a last, shorter block rather than dropped, so no
    document is silently lost; every token is labelled.
    """
    stream = [t for text in texts for t in framed_ids(tokenizer, text)]
    blocks = [stream[i : i + block_size] for i in range(0, len(stream), block_size)]
    return {
        "input_ids": blocks,
        "attention_mask": [[1] * len(b) for b in blocks],
        "labels": [list(b) for b in blocks],
    }
