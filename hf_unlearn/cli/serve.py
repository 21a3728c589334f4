"""``hf-unlearn serve``: an OpenAI-compatible endpoint for a model behind its ECO guard.

Examples::

    hf-unlearn serve --model runs/demo/full --guard runs/guard            # http://127.0.0.1:8000/v1
    hf-unlearn serve --model runs/demo/full --guard runs/guard --backend transformers --port 8080

Without vLLM installed, ``--backend auto`` (the default) says how to install it and serves with transformers.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hf_unlearn.cli.parsing import dataclass_parser, verbose_field
from hf_unlearn.console import quiet_output

logger = logging.getLogger(__name__)
BACKENDS = ("auto", "vllm", "transformers")


@dataclass
class ServeArguments:
    """What to serve, where, and the bounds every request must respect."""

    model: str = field(
        metadata={"help": "Model directory (or Hub id) to serve: the model the guard was fitted for."}
    )
    guard: str | None = field(
        default=None,
        metadata={"help": "ECO guard directory (from `hf-unlearn eco-fit`). Required unless --unguarded."},
    )
    unguarded: bool = field(
        default=False,
        metadata={"help": "Serve without a guard (a baseline for benchmarks; never for forgotten data)."},
    )
    response_check: bool = field(
        default=False,
        metadata={
            "help": "Check every answer with the guard's response check (on if the guard was fitted with "
            "--response_check; this turns it on for a guard fitted without it, names only if it has no fact hashes)."
        },
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer path, when not saved with the model."}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on (loopback by default)."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    backend: str = field(
        default="auto",
        metadata={"help": "vllm, transformers, or auto (vLLM when installed, else transformers)."},
    )
    served_model_name: str | None = field(
        default=None, metadata={"help": "Model name in the API (default: the model directory's name)."}
    )
    max_model_len: int = field(default=512, metadata={"help": "Context length: prompt + answer tokens."})
    max_prompt_tokens: int = field(default=384, metadata={"help": "Longest prompt accepted, in tokens."})
    max_new_tokens: int = field(default=256, metadata={"help": "Largest max_tokens a request may ask for."})
    max_prompts: int = field(default=32, metadata={"help": "Most prompts in one /v1/completions request."})
    max_request_bytes: int = field(
        default=1_000_000, metadata={"help": "Largest request body, in bytes (413 above)."}
    )
    verbose: bool = verbose_field()

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend {self.backend!r} is not one of {BACKENDS}.")
        if (self.guard is None) != self.unguarded:
            raise ValueError(
                f"Got guard={self.guard!r} and unguarded={self.unguarded}: pass --guard GUARD_DIR (from "
                "`hf-unlearn eco-fit`), or --unguarded to serve the model without a guard on purpose."
            )
        if self.max_prompt_tokens + 1 > self.max_model_len:
            raise ValueError(
                f"max_prompt_tokens={self.max_prompt_tokens} leaves no room for an answer in "
                f"max_model_len={self.max_model_len}; lower it or raise max_model_len."
            )


def choose_backend(requested: str) -> str:
    """``vllm`` or ``transformers``; ``auto`` falls back to transformers (with install advice) without vLLM."""
    from hf_unlearn.serving.engine import import_vllm

    if requested != "auto":
        if requested == "vllm":
            import_vllm()
        return requested
    try:
        import_vllm()
    except ImportError as err:
        logger.warning("%s\nServing with the transformers backend instead (same API, slower).", err)
        return "transformers"
    return "vllm"


def build_server(args: ServeArguments):
    """The ``GuardedServer`` for ``args``: tokenizer, guard and the chosen backend, started."""
    from transformers import AutoTokenizer

    from hf_unlearn.eco.guard import ECOGuard, input_embedding_weight
    from hf_unlearn.packaged import resolve_model_source
    from hf_unlearn.serving.backends import TransformersBackend, VLLMBackend
    from hf_unlearn.serving.server import GuardedServer, Limits

    backend_name = choose_backend(args.backend)
    args.model = resolve_model_source(args.model)  # packaged:<name> -> its local directory
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    guard = None
    if not args.unguarded:  # the guard embeds flagged prompts with the served model's own embedding matrix
        guard = ECOGuard.from_pretrained(args.guard, tokenizer, input_embedding_weight(args.model))
        guard.config.response_check |= args.response_check
    backend_cls = VLLMBackend if backend_name == "vllm" else TransformersBackend
    backend = backend_cls.start(args.model, args.tokenizer, max_model_len=args.max_model_len)
    limits = Limits(
        max_request_bytes=args.max_request_bytes,
        max_prompt_tokens=args.max_prompt_tokens,
        max_new_tokens=args.max_new_tokens,
        max_prompts=args.max_prompts,
        max_model_len=args.max_model_len,
    )
    name = args.served_model_name or Path(args.model).name
    return GuardedServer(backend, tokenizer, guard, name, limits)


def main(argv: list[str] | None = None) -> int:
    from hf_unlearn.serving.app import openai_app, uvicorn_server

    parser = dataclass_parser([ServeArguments], prog="hf-unlearn serve")
    (args,) = parser.parse_args_and_config(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("hf_unlearn").setLevel(
        logging.INFO
    )  # the server's own messages: start-up, backend, guard
    with quiet_output(args.verbose):  # around the engine's start too: vLLM reads its log level when it starts
        server = build_server(args)
        try:
            print(
                f"Serving {server.model_name!r} ({server.backend.name}, guard: {args.guard or 'NONE'}) "
                f"on http://{args.host}:{args.port}/v1",
                file=sys.stderr,
                flush=True,
            )
            asyncio.run(uvicorn_server(openai_app(server), args.host, args.port).serve())
        finally:
            server.backend.shutdown()
    return 0
