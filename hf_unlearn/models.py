"""Tiny model kit for the embedded default, and the one loader every command uses.

``train_bpe_tokenizer`` trains a byte-level BPE tokenizer on a corpus; ``build_tiny_llama`` makes a small
Llama from config (2 heads of 32 dims, because vLLM's CPU attention needs head_dim >= 32). Both save as
ordinary Hugging Face directories that ``AutoModelForCausalLM.from_pretrained`` and vLLM load.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (GPT-2 style) with ``<s>``, ``</s>`` and ``<pad>`` special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=model_max_length,
        padding_side="right",
    )


def build_tiny_llama(
    tokenizer,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 256,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama sized for the tokenizer, with tied input/output embeddings.

    Raises:
        ValueError: ``hidden_size`` is not a multiple of ``num_attention_heads``.
    """
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"hidden_size={hidden_size} is not divisible by num_attention_heads={num_attention_heads}; "
            "pick heads so that hidden_size / heads is a whole number (>= 32 to serve with vLLM on CPU)."
        )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def check_vocab(model, tokenizer) -> None:
    """Raise a ``ValueError`` when the tokenizer can produce ids the model has no embedding for."""
    n_embed = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > n_embed:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model embeds only {n_embed}: they do not belong "
            "together. Load the tokenizer saved with this model, or call model.resize_token_embeddings(len(tokenizer))."
        )


def load_model_and_tokenizer(
    name_or_path: str | Path,
    tokenizer_name_or_path: str | Path | None = None,
    dtype: torch.dtype | str = "auto",
    **model_kwargs,
):
    """Load a causal LM and its tokenizer from a local directory, a Hub id or a packaged model
    (``packaged:smollm2-135m-instruct``, see :mod:`hf_unlearn.packaged`); give the tokenizer a pad token.

    Extra keyword arguments go to ``AutoModelForCausalLM.from_pretrained`` (e.g. ``quantization_config``).

    Raises:
        ValueError: the path does not exist and is not a Hub id, or the tokenizer and model disagree.
    """
    from hf_unlearn.packaged import resolve_model_source

    source = resolve_model_source(name_or_path)
    if not Path(source).exists() and source.count("/") != 1:
        raise ValueError(
            f"Model {source!r} is neither an existing directory, a Hub id ('org/name') nor a packaged model "
            "('packaged:smollm2-135m-instruct')."
        )
    tokenizer_source = resolve_model_source(tokenizer_name_or_path) if tokenizer_name_or_path else source
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **model_kwargs)
    check_vocab(model, tokenizer)
    return model, tokenizer
