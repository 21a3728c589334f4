"""``UnlearningConfig``: the training arguments every unlearning method shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

REGULARIZERS = ("none", "gdr", "klr")


def check_max_steps(max_steps: int) -> None:
    """Refuse ``max_steps=0``, which ``transformers`` runs as one step (negative: use the epochs).

    Raises:
        ValueError: ``max_steps`` is 0.
    """
    if max_steps == 0:
        raise ValueError(
            "max_steps=0 would train nothing (transformers would still run a step and save the result); pass a "
            "positive number of steps, or -1 (the default) to train for num_train_epochs."
        )


@dataclass
class UnlearningConfig(TrainingArguments):
    """Arguments shared by every :class:`~hf_unlearn.trainers.base_trainer.UnlearningTrainer`.

    On top of ``TrainingArguments`` it holds how the forget and retain losses are combined, how the reference
    model is obtained, the retain-loss safety rail, and the model options (LoRA, 4-bit/8-bit QLoRA, merging)
    used when the trainer is given a model *path*. One optimisation step sees one forget batch and one retain
    batch (``per_device_train_batch_size`` and ``retain_batch_size`` rows); an "epoch" is one pass over the forget set.

    Defaults suit the embedded tiny model; on a pretrained model lower ``learning_rate`` (e.g. 1e-5).
    """

    #: the values ``regularizer`` accepts (a method with a retain term of its own adds it, as RMU adds ``embed``);
    #: a plain class attribute, not a field
    regularizers = REGULARIZERS

    # --- the objective ---
    regularizer: str = field(
        default="none",
        metadata={
            "help": "Retain regulariser: 'none', 'gdr' (gradient descent: NLL on retain batches) or 'klr' "
            "(KL(ref || model) on retain batches).",
            "choices": list(REGULARIZERS),
        },
    )
    forget_weight: float = field(default=1.0, metadata={"help": "Weight of the forget loss."})
    retain_weight: float = field(
        default=5.0,
        metadata={
            "help": "Weight of the retain regulariser (ignored with regularizer='none'). 5 holds the retain set on "
            "the datasets checked in benchmarks/safe_defaults.py; 1 let it collapse there."
        },
    )
    retain_batch_size: int | None = field(
        default=64,
        metadata={
            "help": "Retain rows per device and step (None: per_device_train_batch_size). More retain rows "
            "per forget row make the regulariser hold the retain set more firmly."
        },
    )
    max_length: int = field(default=256, metadata={"help": "Tokens kept per forget/retain example."})
    # --- the reference model ---
    ref_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Reference model to load (frozen) when none is passed. Default: under LoRA the same model "
            "with adapters disabled (no copy); otherwise one frozen load of the model being unlearned."
        },
    )
    precompute_ref_log_probs: bool = field(
        default=True,
        metadata={
            "help": "Compute the forget set's reference sequence log-probs once before training, so methods "
            "that need them (NPO) cost what a plain fine-tuning step costs."
        },
    )
    # --- safety rail ---
    max_retain_loss_ratio: float = field(
        default=5.0,
        metadata={
            "help": "Stop early when the retain loss exceeds this multiple of its value at the start (and "
            "min_retain_loss_increase above it), so gradient ascent cannot silently destroy the model. "
            "0 disables the rail."
        },
    )
    safety_rail_restore: bool = field(
        default=True,
        metadata={
            "help": "When the safety rail stops training, set the weights back to the last step whose retain loss "
            "was within the rail (keeps one CPU copy of the trainable parameters, refreshed each step)."
        },
    )
    min_retain_loss_increase: float = field(
        default=0.5,
        metadata={
            "help": "The safety rail also needs the retain loss to have risen by at least this many nats "
            "(a well-memorised model starts near 0, where ratios alone are noise)."
        },
    )
    # --- model options, used when the trainer loads the model from a path ---
    lora_r: int = field(
        default=0, metadata={"help": "LoRA rank; 0 fine-tunes every weight, > 0 trains LoRA adapters only."}
    )
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "Modules that get adapters: 'all-linear' or a comma-separated list of names."},
    )
    load_in_4bit: bool = field(
        default=False, metadata={"help": "Load the model in 4-bit NF4 (bitsandbytes) and train LoRA: QLoRA."}
    )
    load_in_8bit: bool = field(default=False, metadata={"help": "Load the model in 8-bit and train LoRA."})
    bnb_4bit_quant_type: str = field(
        default="nf4", metadata={"help": "4-bit quantization type.", "choices": ["nf4", "fp4"]}
    )
    bnb_4bit_compute_dtype: str = field(
        default="float32", metadata={"help": "Compute dtype of 4-bit layers (float32 is fastest on CPU)."}
    )
    merge_adapters: bool = field(
        default=False,
        metadata={"help": "Save a merged full model instead of LoRA adapters.", "aliases": ["--merge"]},
    )
    # --- TrainingArguments defaults changed for unlearning ---
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    num_train_epochs: float = field(default=8.0, metadata={"help": "Passes over the forget set."})
    per_device_train_batch_size: int = field(
        default=32, metadata={"help": "Forget rows (and retain rows) per device and step."}
    )
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    logging_steps: float = field(default=10, metadata={"help": "Log losses every N steps."})
    save_strategy: str = field(default="no", metadata={"help": "When to write resumable checkpoints."})
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Experiment trackers to report to."}
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={
            "help": "Keep dataset columns the model's forward does not take (cached reference log-probs)."
        },
    )
    dataloader_pin_memory: bool = field(
        default=False, metadata={"help": "Pin data-loader memory (useful on GPUs only)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.regularizer not in self.regularizers:
            raise ValueError(
                f"regularizer={self.regularizer!r} is not one of {self.regularizers}: use 'none' (forget loss only), "
                "'gdr' (plus NLL on retain) or 'klr' (plus KL to the reference on retain); see the regularizer "
                "field's help for a method's own."
            )
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("Got load_in_4bit=True and load_in_8bit=True; pick one quantization.")
        if self.max_retain_loss_ratio < 0:
            raise ValueError(
                f"max_retain_loss_ratio={self.max_retain_loss_ratio} is negative; use 0 to disable the rail."
            )
        check_max_steps(self.max_steps)
        if self.lora_r < 0:
            raise ValueError(
                f"lora_r={self.lora_r} is negative; use 0 for full fine-tuning or r > 0 for LoRA."
            )

    @property
    def uses_lora(self) -> bool:
        """LoRA is on when a rank is set or the model is loaded quantized (QLoRA)."""
        return self.lora_r > 0 or self.load_in_4bit or self.load_in_8bit
