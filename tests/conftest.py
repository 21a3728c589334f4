"""Shared fixtures: tiny data, a tokenizer trained on it, and a tiny model that has memorised it.

Everything is built locally; nothing is downloaded. Session-scoped so the suite trains each model once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# the shared data folder beside the checkout (as in CI); HF_UNLEARN_TOFU_DIR points elsewhere
TOFU_DIR = Path(
    os.environ.get(
        "HF_UNLEARN_TOFU_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tofu"
    )
)
SMALL = {"n_people": 20, "n_holdout": 4, "forget_pct": 10, "seed": 0}


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    if not (TOFU_DIR / "forget10.json").exists():
        pytest.fail(
            f"The TOFU splits are expected at {TOFU_DIR} (the shared data folder beside the checkout)."
        )
    return TOFU_DIR


@pytest.fixture(scope="session")
def small_splits():
    """20 trained people (2 to forget, 18 to retain) and 4 held-out people."""
    from hf_unlearn.data.synthetic import synthetic_splits

    return synthetic_splits(**SMALL)


@pytest.fixture(scope="session")
def tiny_tokenizer(small_splits, tmp_path_factory):
    from hf_unlearn.demo import build_tokenizer

    return build_tokenizer(small_splits, tmp_path_factory.mktemp("tokenizer"))


def cached_tiny_model(name: str, tokenizer, qa_sets, text_sets, tmp_path_factory) -> Path:
    """Train a tiny Llama on ``qa_sets`` + ``text_sets`` until it answers >= 97 % of their questions exactly
    (150 epochs at most), or reuse the copy cached under ``$HF_UNLEARN_TEST_CACHE/name``."""
    from hf_unlearn.models import build_tiny_llama
    from hf_unlearn.train import SUMMARY_FILE, TrainConfig, train_lm

    cache = os.environ.get("HF_UNLEARN_TEST_CACHE")
    out = Path(cache) / name if cache else tmp_path_factory.mktemp(name)
    if (out / SUMMARY_FILE).exists():
        return out
    args = TrainConfig(
        output_dir=str(out),
        seed=0,
        per_device_train_batch_size=8,
        num_train_epochs=150,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1000,
    )
    summary = train_lm(build_tiny_llama(tokenizer, seed=0), tokenizer, args, qa_sets, text_sets)
    assert summary["monitor_exact_match"] >= 0.97, summary
    return out


@pytest.fixture(scope="session")
def memorised_model_dir(small_splits, tiny_tokenizer, tmp_path_factory) -> Path:
    """A tiny Llama trained on the 20 people until it answers >= 97 % of their questions exactly.

    Returns the saved model directory (model + tokenizer); load a fresh copy per test. Set
    ``HF_UNLEARN_TEST_CACHE=DIR`` to reuse the trained model across pytest sessions while developing.
    """
    return cached_tiny_model(
        "memorised",
        tiny_tokenizer,
        [small_splits["forget"], small_splits["retain"]],
        [small_splits["forget_text"], small_splits["retain_text"]],
        tmp_path_factory,
    )


@pytest.fixture(scope="session")
def gold_model_dir(small_splits, tiny_tokenizer, tmp_path_factory) -> Path:
    """The retrained model of ``memorised_model_dir``: the same recipe on the 18 retain people only."""
    return cached_tiny_model(
        "gold", tiny_tokenizer, [small_splits["retain"]], [small_splits["retain_text"]], tmp_path_factory
    )
