"""``DP2Config``: the two stages of DP2Unlearning in one set of arguments.

The inherited ``TrainConfig`` fields (learning rate, epochs, early stopping, ...) configure the **deletion
stage**, an ordinary (non-private) fine-tune of the DP model on the retain data. The ``dp_*`` fields and the
privacy budget configure the **DP stage**, DP-SGD with opacus on all the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.finetune_config import TrainConfig

PRIVACY_UNITS = ("subject", "record")
ACCOUNTANTS = ("prv", "rdp")


@dataclass
class DP2Config(TrainConfig):
    """Arguments of :class:`~hf_unlearn.trainers.dp2.trainer.DP2Trainer` and ``hf-unlearn dp-train``.

    The privacy unit decides what the (epsilon, delta) guarantee protects. ``"record"``: one training example
    (a QA pair or one text). ``"subject"``: every record of one subject (person, author, entity) together —
    user-level DP-SGD that samples subjects (Poisson, rate ``sample_rate``), sums each sampled subject's
    per-record gradients, clips that sum to ``dp_max_grad_norm`` and adds Gaussian noise; N is then the
    number of subjects. A deletion request that removes a whole subject is covered by the guarantee only with
    ``privacy_unit="subject"`` (a record-level epsilon grows with the records a person has, by group privacy),
    and the k subjects of one request (or of all requests so far) only by the group bound
    (k·epsilon, k·e^((k-1)·epsilon)·delta) of :func:`~hf_unlearn.trainers.dp2.privacy.group_privacy`.
    """

    # --- privacy budget ---
    privacy_unit: str = field(
        default="subject",
        metadata={
            "help": "What one unit of privacy is: 'subject' (all records of one subject, user-level DP-SGD) "
            "or 'record' (one example).",
            "choices": list(PRIVACY_UNITS),
        },
    )
    subject_column: str = field(
        default="subject", metadata={"help": "Column naming each row's subject (privacy_unit='subject')."}
    )
    target_epsilon: float = field(
        default=8.0,
        metadata={
            "help": "Privacy budget epsilon to spend over dp_epochs (ignored with dp_noise_multiplier)."
        },
    )
    target_delta: float = field(
        default=1e-5, metadata={"help": "Privacy delta; must be below 1/N (N = number of privacy units)."}
    )
    dp_noise_multiplier: float | None = field(
        default=None,
        metadata={
            "help": "Use this Gaussian noise multiplier instead of solving it from target_epsilon; the "
            "epsilon actually spent is then reported."
        },
    )
    dp_accountant: str = field(
        default="prv",
        metadata={
            "help": "Opacus privacy accountant: 'prv' (tighter) or 'rdp'.",
            "choices": list(ACCOUNTANTS),
        },
    )
    # --- DP-SGD optimisation ---
    dp_max_grad_norm: float = field(
        default=1.0, metadata={"help": "Clip norm C of each unit's (subject's or record's) gradient."}
    )
    dp_batch_size: int = field(
        default=32,
        metadata={
            "help": "Expected privacy units per step; the Poisson sample rate is 1 / ceil(N / dp_batch_size)."
        },
    )
    dp_physical_batch_rows: int = field(
        default=64,
        metadata={
            "help": "Records per forward/backward pass in the DP stage (memory and padding only; the sampled "
            "batch and the accounting are unchanged)."
        },
    )
    dp_epochs: int = field(default=10, metadata={"help": "Passes over the privacy units in the DP stage."})
    dp_learning_rate: float = field(default=5e-3, metadata={"help": "AdamW learning rate of the DP stage."})
    reproducible_dp_noise: bool = field(
        default=False,
        metadata={
            "help": "Research only: seed the DP noise and Poisson sampling from --seed so that runs repeat. "
            "Anyone who knows the seed can regenerate the noise, which voids the guarantee; the card then "
            "warns. Default: seeded from os.urandom, never recorded."
        },
    )
    dp_lora_r: int = field(
        default=0,
        metadata={
            "help": "DP-train LoRA adapters of this rank on all linear layers instead of the full model "
            "(0 = full model); the adapters are merged into the saved DP model."
        },
    )
