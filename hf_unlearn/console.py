"""What the long commands print: their own progress and results, without third-party noise unless ``--verbose``.

:func:`quiet_output` is the context the commands run in: by default it turns off the progress bars of
transformers, datasets and huggingface_hub, lowers their verbosity to errors, and filters the third-party
warnings in :data:`NOISY_WARNINGS` (messages that tell the user of ``hf-unlearn`` nothing they can act on);
with ``verbose=True`` it changes nothing. Everything is restored on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

# (message regex, category): third-party warnings a user of the commands cannot act on
NOISY_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"Secure RNG turned off", UserWarning),  # opacus: the DP demo is an experiment, not a deployment
    (r"Optimal order is the (largest|smallest) alpha", UserWarning),  # opacus RDP accountant
    (r"Full backward hook is firing", UserWarning),  # torch hooks under opacus' per-sample gradients
    (r"Using a non-full backward hook", UserWarning),
    (r"`torch\.jit\.script_method` is deprecated", DeprecationWarning),
)
# deprecation notices raised inside these libraries (about their own internals, not the user's code)
NOISY_MODULES = r"(torch|transformers|vllm|opacus|accelerate|peft|trl|datasets)(\.|$)"
# read at import / process start by libraries whose logs the warning filters above cannot reach; values the user
# set are kept
QUIET_ENV = {
    "VLLM_LOGGING_LEVEL": "ERROR",  # vLLM's logger, in this process and in its engine-core process
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # torch's C++ warnings (gloo, CPU kernels)
    # the engine-core process starts with a fresh warnings filter: its third-party deprecation notices
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
}
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def configure_logging(verbose: bool, fmt: str = LOG_FORMAT) -> None:
    """Log at INFO with ``verbose``, else only warnings and errors (the commands print their own summaries)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt)


def _quiet_printer_callback(self, args, state, control, logs=None, **kwargs) -> None:
    """``PrinterCallback.on_log`` inside :func:`quiet_output`: the Trainer's log dicts stay in ``log_history``."""


@contextlib.contextmanager
def quiet_output(verbose: bool = False) -> Iterator[None]:
    """Run the body without third-party progress bars, verbosity and :data:`NOISY_WARNINGS`, unless ``verbose``.

    The Trainer's ``PrinterCallback`` (which prints every log dict to stdout when ``disable_tqdm=True``) is
    silenced too.
    """
    if verbose:
        yield
        return
    import datasets
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as hf_logging
    from transformers.trainer_callback import PrinterCallback

    with contextlib.ExitStack() as restore:
        for name, value in QUIET_ENV.items():
            if name not in os.environ:
                os.environ[name] = value
                restore.callback(os.environ.pop, name, None)
        for disabled, disable, enable in (
            (
                not hf_logging.is_progress_bar_enabled(),
                hf_logging.disable_progress_bar,
                hf_logging.enable_progress_bar,
            ),
            (
                datasets.are_progress_bars_disabled(),
                datasets.disable_progress_bars,
                datasets.enable_progress_bars,
            ),
            (
                hub_utils.are_progress_bars_disabled(),
                hub_utils.disable_progress_bars,
                hub_utils.enable_progress_bars,
            ),
        ):
            if not disabled:
                disable()
                restore.callback(enable)
        for module in (hf_logging, datasets.logging):
            restore.callback(module.set_verbosity, module.get_verbosity())
            module.set_verbosity_error()
        restore.callback(setattr, PrinterCallback, "on_log", PrinterCallback.on_log)
        PrinterCallback.on_log = _quiet_printer_callback
        restore.enter_context(warnings.catch_warnings())
        for message, category in NOISY_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)
        yield
