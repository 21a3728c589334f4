"""Model plumbing shared by every unlearning trainer: quantized loading, LoRA, adapter-disabled references, saving.

These helpers are a stable API (the WHP and DP2 trainers build on them):

- :func:`quantization_config` / :func:`load_unlearning_model`: load a causal LM in full precision, 8-bit or
  4-bit NF4 (bitsandbytes; works on CPU), with its tokenizer and a vocabulary check.
- :func:`lora_config` / :func:`apply_peft`: wrap a model with LoRA adapters (QLoRA when it is quantized).
- :func:`disabled_adapter`: the peft model with its adapters switched off, i.e. the reference model for free.
- :func:`save_unlearned`: save adapters, or merge them into a full-precision copy of the base (a state dict
  gathered from a sharded model is re-tied first, :func:`retie_weights`).
- :func:`rank0_only_weights` / :func:`weights_on_every_rank`: FSDP's rank-0-only loading, and a way round it for
  models that are not sharded (the frozen reference).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)
QUANT_EXTRA = 'pip install "hf-unlearn[quant]"'


def quantization_config(
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    quant_type: str = "nf4",
    compute_dtype: str = "float32",
):
    """A ``BitsAndBytesConfig`` for 4-bit or 8-bit loading, or ``None`` when neither is asked for.

    Raises:
        ValueError: both 4-bit and 8-bit are asked for.
        ImportError: bitsandbytes is not installed (names the ``quant`` extra).
    """
    if load_in_4bit and load_in_8bit:
        raise ValueError(
            "Got load_in_4bit=True and load_in_8bit=True; pick one quantization (4-bit NF4 is the QLoRA default)."
        )
    if not (load_in_4bit or load_in_8bit):
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ImportError(f"4-bit/8-bit loading needs bitsandbytes: {QUANT_EXTRA}") from err
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )


def load_unlearning_model(
    name_or_path: str | Path,
    tokenizer_name_or_path: str | Path | None = None,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    bnb_4bit_quant_type: str = "nf4",
    bnb_4bit_compute_dtype: str = "float32",
    dtype: torch.dtype | str = "auto",
):
    """Load ``(model, tokenizer)``; quantized with bitsandbytes when ``load_in_4bit``/``load_in_8bit``.

    Raises:
        ValueError: the tokenizer and model disagree (see :func:`hf_unlearn.models.check_vocab`), or both
            quantizations are asked for.
        ImportError: quantization without bitsandbytes.
    """
    from hf_unlearn.models import load_model_and_tokenizer

    quant = quantization_config(load_in_4bit, load_in_8bit, bnb_4bit_quant_type, bnb_4bit_compute_dtype)
    kwargs = {"quantization_config": quant} if quant is not None else {}
    if quant is not None and dtype == "auto":
        dtype = getattr(torch, bnb_4bit_compute_dtype)
    return load_model_and_tokenizer(name_or_path, tokenizer_name_or_path, dtype=dtype, **kwargs)


def is_quantized(model) -> bool:
    """Whether the model's weights were loaded in 4-bit or 8-bit (and so cannot be trained directly)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def is_peft_model(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def lora_config(
    r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: str | list[str] = "all-linear"
):
    """A causal-LM ``peft.LoraConfig`` (``target_modules="all-linear"``: every linear layer but the LM head)."""
    from peft import LoraConfig

    if r <= 0:
        raise ValueError(f"LoRA rank must be positive, got r={r}; use r=0 only to mean 'no LoRA' in configs.")
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM"
    )


def apply_peft(model, peft_config, gradient_checkpointing: bool = False):
    """Wrap ``model`` with adapters from ``peft_config``; only the adapters are trainable afterwards.

    A quantized model goes through ``peft.prepare_model_for_kbit_training`` first (QLoRA). A model that is
    already a ``PeftModel`` is returned unchanged.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    if is_peft_model(model):
        return model
    if is_quantized(model):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return get_peft_model(model, peft_config)


@contextlib.contextmanager
def disabled_adapter(model):
    """Context manager: ``model`` (a ``PeftModel``, possibly wrapped by DDP) with its adapters disabled.

    Inside it the model computes exactly its base model's outputs, which makes it the reference model of
    NPO / KL regularisation without a second copy of the weights.
    """
    inner = getattr(model, "module", model)  # DDP / DataParallel wrappers keep the model in .module
    if not is_peft_model(inner):
        raise TypeError(
            f"disabled_adapter needs a peft PeftModel, got {type(inner).__name__}; pass a ref_model instead."
        )
    with inner.disable_adapter():
        yield inner


RANK0_LOADING_ENV = "FSDP_CPU_RAM_EFFICIENT_LOADING"


def rank0_only_weights() -> bool:
    """Whether ``from_pretrained`` gives real weights to rank 0 only: accelerate's FSDP with
    ``fsdp_cpu_ram_efficient_loading`` in a multi-process run (the other ranks get zeros, and rank 0's weights
    reach them when the model is sharded)."""
    from transformers.integrations import is_fsdp_enabled

    return is_fsdp_enabled() and torch.distributed.get_world_size() > 1


@contextlib.contextmanager
def weights_on_every_rank():
    """Context manager: ``from_pretrained`` inside it reads the real weights on every rank, also under FSDP's
    rank-0-only loading (see :func:`rank0_only_weights`). For models that are not sharded, such as the frozen
    reference model, which would otherwise keep zero weights on every rank but 0."""
    before = os.environ.get(RANK0_LOADING_ENV)
    os.environ[RANK0_LOADING_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[RANK0_LOADING_ENV]
        else:
            os.environ[RANK0_LOADING_ENV] = before


def save_unlearned(
    model,
    tokenizer,
    output_dir: str | Path,
    merge: bool = False,
    base_name_or_path: str | Path | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save the unlearned model and its tokenizer into ``output_dir`` and return it.

    A ``PeftModel`` saves its adapters (a few MB) unless ``merge``: then the adapters are merged into the base
    weights. A quantized base cannot hold merged weights exactly, so it is reloaded in full precision from
    ``base_name_or_path`` (default: the base model's ``name_or_path``) and the trained adapters are merged
    into that copy. ``state_dict`` is the model's full state gathered from a sharded (FSDP) model; it is saved
    in place of the model's own, sharded, parameters.

    Raises:
        ValueError: ``merge`` with a gathered ``state_dict`` (a sharded model cannot be merged in place).
    """
    output_dir = Path(output_dir)
    if merge and state_dict is not None and is_peft_model(model):
        raise ValueError(
            "merge=True on a sharded (FSDP) model: its adapters cannot be merged in place. Save the adapters "
            "(merge_adapters=False) and merge them afterwards on one process with "
            "PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    if merge and is_peft_model(model):
        if is_quantized(model.get_base_model()):
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            base_path = str(base_name_or_path or model.get_base_model().name_or_path)
            adapter_dir = output_dir / "adapter"
            model.save_pretrained(adapter_dir)
            base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
            model = PeftModel.from_pretrained(base, adapter_dir)
        model = model.merge_and_unload()
    if state_dict is not None:
        state_dict = retie_weights(model, state_dict)
    model.save_pretrained(output_dir, state_dict=state_dict)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def retie_weights(model, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with each weight ``model`` ties (``lm_head.weight`` to ``model.embed_tokens.weight``) pointing
    at its source tensor again.

    A state dict gathered from a sharded model holds tied weights as separate copies, which ``save_pretrained``
    (it finds ties by shared storage) would save twice; re-tied, they are saved once, as from the model itself.
    """
    state_dict = dict(state_dict)
    for target, source in getattr(model, "all_tied_weights_keys", {}).items():
        if target in state_dict and source in state_dict:
            state_dict[target] = state_dict[source]
    return state_dict
