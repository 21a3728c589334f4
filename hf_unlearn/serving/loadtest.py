"""A bounded load test for an OpenAI-compatible endpoint: every request accounted for, latencies measured.

Used by ``benchmarks/eco_vllm.py`` and the serving tests; point it at loopback servers only.
"""

from __future__ import annotations

import asyncio
import time


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load_test(
    url: str, model: str, prompts: list[str], concurrency: int = 16, max_tokens: int = 16
) -> dict:
    """Send one greedy /v1/completions request per prompt, ``concurrency`` at a time, and account for each.

    Returns counts (``completed``, ``failed``), the response ``ids``, per-request ``responses`` (text, guarded,
    tokens; ``None`` for a failed request) in request order, latencies, wall time and throughput.
    """
    import openai

    api = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    gate = asyncio.Semaphore(concurrency)
    responses: list[dict | None] = [None] * len(prompts)
    latencies: list[float] = []
    ids: list[str] = []
    errors: list[str] = []

    async def one(i: int, prompt: str):
        async with gate:
            start = time.perf_counter()
            try:
                out = await api.completions.create(
                    model=model, prompt=prompt, max_tokens=max_tokens, temperature=0
                )
            except Exception as err:  # counted, not raised: the load test reports every failure
                errors.append(f"{type(err).__name__}: {err}")
                return
            latencies.append(time.perf_counter() - start)
            ids.append(out.id)
            choice = out.choices[0]
            responses[i] = {
                "text": choice.text,
                "guarded": choice.guarded,
                "tokens": out.usage.completion_tokens,
            }

    start = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    wall = time.perf_counter() - start
    await api.close()
    done = [r for r in responses if r is not None]
    tokens = sum(r["tokens"] for r in done)
    return {
        "requests": len(prompts),
        "completed": len(done),
        "failed": len(prompts) - len(done),
        "errors": errors[:5],
        "ids": ids,
        "responses": responses,
        "wall_s": wall,
        "requests_per_s": len(done) / wall,
        "tokens_per_s": tokens / wall,
        "latency_p50_ms": 1000 * percentile(latencies, 0.50) if latencies else None,
        "latency_p95_ms": 1000 * percentile(latencies, 0.95) if latencies else None,
    }
