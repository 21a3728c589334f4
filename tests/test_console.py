import os
import warnings

import datasets
import huggingface_hub.utils as hub_utils
import transformers.utils.logging as hf_logging
from transformers.trainer_callback import PrinterCallback

from hf_unlearn.console import QUIET_ENV, quiet_output


def library_state():
    return (
        hf_logging.is_progress_bar_enabled(),
        datasets.are_progress_bars_disabled(),
        hub_utils.are_progress_bars_disabled(),
        hf_logging.get_verbosity(),
        PrinterCallback.on_log,
    )


def test_quiet_output_silences_the_libraries_and_restores_them(capsys):
    before = library_state()
    with quiet_output():
        assert library_state()[:3] == (False, True, True)
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        PrinterCallback().on_log(
            None, type("State", (), {"is_local_process_zero": True})(), None, logs={"loss": 1}
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("Secure RNG turned off. This is fine.", UserWarning, stacklevel=1)
            warnings.warn("hf_unlearn's own warning", UserWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == ["hf_unlearn's own warning"]
    assert "loss" not in capsys.readouterr().out
    assert library_state() == before


def test_verbose_changes_nothing():
    before = library_state()
    with quiet_output(verbose=True):
        assert library_state() == before


def test_quiet_output_sets_the_engines_environment_and_keeps_the_users(monkeypatch):
    """vLLM's engine process and torch's C++ side read their log level from the environment: quiet_output sets
    it for the run, keeps a value the user chose, and leaves the environment as it found it."""
    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    with quiet_output():
        assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
        assert os.environ["TORCH_CPP_LOG_LEVEL"] == "ERROR"
        assert "ignore::FutureWarning" in os.environ["PYTHONWARNINGS"]
    assert "TORCH_CPP_LOG_LEVEL" not in os.environ and "PYTHONWARNINGS" not in os.environ
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
    with quiet_output(verbose=True):
        assert "TORCH_CPP_LOG_LEVEL" not in os.environ
