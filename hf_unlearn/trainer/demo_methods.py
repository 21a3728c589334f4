"""The GA / NPO / SimNPO rows of ``hf-unlearn demo`` (registered in :data:`hf_unlearn.demo.DEMO_METHODS`).

Each function has the demo's signature ``fn(full_model_dir, data, out_dir, seed) -> (model, extra)``: it
unlearns ``data["forget"]`` (QA rows) from the full model with ``data["retain"]`` as the retain set, saves the
result in ``out_dir`` and returns the model with ``extra = {"seconds", "steps", "stopped_early"}``. The
``seconds`` cover the unlearning itself: building the trainer (tokenizing, caching reference log-probs) and
training; not loading, saving or scoring. Settings are tuned on the embedded default (200 people, 10 % forget),
see :data:`DEMO_SETTINGS`.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import torch
from datasets import DatasetDict

# Tuned on the embedded default (see README "Unlearning"): forget batch 32 (of 160 forget rows), 15-25 steps.
# The regularised rows see 64 retain rows per step at retain_weight 5; NPO uses beta 1.0 rather than the paper's
# 0.1 because a larger beta stops pushing on answers that are already forgotten, which spares the retain people.
# SimNPO is run with its paper's retain NLL term (gdr).
_RETAIN = {"retain_weight": 5.0, "retain_batch_size": 64}
# demo row -> (method in hf_unlearn.unlearn_cli.METHODS, config overrides)
DEMO_SETTINGS: dict[str, tuple[str, dict]] = {
    "ga": ("ga", {"learning_rate": 1e-3, "max_steps": 15}),
    "ga_gdr": ("ga", {"regularizer": "gdr", "learning_rate": 5e-3, "max_steps": 20, **_RETAIN}),
    "ga_klr": ("ga", {"regularizer": "klr", "learning_rate": 5e-3, "max_steps": 20, **_RETAIN}),
    "npo": ("npo", {"beta": 1.0, "learning_rate": 7e-4, "max_steps": 20}),
    "npo_gdr": (
        "npo",
        {"regularizer": "gdr", "beta": 1.0, "learning_rate": 5e-3, "max_steps": 25, **_RETAIN},
    ),
    "npo_klr": (
        "npo",
        {"regularizer": "klr", "beta": 1.0, "learning_rate": 5e-3, "max_steps": 20, **_RETAIN},
    ),
    "simnpo": (
        "simnpo",
        {"regularizer": "gdr", "learning_rate": 7e-3, "max_steps": 20, **_RETAIN, "retain_weight": 3.0},
    ),
}


def unlearn_demo_row(
    name: str, full_model_dir: Path, data: DatasetDict, out_dir: Path, seed: int, **overrides
) -> tuple:
    """Run demo row ``name`` (a key of :data:`DEMO_SETTINGS`; ``overrides`` replace its settings)."""
    from hf_unlearn.models import load_model_and_tokenizer
    from hf_unlearn.unlearn_cli import resolve_method

    method, settings = DEMO_SETTINGS[name]
    config_cls, trainer_cls = resolve_method(method)
    model, tokenizer = load_model_and_tokenizer(full_model_dir, dtype=torch.float32)
    args = config_cls(
        output_dir=str(out_dir),
        seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=10,
        **{**settings, **overrides},
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer = trainer_cls(
        model, args, forget_dataset=data["forget"], retain_dataset=data["retain"], processing_class=tokenizer
    )
    result = trainer.train()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    trainer.save_unlearned(out_dir)
    extra = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "steps": result.global_step,
        "stopped_early": trainer.stopped_early,
    }
    return trainer.model.eval(), extra


ga = partial(unlearn_demo_row, "ga")
ga_gdr = partial(unlearn_demo_row, "ga_gdr")
ga_klr = partial(unlearn_demo_row, "ga_klr")
npo = partial(unlearn_demo_row, "npo")
npo_gdr = partial(unlearn_demo_row, "npo_gdr")
npo_klr = partial(unlearn_demo_row, "npo_klr")
simnpo = partial(unlearn_demo_row, "simnpo")
