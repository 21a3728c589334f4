"""DP2Unlearning: train once with differential privacy, answer deletion requests by retain fine-tuning.

**DP stage** (:func:`train_dp_base`): DP-SGD with opacus on all the data, once. Per-record gradients come
from opacus' hooks; with ``privacy_unit="subject"`` they are summed per subject before opacus clips them, so
each sampled subject contributes at most ``dp_max_grad_norm`` to a step (user-level DP-SGD), and Poisson
sampling draws subjects, not records. The sampling and noise generators are seeded from ``os.urandom``
(:func:`~hf_unlearn.trainers.dp2.privacy.dp_generators`; ``reproducible_dp_noise`` is the research exception).
The model is saved with ``dp_privacy.json``: the spent epsilon and delta, the unit, N (number of units), noise
multiplier, sample rate, steps and accountant.

**Deletion stage** (:func:`unlearn_from_dp_base`): fine-tune a fresh copy of the DP model on the retain data
only, with the ordinary non-private :func:`hf_unlearn.trainers.finetune.train_lm`. The result is saved with
``dp2_deletion.json``, naming the requests it answers by keyed fingerprint (HMAC-SHA256, salt in the DP model's
local audit folder), and a model card. Every request starts again from the same DP model and the retain
fine-tune never sees the forgotten units, so each of them is covered by the DP model's per-unit
(epsilon, delta). The k units of one request are covered together only by the group bound
(k·epsilon, k·e^((k-1)·epsilon)·delta), and after n requests the group is every unit deleted so far
(:func:`~hf_unlearn.trainers.dp2.privacy.request_bounds`; both are in the record and on the card).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset, concatenate_datasets
from torch.utils.data import DataLoader

from hf_unlearn.audit import audit_dir_for, salt_of
from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.formats import framed_ids, qa_as_text
from hf_unlearn.hub.card import PRIVACY_FILE
from hf_unlearn.io import file_sha256, read_json, write_json_atomic
from hf_unlearn.losses import token_log_probs
from hf_unlearn.trainers.base_trainer import write_card_or_warn
from hf_unlearn.trainers.dp2.config import ACCOUNTANTS, PRIVACY_UNITS, DP2Config
from hf_unlearn.trainers.dp2.privacy import dp_generators, request_bounds
from hf_unlearn.trainers.finetune import train_lm

logger = logging.getLogger(__name__)
DELETION_FILE = "dp2_deletion.json"


def _import_opacus():
    try:
        import opacus
    except ImportError as err:
        raise ImportError('The DP stage of DP2Unlearning needs opacus: pip install "hf-unlearn[dp]"') from err
    return opacus


def _documents(tokenizer, ds: Dataset) -> list[str]:
    """A dataset's training documents, in row order: QA pairs rendered with the QA template, or raw texts."""
    if "question" in ds.column_names:
        return [qa_as_text(tokenizer, q, a) for q, a in zip(ds["question"], ds["answer"])]
    return list(ds["text"])


def privacy_units(
    tokenizer,
    qa_sets: Sequence[Dataset],
    text_sets: Sequence[Dataset] = (),
    unit: str = "subject",
    subject_column: str = "subject",
    max_length: int = 256,
) -> list[list[list[int]]]:
    """Group the training documents into privacy units (each a list of token-id lists, BOS/EOS framed).

    ``unit="record"`` makes every document its own unit; ``unit="subject"`` puts all documents of one subject
    (QA rows and texts alike) into one unit.

    Raises:
        ValueError: an unknown ``unit``, or ``unit="subject"`` and a dataset without ``subject_column``.
    """
    if unit not in PRIVACY_UNITS:
        raise ValueError(f"privacy_unit={unit!r} is not one of {PRIVACY_UNITS}.")
    groups: dict[object, list[list[int]]] = {}
    for ds in [*qa_sets, *text_sets]:
        if unit == "subject" and subject_column not in ds.column_names:
            raise ValueError(
                f"privacy_unit='subject' needs a {subject_column!r} column naming each row's subject, but a "
                f"training dataset has only {ds.column_names}. Add the column (or set subject_column), or use "
                "privacy_unit='record'."
            )
        keys = ds[subject_column] if unit == "subject" else [len(groups) + i for i in range(len(ds))]
        for key, doc in zip(keys, _documents(tokenizer, ds)):
            groups.setdefault(key, []).append(framed_ids(tokenizer, doc)[:max_length])
    return list(groups.values())


def sample_rate_for(n_units: int, batch_size: int) -> float:
    """The Poisson sample rate opacus uses for ``n_units`` units in loader batches of ``batch_size``."""
    return 1 / -(-n_units // batch_size)


def check_dp_settings(args: DP2Config, n_units: int) -> None:
    """Reject DP settings that cannot give a meaningful guarantee, saying what to change.

    Raises:
        ValueError: epsilon or the noise multiplier not positive, delta not in (0, 1/N), an unknown
            accountant, or a batch that is empty or larger than N at the resulting sample rate.
    """
    unit = "subjects" if args.privacy_unit == "subject" else "records"
    if n_units < 2:
        raise ValueError(f"The DP stage got {n_units} privacy unit(s) ({unit}); DP-SGD needs at least 2.")
    if args.dp_noise_multiplier is None and not args.target_epsilon > 0:
        raise ValueError(
            f"target_epsilon={args.target_epsilon}: epsilon must be > 0 (epsilon = 0 would need infinite "
            "noise). Typical budgets are 1 to 10; or pass dp_noise_multiplier to fix the noise instead."
        )
    if args.dp_noise_multiplier is not None and not args.dp_noise_multiplier > 0:
        raise ValueError(f"dp_noise_multiplier={args.dp_noise_multiplier}: the noise multiplier must be > 0.")
    if not 0 < args.target_delta < 1 / n_units:
        raise ValueError(
            f"target_delta={args.target_delta} with N={n_units} {unit}: delta must be in (0, 1/N) = "
            f"(0, {1 / n_units:.3g}); a mechanism that publishes one whole unit at random meets delta = 1/N. "
            f"Use delta well below 1/N, e.g. {0.1 / n_units:.2g} or less."
        )
    if args.dp_accountant not in ACCOUNTANTS:
        raise ValueError(f"dp_accountant={args.dp_accountant!r} is not one of {ACCOUNTANTS}.")
    if not 1 <= args.dp_batch_size <= n_units:
        raise ValueError(
            f"dp_batch_size={args.dp_batch_size} with N={n_units} {unit}: the expected units per step must be "
            f"between 1 and N (the sample rate 1/ceil(N/dp_batch_size) must be a probability). "
            f"Pick dp_batch_size in [1, {n_units}]."
        )
    if int(n_units * sample_rate_for(n_units, args.dp_batch_size)) < 1:
        raise ValueError(
            f"dp_batch_size={args.dp_batch_size} gives sample rate {sample_rate_for(n_units, args.dp_batch_size):.3g} "
            f"over N={n_units} {unit}, i.e. less than one expected unit per step; raise dp_batch_size."
        )


@dataclass
class UnitCollator:
    """Flattens a batch of privacy units into one padded batch of records plus ``unit_index`` (R,): which
    unit of the batch each record belongs to."""

    pad_token_id: int

    def __call__(self, units: list[list[list[int]]]) -> dict[str, torch.Tensor]:
        records = [(u, ids) for u, unit in enumerate(units) for ids in unit]
        batch = PaddingCollator(self.pad_token_id)(
            [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids} for _, ids in records]
        )
        batch["unit_index"] = torch.tensor([u for u, _ in records], dtype=torch.long)
        return batch


def fold_grad_samples(
    params: Sequence[torch.nn.Parameter], unit_index: torch.Tensor, into: list[torch.Tensor]
) -> None:
    """Add each parameter's per-record ``grad_sample`` (R, ...) into per-unit sums ``into[i]`` (U, ...) at
    rows ``unit_index`` (R,), and clear ``grad_sample``, so that the DP optimizer later clips units."""
    for p, acc in zip(params, into):
        acc.index_add_(0, unit_index, p.grad_sample)  # (U, *p.shape) += (R, *p.shape)
        p.grad_sample = None


def dp_step(
    model,
    optimizer,
    batch: dict[str, torch.Tensor],
    params: Sequence[torch.nn.Parameter],
    physical_rows: int = 64,
) -> float:
    """One DP-SGD step on a batch from :class:`UnitCollator`; returns the mean per-record loss (nan if empty).

    Each record's loss is its mean token NLL and a unit's gradient is the sum of its records' gradients. The
    records go through the model in chunks of at most ``physical_rows`` rows of similar length (less padding,
    bounded memory); the chunks change neither the gradient nor the accounting. Poisson sampling may draw no
    unit: the batch then has zero rows and the step releases noise only.
    """
    optimizer.zero_grad(set_to_none=True)
    unit_index = batch["unit_index"]  # (R,)
    lengths = batch["attention_mask"].sum(-1)  # (R,)
    order = torch.argsort(lengths)
    n_units = int(unit_index.max()) + 1 if unit_index.numel() else 0
    sums = [p.new_zeros((n_units, *p.shape)) for p in params]  # per-unit gradients
    total = 0.0
    for rows in order.split(physical_rows) if order.numel() else ():
        width = int(lengths[rows].max())
        logits = model(
            input_ids=batch["input_ids"][rows, :width], attention_mask=batch["attention_mask"][rows, :width]
        ).logits
        logps, mask = token_log_probs(logits, batch["labels"][rows, :width])  # (r, width-1) each
        per_record = -logps.sum(-1) / mask.sum(-1).clamp(min=1)  # (r,)
        per_record.mean().backward()  # opacus (loss_reduction="mean") rescales per-record grads by r
        fold_grad_samples(params, unit_index[rows], sums)
        total += per_record.sum().item()
    for p, acc in zip(params, sums):  # no unit drawn: (0, ...) and the step releases noise only
        p.grad_sample = acc
    optimizer.step()
    return total / unit_index.numel() if unit_index.numel() else float("nan")


@dataclass
class DPSetup:
    """What :func:`make_private` returns: the opacus-wrapped optimizer and loader, and the accounting."""

    hooks: object
    optimizer: object
    loader: DataLoader
    engine: object
    params: list[torch.nn.Parameter]
    noise_multiplier: float
    sample_rate: float


def _check_wrappable(model) -> None:
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ValueError(
            f"opacus cannot DP-train {type(model).__name__}: {'; '.join(map(str, errors[:3]))}. Replace the "
            "layers it names (opacus.validators.ModuleValidator.fix(model) swaps BatchNorm for GroupNorm), or "
            "DP-train LoRA adapters only (dp_lora_r > 0) with the offending layers frozen."
        )


def make_private(model, tokenizer, args: DP2Config, units: list[list[list[int]]]) -> DPSetup:
    """Attach opacus to ``model``: per-record gradient hooks, Poisson sampling of units, clipping and noise.

    The noise multiplier is ``args.dp_noise_multiplier`` or, by default, solved by
    ``PrivacyEngine.make_private_with_epsilon`` to spend ``target_epsilon`` over ``dp_epochs``.

    Raises:
        ValueError: the settings fail :func:`check_dp_settings`, or opacus cannot wrap the model.
    """
    _import_opacus()
    from opacus import PrivacyEngine

    check_dp_settings(args, len(units))
    model.train()  # opacus validates (and DP-SGD runs) in training mode; from_pretrained returns eval mode
    _check_wrappable(model)
    params = [p for p in model.parameters() if p.requires_grad]
    sampling_generator, noise_generator = dp_generators(args)
    loader = DataLoader(
        units,
        batch_size=args.dp_batch_size,
        shuffle=True,
        collate_fn=UnitCollator(tokenizer.pad_token_id),
        generator=sampling_generator,  # opacus' Poisson sampler draws from the loader's generator
    )
    optimizer = torch.optim.AdamW(params, lr=args.dp_learning_rate, weight_decay=0.0)
    engine = PrivacyEngine(accountant=args.dp_accountant)
    common = {
        "module": model,
        "optimizer": optimizer,
        "data_loader": loader,
        "max_grad_norm": args.dp_max_grad_norm,
        "loss_reduction": "mean",
        "poisson_sampling": True,
        "grad_sample_mode": "hooks",
        "wrap_model": False,
        "noise_generator": noise_generator,
    }
    try:
        if args.dp_noise_multiplier is None:
            hooks, optimizer, loader = engine.make_private_with_epsilon(
                target_epsilon=args.target_epsilon,
                target_delta=args.target_delta,
                epochs=args.dp_epochs,
                **common,
            )
        else:
            hooks, optimizer, loader = engine.make_private(
                noise_multiplier=args.dp_noise_multiplier, **common
            )
    except NotImplementedError as err:
        raise ValueError(
            f"opacus cannot compute per-sample gradients for {type(model).__name__}: {err}. Freeze that layer "
            "or DP-train LoRA adapters only (dp_lora_r > 0)."
        ) from err
    # Poisson sampling may draw nobody in the loader's very first batch, where opacus builds its empty batch
    # from the dataset's element types, which fails on our nested-list units; give it the collator's batch
    # structure instead (only the structure is used: every tensor of an empty batch has zero rows).
    if getattr(loader.collate_fn, "first_batch", False) is None:
        loader.collate_fn.first_batch = UnitCollator(tokenizer.pad_token_id)(units[:1])
    return DPSetup(hooks, optimizer, loader, engine, params, optimizer.noise_multiplier, loader.sample_rate)


def _with_lora(model, r: int):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear"))


def train_dp_base(
    model,
    tokenizer,
    args: DP2Config,
    qa_sets: Sequence[Dataset],
    text_sets: Sequence[Dataset] = (),
    output_dir: str | Path | None = None,
) -> dict:
    """The DP stage: DP-SGD on ``qa_sets`` + ``text_sets``; save the model, tokenizer and ``dp_privacy.json``.

    Args:
        model: a causal LM (trained from scratch or pretrained). It must not have seen the data to protect
            without privacy, or the guarantee is void.
        output_dir: where to save (default ``args.output_dir``).

    Returns:
        The privacy record also written to ``output_dir/dp_privacy.json``.
    """
    out = Path(output_dir or args.output_dir)
    units = privacy_units(
        tokenizer, qa_sets, text_sets, args.privacy_unit, args.subject_column, args.max_length
    )
    if args.dp_lora_r > 0:
        model = _with_lora(model, args.dp_lora_r)
    dp = make_private(model, tokenizer, args, units)
    start, cpu_start = time.perf_counter(), time.process_time()
    losses = []
    for epoch in range(args.dp_epochs):
        epoch_losses = [
            dp_step(model, dp.optimizer, batch, dp.params, args.dp_physical_batch_rows) for batch in dp.loader
        ]
        drawn = [x for x in epoch_losses if not math.isnan(x)]  # steps that sampled at least one unit
        losses.append(sum(drawn) / max(1, len(drawn)))
        logger.info("DP epoch %d: mean record loss %.3f", epoch + 1, losses[-1])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    dp.hooks.cleanup()
    if args.dp_lora_r > 0:
        model = model.merge_and_unload()
    for p in model.parameters():
        for attr in ("grad_sample", "summed_grad"):
            if hasattr(p, attr):
                delattr(p, attr)
    model.eval()
    steps = sum(n for _, _, n in dp.engine.accountant.history)
    record = {
        "epsilon": float(dp.engine.get_epsilon(args.target_delta)),
        "delta": args.target_delta,
        "privacy_unit": args.privacy_unit,
        "n_units": len(units),
        "n_records": sum(len(u) for u in units),
        "noise_multiplier": float(dp.noise_multiplier),
        "sample_rate": dp.sample_rate,
        "steps": steps,
        "epochs": args.dp_epochs,
        "accountant": args.dp_accountant,
        "max_grad_norm": args.dp_max_grad_norm,
        "batch_size": args.dp_batch_size,
        "learning_rate": args.dp_learning_rate,
        "lora_r": args.dp_lora_r,
        "reproducible_dp_noise": args.reproducible_dp_noise,
        "target_epsilon": None if args.dp_noise_multiplier is not None else args.target_epsilon,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "epoch_losses": losses,
    }
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    salt_of(audit_dir_for(out))  # the key of the fingerprints of the requests this DP model will answer
    write_json_atomic(out / PRIVACY_FILE, record)
    logger.info(
        "DP stage done: epsilon %.3g at delta %.1g over N=%d %s units",
        record["epsilon"],
        record["delta"],
        record["n_units"],
        record["privacy_unit"],
    )
    return record


def request_fingerprint(forget: Dataset, salt: bytes, subject_column: str = "subject") -> dict:
    """How a deletion request is recorded: keyed fingerprints and counts, never the forgotten names.

    The record travels with the model, so naming the deleted subjects would disclose that they were in the
    training data, and an unkeyed hash of them would let anyone holding a candidate list test guesses offline.
    The hashes are HMAC-SHA256 keyed by ``salt`` (the DP model's audit-folder salt, kept local); whoever holds
    it and the request recomputes the fingerprint (:func:`verify_request`).

    Returns:
        ``{"rows_hmac_sha256", "n_rows"}`` plus ``{"subjects_hmac_sha256", "n_subjects"}`` with a subject column.
    """
    cols = [c for c in ("question", "answer", "text") if c in forget.column_names]
    rows = sorted("\x1f".join(str(r[c]) for c in cols) for r in forget)
    digest = lambda text: hmac.new(salt, text.encode(), hashlib.sha256).hexdigest()  # noqa: E731
    info = {"rows_hmac_sha256": digest("\x1e".join(rows)), "n_rows": len(rows)}
    if subject_column in forget.column_names:
        subjects = sorted(set(forget[subject_column]))
        info["subjects_hmac_sha256"] = digest("\x1e".join(subjects))
        info["n_subjects"] = len(subjects)
    return info


def verify_request(forget: Dataset, salt: bytes, fingerprint: dict, subject_column: str = "subject") -> bool:
    """Whether ``forget`` is the deletion request recorded as ``fingerprint`` (needs the audit salt)."""
    expected = request_fingerprint(forget, salt, subject_column)
    return expected.keys() == fingerprint.keys() and all(
        hmac.compare_digest(str(v), str(fingerprint[k])) for k, v in expected.items()
    )


def unlearn_from_dp_base(
    dp_model_dir: str | Path,
    args: DP2Config,
    retain_qa: Sequence[Dataset],
    retain_text: Sequence[Dataset] = (),
    requests: Sequence[dict] = (),
    forget_dataset=None,
    cumulative_units: int | None = None,
) -> tuple[object, dict]:
    """The deletion stage: fine-tune a fresh copy of the DP model on retain data only (non-private).

    Args:
        dp_model_dir: a directory written by :func:`train_dp_base` (with ``dp_privacy.json``).
        args: the deletion stage's training arguments (``output_dir`` receives the unlearned model).
        retain_qa, retain_text: everything that is kept; nothing of the forgotten units may be in it.
        requests: the deletion requests answered, as :func:`request_fingerprint` dicts, oldest first.
        forget_dataset: the rows forgotten so far (a dataset or ``name -> dataset``): when given, the model card
            (keyed fingerprints, per-unit epsilon, group bounds) and the audit folder are written.
        cumulative_units: distinct units deleted by all ``requests`` (default: the sum, an upper bound).

    Returns:
        The unlearned model and the record written to ``args.output_dir/dp2_deletion.json``; its
        ``group_privacy`` holds :func:`~hf_unlearn.trainers.dp2.privacy.request_bounds`.

    Raises:
        ValueError: ``dp_model_dir`` holds no privacy record (it is not a DP model).
    """
    from hf_unlearn.models import load_model_and_tokenizer

    base = Path(dp_model_dir)
    if not (base / PRIVACY_FILE).exists():
        raise ValueError(
            f"{base} has no {PRIVACY_FILE}: it is not a model from the DP stage, and fine-tuning a non-private "
            "model on retain data does not unlearn. Train one with `hf-unlearn dp-train` first."
        )
    privacy = read_json(base / PRIVACY_FILE)
    model, tokenizer = load_model_and_tokenizer(str(base))
    cpu_start = time.process_time()
    summary = train_lm(model, tokenizer, args, list(retain_qa), list(retain_text))
    summary["cpu_seconds"] = time.process_time() - cpu_start  # unlike wall time, not inflated by other jobs
    record = {
        "method": "dp2",
        "dp_model": str(base),
        "dp_model_sha256": file_sha256(base / "model.safetensors"),
        "privacy": privacy,
        "requests": list(requests),
        "group_privacy": request_bounds(privacy, requests, cumulative_units),
        "retain_rows": sum(len(ds) for ds in [*retain_qa, *retain_text]),
        "training": summary,
    }
    write_json_atomic(Path(args.output_dir) / DELETION_FILE, record)
    if forget_dataset is not None:
        scalars = {k: v for k, v in privacy.items() if isinstance(v, (int, float, str))}
        write_card_or_warn(
            Path(args.output_dir),
            method="dp2",
            config=args,
            forget_dataset=forget_dataset,
            privacy={**scalars, **record["group_privacy"]},
            retain_dataset=[*retain_qa, *retain_text],
        )
    return model, record


class DP2Trainer:
    """DP2Unlearning over one training set: :meth:`train_dp_base` once, then :meth:`unlearn` per request.

    Requests accumulate: the k-th :meth:`unlearn` fine-tunes the same DP model on the training data minus
    everything forgotten in requests 1..k. With ``privacy_unit="subject"`` a request removes every row of the
    subjects it names; with ``"record"`` exactly the rows it lists (matched on question+answer or text).

    Example::

        trainer = DP2Trainer(model, tokenizer, DP2Config(output_dir="runs/dp2"), qa, texts)
        trainer.train_dp_base()                        # runs/dp2/dp_base, with dp_privacy.json
        model, record = trainer.unlearn(forget_qa)     # runs/dp2/request-1, with dp2_deletion.json
    """

    def __init__(
        self, model, tokenizer, args: DP2Config, train_qa: Dataset, train_text: Dataset | None = None
    ):
        self.model, self.tokenizer, self.args = model, tokenizer, args
        self.train_qa, self.train_text = train_qa, train_text
        self.base_dir = Path(args.output_dir) / "dp_base"
        self.requests: list[dict] = []
        self._forgotten: list[Dataset] = []

    def train_dp_base(self) -> dict:
        """Run the DP stage into ``output_dir/dp_base`` and return its privacy record."""
        texts = [self.train_text] if self.train_text is not None else []
        return train_dp_base(self.model, self.tokenizer, self.args, [self.train_qa], texts, self.base_dir)

    def _keep(self, ds: Dataset) -> Dataset:
        if self.args.privacy_unit == "subject":
            gone = {s for f in self._forgotten for s in f[self.args.subject_column]}
            return ds.filter(lambda r: r[self.args.subject_column] not in gone)
        cols = [c for c in ("question", "answer", "text") if c in ds.column_names]
        gone = {
            tuple(r[c] for c in cols) for f in self._forgotten if set(cols) <= set(f.column_names) for r in f
        }
        return ds.filter(lambda r: tuple(r[c] for c in cols) not in gone)

    def _retained(self) -> list[Dataset]:
        """The training QA (and text) rows minus everything forgotten so far."""
        return [self._keep(ds) for ds in (self.train_qa, self.train_text) if ds is not None]

    def unlearn(
        self, forget: Dataset, forget_text: Dataset | None = None, output_dir: str | Path | None = None
    ):
        """Answer a deletion request: retain fine-tune the DP model without everything forgotten so far.

        Returns:
            The unlearned model and its deletion record (saved under ``output_dir``, default
            ``args.output_dir/request-<k>``).

        Raises:
            ValueError: the DP stage has not run, or the request matches nothing left in the training data
                (never trained on, so not covered by the DP model's guarantee, or already forgotten).
        """
        if not (self.base_dir / PRIVACY_FILE).exists():
            raise ValueError(f"No DP model in {self.base_dir}; call train_dp_base() before unlearn().")
        request = concatenate_datasets([forget, forget_text]) if forget_text is not None else forget
        before = sum(len(ds) for ds in self._retained())
        self._forgotten.append(request)
        retain_qa, *retain_text = self._retained()
        removed = before - len(retain_qa) - sum(len(ds) for ds in retain_text)
        if removed == 0:
            self._forgotten.pop()
            raise ValueError(
                f"The deletion request ({len(request)} rows) matches nothing left in the training data: its "
                "subjects/rows were never trained on, or were already forgotten."
            )
        salt = salt_of(audit_dir_for(self.base_dir))
        self.requests.append(request_fingerprint(request, salt, self.args.subject_column))
        out = Path(output_dir or Path(self.args.output_dir) / f"request-{len(self.requests)}")
        args = dataclasses.replace(self.args, output_dir=str(out))
        model, record = unlearn_from_dp_base(
            self.base_dir,
            args,
            [retain_qa],
            retain_text,
            self.requests,
            forget_dataset={f"request-{k + 1}": rows for k, rows in enumerate(self._forgotten)},
            cumulative_units=self._forgotten_units(),
        )
        # rows this request removed (earlier requests' rows are already out of retain_rows)
        record["removed_rows"] = removed
        write_json_atomic(out / DELETION_FILE, record)
        return model, record

    def _forgotten_units(self) -> int:
        """Distinct privacy units deleted by all requests so far: subjects, or (question, answer, text) rows."""
        if self.args.privacy_unit == "subject":
            return len({s for f in self._forgotten for s in f[self.args.subject_column]})
        cols = ("question", "answer", "text")
        return len({tuple(r.get(c) for c in cols) for f in self._forgotten for r in f})
