"""A real 2-process FSDP2 run of NPO+KLR on CPU (gloo), launched with the shipped accelerate config.

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


def forget_token_log_prob(model_dir, forget) -> float:
    from hf_unlearn.evaluation.qa import score_answers
    from hf_unlearn.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(model_dir, dtype=torch.float32)
    with torch.no_grad():
        scores = score_answers(model, tok, forget["question"], forget["answer"])
    return (scores["log_prob"].sum() / scores["n_tokens"].sum()).item()


def test_two_process_cpu_fsdp_npo_klr(memorised_model_dir, small_splits, free_port, tmp_path):
    from transformers import AutoModelForCausalLM

    for split in ("forget", "retain"):
        small_splits[split].to_json(tmp_path / f"{split}.jsonl")
    out, record = tmp_path / "fsdp", tmp_path / "record"
    record.mkdir()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG)]
    cmd += ["--main_process_port", str(free_port), str(REPO / "tests" / "cpu_fsdp_unlearn.py")]
    cmd += ["npo", "--model", str(memorised_model_dir), "--forget", str(tmp_path / "forget.jsonl")]
    cmd += ["--retain", str(tmp_path / "retain.jsonl"), "--regularizer", "klr", "--output_dir", str(out)]
    cmd += ["--max_steps", "3", "--per_device_train_batch_size", "4", "--use_cpu", "--learning_rate", "3e-3"]
    cmd += ["--logging_steps", "1", "--allow_degraded"]  # the rail may cut the run on some CPU
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["HF_UNLEARN_FSDP_RECORD"] = str(record)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    start = parameter_digest(AutoModelForCausalLM.from_pretrained(memorised_model_dir))
    ranks = [json.loads((record / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank in ranks:
        # the run really was sharded: accelerate kept FSDP and the trained parameters are DTensor shards
        assert rank["distributed_type"] == "DistributedType.FSDP" and rank["sharded_parameters"], rank
        # the reference holds the starting weights on every rank (rank-0-only loading gives the others zeros)
        # and training did not touch it
        assert rank["reference_digest"] == start
        steps = [entry for entry in rank["log_history"] if "forget_loss" in entry]
        # at the first step the model is the reference: NPO's log-ratio starts at 0 on every rank
        assert abs(steps[0]["forget_log_ratio"]) < 0.05, steps[0]
    summary = read_json(out / SUMMARY_FILE)
    assert 1 <= summary["steps"] <= 3, summary
    digests = summary["rank_parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] != start
    # the saved model is the trained one (gathered from the shards), and it forgets: the forget answers' token
    # log-prob went down (NPO's loss, a function of it, went down with it on both ranks)
    assert parameter_digest(AutoModelForCausalLM.from_pretrained(out)) == digests[0]
    for rank in ranks:
        steps = [entry for entry in rank["log_history"] if "forget_loss" in entry]
        assert steps[-1]["forget_loss"] < steps[0]["forget_loss"], steps
    assert forget_token_log_prob(out, small_splits["forget"]) < forget_token_log_prob(
        memorised_model_dir, small_splits["forget"]
    )
