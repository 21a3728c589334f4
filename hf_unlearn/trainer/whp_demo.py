"""The WHP row of ``hf-unlearn demo`` (registered in :data:`hf_unlearn.demo.DEMO_METHODS` as ``whp``).

``whp(full_model_dir, data, out_dir, seed) -> (model, extra)`` relabels ``data["forget"]`` (QA rows) with
WHP's generic predictions — reinforced LoRA adapter, mined anchored-term dictionary (retain rows as the pool
of generic terms), ``v_base - alpha * ReLU(v_reinforced - v_base)`` — and fine-tunes the full model on them
with retain batches (:class:`~hf_unlearn.trainer.whp_config.WHPConfig` defaults). It saves the model and
the dictionary. ``extra`` holds ``seconds`` (building the trainer — reinforced adapter, mining, relabeling — plus
training; not loading, saving or scoring), ``stage_seconds`` (``reinforce``, ``mine``, ``relabel``, ``train``;
they sum to at most ``seconds``), ``steps``, ``stopped_early``,
``n_terms`` and, when the forget rows have a ``fact`` column naming each answer's kind (the embedded default;
TOFU has none), ``type_match`` (the fraction of forget questions whose greedy answer is an entity of the asked
kind, see :mod:`hf_unlearn.evaluation.type_match`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from datasets import DatasetDict


def whp(full_model_dir: Path, data: DatasetDict, out_dir: Path, seed: int, **overrides) -> tuple:
    """Unlearn ``data["forget"]`` from the full model with WHP; see the module docstring."""
    from hf_unlearn.evaluation.type_match import type_match_rate
    from hf_unlearn.models import load_model_and_tokenizer
    from hf_unlearn.trainer.whp_config import WHPConfig
    from hf_unlearn.trainer.whp_trainer import WHPTrainer

    model, tokenizer = load_model_and_tokenizer(full_model_dir, dtype=torch.float32)
    args = WHPConfig(
        output_dir=str(out_dir), seed=seed, use_cpu=True, disable_tqdm=True, logging_steps=10, **overrides
    )
    start = time.perf_counter()
    trainer = WHPTrainer(
        model,
        args,
        forget_dataset=data["forget"],
        retain_dataset=data["retain"],
        processing_class=tokenizer,
        retain_text_dataset=data["retain_text"] if "retain_text" in data else None,
    )
    built = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    stages = {**trainer.stage_seconds, "train": time.perf_counter() - built}
    trainer.save_unlearned(out_dir)
    model = trainer.model.eval()
    extra = {
        "seconds": seconds,
        "stage_seconds": stages,
        "steps": result.global_step,
        "stopped_early": trainer.stopped_early,
        "n_terms": len(trainer.term_dictionary),
    }
    if "fact" in data["forget"].column_names:  # the embedded default names each answer's kind; TOFU does not
        extra["type_match"] = type_match_rate(model, tokenizer, data["forget"])
    return model, extra
