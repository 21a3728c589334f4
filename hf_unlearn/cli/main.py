"""``hf-unlearn``: one entry point, one subcommand per job.

The registry is a plain dict of ``name -> ("module:function", summary)``; a command's module is imported only
when it runs, so ``hf-unlearn --help`` stays fast and optional extras are never imported by accident.
Every command takes ``--help``; dataclass-backed commands also take ``--config file.yaml``. Each command is a
module of this package (``hf_unlearn/cli/<command>.py``); none of them imports this dispatcher.

Errors: a *user error* prints one line (what, why, how to fix) and exits 2, without a traceback; ``--debug``
(anywhere on the command line) shows it. User errors are :class:`~hf_unlearn.cli.parsing.CLIError` and the exceptions input validation
raises throughout the package: ``ValueError`` (the project's convention for a bad option, file or dataset, see
DESIGN.md), ``FileNotFoundError``, ``PermissionError`` and ``SystemExit`` with a message. Anything else
(``TypeError``, ``RuntimeError``, ...) is an internal error and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

USER_ERRORS = (ValueError, FileNotFoundError, PermissionError)

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "hf_unlearn.cli.demo:main",
        "Run the embedded default end to end: data, full and gold models, table.",
    ),
    "train": (
        "hf_unlearn.cli.train:main",
        "Fine-tune (or train from scratch with --tiny) a causal LM on QA/text data.",
    ),
    "unlearn": (
        "hf_unlearn.cli.unlearn:main",
        "Unlearn a forget set from a model (ga, npo, simnpo; full, LoRA or 4-bit QLoRA).",
    ),
    "eco-fit": (
        "hf_unlearn.cli.eco_fit:main",
        "Fit an ECO guard (prompt classifier + corruption strength) for a model: --model --forget --retain --out.",
    ),
    "eval": (
        "hf_unlearn.cli.eval:main",
        "Score models against the retrained model: TOFU / MUSE metrics, probes, report and plots.",
    ),
    "dp-train": (
        "hf_unlearn.cli.dp_train:main",
        "DP2Unlearning's DP stage: DP-SGD (record- or subject-level) with the spent epsilon saved.",
    ),
    "serve": (
        "hf_unlearn.cli.serve:main",
        "Serve a model behind its ECO guard: OpenAI-compatible API on vLLM (or transformers).",
    ),
    "push": (
        "hf_unlearn.cli.push:main",
        "Upload an unlearned model, tokenizer, model card, guard and eval results to the Hub.",
    ),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [
        "usage: hf-unlearn <command> [options]",
        "",
        "Machine unlearning for Hugging Face causal LMs.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run 'hf-unlearn <command> --help' for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    console = argv is None  # a fresh interpreter that exits after this command
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"hf-unlearn: unknown command {name!r}; choose one of {', '.join(COMMANDS)}.\n", file=sys.stderr
        )
        print(usage(), file=sys.stderr)
        return 2
    debug = "--debug" in rest
    rest = [a for a in rest if a != "--debug"]
    if console and ("-h" in rest or "--help" in rest):
        # The options come from the dataclasses; transformers would import peft (and its auto models) for them,
        # ~10 s of CPU that printing them does not need. Only in a console run: the process ends after the help.
        sys.modules.setdefault("peft", None)
    module, function = COMMANDS[name][0].split(":")
    try:
        return getattr(importlib.import_module(module), function)(rest) or 0
    except USER_ERRORS as err:
        if debug:
            raise
        return _user_error(name, str(err), getattr(err, "exit_code", 2))
    except SystemExit as done:
        if debug or not isinstance(done.code, str):
            raise
        return _user_error(name, done.code, 2)


def _user_error(name: str, message: str, exit_code: int) -> int:
    message = message.removeprefix(f"hf-unlearn {name}: ")
    print(f"hf-unlearn {name}: error: {message}\n(run again with --debug for the traceback)", file=sys.stderr)
    return exit_code
