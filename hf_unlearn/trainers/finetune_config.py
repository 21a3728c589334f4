"""``TrainConfig``: the training arguments of ``hf-unlearn train`` (and of the DP stage, which extends them).

Kept apart from :mod:`hf_unlearn.trainers.finetune` so that parsing options (``--help`` included) needs
``transformers.TrainingArguments`` only, not the ``Trainer`` and ``datasets``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


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
