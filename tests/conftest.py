"""Shared fixtures: tiny data, a tokenizer trained on it, and a tiny model that has memorised it.

Everything is built locally; nothing is downloaded. Session-scoped so the suite trains each model once.
"""

from __future__ import annotations

import os
import socket
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
# Seed of the tiny test models' initialisation and data order. Another seed stands in for another CPU (training
# is not bitwise reproducible across CPUs): the suite must pass for any, e.g. HF_UNLEARN_TEST_SEED=3.
MODEL_SEED = int(os.environ.get("HF_UNLEARN_TEST_SEED", "0"))
# Fixture bar: every question answered exactly (EM 1.0), not 0.97: a model stopped at 0.97 is still
# mid-way through memorising (its EM swings 0.88-0.98 from one epoch to the next), so tests that start from it
# start from a different place on every CPU. MEASURED (2-core AVX2, batch 8): first EM 1.0 at epoch 54 / 25 / 35
# for the memorised model and 33 / 30 / 62 for the gold model (seeds 0 / 1 / 2); the budget of 150 leaves more
# than 2x headroom over the slowest.
FIXTURE_TARGET_EM = 1.0
FIXTURE_EPOCHS = 150


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
    from hf_unlearn.demo.pipeline import build_tokenizer

    return build_tokenizer(small_splits, tmp_path_factory.mktemp("tokenizer"))


def cached_tiny_model(name: str, tokenizer, qa_sets, text_sets, tmp_path_factory) -> Path:
    """Train a tiny Llama on ``qa_sets`` + ``text_sets`` until it answers every question exactly
    (:data:`FIXTURE_EPOCHS` at most; failing that, the fixture fails and says so), or reuse the copy cached
    under ``$HF_UNLEARN_TEST_CACHE/<name>-s<seed>``."""
    from hf_unlearn.models import build_tiny_llama
    from hf_unlearn.trainers.finetune import SUMMARY_FILE, TrainConfig, train_lm

    cache = os.environ.get("HF_UNLEARN_TEST_CACHE")
    name = f"{name}-s{MODEL_SEED}"
    out = Path(cache) / name if cache else tmp_path_factory.mktemp(name)
    if (out / SUMMARY_FILE).exists():
        return out
    args = TrainConfig(
        output_dir=str(out),
        seed=MODEL_SEED,
        per_device_train_batch_size=8,
        num_train_epochs=FIXTURE_EPOCHS,
        target_exact_match=FIXTURE_TARGET_EM,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1000,
    )
    summary = train_lm(build_tiny_llama(tokenizer, seed=MODEL_SEED), tokenizer, args, qa_sets, text_sets)
    if summary["monitor_exact_match"] < FIXTURE_TARGET_EM:
        pytest.fail(
            f"The {name} fixture did not reach EM {FIXTURE_TARGET_EM} in {FIXTURE_EPOCHS} epochs: {summary}"
        )
    return out


@pytest.fixture(scope="session")
def memorised_model_dir(small_splits, tiny_tokenizer, tmp_path_factory) -> Path:
    """A tiny Llama trained on the 20 people until it answers every one of their questions exactly.

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


@pytest.fixture
def free_port() -> int:
    """A free TCP port on localhost, for the rendezvous of a multi-process launch."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
