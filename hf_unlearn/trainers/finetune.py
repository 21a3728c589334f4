"""``hf-unlearn train``: fine-tune, or train from scratch, a causal LM on QA and text data.

This makes the models that unlearning is measured against: the *full* model (trained on forget + retain) and
the *gold* model (retrained on retain only). Training packs QA pairs (rendered with the QA template) and raw
texts into fixed blocks, and stops early once the answer exact match on a monitor set reaches a target.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from datasets import Dataset
from transformers import Trainer, TrainerCallback

from hf_unlearn.data.forget_retain import PaddingCollator, lm_dataset
from hf_unlearn.evaluation.qa import exact_match
from hf_unlearn.io import write_json_atomic
from hf_unlearn.trainers.finetune_config import TrainConfig

logger = logging.getLogger(__name__)
SUMMARY_FILE = "training_summary.json"


class ExactMatchStopper(TrainerCallback):
    """After each epoch, score teacher-forced answer exact match on ``monitor``; stop at ``target``."""

    def __init__(self, monitor: Dataset, target: float, batch_size: int = 128):
        self.monitor, self.target, self.batch_size = monitor, target, batch_size
        self.history: list[tuple[float, float]] = []

    def on_epoch_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        em = exact_match(model, processing_class, self.monitor, self.batch_size)
        self.history.append((state.epoch, em))
        state.log_history.append({"epoch": state.epoch, "step": state.global_step, "monitor_exact_match": em})
        logger.info("epoch %.0f: monitor exact match %.3f", state.epoch, em)
        if self.target > 0 and em >= self.target:
            control.should_training_stop = True
            control.should_save = True
        return control


def train_lm(
    model,
    tokenizer,
    args: TrainConfig,
    qa_sets: list[Dataset],
    text_sets: list[Dataset] = (),
    resume_from_checkpoint: str | bool | None = None,
) -> dict:
    """Train ``model`` on packed QA and text data, save it with its tokenizer, and return a summary.

    The summary (also written to ``output_dir/training_summary.json`` once the model is saved, so its presence
    marks a complete run) holds ``seconds``, ``epochs``, ``steps`` and the final ``monitor_exact_match``.
    """
    train = lm_dataset(tokenizer, list(qa_sets), list(text_sets), args.max_length, args.packing)
    monitor_rows = [ds.select_columns(["question", "answer"]) for ds in qa_sets]
    monitor = Dataset.from_dict(
        {k: [v for ds in monitor_rows for v in ds[k]] for k in ("question", "answer")}
    ).shuffle(seed=args.seed)
    monitor = monitor.select(range(min(len(monitor), args.monitor_max_rows)))
    stopper = ExactMatchStopper(monitor, args.target_exact_match)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=PaddingCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[stopper],
    )
    start = time.perf_counter()
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "last"):
        resume_from_checkpoint = True  # the newest checkpoint in output_dir
    result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    seconds = time.perf_counter() - start
    trainer.save_model(args.output_dir)
    summary = {
        "seconds": seconds,
        "epochs": trainer.state.epoch,
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "monitor_exact_match": stopper.history[-1][1] if stopper.history else None,
        "train_examples": len(train),
    }
    write_json_atomic(Path(args.output_dir) / SUMMARY_FILE, summary)
    return summary
