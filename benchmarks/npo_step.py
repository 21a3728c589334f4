"""Seconds per optimisation step: NPO with cached reference log-probs vs a plain SFT step on the same batch.

NPO needs the reference model's sequence log-probs of each forget example. With
``precompute_ref_log_probs=True`` they are computed once before training, so an NPO step should cost what a
supervised fine-tuning step costs (target: ratio <= 1.10). Both steps go through the Trainer's
``training_step`` (forward, loss, backward) plus the AdamW update, on the same model size and the same batches,
measured in interleaved rounds so that load from other processes hits both alike.

    OMP_NUM_THREADS=1 python benchmarks/npo_step.py   # seeds 0 1 2 -> benchmarks/results/npo_step.json (mean ± sd)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer

from hf_unlearn.data.forget_retain import PaddingCollator, tokenize_dataset
from hf_unlearn.data.synthetic import synthetic_splits
from hf_unlearn.io import write_json_atomic
from hf_unlearn.models import build_tiny_llama, train_bpe_tokenizer
from hf_unlearn.seeds import aggregate_rows, environment
from hf_unlearn.trainers.npo_config import NPOConfig
from hf_unlearn.trainers.npo_trainer import NPOTrainer

RESULTS = Path(__file__).resolve().parent / "results" / "npo_step.json"


def timed_steps(trainer, batches: list[dict]) -> tuple[float, float]:
    """Mean wall and CPU seconds of one training step (forward, backward, optimizer update) over ``batches``."""
    optimizer = trainer.optimizer
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        trainer.training_step(trainer.model, batch)
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - wall) / len(batches), (time.process_time() - cpu) / len(batches)


def measure(args, seed: int) -> dict:
    """One seed (model initialisation and the order of the forget rows): median seconds per step of SFT and of
    NPO over ``args.rounds`` interleaved rounds, and their ratios."""
    torch.manual_seed(seed)
    data = synthetic_splits()
    tokenizer = train_bpe_tokenizer(
        [f"{q} {a}" for q, a in zip(data["retain"]["question"], data["retain"]["answer"])]
    )
    forget = tokenize_dataset(data["forget"].shuffle(seed=seed), tokenizer, origin="forget")
    collate = PaddingCollator(tokenizer.pad_token_id)
    rows = [forget[i] for i in range(len(forget))]
    batches = [
        collate(rows[(s * args.batch_size) % len(rows) :][: args.batch_size]) for s in range(args.steps)
    ]
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("sft", "npo"):
            model = build_tiny_llama(
                tokenizer, hidden_size=args.hidden_size, num_hidden_layers=args.layers, seed=seed
            )
            config = NPOConfig(
                output_dir=tmp, use_cpu=True, per_device_train_batch_size=args.batch_size, report_to="none"
            )
            if name == "sft":  # the plain Trainer: the model's own token cross-entropy
                trainers[name] = Trainer(
                    model=model, args=config, train_dataset=forget, data_collator=collate
                )
            else:  # reference log-probs cached in the dataset before training
                trainers[name] = NPOTrainer(model, config, forget_dataset=forget, processing_class=tokenizer)
            trainers[name].create_optimizer()
            trainers[name].current_gradient_accumulation_steps = 1  # set by train() in normal use
            trainers[name].model.train()
        cached = trainers["npo"].train_dataset["ref_logps"]
        npo_batches = [
            {**b, "ref_logps": torch.tensor(cached[(s * args.batch_size) % len(rows) :][: args.batch_size])}
            for s, b in enumerate(batches)
        ]
        timed_steps(trainers["sft"], batches[:3])  # warm-up
        timed_steps(trainers["npo"], npo_batches[:3])
        rounds = {"sft": [], "npo": []}
        for _ in range(args.rounds):
            rounds["sft"].append(timed_steps(trainers["sft"], batches))
            rounds["npo"].append(timed_steps(trainers["npo"], npo_batches))
    median = {
        name: {
            "wall": statistics.median(w for w, _ in values),
            "cpu": statistics.median(c for _, c in values),
        }
        for name, values in rounds.items()
    }
    return {
        "seed": seed,
        "sft_seconds_per_step": median["sft"]["wall"],
        "npo_seconds_per_step": median["npo"]["wall"],
        "ratio_wall": median["npo"]["wall"] / median["sft"]["wall"],
        "sft_cpu_seconds_per_step": median["sft"]["cpu"],
        "npo_cpu_seconds_per_step": median["npo"]["cpu"],
        "ratio_cpu": median["npo"]["cpu"] / median["sft"]["cpu"],
        "n_parameters": sum(p.numel() for p in trainers["sft"].model.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batch_size", "--batch-size", type=int, default=32, help="Forget rows per step (both arms)."
    )
    parser.add_argument("--steps", type=int, default=20, help="Steps per timed round.")
    parser.add_argument("--rounds", type=int, default=7, help="Interleaved SFT/NPO rounds (median reported).")
    parser.add_argument("--hidden_size", "--hidden-size", type=int, default=64, help="64 is the demo model.")
    parser.add_argument("--layers", type=int, default=2, help="2 is the demo model.")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="Seeds (initialisation, row order); mean ± sd.",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results JSON.")
    args = parser.parse_args(argv)
    per_seed = [measure(args, seed) for seed in args.seeds]
    result = {
        **aggregate_rows(
            [{k: v for k, v in r.items() if k not in ("seed", "n_parameters")} for r in per_seed]
        ),
        "per_seed": per_seed,
        "seeds": args.seeds,
        "target_ratio": 1.10,
        "config": {
            "batch_size": args.batch_size,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "n_parameters": per_seed[0]["n_parameters"],
            "torch_threads": torch.get_num_threads(),
        },
        "environment": environment(),
    }
    write_json_atomic(args.out, result)
    print(
        f"SFT {result['sft_seconds_per_step_mean'] * 1e3:.1f} ms/step, NPO (cached reference) "
        f"{result['npo_seconds_per_step_mean'] * 1e3:.1f} ms/step: ratio {result['ratio_wall_mean']:.3f} ± "
        f"{result['ratio_wall_sd'] or 0:.3f} wall, {result['ratio_cpu_mean']:.3f} CPU over seeds {args.seeds} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
