"""``UnlearningTrainer``: a ``transformers.Trainer`` that sees a forget batch and a retain batch each step.

Subclasses implement one method, :meth:`UnlearningTrainer.forget_loss`; the base class does the rest:

- data: ``forget_dataset`` is the Trainer's train set (QA or text rows, tokenized here with answer-only labels;
  already tokenized sets are used as they are). Each forget micro-batch is paired with the next batch of a
  seeded, per-rank shuffled stream over ``retain_dataset`` (deterministic, so a resumed run continues the
  stream where it stopped). Forget and retain must not overlap (``check_disjoint``).
- the objective: ``forget_weight * forget_loss + retain_weight * regulariser`` with the regulariser of
  ``args.regularizer``: ``none``, ``gdr`` (NLL on retain) or ``klr`` (KL(ref || model) on retain); a method with a
  retain term of its own overrides :meth:`UnlearningTrainer.retain_regularizer` (RMU's ``embed``). With a
  regulariser, forget and retain rows go through the model in one concatenated forward pass; without one, the
  retain loss is still measured (no gradient) for logging and the safety rail.
- the reference model: an explicit ``ref_model``; else under peft the same model with adapters disabled (no
  copy); else ``args.ref_model_name_or_path`` or the model's own path loaded once, frozen. With
  ``args.precompute_ref_log_probs`` the forget set's reference sequence log-probs are computed once before
  training (on rank 0 and broadcast under FSDP's rank-0-only loading) and travel in the batches as ``ref_logps``.
- models: ``model`` may be a path, loaded with ``args.load_in_4bit``/``load_in_8bit``; ``peft_config`` (or
  ``args.lora_r > 0``, or quantization) trains LoRA adapters only. :meth:`save_unlearned` saves the adapters
  or, with ``args.merge_adapters``, a merged model.
- logging: ``forget_loss``, ``retain_loss`` (retain NLL), ``ref_kl`` (with ``klr``), ``forget_logp`` and
  ``retain_logp`` (mean per-token log-probs) through the normal ``log()`` path.
- safety rail: training stops when the retain loss exceeds ``args.max_retain_loss_ratio`` times its first
  value (and ``args.min_retain_loss_increase`` above it); :attr:`stopped_early` then says when and why.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from pathlib import Path

import torch
from datasets import Dataset
from transformers import Trainer, set_seed

from hf_unlearn.data.forget_retain import PaddingCollator, tokenize_dataset
from hf_unlearn.data.formats import IGNORE_INDEX
from hf_unlearn.data.loading import check_disjoint, warn_long_rows
from hf_unlearn.losses import mean_token_log_prob, retain_kl, retain_nll, sequence_log_probs
from hf_unlearn.models import check_vocab
from hf_unlearn.trainers.base_config import UnlearningConfig
from hf_unlearn.trainers.utils import (
    apply_peft,
    disabled_adapter,
    is_peft_model,
    is_quantized,
    load_unlearning_model,
    lora_config,
    rank0_only_weights,
    save_unlearned,
    weights_on_every_rank,
)

logger = logging.getLogger(__name__)
MODEL_INPUTS = ("input_ids", "attention_mask", "labels")
PAD_VALUES = {"attention_mask": 0, "labels": IGNORE_INDEX}


def pad_to_width(
    batch: dict[str, torch.Tensor], width: int, pad_token_id: int, position_pads: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad the ``(B, T)`` model inputs of ``batch`` to ``(B, width)``, and every other per-position key in
    ``position_pads`` (key -> pad value) that the batch holds; other keys are kept as they are."""
    out = dict(batch)
    pads = {**{k: PAD_VALUES.get(k, pad_token_id) for k in MODEL_INPUTS}, **(position_pads or {})}
    for key, value in pads.items():
        extra = width - batch[key].shape[1] if key in batch else 0
        if extra > 0:
            out[key] = torch.nn.functional.pad(batch[key], (0, extra), value=value)
    return out


def write_card_or_warn(output_dir: Path, **card) -> None:
    """Write the model card beside a saved model; a card that cannot be written safely is skipped with a
    warning (the model is already saved, and a card that would leak forget-set text must not exist)."""
    from hf_unlearn.hub.card import write_model_card

    try:
        write_model_card(output_dir, **card)
    except ValueError as err:
        logger.warning("Model card not written for %s: %s", output_dir, err)


def resolve_model(model, processing_class, args: UnlearningConfig):
    """Load ``model`` when it is a path (quantized as ``args`` asks) and return it with a tokenizer that has a
    pad token.

    Raises:
        ValueError: ``model`` is a loaded model and no ``processing_class`` (tokenizer) was given.
    """
    if isinstance(model, (str, Path)):
        model, tokenizer = load_unlearning_model(
            model,
            None,
            args.load_in_4bit,
            args.load_in_8bit,
            args.bnb_4bit_quant_type,
            args.bnb_4bit_compute_dtype,
        )
        processing_class = processing_class or tokenizer
    if processing_class is None:
        raise ValueError("processing_class (the tokenizer) is required when model is not a path.")
    if processing_class.pad_token is None:
        processing_class.pad_token = processing_class.eos_token
    return model, processing_class


class UnlearningTrainer(Trainer):
    """Base trainer for unlearning; see the module docstring for what it does.

    Args:
        model: a causal LM, a ``PeftModel``, or a path/Hub id loaded with the quantization options of ``args``.
        args: an :class:`UnlearningConfig` (or a method's subclass of it).
        forget_dataset: rows to forget: QA (``question``/``answer``) or text (``text``), or tokenized rows
            (``input_ids``/``attention_mask``/``labels``).
        retain_dataset: rows to keep; needed by the ``gdr``/``klr`` regularisers and the safety rail.
        ref_model: an explicit frozen reference model (see the module docstring for the defaults).
        processing_class: the tokenizer (loaded with the model when ``model`` is a path).
        peft_config: a ``peft.LoraConfig``; only the adapters train. Built from ``args.lora_*`` when omitted and
            ``args.lora_r > 0`` or the model is quantized.

    Raises:
        ValueError: no forget set; a regulariser without a retain set; forget and retain overlap; the tokenizer
            does not fit the model (a quantized model without a ``peft_config`` gets LoRA adapters from
            ``args.lora_*``, rank 8 when ``lora_r`` is 0).
        TypeError: ``args`` is not an ``UnlearningConfig``.
        ImportError: 4-bit/8-bit loading without bitsandbytes (names the ``quant`` extra).
    """

    #: whether :meth:`forget_loss` needs the reference model's sequence log-probs of the forget batch
    #: (``forget["ref_logps"]``); NPO sets it.
    uses_forget_reference: bool = False
    #: whether the method runs the reference model on every step (UNDIAL's logits, RMU's hidden states), so a
    #: reference must be kept even when the forget set's log-probs are cached
    uses_reference_forward: bool = False
    # the method's name on model cards (see hf_unlearn.hub.card.METHODS); subclasses set it
    method_name: str = "unlearning"
    #: per-position columns of the forget batch besides the model inputs (key -> pad value), padded with them
    #: when a longer retain batch widens the joint forward
    position_pads: dict[str, int] = {}

    def __init__(
        self,
        model,
        args: UnlearningConfig,
        forget_dataset: Dataset | None = None,
        retain_dataset: Dataset | None = None,
        ref_model=None,
        processing_class=None,
        peft_config=None,
        data_collator=None,
        callbacks=None,
        optimizers=(None, None),
        **kwargs,
    ):
        if not isinstance(args, UnlearningConfig):
            raise TypeError(
                f"args must be an UnlearningConfig (or a method's config), got {type(args).__name__}; build one "
                "with e.g. NPOConfig(output_dir=...)."
            )
        if forget_dataset is None:
            raise ValueError("forget_dataset is required: the rows to unlearn.")
        if len(forget_dataset) == 1:
            logger.warning(
                "The forget set has 1 row: every step repeats it, and the retain set and the safety rail are all "
                "that hold the rest of the model. Check that this is the whole deletion request."
            )
        # the rows whose fingerprint goes on the model card (a subclass may have set the original rows)
        self.card_forget_rows = getattr(self, "card_forget_rows", forget_dataset)
        self.card_retain_rows = (
            retain_dataset  # what the forget set shares with it is left out of the scan record
        )
        if retain_dataset is None and args.regularizer != "none":
            raise ValueError(
                f"regularizer={args.regularizer!r} needs a retain_dataset; pass one or use regularizer='none'."
            )
        model, processing_class = resolve_model(model, processing_class, args)
        check_vocab(model, processing_class)
        if peft_config is None and not is_peft_model(model) and (args.uses_lora or is_quantized(model)):
            targets = args.lora_target_modules
            targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
            peft_config = lora_config(args.lora_r or 8, args.lora_alpha, args.lora_dropout, targets)
        if peft_config is not None:
            set_seed(args.seed)  # LoRA weights are drawn here, before Trainer seeds: keep runs reproducible
            model = apply_peft(model, peft_config, args.gradient_checkpointing)
        if retain_dataset is not None:
            check_disjoint(forget_dataset, retain_dataset)
        forget = self._tokenized(forget_dataset, processing_class, args.max_length, "forget_dataset")
        retain = (
            None
            if retain_dataset is None
            else self._tokenized(retain_dataset, processing_class, args.max_length, "retain_dataset")
        )
        super().__init__(
            model=model,
            args=args,
            train_dataset=forget,
            data_collator=data_collator or PaddingCollator(processing_class.pad_token_id),
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            **kwargs,
        )
        # Our losses are means over their batch (NPO's is per sequence, not per token), so let the Trainer
        # divide by the gradient-accumulation steps instead of expecting a sum over num_items_in_batch.
        self.model_accepts_loss_kwargs = False
        self.retain_dataset = retain
        self._retain_stream = None
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._retain_start: float | None = None
        self._rail_snapshot: tuple[int, dict[str, torch.Tensor]] | None = None
        self._rail_candidate: tuple[int, dict[str, torch.Tensor]] | None = None
        self.stopped_early: dict | None = None
        needs_ref_forward = (
            args.regularizer == "klr"
            or self.uses_reference_forward
            or (self.uses_forget_reference and not args.precompute_ref_log_probs)
        )
        self.ref_model = None
        if needs_ref_forward or self.uses_forget_reference:
            self.ref_model = self._resolve_ref_model(ref_model)
        if self.uses_forget_reference and args.precompute_ref_log_probs:
            self.train_dataset = self.add_ref_log_probs(self.train_dataset)
            if not needs_ref_forward and self.ref_model is not None and ref_model is None:
                self.ref_model = None  # a loaded copy is no longer needed: free its memory

    # ----- data -----
    @staticmethod
    def _tokenized(ds: Dataset, tokenizer, max_length: int, origin: str) -> Dataset:
        warn_long_rows(ds, max_length, origin)
        if "input_ids" in ds.column_names:
            missing = [c for c in MODEL_INPUTS if c not in ds.column_names]
            if missing:
                raise ValueError(f"{origin} is tokenized but lacks {missing}; it needs {list(MODEL_INPUTS)}.")
            return ds
        return tokenize_dataset(ds, tokenizer, max_length, origin)

    def _retain_batches(self, skip: int):
        """Endless retain batches for this rank: seeded reshuffles, each rank a disjoint slice; ``skip`` batches
        are passed over without being built (resuming)."""
        n = len(self.retain_dataset)
        bs = self.args.retain_batch_size or self.args.per_device_train_batch_size
        rank, world = self.args.process_index, self.args.world_size
        generator = torch.Generator().manual_seed(self.args.seed)
        served = 0
        while True:
            order = torch.randperm(n, generator=generator)[rank::world][: max(n // world, 1)].tolist()
            for start in range(0, len(order), bs):
                served += 1
                if served <= skip:
                    continue
                rows = self.retain_dataset[order[start : start + bs]]
                yield self.data_collator([dict(zip(rows, values)) for values in zip(*rows.values())])

    def next_retain_batch(self) -> dict[str, torch.Tensor]:
        """The retain batch paired with the current forget micro-batch (on the training device)."""
        if self._retain_stream is None:
            skip = self.state.global_step * self.args.gradient_accumulation_steps
            self._retain_stream = self._retain_batches(skip)
        return self._prepare_inputs(next(self._retain_stream))

    # ----- reference model -----
    def _resolve_ref_model(self, ref_model):
        """The frozen reference: ``ref_model``; ``None`` under peft (adapters get disabled instead); else one load
        of ``args.ref_model_name_or_path`` or of the model's own directory (an in-memory copy only when the
        model has no directory to load from)."""
        if ref_model is None and is_peft_model(self.model):
            return None
        if ref_model is None:
            source = self.args.ref_model_name_or_path or getattr(self.model, "name_or_path", "")
            if self.args.ref_model_name_or_path or (source and Path(source).is_dir()):
                from transformers import AutoModelForCausalLM

                from hf_unlearn.packaged import resolve_model_source

                with weights_on_every_rank():  # the reference is not sharded: each rank needs all of it
                    ref_model = AutoModelForCausalLM.from_pretrained(
                        resolve_model_source(source), dtype=self.model.dtype
                    )
            elif rank0_only_weights():
                raise ValueError(
                    f"The model has no local directory to load a reference from (name_or_path={source!r}), and "
                    "under FSDP's cpu_ram_efficient_loading only rank 0 holds its weights before sharding, so a "
                    "copy would give the other ranks a zero reference. Pass ref_model_name_or_path (or ref_model), "
                    "or set fsdp_cpu_ram_efficient_loading: false in the accelerate config."
                )
            else:
                logger.info("The model has no loadable path; keeping one frozen in-memory copy as reference.")
                ref_model = copy.deepcopy(self.model)
        ref_model.requires_grad_(False).eval()
        return ref_model.to(self.args.device)

    @torch.no_grad()
    def reference_logits(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, T, V)`` logits of the reference model on ``batch``."""
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.ref_model is not None:
            return self.ref_model(**inputs).logits
        with disabled_adapter(model) as base:
            return base(**inputs).logits

    def add_ref_log_probs(self, ds: Dataset, batch_size: int = 64) -> Dataset:
        """``ds`` with a ``ref_logps`` column: each row's reference sequence log-prob of its labelled tokens.

        Under FSDP's rank-0-only loading (:func:`~hf_unlearn.trainers.utils.rank0_only_weights`) the model is not
        sharded yet when this runs, so only rank 0 holds its weights (the others hold zeros, and under LoRA the
        adapter-disabled reference is that model): rank 0 computes the column and broadcasts it, as accelerate
        broadcasts rank 0's weights when it shards the model.
        """
        from accelerate.utils import broadcast

        from_rank0 = rank0_only_weights()
        if from_rank0 and self.args.process_index != 0:
            # (N,), filled with rank 0's values by the broadcast below
            values = torch.empty(len(ds), dtype=torch.float32, device=self.args.device)
        else:
            values = self._reference_sequence_log_probs(ds, batch_size)
        if from_rank0:
            values = broadcast(values, from_process=0)
        return ds.remove_columns([c for c in ("ref_logps",) if c in ds.column_names]).add_column(
            "ref_logps", values.tolist()
        )

    @torch.no_grad()
    def _reference_sequence_log_probs(self, ds: Dataset, batch_size: int) -> torch.Tensor:
        """``(N,)`` float32 reference sequence log-probs of the rows of ``ds``, computed on this process."""
        model = self.model
        was_training = model.training
        model.eval()
        values = []
        for start in range(0, len(ds), batch_size):
            rows = ds[start : start + batch_size]
            batch = self.data_collator([dict(zip(rows, v)) for v in zip(*rows.values())])
            batch = {k: v.to(self.args.device) for k, v in batch.items()}
            values.append(sequence_log_probs(self.reference_logits(model, batch), batch["labels"])[0].float())
        model.train(was_training)
        return torch.cat(values)

    # ----- the loss -----
    def forget_loss(
        self,
        model,
        forget: dict[str, torch.Tensor],
        logits: torch.Tensor,
        logps: torch.Tensor,
        counts: torch.Tensor,
    ) -> torch.Tensor:
        """The method's loss on one forget batch (to be minimised).

        Args:
            model: the (possibly wrapped) model being trained.
            forget: the forget batch: ``input_ids``/``attention_mask``/``labels`` ``(B, T)`` and extra columns
                (``ref_logps`` ``(B,)`` when precomputed).
            logits: ``(B, T, V)`` model outputs on it.
            logps, counts: ``(B,)`` sequence log-probs of the labelled tokens and their numbers.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forget_loss().")

    def forget_reference_log_probs(self, model, forget: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B,)`` reference sequence log-probs of a forget batch: the cached column, else a reference pass."""
        if "ref_logps" in forget:
            return forget["ref_logps"].float()
        return sequence_log_probs(self.reference_logits(model, forget), forget["labels"])[0]

    def retain_regularizer(
        self, model, retain: dict[str, torch.Tensor], retain_logits: torch.Tensor, nll: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The retain term of ``args.regularizer`` (not ``none``) and the metrics to log with it.

        Args:
            model: the (possibly wrapped) model being trained.
            retain: the retain batch, padded to the forget batch's width; retain_logits: ``(B, T, V)`` on it.
            nll: the retain batch's token-mean NLL (the ``gdr`` term).
        """
        if self.args.regularizer == "gdr":
            return nll, {}
        kl = retain_kl(retain_logits, self.reference_logits(model, retain), retain["labels"])
        return kl, {"ref_kl": kl.detach()}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``forget_weight * forget_loss + retain_weight * regulariser`` on a forget batch and a retain batch.

        ``num_items_in_batch`` is accepted for the Trainer's signature; the losses are batch means and the
        Trainer scales them for gradient accumulation.
        """
        args = self.args
        retain = self.next_retain_batch() if self.retain_dataset is not None else None
        self._take_rail_candidate()
        model_inputs = ("input_ids", "attention_mask")
        if args.regularizer != "none":
            width = max(inputs["input_ids"].shape[1], retain["input_ids"].shape[1])
            pad_id = self.processing_class.pad_token_id
            inputs = pad_to_width(inputs, width, pad_id, self.position_pads)
            retain = pad_to_width(retain, width, pad_id)
            both = model(**{k: torch.cat([inputs[k], retain[k]]) for k in model_inputs}).logits
            logits, retain_logits = both[: len(inputs["input_ids"])], both[len(inputs["input_ids"]) :]
        else:
            logits = model(**{k: inputs[k] for k in model_inputs}).logits
            retain_logits = None
        logps, counts = sequence_log_probs(logits, inputs["labels"])
        forget_loss = self.forget_loss(model, inputs, logits, logps, counts)
        loss = args.forget_weight * forget_loss
        metrics = {
            "forget_loss": forget_loss.detach(),
            "forget_logp": mean_token_log_prob(logps, counts).detach(),
        }
        if retain is not None:
            if retain_logits is None:
                with torch.no_grad():
                    unwrapped = self.accelerator.unwrap_model(model)
                    retain_logits = unwrapped(**{k: retain[k] for k in model_inputs}).logits
            nll = retain_nll(*sequence_log_probs(retain_logits, retain["labels"]))
            if args.regularizer != "none":
                term, logged = self.retain_regularizer(model, retain, retain_logits, nll)
                loss = loss + args.retain_weight * term
                metrics.update(logged)
            metrics.update(retain_loss=nll.detach(), retain_logp=-nll.detach())
            self._apply_safety_rail(nll.detach())
        for key, value in metrics.items():
            self._metrics[key].append(value.item())
        return (loss, {"logits": logits}) if return_outputs else loss

    # ----- safety rail, logging, saving -----
    def _apply_safety_rail(self, retain_loss: torch.Tensor) -> None:
        args = self.args
        if args.max_retain_loss_ratio <= 0:
            return
        if args.world_size > 1:  # every rank must take the same decision
            retain_loss = self.accelerator.reduce(retain_loss.clone(), reduction="mean")
        value = retain_loss.item()
        if self._retain_start is None:
            self._retain_start = value
        limit = max(
            args.max_retain_loss_ratio * self._retain_start,
            self._retain_start + args.min_retain_loss_increase,
        )
        step = self.state.global_step  # the weights measured have had this many updates
        if value <= limit:
            if self._rail_candidate is not None and self._rail_candidate[0] == step:
                self._rail_snapshot = self._rail_candidate  # the weights just measured, within the rail
            return
        if self.stopped_early is None:
            restored = self._rail_snapshot[0] if self._rail_snapshot is not None else None
            kept = (
                f"the weights after {restored} update(s), the last within the rail, are restored"
                if restored is not None
                else "the weights are kept as they are (safety_rail_restore is off)"
            )
            self.stopped_early = {
                "step": step,
                "retain_loss": value,
                "start_retain_loss": self._retain_start,
                "limit": limit,
                "restored_step": restored,
                "message": f"Safety rail: the retain loss rose from {self._retain_start:.3f} to {value:.3f} "
                f"(limit {limit:.3f}) after {step} update(s), so training stopped and {kept}. {self._rail_advice()}",
            }
            logger.warning(self.stopped_early["message"])
            self.control.should_training_stop = True

    def _rail_advice(self) -> str:
        args = self.args
        if args.regularizer == "none":
            return (
                f"To keep the retain set, add a regularizer (--regularizer gdr), lower --learning_rate (now "
                f"{args.learning_rate:g}) or raise --max_retain_loss_ratio (now {args.max_retain_loss_ratio:g})."
            )
        return (
            f"To keep the retain set, lower --learning_rate (now {args.learning_rate:g}), raise --retain_weight "
            f"(now {args.retain_weight:g}) or --retain_batch_size, or raise --max_retain_loss_ratio (now "
            f"{args.max_retain_loss_ratio:g})."
        )

    def _take_rail_candidate(self) -> None:
        """Copy the trainable weights, once per step, before its first forward pass: the safety rail keeps the copy
        as its restore point if that step's retain loss is within the rail. Taken before the forward because under
        FSDP2 a forward leaves some modules holding unsharded plain tensors until the backward, which could not be
        copied back into the sharded parameters."""
        args, step = self.args, self.state.global_step
        if (
            self.retain_dataset is None
            or args.max_retain_loss_ratio <= 0
            or not args.safety_rail_restore
            or self.stopped_early is not None
            or (self._rail_candidate is not None and self._rail_candidate[0] == step)
        ):
            return
        self._rail_candidate = (step, self._trainable_state())

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the trainable parameters (the adapters only, under LoRA)."""
        model = self.accelerator.unwrap_model(self.model)
        return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}

    def train(self, *args, **kwargs):
        """``Trainer.train``; when the safety rail stopped it, the trainable weights are set back to the last step
        within the rail and the returned ``global_step`` counts the updates those weights have."""
        result = super().train(*args, **kwargs)
        if self.stopped_early is not None and self._rail_snapshot is not None:
            step, state = self._rail_snapshot
            params = dict(self.accelerator.unwrap_model(self.model).named_parameters())
            with torch.no_grad():
                for name, value in state.items():
                    params[name].copy_(value.to(params[name].device))
            self.stopped_early["steps_run"] = self.state.global_step
            result = result._replace(global_step=step)
        self._rail_snapshot = self._rail_candidate = None
        return result

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the means of the unlearning metrics gathered since the last log, then log as usual."""
        if "loss" in logs and self._metrics:
            logs.update({key: sum(v) / len(v) for key, v in self._metrics.items()})
            self._metrics.clear()
        if self.stopped_early is not None and "loss" in logs:
            logs["safety_rail_stopped"] = 1.0
        super().log(logs, start_time)

    def save_unlearned(self, output_dir: str | Path | None = None) -> Path:
        """Save the model (adapters, or merged with ``args.merge_adapters``) and tokenizer; returns the folder."""
        output_dir = Path(output_dir or self.args.output_dir)
        # a sharded model's full weights are gathered by all ranks together (onto rank 0's CPU)
        state_dict = self.accelerator.get_state_dict(self.model) if self.is_fsdp_enabled else None
        if not self.is_world_process_zero():
            return output_dir
        model = self.accelerator.unwrap_model(self.model)
        saved = save_unlearned(
            model, self.processing_class, output_dir, merge=self.args.merge_adapters, state_dict=state_dict
        )
        write_card_or_warn(
            saved,
            method=self.card_method,
            config=self.args,
            forget_dataset=self.card_forget_rows,
            retain_dataset=self.card_retain_rows,
            base_model=getattr(model.config, "_name_or_path", None) or None,
        )
        return saved

    @property
    def card_method(self) -> str:
        """The method's name on the model card: ``method_name`` plus the regulariser (``npo_gdr``)."""
        regularizer = self.args.regularizer
        return self.method_name if regularizer == "none" else f"{self.method_name}_{regularizer}"
