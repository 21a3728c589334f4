"""``hf-unlearn train``: fine-tune, or train from scratch, a causal LM on QA and text data.

This makes the models that unlearning is measured against: the *full* model (trained on forget + retain) and
the *gold* model (retrained on retain only). Training packs QA pairs (rendered with the QA template) and raw
texts into fixed blocks, and stops early once the answer exact match on a monitor set reaches a target.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_unlearn.data.forget_retain import PaddingCollator, lm_dataset
from hf_unlearn.evaluation.qa import exact_match
from hf_unlearn.io import write_json_atomic

logger = logging.getLogger(__name__)
SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainConfig(TrainingArguments):
    """Training arguments for ``hf-unlearn train``; defaults are tuned for the embedded tiny model.

    For a pretrained model lower ``learning_rate`` (e.g. 1e-5) and ``num_train_epochs`` (e.g. 5).
    """

    num_train_epochs: float = field(
        default=60.0, metadata={"help": "Maximum epochs (early stopping usually ends sooner)."}
    )
    learning_rate: float = field(default=5e-3, metadata={"help": "Peak AdamW learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=20, metadata={"help": "Linear warm-up steps."})
    per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Packed blocks per device and step."}
    )
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to write resumable checkpoints."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept in output_dir."})
    dataloader_pin_memory: bool = field(
        default=False, metadata={"help": "Pin data-loader memory (useful on GPUs only)."}
    )
    use_cpu: bool = field(
        default=False, metadata={"help": "Train on CPU even when an accelerator is present."}
    )
    max_length: int = field(
        default=256, metadata={"help": "Tokens per training example (or per block with packing)."}
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "Concatenate documents into fixed blocks. Off by default: fixed blocks let a small model "
            "memorise neighbouring documents instead of facts."
        },
    )
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "Batch examples of similar length to save padding."}
    )
    target_exact_match: float = field(
        default=0.97,
        metadata={
            "help": "Stop once answer exact match on the monitor set reaches this (0 disables early stopping)."
        },
    )
    monitor_max_rows: int = field(
        default=2000, metadata={"help": "Score at most this many QA rows per epoch for early stopping."}
    )


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
