import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.models import build_tiny_llama, check_vocab, load_model_and_tokenizer


def test_tiny_llama_defaults_suit_vllm_and_round_trip(tiny_tokenizer, tmp_path):
    model = build_tiny_llama(tiny_tokenizer)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (
        64,
        2,
        2,
        256,
    )
    assert cfg.hidden_size // cfg.num_attention_heads == 32  # vLLM's CPU attention needs head_dim >= 32
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded, tok = load_model_and_tokenizer(tmp_path, dtype=torch.float32)
    ids = tok("Where was Ada born?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token == "<pad>"
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), type(model))


def test_bad_shapes_and_mismatched_tokenizer_raise(tiny_tokenizer):
    with pytest.raises(ValueError, match="not divisible"):
        build_tiny_llama(tiny_tokenizer, hidden_size=64, num_attention_heads=3)
    model = build_tiny_llama(tiny_tokenizer)
    model.resize_token_embeddings(10)
    with pytest.raises(ValueError, match="do not belong together"):
        check_vocab(model, tiny_tokenizer)


def test_missing_model_path_raises(tmp_path):
    with pytest.raises(ValueError, match="neither an existing directory, a Hub id"):
        load_model_and_tokenizer(tmp_path / "missing" / "model" / "dir")
