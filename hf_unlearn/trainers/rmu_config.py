"""``RMUConfig``: representation misdirection at one decoder layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.base_config import REGULARIZERS, UnlearningConfig


@dataclass
class RMUConfig(UnlearningConfig):
    """RMU (Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning").

    At decoder layer ``steering_layer`` the hidden states of the forget answer tokens are pushed toward a fixed
    random vector ``c * u`` (``u`` a seeded unit vector, ``c = steering_coeff``) and, with ``regularizer="embed"``
    (the default), the hidden states of the retain answer tokens are held at the frozen reference model's:
    ``L = forget_weight * mse(h_forget, c * u) + retain_weight * mse(h_retain, h_ref_retain)`` (``retain_weight``
    is the paper's ``alpha``). Prompt and padding tokens do not count. As in the paper and open-unlearning, only
    some weights train: by default the MLP output projections (``trainable_params``) of the steering layer and
    the two below it (``trainable_layers``); under LoRA, the adapters on those modules.
    """

    regularizers = (*REGULARIZERS, "embed")

    steering_layer: int | None = field(
        default=None,
        metadata={
            "help": "Decoder layer (0-based) whose output is steered; default the middle one "
            "(num_hidden_layers // 2)."
        },
    )
    steering_coeff: float = field(
        default=20.0,
        metadata={
            "help": "Norm c of the control vector c * u (> 0). It should exceed the norm of the layer's hidden "
            "states; the paper uses 6.5-300 depending on the model."
        },
    )
    control_seed: int = field(default=0, metadata={"help": "Seed of the random direction u."})
    trainable_layers: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated decoder layers whose weights train (each <= steering_layer: layers above it "
            "do not change its output); default the steering layer and the two below it."
        },
    )
    trainable_params: str = field(
        default=r"mlp\.down_proj",
        metadata={
            "help": "Regular expression searched in the parameter names (below a trainable layer) that train: "
            r"the default 'mlp\.down_proj' is the paper's MLP output projection, 'mlp' every MLP weight."
        },
    )
    regularizer: str = field(
        default="embed",
        metadata={
            "help": "Retain term: 'embed' (RMU's MSE between the retain hidden states at steering_layer and the "
            "reference model's; the default), 'gdr', 'klr' or 'none'.",
            "choices": list(regularizers),
        },
    )
    retain_weight: float = field(
        default=10.0,
        metadata={
            "help": "Weight of the retain term (RMU's alpha). 10 holds the embedded tiny model's retain set; the "
            "paper uses 100-1200 on 7B models, whose hidden states differ in scale."
        },
    )
    learning_rate: float = field(
        default=1e-2,
        metadata={
            "help": "Peak AdamW learning rate (few weights train, so it is higher than the other methods'; the "
            "paper uses 5e-5 on 7B models)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.steering_coeff <= 0:
            raise ValueError(
                f"steering_coeff={self.steering_coeff} must be > 0: it is the norm of the target the forget "
                "hidden states are pushed to; pick one above their norm (e.g. 20)."
            )
        if self.steering_layer is not None and self.steering_layer < 0:
            raise ValueError(
                f"steering_layer={self.steering_layer} is negative; give a 0-based decoder layer, or leave it unset "
                "for the middle layer."
            )
