"""The engines behind the OpenAI-compatible server: vLLM's async engine and plain transformers.

Both take an engine prompt (``{"prompt_token_ids": [...]}`` or ``{"prompt_embeds": (seq, hidden)}``, as the
guard hands it over) and :class:`Sampling` settings, and stream :class:`Chunk` pieces of the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hf_unlearn.serving.engine import engine_kwargs, import_vllm


@dataclass
class Sampling:
    """Backend-neutral sampling settings of one request."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass
class Chunk:
    """A piece of one answer: new text, how many tokens it holds, and the finish reason on the last piece."""

    text: str
    n_tokens: int
    finish_reason: str | None = None


class VLLMBackend:
    """vLLM's async engine (``AsyncLLM``), created with prompt embeddings enabled."""

    name = "vllm"

    def __init__(self, engine):
        self.engine = engine

    @classmethod
    def start(cls, model: str, tokenizer: str | None = None, max_model_len: int = 512, **overrides: Any):
        import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = engine_kwargs(model, tokenizer, max_model_len, disable_log_stats=True, **overrides)
        return cls(AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs)))

    async def stream(
        self, prompt: dict[str, Any], sampling: Sampling, request_id: str
    ) -> AsyncIterator[Chunk]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=sampling.stop or None,
            seed=sampling.seed,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
        )
        async for out in self.engine.generate(prompt, params, request_id):
            piece = out.outputs[0]
            yield Chunk(piece.text, len(piece.token_ids), piece.finish_reason if out.finished else None)

    def shutdown(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()


class TransformersBackend:
    """A transformers causal LM; one request at a time, the answer arrives as one chunk (slower than vLLM)."""

    name = "transformers"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.lock = asyncio.Lock()

    @classmethod
    def start(cls, model: str, tokenizer: str | None = None, **_: Any):
        import torch

        from hf_unlearn.models import load_model_and_tokenizer

        return cls(*load_model_and_tokenizer(model, tokenizer, dtype=torch.float32))

    def _generate(self, prompt: dict[str, Any], sampling: Sampling) -> Chunk:
        import torch

        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        sample = sampling.temperature > 0
        kwargs = dict(
            max_new_tokens=sampling.max_tokens,
            do_sample=sample,
            temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=sampling.stop or None,
            tokenizer=self.tokenizer,
        )
        with torch.no_grad():
            if "prompt_embeds" in prompt:
                embeds = prompt["prompt_embeds"].to(self.model.dtype)[None]  # (1, seq, hidden)
                new = self.model.generate(inputs_embeds=embeds, **kwargs)[0]
            else:
                ids = torch.tensor([prompt["prompt_token_ids"]])  # (1, seq)
                new = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)[
                    0, ids.shape[1] :
                ]
        tokens = new.tolist()
        eos = self.tokenizer.eos_token_id
        finish = "stop" if (eos in tokens) or len(tokens) < sampling.max_tokens else "length"
        if eos in tokens:
            tokens = tokens[: tokens.index(eos)]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in sampling.stop:
            if stop in text:
                text, finish = text[: text.index(stop)], "stop"
        return Chunk(text, len(tokens), finish)

    async def stream(
        self, prompt: dict[str, Any], sampling: Sampling, request_id: str
    ) -> AsyncIterator[Chunk]:
        async with self.lock:
            yield await asyncio.to_thread(self._generate, prompt, sampling)

    def shutdown(self) -> None:
        pass
