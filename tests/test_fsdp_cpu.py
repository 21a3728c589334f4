"""Real 2-process FSDP2 runs of NPO+KLR on CPU (gloo), full fine-tuning and LoRA, with the shipped accelerate config.

``scripts/accelerate_configs/fsdp.yaml`` is used as shipped (FSDP2, transformer-block wrapping, rank-0-only
loading, bf16 mixed precision); the processes run ``tests/cpu_fsdp_unlearn.py``, the unlearning CLI with accelerate's
FSDP plugin kept on CPU processes (accelerate drops it there and would silently run DDP). DeepSpeed ZeRO-3
(``deepspeed_zero3.yaml``) is not tested: deepspeed is not installed in the test environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from hf_unlearn.cli.unlearn import SUMMARY_FILE, parameter_digest
from hf_unlearn.io import read_json

REPO = Path(__file__).resolve().parents[1]
FSDP_CONFIG = REPO / "scripts" / "accelerate_configs" / "fsdp.yaml"


def launch_npo_klr(model_dir, splits, port, tmp_path, *options) -> tuple[Path, list[dict]]:
    """Run NPO+KLR (3 steps at most) in 2 FSDP processes; return the output folder and each rank's record."""
    for split in ("forget", "retain"):
        splits[split].to_json(tmp_path / f"{split}.jsonl")
    out, record = tmp_path / "fsdp", tmp_path / "record"
    record.mkdir()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG)]
    cmd += ["--main_process_port", str(port), str(REPO / "tests" / "cpu_fsdp_unlearn.py")]
    cmd += ["npo", "--model", str(model_dir), "--forget", str(tmp_path / "forget.jsonl")]
    cmd += ["--retain", str(tmp_path / "retain.jsonl"), "--regularizer", "klr", "--output_dir", str(out)]
    cmd += ["--max_steps", "3", "--per_device_train_batch_size", "4", "--use_cpu", "--learning_rate", "3e-3"]
    cmd += ["--logging_steps", "1", "--allow_degraded", *options]  # the rail may cut the run on some CPU
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["HF_UNLEARN_FSDP_RECORD"] = str(record)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, [json.loads((record / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def single_process_ref_logps(model_dir, forget) -> torch.Tensor:
    """The forget rows' sequence log-probs under the starting model, computed in this one process."""
    from hf_unlearn.data.forget_retain import PaddingCollator, tokenize_dataset
    from hf_unlearn.losses import sequence_log_probs
    from hf_unlearn.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(model_dir, dtype=torch.float32)
    rows = tokenize_dataset(forget, tok)
    batch = PaddingCollator(tok.pad_token_id)([rows[i] for i in range(len(rows))])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sequence_log_probs(logits, batch["labels"])[0]


def forget_token_log_prob(model, tok, forget) -> float:
    from hf_unlearn.evaluation.qa import score_answers

    with torch.no_grad():
        scores = score_answers(model, tok, forget["question"], forget["answer"])
    return (scores["log_prob"].sum() / scores["n_tokens"].sum()).item()


def check_common(ranks: list[dict], summary: dict, model_dir, forget) -> None:
    """What holds for full fine-tuning and LoRA alike: a sharded run whose NPO reference is the starting model on
    every rank, whose ranks end in sync with trainable weights that moved, and whose NPO loss went down."""
    expected = single_process_ref_logps(model_dir, forget)
    for rank in ranks:
        # the run really was sharded: accelerate kept FSDP and the trained parameters are DTensor shards
        assert rank["distributed_type"] == "DistributedType.FSDP" and rank["sharded_parameters"], rank
        # the cached reference log-probs are the starting model's on every rank (rank-0-only loading gives the
        # other ranks zero weights until the model is sharded)
        assert rank["ref_logps"] == ranks[0]["ref_logps"]
        assert torch.allclose(torch.tensor(rank["ref_logps"]), expected, atol=1e-3), (
            rank["ref_logps"],
            expected,
        )
        steps = [entry for entry in rank["log_history"] if "forget_loss" in entry]
        # at the first step the model is the reference: NPO's log-ratio starts at 0 on every rank
        assert abs(steps[0]["forget_log_ratio"]) < 0.05, steps[0]
        assert steps[-1]["forget_loss"] < steps[0]["forget_loss"], steps
    # both ranks start from rank 0's trainable weights and end with the same ones, which differ from the start
    (start0, end0), (_, end1) = ranks[0]["trainable_digests"], ranks[1]["trainable_digests"]
    assert end0 == end1 != start0
    assert 1 <= summary["steps"] <= 3, summary
    digests = summary["rank_parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_two_process_cpu_fsdp_npo_klr(memorised_model_dir, small_splits, free_port, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from hf_unlearn.models import load_model_and_tokenizer

    out, ranks = launch_npo_klr(memorised_model_dir, small_splits, free_port, tmp_path)
    summary = read_json(out / SUMMARY_FILE)
    check_common(ranks, summary, memorised_model_dir, small_splits["forget"])
    start = parameter_digest(AutoModelForCausalLM.from_pretrained(memorised_model_dir))
    for rank in ranks:
        # the separately loaded reference holds the starting weights on every rank; training did not touch it
        assert rank["reference_digest"] == start
    assert summary["rank_parameter_digests"][0] != start
    # the saved model is the trained one (gathered from the shards), with the tied embedding saved once as a
    # single-process save_pretrained does
    assert parameter_digest(AutoModelForCausalLM.from_pretrained(out)) == summary["rank_parameter_digests"][0]
    with safe_open(out / "model.safetensors", "pt") as saved:
        assert "lm_head.weight" not in saved.keys(), list(saved.keys())
    # it forgets: the forget answers' token log-prob went down
    forget = small_splits["forget"]
    before = forget_token_log_prob(
        *load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32), forget
    )
    assert forget_token_log_prob(*load_model_and_tokenizer(out, dtype=torch.float32), forget) < before


def test_two_process_cpu_fsdp_lora_npo_klr(memorised_model_dir, small_splits, free_port, tmp_path):
    from peft import PeftModel

    from hf_unlearn.models import load_model_and_tokenizer

    # LoRA moves from B = 0: at full fine-tuning's 3e-3 its 3 steps change the NPO loss by ~1e-4, which batch
    # noise and the CPU decide; 10x the rate, as LoRA usually gets, makes the drop clear
    out, ranks = launch_npo_klr(
        memorised_model_dir, small_splits, free_port, tmp_path, "--lora_r", "8", "--learning_rate", "3e-2"
    )
    summary = read_json(out / SUMMARY_FILE)
    check_common(ranks, summary, memorised_model_dir, small_splits["forget"])
    assert all(
        rank["reference_digest"] is None for rank in ranks
    )  # the reference is the adapter-disabled base
    # the adapters are saved (a sharded model is not merged in place); merged here on one process, they forget
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    base, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    forget = small_splits["forget"]
    before = forget_token_log_prob(base, tok, forget)
    merged = PeftModel.from_pretrained(base, out).merge_and_unload()
    assert forget_token_log_prob(merged, tok, forget) < before
