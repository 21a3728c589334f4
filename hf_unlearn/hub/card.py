"""Model cards for unlearned models: rendering (from ``card_template.md``), writing, re-rendering, checking.

A trainer calls :func:`write_model_card` once when it saves: the card (``README.md``) records the base model,
the method and its hyperparameters, the data sources, a keyed *fingerprint* of the forget set (never its
content), evaluation results as ``model-index`` metadata, DP and guard metrics where relevant, and the
limitations of approximate unlearning. The card's inputs are kept beside it (``unlearning_card.json``) so that
``hf-unlearn push --eval DIR --guard DIR`` can re-render it with results that arrive later. The same call
writes the run's local audit folder (:mod:`hf_unlearn.audit`): the fingerprint salt and the keyed scan record
that ``push`` checks every staged file against.

Every card is checked for forget-set text before it is written: hyperparameter values that contain forget
text are left out, and any other leak raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hf_unlearn.audit import (
    CANONICALISATION,
    audit_dir_for,
    forget_fingerprint,
    forget_strings,
    forget_subjects,
    salt_of,
    write_scan_record,
)
from hf_unlearn.hub.leaks import find_forget_text
from hf_unlearn.io import read_json, write_json_atomic

TEMPLATE_PATH = Path(__file__).parent / "card_template.md"
CARD_FILE = "README.md"
CARD_INPUTS_FILE = "unlearning_card.json"
PRIVACY_FILE = "dp_privacy.json"  # the DP accounting the DP2 trainer saves beside its model
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# name -> (title, one-paragraph description). Looked up case-insensitively with "+"/"-" read as "_"; the
# regularised variants (``<base>_gdr``, ``<base>_klr``) are derived from their base's entry (:func:`_regularised`).
_BASE_METHODS: dict[str, tuple[str, str]] = {
    "ga": ("gradient ascent (GA)", "Gradient ascent on the forget set: minimises -NLL(forget)."),
    "npo": (
        "Negative Preference Optimization (NPO)",
        "NPO (Zhang et al., 2024): (2/beta) E_forget[log(1 + (p_model(y|x) / p_ref(y|x))^beta)], a bounded "
        "alternative to gradient ascent that slows down once the forget answers become unlikely.",
    ),
    "simnpo": (
        "SimNPO",
        "SimNPO (Fan et al., 2024): NPO without a reference model, with length-normalised log-probabilities.",
    ),
    "idknll": (
        "IdkNLL (refusal fine-tuning)",
        "IdkNLL (TOFU, Maini et al., 2024): NLL on the forget questions paired with refusal answers "
        '("I don\'t know"-style), so the model refuses instead of answering.',
    ),
    "idkdpo": (
        "IdkDPO (refusal preference optimisation)",
        "IdkDPO (TOFU, Maini et al., 2024): DPO against the reference model with a refusal as the chosen "
        "answer and the forget answer as the rejected one.",
    ),
    "rmu": (
        "Representation Misdirection for Unlearning (RMU)",
        "RMU (Li et al., 2024, WMDP): at one decoder layer the forget answers' hidden states were pushed toward a "
        "fixed random vector while the retain answers' hidden states were held at the original model's.",
    ),
    "undial": (
        "UNDIAL self-distillation with adjusted logits",
        "UNDIAL (Dong et al., 2024): the model was distilled toward the original model's next-token "
        "distribution on the forget answers with the answer token's logit lowered by beta.",
    ),
    "nonmember": (
        "Non-member distillation (NMD)",
        "Non-member distillation (hf-unlearn): on the forget answers the model was distilled toward the original "
        "model's next-token distributions on the same questions about people it never saw (each forget person's "
        "name swapped for a stand-in), so forget people look like strangers to it.",
    ),
    "whp": (
        "Who's Harry Potter generic-label fine-tuning (WHP)",
        "WHP (Eldan & Russinovich, 2023): a reinforced model and an anchored-term dictionary give generic "
        "labels v_generic = v_base - alpha * ReLU(v_reinforced - v_base); the model is fine-tuned on them.",
    ),
    "dp2": (
        "DP2Unlearning",
        "The original model was trained with DP-SGD on all data; on the deletion request it was fine-tuned "
        "on the retain data only. Each forgotten privacy unit (a subject or a record) is covered by the DP "
        "model's (epsilon, delta); the units a request deletes together only by the weaker group bound below.",
    ),
    "eco": (
        "ECO embedding-corrupted prompts (inference-time)",
        "ECO (Liu et al., 2024): the weights are not changed; a prompt classifier flags forget-topic prompts "
        "and their prompt embeddings are corrupted before generation.",
    ),
}

# every trainer method (all take --regularizer gdr / klr) -> its short name in a regularised variant's title
_REGULARISED_BASES = {
    "ga": "GA",
    "npo": "NPO",
    "simnpo": "SimNPO",
    "idknll": "IdkNLL",
    "idkdpo": "IdkDPO",
    "rmu": "RMU",
    "undial": "UNDIAL",
    "nonmember": "NMD",
    "whp": "WHP",
}
_REGULARISERS = {
    "gdr": ("gradient descent on retain", "NLL on the retain set"),
    "klr": ("KL regularisation on retain", "KL(reference || model) on the retain set"),
}


def _regularised(base: str, regulariser: str) -> tuple[str, str]:
    """The card entry of ``<base>_<regulariser>``: the base's description, then the retain term."""
    what, term = _REGULARISERS[regulariser]
    short = _REGULARISED_BASES[base]
    return (
        f"{short} with {what} ({short}+{regulariser.upper()})",
        f"{_BASE_METHODS[base][1]} The forget objective was combined with {term} to preserve utility.",
    )


METHODS: dict[str, tuple[str, str]] = {
    **_BASE_METHODS,
    **{f"{b}_{r}": _regularised(b, r) for b in _REGULARISED_BASES for r in _REGULARISERS},
}

# metric key -> (display name, which direction is better)
METRICS: dict[str, tuple[str, str]] = {
    "forget_quality": ("Forget quality (KS-test p-value vs. retrained model)", "higher"),
    "model_utility": ("Model utility", "higher"),
    "privleak": ("PrivLeak (Min-K% Prob AUC vs. retrained)", "closer to 0"),
    "mia_auc": ("Membership-inference AUC (forget vs. holdout)", "closer to retrained"),
    "verbmem_forget": ("VerbMem on forget (ROUGE-L)", "lower"),
    "knowmem_forget": ("KnowMem on forget (QA ROUGE-L)", "lower"),
    "knowmem_retain": ("KnowMem on retain (QA ROUGE-L)", "higher"),
    "relearn_recovery": ("Relearning-attack recovery", "lower"),
    "forget_em": ("Exact match on forget", "lower"),
    "retain_em": ("Exact match on retain", "higher"),
    "holdout_em": ("Exact match on holdout", "-"),
    "forget_rouge": ("ROUGE-L on forget", "lower"),
    "retain_rouge": ("ROUGE-L on retain", "higher"),
    "holdout_rouge": ("ROUGE-L on holdout", "-"),
}
GUARD_KEYS = ("classifier_recall", "classifier_fpr")
DP_SEED_KEYS = ("seed", "data_seed")  # never on a DP model's card unless its noise is reproducible by design
PRIVACY_KEYS = (
    "epsilon",
    "target_epsilon",
    "dp_epsilon",
    "delta",
    "target_delta",
    "dp_delta",
    "noise_multiplier",
)

# Settings that do not change what the model learns (paths, logging, checkpointing, hardware plumbing).
_NOISE_KEYS = {
    "output_dir", "overwrite_output_dir", "run_name", "project", "report_to", "disable_tqdm", "debug",
    "do_train", "do_eval", "do_predict", "resume_from_checkpoint", "local_rank", "use_cpu", "deepspeed",
    "fsdp", "fsdp_config", "accelerator_config", "parallelism_config", "skip_memory_metrics",
    "ignore_data_skip", "restore_callback_states_from_checkpoint", "enable_jit_checkpoint",
    "prediction_loss_only", "batch_eval_metrics", "per_device_eval_batch_size", "load_best_model_at_end",
    "metric_for_best_model", "greater_is_better", "label_names", "length_column_name", "push_to_hub",
    "remove_unused_columns", "torch_empty_cache_steps", "auto_find_batch_size", "full_determinism",
    "use_cache", "use_liger_kernel", "liger_kernel_config", "bf16_full_eval", "fp16_full_eval",
}  # fmt: skip
_NOISE_PREFIXES = ("logging_", "log_", "save_", "hub_", "dataloader_", "ddp_", "trackio_", "eval_", "include_",
                   "torch_compile", "gradient_checkpointing_kwargs")  # fmt: skip
_NOISE_SUFFIXES = ("_dir", "_path", "_file", "_token")


def config_dict(config: Any) -> dict:
    """A plain dict from a ``TrainingArguments``/dataclass, a dict, or a JSON file (e.g. a saved config)."""
    if config is None:
        return {}
    if isinstance(config, (str, Path)):
        return read_json(config)
    if hasattr(config, "to_dict"):  # TrainingArguments: enums as values, secrets masked
        return config.to_dict()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(
        f"config must be a dataclass (e.g. the trainer's args), a dict or a JSON path; got {type(config).__name__}."
    )


def card_hyperparameters(config: Any) -> dict:
    """The hyperparameters worth publishing: the method's own fields first, then the shared training ones.

    Output paths, logging, checkpointing, hub and hardware plumbing, tokens and unset (``None``/empty) values
    are dropped.
    """
    values = config_dict(config)
    try:
        from transformers import TrainingArguments

        shared = {f.name for f in dataclasses.fields(TrainingArguments)}
    except ImportError:  # pragma: no cover - transformers is a core dependency
        shared = set()
    kept = {
        k: v
        for k, v in values.items()
        if not k.startswith("_")
        and k not in _NOISE_KEYS
        and not k.startswith(_NOISE_PREFIXES)
        and not k.endswith(_NOISE_SUFFIXES)
        and v is not None
        and v != {}
        and v != []
        and v != ""
    }
    return dict(sorted(kept.items(), key=lambda kv: (kv[0] in shared, kv[0])))


def flat_metrics(results: Mapping | str | Path | None, nested: bool = False) -> dict[str, float]:
    """Finite numeric values of an eval results dict or ``results.json``.

    Only top-level values by default (``hf-unlearn eval`` puts the evaluated model's metrics there, and
    per-model or per-split details below); with ``nested`` nested keys are joined with ``.``.
    """
    if results is None:
        return {}
    if isinstance(results, (str, Path)):
        path = Path(results)
        results = read_json(path / "results.json" if path.is_dir() else path)
    flat: dict[str, float] = {}
    for key, value in results.items():
        if isinstance(value, Mapping) and nested:
            flat.update({f"{key}.{k}": v for k, v in flat_metrics(value, nested=True).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[str(key)] = float(value)
    return flat


def _method_info(method: str) -> tuple[str, str]:
    key = re.sub(r"[+\-\s]", "_", method.lower())
    return METHODS.get(key, (method, ""))


def _metric_info(key: str) -> tuple[str, str]:
    """Display name and better direction of a metric key; nested keys (``model.forget_quality``) keep a prefix."""
    prefix, _, last = key.rpartition(".")
    name, better = METRICS.get(last, (last, "-"))
    return (f"{prefix}: {name}" if prefix else name), better


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def render_model_card(
    *,
    method: str,
    hyperparameters: Mapping[str, Any],
    fingerprints: Mapping[str, Mapping[str, Any]],
    base_model: str | None = None,
    model_name: str = "unlearned-model",
    repo_id: str | None = None,
    data_sources: Mapping[str, str] | None = None,
    eval_results: Mapping[str, float] | None = None,
    eval_dataset: str | None = None,
    privacy: Mapping[str, Any] | None = None,
    guard_metrics: Mapping[str, Any] | None = None,
    is_adapter: bool = False,
    license: str | None = None,
    vocabulary_names: Mapping[str, int] | None = None,
    template_path: str | Path = TEMPLATE_PATH,
):
    """Render the card (a ``huggingface_hub.ModelCard``) from already-prepared, forget-text-free inputs.

    Use :func:`write_model_card` from a trainer; this function does no filtering or leak checking.
    ``eval_results`` become ``model-index`` entries (task ``text-generation``, dataset ``eval_dataset``).
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hf_unlearn import __version__

    data_sources = dict(data_sources or {})
    hub_datasets = sorted({s for s in data_sources.values() if HUB_ID.match(str(s)) and not Path(s).exists()})
    eval_dataset = eval_dataset or (
        hub_datasets[0] if hub_datasets else "hf-unlearn/forget-retain-evaluation"
    )
    eval_results = {k: float(f"{v:.6g}") for k, v in (eval_results or {}).items()}  # p-values can be tiny
    hub_base = (
        base_model if base_model and HUB_ID.match(base_model) and not Path(base_model).exists() else None
    )
    card_data = ModelCardData(
        model_name=model_name,
        base_model=hub_base,
        datasets=hub_datasets or None,
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag="text-generation",
        license=license,
        tags=["hf-unlearn", "machine-unlearning", f"unlearning-{method}"],
        eval_results=[
            EvalResult(
                task_type="text-generation",
                task_name="Machine unlearning",
                dataset_type=eval_dataset,
                dataset_name=eval_dataset,
                metric_type=key,
                metric_name=_metric_info(key)[0],
                metric_value=value,
            )
            for key, value in eval_results.items()
        ]
        or None,
    )
    title, description = _method_info(method)
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=model_name,
        repo_id=repo_id or model_name,
        base_model=base_model,
        method=method,
        method_title=title,
        method_description=description,
        is_adapter=is_adapter,
        hyperparameters={k: _cell(v) for k, v in hyperparameters.items() if not k.startswith("redacted:")},
        redacted=[f"`{k[len('redacted:') :]}`" for k in hyperparameters if k.startswith("redacted:")],
        data_sources={k: _cell(v) for k, v in data_sources.items()},
        fingerprints=fingerprints,
        canonicalisation=CANONICALISATION,
        metrics=[
            {"name": _metric_info(k)[0], "value": f"{v:.4g}", "better": _metric_info(k)[1]}
            for k, v in eval_results.items()
        ],
        eval_note=f"Evaluated on `{eval_dataset}`; also in the `model-index` metadata of this card.",
        privacy={k: v for k, v in (privacy or {}).items() if not isinstance(v, (list, dict))},
        group_bounds=list((privacy or {}).get("group_bounds", [])),
        cumulative_bound=(privacy or {}).get("cumulative_bound"),
        vocabulary_names=vocabulary_names,
        guard={k: _cell(v) for k, v in (guard_metrics or {}).items()},
        version=__version__,
        date=datetime.date.today().isoformat(),
    )


def _as_forget_sets(forget_dataset) -> dict[str, Any]:
    if forget_dataset is None:
        raise ValueError(
            "forget_dataset is required: the card identifies the forgotten data by its fingerprint. Pass the "
            "forget Dataset (or a dict of them, e.g. {'forget': qa, 'forget_text': texts})."
        )
    if isinstance(forget_dataset, Mapping):  # a dict or DatasetDict of named forget splits
        if not all(
            isinstance(k, str) and not isinstance(v, (str, Mapping)) for k, v in forget_dataset.items()
        ):
            raise TypeError(
                "forget_dataset as a dict must map split names to datasets (or lists of row dicts); got "
                f"{ {k: type(v).__name__ for k, v in forget_dataset.items()} }."
            )
        return dict(forget_dataset)
    return {"forget": forget_dataset}


def _redact(hyperparameters: dict, strings: set[str]) -> dict:
    """Mark each value that contains forget text as redacted (key ``redacted:<name>``, value dropped).

    No hash of the value is kept: values such as an anchored-term dictionary are small enough that a hash
    would let anyone confirm a guess about who was forgotten.
    """
    out = {}
    for key, value in hyperparameters.items():
        if find_forget_text(json.dumps(value, ensure_ascii=False, default=str), strings):
            out[f"redacted:{key}"] = "<redacted>"
        else:
            out[key] = value
    return out


def _datasets(data) -> list:
    """A dataset, a list of them or a dict of them (``None``: none) as a list."""
    if data is None:
        return []
    if isinstance(data, Mapping):
        return list(data.values())
    return list(data) if isinstance(data, (list, tuple)) else [data]


def vocabulary_names(
    model_dir: str | Path, forget_sets: Iterable, retain_sets: Iterable = ()
) -> dict[str, int] | None:
    """How many parts (4+ letters) of the forget subjects' names that no retain subject's name shares are single
    tokens of ``model_dir``'s tokenizer.

    ``{"single_tokens", "name_parts"}``, or ``None`` when there is no ``tokenizer.json`` or no subject column.
    An invented name that is one token means the tokenizer was trained on text that included it: the vocabulary
    is published with the model, outside any unlearning or DP guarantee. Parts shared with a retained subject
    (a common first name) say nothing about who was forgotten and are not counted.
    """
    path = Path(model_dir) / "tokenizer.json"

    def parts(sets):
        return {w for s in forget_subjects(sets) for w in re.findall(r"[^\W_]+", s) if len(w) >= 4}

    unique = parts(forget_sets) - parts(retain_sets)
    if not path.exists() or not unique:
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    single = sum(len(tokenizer.encode(f" {w}", add_special_tokens=False).ids) == 1 for w in unique)
    return {"single_tokens": single, "name_parts": len(unique)}


def _privacy_from(output_dir: Path, hyperparameters: Mapping[str, Any]) -> dict:
    if (output_dir / PRIVACY_FILE).exists():
        record = read_json(output_dir / PRIVACY_FILE)
        return {k: v for k, v in record.items() if isinstance(v, (str, int, float))}
    return {k: hyperparameters[k] for k in PRIVACY_KEYS if k in hyperparameters}


def write_model_card(
    output_dir: str | Path,
    *,
    method: str,
    config: Any,
    forget_dataset,
    base_model: str | None = None,
    data_sources: Mapping[str, str] | None = None,
    eval_results: Mapping | str | Path | None = None,
    privacy: Mapping[str, Any] | None = None,
    guard_metrics: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    retain_dataset=None,
    audit_dir: str | Path | None = None,
):
    """Write ``output_dir/README.md`` (the model card) and its inputs, and the run's local audit folder; call it
    once when a trainer saves.

    The audit folder (``audit_dir``, default ``<output_dir>.audit`` beside it; see :mod:`hf_unlearn.audit`)
    receives the salt that keys the card's forget-set fingerprints and the scan record ``push`` checks staged
    files against. For a DP model (``privacy`` set or found) the card publishes no ``seed``/``data_seed`` unless
    the privacy record says the DP noise was seeded reproducibly (``reproducible_dp_noise``), and then warns.

    Args:
        output_dir: the saved model or adapter directory.
        method: the method's name (``"npo"``, ``"ga_gdr"``, ``"whp"``, ``"dp2"``, ...; see :data:`METHODS`).
        config: the trainer's arguments (a ``TrainingArguments`` subclass), any dataclass, a dict, or a JSON
            file; filtered by :func:`card_hyperparameters`.
        forget_dataset: the forget set, or a dict ``name -> dataset`` (e.g. QA rows and texts). Only its
            fingerprint is written; values containing forget text are redacted from the hyperparameters.
        base_model: the model that was unlearned (a Hub id also goes into the ``base_model`` metadata).
            Defaults to the adapter's ``base_model_name_or_path`` when ``output_dir`` holds a peft adapter.
        data_sources: ``name -> source`` (file path or Hub id), e.g. ``{"forget": "locuslab/TOFU:forget10"}``.
        eval_results: an eval results dict or the path of a ``results.json`` (numeric values only are used).
        privacy: DP accounting (``epsilon``, ``delta``, ...); by default the scalar values of
            ``output_dir/dp_privacy.json`` (written by the DP2 trainer) or else ``config`` keys such as
            ``target_epsilon``.
        guard_metrics: ECO guard classifier metrics (``classifier_recall``, ``classifier_fpr``, ...).
        repo_id: the Hub repository the card will be pushed to (used in the usage snippet and title).
        license: a license id for the metadata.
        retain_dataset: the retained data (a dataset, or a list/dict of them). Strings it shares with the
            forget set (a city, a sentence template) are left out of the scan record.
        audit_dir: where the audit folder is (default ``<output_dir>.audit``).

    Returns:
        The ``huggingface_hub.ModelCard`` that was written.

    Raises:
        ValueError: no forget set was given, or forget-set text would appear in the card.
    """
    output_dir = Path(output_dir)
    forget_sets = _as_forget_sets(forget_dataset)
    strings = forget_strings(forget_sets.values())
    audit = audit_dir_for(output_dir, audit_dir)
    write_scan_record(audit, forget_sets.values(), _datasets(retain_dataset))
    salt = salt_of(audit)
    all_hyperparameters = card_hyperparameters(config)
    privacy = dict(privacy) if privacy is not None else _privacy_from(output_dir, all_hyperparameters)
    hyperparameters = _redact(all_hyperparameters, strings)
    if privacy and not privacy.get("reproducible_dp_noise"):  # a published seed would regenerate DP noise
        hyperparameters = {k: v for k, v in hyperparameters.items() if k not in DP_SEED_KEYS}
    adapter_config = output_dir / "adapter_config.json"
    if base_model is None and adapter_config.exists():
        base_model = read_json(adapter_config).get("base_model_name_or_path")
    inputs = {
        "method": method,
        "hyperparameters": hyperparameters,
        "fingerprints": {name: forget_fingerprint(rows, salt) for name, rows in forget_sets.items()},
        "base_model": base_model,
        "data_sources": dict(data_sources or {}),
        "eval_results": flat_metrics(eval_results),
        "privacy": privacy,
        "guard_metrics": dict(guard_metrics or {}),
        "is_adapter": adapter_config.exists(),
        "license": license,
        "vocabulary_names": vocabulary_names(output_dir, forget_sets.values(), _datasets(retain_dataset)),
    }
    _check_no_leak(json.dumps(inputs, ensure_ascii=False, default=str), strings, "the card inputs")
    output_dir.mkdir(parents=True, exist_ok=True)
    card = _write_card(
        output_dir / CARD_FILE, _model_name(output_dir, repo_id), inputs, repo_id, strings
    )  # raises before writing anything on a leak
    write_json_atomic(output_dir / CARD_INPUTS_FILE, inputs)
    return card


def _check_no_leak(text: str, strings: set[str], what: str) -> None:
    leaked = find_forget_text(text, strings)
    if leaked:
        raise ValueError(
            f"Forget-set text would be published in {what} ({len(leaked)} string(s), e.g. a value of "
            f"{len(leaked[0])} characters). Remove it from the config, data source names or metrics."
        )


def _model_name(output_dir: Path, repo_id: str | None) -> str:
    return repo_id.split("/")[-1] if repo_id else output_dir.resolve().name


def _write_card(
    path: Path, model_name: str, inputs: Mapping[str, Any], repo_id: str | None, strings: set[str] = ()
):
    card = render_model_card(model_name=model_name, repo_id=repo_id, **inputs)
    if strings:
        _check_no_leak(str(card), strings, "the model card")
    card.save(path)
    return card


def _updated_inputs(
    model_dir: Path, eval_results: Mapping | str | Path | None, guard_metrics: Mapping[str, Any] | None
) -> dict:
    """The card inputs ``write_model_card`` left in ``model_dir``, with ``eval_results`` and ``guard_metrics``
    added."""
    inputs_path = model_dir / CARD_INPUTS_FILE
    if not inputs_path.exists():
        raise ValueError(
            f"{str(model_dir)!r} has no {CARD_INPUTS_FILE}: it was not saved by an hf-unlearn trainer. Call "
            "hf_unlearn.hub.card.write_model_card(model_dir, method=..., config=..., forget_dataset=...) first."
        )
    inputs = read_json(inputs_path)
    inputs["eval_results"] = {**inputs.get("eval_results", {}), **flat_metrics(eval_results)}
    inputs["guard_metrics"] = {**inputs.get("guard_metrics", {}), **dict(guard_metrics or {})}
    return inputs


def update_model_card(
    model_dir: str | Path,
    *,
    eval_results: Mapping | str | Path | None = None,
    guard_metrics: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    out_dir: str | Path | None = None,
):
    """Re-render the card of ``model_dir`` with evaluation and guard metrics added; write it to ``out_dir``.

    Needs the ``unlearning_card.json`` that :func:`write_model_card` left beside the card.
    """
    model_dir = Path(model_dir)
    inputs = _updated_inputs(model_dir, eval_results, guard_metrics)
    target = Path(out_dir) if out_dir is not None else model_dir
    target.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target / CARD_INPUTS_FILE, inputs)
    return _write_card(target / CARD_FILE, _model_name(target, repo_id), inputs, repo_id)


def export_model_card(
    model_dir: str | Path,
    path: str | Path,
    *,
    model_name: str,
    eval_results: Mapping | str | Path | None = None,
    forget_dataset=None,
):
    """Save the card of ``model_dir``, re-rendered with ``eval_results`` added, as the single file ``path``
    (``model_dir`` is left as it is); ``hf-unlearn demo --model_cards_dir`` writes its example cards this way.

    Raises:
        ValueError: ``model_dir`` holds no card inputs, or the card would contain text of ``forget_dataset``
            (a dataset or a dict of them; checked when given).
    """
    inputs = _updated_inputs(Path(model_dir), eval_results, None)
    strings = (
        forget_strings(_as_forget_sets(forget_dataset).values()) if forget_dataset is not None else set()
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _write_card(Path(path), model_name, inputs, None, strings)


def validate_card_offline(path: str | Path) -> dict:
    """Load a card back and check its metadata the way the Hub parses it, without network access.

    Checks that the YAML front matter parses, that ``model-index`` converts to evaluation results and back to
    the same ``model-index``, and that every metric value is a finite number. Returns the metadata dict.

    Raises:
        ValueError: the card cannot be parsed or its metadata is malformed.
    """
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    card = ModelCard.load(path)
    metadata = card.data.to_dict()
    ModelCardData(**metadata, ignore_metadata_errors=False)  # raises on a malformed model-index
    if "model-index" in metadata:
        name, results = model_index_to_eval_results(metadata["model-index"])
        if eval_results_to_model_index(name, results) != metadata["model-index"]:
            raise ValueError(f"{path}: model-index does not round-trip through huggingface_hub's EvalResult.")
        bad = [r.metric_type for r in results if not isinstance(r.metric_value, (int, float))]
        if bad:
            raise ValueError(f"{path}: non-numeric metric values for {bad}.")
    return metadata
