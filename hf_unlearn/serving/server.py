"""The request path of the OpenAI-compatible server, with the ECO guard inside it (:class:`GuardedServer`).

The HTTP routes are in :mod:`hf_unlearn.serving.app` (``openai_app(server)``), the engines in
:mod:`hf_unlearn.serving.backends`. Every prompt is rendered (chat
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
``/metrics`` renders :class:`Metrics` (``prometheus_client`` counters) in the Prometheus text format.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hf_unlearn.data.formats import encode_text
from hf_unlearn.serving.backends import Chunk, Sampling
from hf_unlearn.serving.engine import engine_prompts

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


class Metrics:
    """The server's Prometheus counters, in a registry of its own (several servers in one process don't clash),
    rendered by ``prometheus_client`` in the text exposition format at ``/metrics``."""

    # name -> (help, label names)
    COUNTERS = {
        "hf_unlearn_requests_total": (
            "HTTP requests answered, by route and status code.",
            ("route", "status"),
        ),
        "hf_unlearn_prompts_total": (
            "Prompts sent to the engine, by whether the ECO guard corrupted them.",
            ("guarded",),
        ),
        "hf_unlearn_guarded_requests_total": (
            "Requests with at least one prompt corrupted by the ECO guard.",
            (),
        ),
        "hf_unlearn_generated_tokens_total": ("Tokens generated.", ()),
        "hf_unlearn_response_checks_total": (
            "Answers checked by the guard's response check, by outcome "
            "(passed, regenerated from the corrupted prompt, refused).",
            ("outcome",),
        ),
    }

    def __init__(self):
        try:
            from prometheus_client import CollectorRegistry, Counter
        except ImportError as err:
            raise ImportError(
                "The server's /metrics need prometheus_client, which is not installed; install the server's extra: "
                'pip install "hf-unlearn[eco]" (or pip install prometheus_client).'
            ) from err
        self.registry = CollectorRegistry(auto_describe=True)
        self.counters = {
            name: Counter(name, help_text, labels, registry=self.registry)
            for name, (help_text, labels) in self.COUNTERS.items()
        }

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        counter = self.counters[name]
        (counter.labels(**labels) if labels else counter).inc(amount)

    def get(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def field_value(
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
        if field_value(data, "n", int, 1) != 1:
            raise APIError(400, "Only 'n': 1 is supported; send several requests for several samples.", "n")
        for unsupported in ("logprobs", "echo", "best_of", "top_logprobs", "tools", "suffix"):
            if data.get(unsupported) not in (None, False, 1 if unsupported == "best_of" else None):
                raise APIError(400, f"'{unsupported}' is not supported by this server.", unsupported)
        return data

    def sampling(self, data: dict[str, Any], default_max: int) -> Sampling:
        limit = self.limits.max_new_tokens
        stop = field_value(
            data,
            "stop",
            (str, list),
            [],
            lambda s: isinstance(s, str) or (len(s) <= 4 and all(isinstance(x, str) and x for x in s)),
            "a string or up to 4 non-empty strings",
        )
        return Sampling(
            max_tokens=field_value(
                data,
                "max_completion_tokens",
                int,
                None,
                lambda v: 1 <= v <= limit,
                f"an integer in [1, {limit}]",
            )
            or field_value(
                data, "max_tokens", int, default_max, lambda v: 1 <= v <= limit, f"an integer in [1, {limit}]"
            ),
            temperature=float(
                field_value(
                    data, "temperature", (int, float), 1.0, lambda v: 0 <= v <= 2, "a number in [0, 2]"
                )
            ),
            top_p=float(
                field_value(data, "top_p", (int, float), 1.0, lambda v: 0 < v <= 1, "a number in (0, 1]")
            ),
            stop=[stop] if isinstance(stop, str) else list(stop),
            seed=field_value(
                data, "seed", int, None, lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"
            ),
            presence_penalty=float(
                field_value(
                    data, "presence_penalty", (int, float), 0.0, lambda v: -2 <= v <= 2, "a number in [-2, 2]"
                )
            ),
            frequency_penalty=float(
                field_value(
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
