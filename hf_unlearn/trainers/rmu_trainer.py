"""``RMUTrainer``: representation misdirection for unlearning (Li et al. 2024, "The WMDP Benchmark")."""

from __future__ import annotations

import re

import torch

from hf_unlearn.data.formats import IGNORE_INDEX
from hf_unlearn.losses import masked_activation_mse, rmu_control_vector
from hf_unlearn.trainers.base_trainer import UnlearningTrainer
from hf_unlearn.trainers.utils import is_peft_model


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder layers of a causal LM (unwrapping DDP and peft): ``model.get_decoder().layers``.

    Raises:
        ValueError: the model has no ``get_decoder().layers`` (not a decoder-only transformers model).
    """
    model = getattr(model, "module", model)  # DDP / DataParallel
    model = model.get_base_model() if is_peft_model(model) else model
    layers = getattr(model.get_decoder(), "layers", None) if hasattr(model, "get_decoder") else None
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(
            f"RMU steers a decoder layer's output but found no decoder layers in {type(model).__name__} (it looks "
            "for model.get_decoder().layers, as in Llama/Mistral/Qwen); use a decoder-only causal LM."
        )
    return layers


class RMUTrainer(UnlearningTrainer):
    """RMU: the forget answers' hidden states at ``args.steering_layer`` go to ``steering_coeff * u``; with
    ``regularizer="embed"`` the retain answers' hidden states there stay at the reference model's (under LoRA the
    model with adapters disabled). Only the parameters chosen by ``trainable_layers``/``trainable_params`` train.

    Logs ``retain_hidden_mse`` (the ``embed`` term) beside the base trainer's metrics.

    Raises:
        ValueError: ``steering_layer`` or ``trainable_layers`` outside the model's layers, a trainable layer above
            the steering layer, or a ``trainable_params`` pattern that selects no trainable parameter.
    """

    method_name = "rmu"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.args
        layers = decoder_layers(self.model)
        n = len(layers)
        steering = n // 2 if config.steering_layer is None else config.steering_layer
        if steering >= n:
            raise ValueError(
                f"steering_layer={steering} is out of range: the model has {n} decoder layers (0 to {n - 1}); "
                f"pick one of them (the default is the middle one, {n // 2})."
            )
        given = (config.trainable_layers or "").replace(",", " ").split()
        if not all(i.isdigit() for i in given):
            raise ValueError(
                f"trainable_layers={config.trainable_layers!r} is not a comma-separated list of layer numbers; "
                "give e.g. '0,1', or leave it unset for the steering layer and the two below it."
            )
        trainable = [int(i) for i in given] or sorted({max(steering - k, 0) for k in range(3)})
        if any(i > steering for i in trainable):
            raise ValueError(
                f"trainable_layers={config.trainable_layers!r} must name layers from 0 to the steering layer "
                f"({steering}): layers above it do not change its output. Leave it unset for the steering layer and "
                "the two below it."
            )
        keep = {
            id(p)
            for i in trainable
            for name, p in layers[i].named_parameters()
            if p.requires_grad and re.search(config.trainable_params, name)
        }
        if not keep:
            raise ValueError(
                f"trainable_params={config.trainable_params!r} matches no trainable parameter of layers {trainable}"
                " (under LoRA only adapters train: the pattern must name a module that has one, e.g. via "
                "lora_target_modules); e.g. 'mlp' for every MLP weight."
            )
        for p in self.model.parameters():
            p.requires_grad_(id(p) in keep)
        self.steering_layer, self.trainable_layers = steering, trainable
        hidden_size = self.accelerator.unwrap_model(self.model).config.hidden_size
        self.control = rmu_control_vector(hidden_size, config.steering_coeff, config.control_seed)
        self.control = self.control.to(self.args.device)  # (D,)
        # the steering layer's last output (B, T, D), and the training forward's, kept through the reference pass
        self._hidden: torch.Tensor | None = None
        self._step_hidden: torch.Tensor | None = None
        # the steering layers whose output is captured during compute_loss (the reference's too, when separate)
        self._steered = [layers[steering]]
        if self.ref_model is not None:
            self._steered.append(decoder_layers(self.ref_model)[steering])

    @property
    def uses_reference_forward(self) -> bool:
        """The ``embed`` retain term runs the reference on every retain batch."""
        return self.args.regularizer == "embed"

    def _capture(self, module, inputs, output) -> None:
        self._hidden = output[0] if isinstance(output, tuple) else output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The base trainer's loss, with the steering layer's output captured by forward hooks that exist only
        during the call (the trained model is returned without hooks, so it can be copied and saved as usual)."""
        handles = [layer.register_forward_hook(self._capture) for layer in self._steered]
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            for handle in handles:
                handle.remove()
            self._hidden = self._step_hidden = None

    def forget_loss(self, model, forget, logits, logps, counts):
        # the forward just run: forget rows first, then the retain rows when a regulariser concatenated them
        self._step_hidden = self._hidden
        hidden = self._step_hidden[: len(forget["input_ids"])]  # (B, T, D)
        return masked_activation_mse(hidden, self.control, forget["labels"] != IGNORE_INDEX)

    def retain_regularizer(self, model, retain, retain_logits, nll):
        if self.args.regularizer != "embed":
            return super().retain_regularizer(model, retain, retain_logits, nll)
        hidden = self._step_hidden[-len(retain["input_ids"]) :]  # (B', T, D)
        self.reference_logits(model, retain)  # its steering-layer output lands in self._hidden
        mse = masked_activation_mse(hidden, self._hidden, retain["labels"] != IGNORE_INDEX)
        return mse, {"retain_hidden_mse": mse.detach()}

    @property
    def card_method(self) -> str:
        """``rmu`` with its own retain term, else ``rmu_<regularizer>``."""
        return self.method_name if self.args.regularizer == "embed" else super().card_method
