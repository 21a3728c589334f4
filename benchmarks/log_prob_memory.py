"""Peak memory of one forward pass + loss: the full fp32 log-softmax (before) vs trl's selective_log_softmax (after).

``token_log_probs`` used to build ``logits.float().log_softmax(-1)`` over the whole vocabulary before gathering the
label tokens: on a 49k-128k vocabulary that ``(B, T, V)`` fp32 tensor, beside the logits, is the step's memory
peak. It now goes through :func:`hf_unlearn.losses.gathered_log_probs`: trl's ``selective_log_softmax`` forward and
a backward that builds the logits' gradient one sequence at a time (autograd through trl's own loop measured
higher than the full log-softmax once the backward is included: 501 vs 381 MiB in fp32). Each arm runs in a fresh process: a 2-layer Llama (hidden 64) with a 49152-token vocabulary
(SmolLM2's) takes a batch of 8 x 64 tokens, and the gradient-ascent loss is computed on its sequence log-probs,
with autograd on (what a training step keeps) and optionally the backward pass. The figure is the rise of the
process's peak resident memory (``ru_maxrss``) over the model and batch, in MiB. Each seed draws the model's
initialisation and the batch; every figure is the mean ± sd over the seeds (``per_seed`` keeps each run).

    OMP_NUM_THREADS=1 python benchmarks/log_prob_memory.py    # seeds 0 1 2 -> benchmarks/results/log_prob_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from hf_unlearn.data.formats import IGNORE_INDEX
from hf_unlearn.io import write_json_atomic
from hf_unlearn.losses import ga_loss, sequence_log_probs
from hf_unlearn.seeds import aggregate_rows, environment

RESULTS = Path(__file__).resolve().parent / "results" / "log_prob_memory.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def full_log_softmax_sequence_log_probs(logits: torch.Tensor, labels: torch.Tensor):
    """The former ``sequence_log_probs``: gather from a full-vocabulary fp32 log-softmax."""
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    logps = torch.gather(
        logits[:, :-1, :].float().log_softmax(-1), 2, shift_labels.masked_fill(~mask, 0).unsqueeze(-1)
    ).squeeze(-1)
    return (logps * mask).sum(-1), mask.sum(-1)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(arm: str, dtype: str, backward: bool, vocab: int, batch: int, tokens: int, seed: int) -> dict:
    """One arm in this process: ``{"peak_rise_mib": ..., "loss": ...}``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).to(DTYPES[dtype])
    input_ids = torch.randint(0, vocab, (batch, tokens))
    labels = input_ids.clone()
    labels[:, : tokens // 4] = IGNORE_INDEX  # a prompt
    log_probs = full_log_softmax_sequence_log_probs if arm == "before" else sequence_log_probs
    with torch.no_grad():  # warm up (allocator, kernels) on a small batch
        log_probs(model(input_ids=input_ids[:1]).logits, labels[:1])
    start = peak_mib()
    logits = model(input_ids=input_ids).logits  # (B, T, V)
    loss = ga_loss(*log_probs(logits, labels))
    if backward:
        loss.backward()
    return {"peak_rise_mib": round(peak_mib() - start, 1), "loss": loss.item()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, default=49152, help="Vocabulary size (SmolLM2's by default).")
    parser.add_argument("--batch", type=int, default=8, help="Sequences per batch.")
    parser.add_argument("--tokens", type=int, default=64, help="Tokens per sequence.")
    parser.add_argument(
        "--arm", choices=["before", "after"], help="Measure one arm in this process (internal)."
    )
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="Model dtype (with --arm)."
    )
    parser.add_argument("--backward", action="store_true", help="Include the backward pass (with --arm).")
    parser.add_argument("--seed", type=int, default=0, help="Initialisation and batch seed (with --arm).")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds of the full run; mean ± sd over them."
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results JSON.")
    args = parser.parse_args(argv)
    shape = ["--vocab", str(args.vocab), "--batch", str(args.batch), "--tokens", str(args.tokens)]
    if args.arm:
        measured = measure(
            args.arm, args.dtype, args.backward, args.vocab, args.batch, args.tokens, args.seed
        )
        print(json.dumps(measured))
        return 0
    rows = []
    for dtype in ("float32", "bfloat16"):
        for backward in (False, True):
            per_seed = []
            for seed in args.seeds:
                run = {"seed": seed}
                for arm in ("before", "after"):
                    cmd = [
                        sys.executable,
                        __file__,
                        "--arm",
                        arm,
                        "--dtype",
                        dtype,
                        "--seed",
                        str(seed),
                        *shape,
                    ]
                    out = subprocess.run(
                        cmd + ["--backward"] * backward, capture_output=True, text=True, check=True
                    )
                    for key, value in json.loads(out.stdout.strip().splitlines()[-1]).items():
                        run[f"{arm}_{key}"] = value
                run["saved_mib"] = run["before_peak_rise_mib"] - run["after_peak_rise_mib"]
                per_seed.append(run)
            row = {
                "dtype": dtype,
                "step": "forward+loss+backward" if backward else "forward+loss",
                **aggregate_rows([{k: v for k, v in r.items() if k != "seed"} for r in per_seed]),
                "per_seed": per_seed,
            }
            rows.append(row)
            print(
                f"{dtype} {row['step']}: before {row['before_peak_rise_mib_mean']:.1f} MiB, after "
                f"{row['after_peak_rise_mib_mean']:.1f} ± {row['after_peak_rise_mib_sd'] or 0:.1f} MiB"
            )
    write_json_atomic(
        args.out,
        {
            "vocab": args.vocab,
            "batch": args.batch,
            "tokens": args.tokens,
            "fp32_logits_mib": args.batch * args.tokens * args.vocab * 4 / 2**20,
            "seeds": args.seeds,
            "rows": rows,
            "environment": environment(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
