"""What the command modules share: :class:`CLIError`, the dataclass parser, and the flag style.

Flags are spelled with underscores (``--output_dir``, the ``TrainingArguments`` style); the dash spelling
(``--output-dir``) is accepted as an alias everywhere. ``HfArgumentParser`` (under ``TrlParser``) adds that
alias to every dataclass field, and :func:`add_flag` does the same for the hand-written ``argparse`` parsers.
Only modules of :mod:`hf_unlearn.cli` import this one.
"""

from __future__ import annotations

import argparse
from dataclasses import field


class CLIError(ValueError):
    """A user error that ends a command with ``exit_code`` (2 by default) and its message, without a traceback."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def dataclass_parser(dataclass_types, prog: str):
    """A ``trl.TrlParser`` over ``dataclass_types`` whose ``--help`` also documents ``--config``.

    Every dataclass field becomes an option with its ``metadata["help"]``; ``--config file.yaml`` supplies
    values for any of them (command-line options win).
    """
    from trl import TrlParser

    return TrlParser(
        dataclass_types,
        prog=prog,
        epilog="Any option above can also come from a YAML file: --config FILE.yaml (the command line wins).",
    )


def add_flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> argparse.Action:
    """``parser.add_argument("--name", **kwargs)`` with the dash spelling of an underscored name as an alias.

    ``name`` is the flag without its leading dashes, in underscores (``"forget_pct"``); the parsed value lands
    in ``args.<name>``, as in ``HfArgumentParser``.
    """
    flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    return parser.add_argument(*flags, **kwargs)


def verbose_field():
    """The ``verbose`` option of the dataclass-parsed commands (see :func:`hf_unlearn.console.quiet_output`)."""
    return field(
        default=False,
        metadata={"help": "Also show the libraries' progress bars, verbose logs and third-party warnings."},
    )
