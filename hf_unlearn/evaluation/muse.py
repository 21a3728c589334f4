"""MUSE (Shi et al., 2024) at model level: verbatim memorisation, and the scalability / sustainability sweeps.

KnowMem (ROUGE of greedy answers on forget / retain QA) comes from :func:`hf_unlearn.evaluation.tofu.qa_scores`;
PrivLeak from :mod:`hf_unlearn.evaluation.mia` and :func:`hf_unlearn.evaluation.metrics.privleak`.

The sweeps need an unlearning method, passed as a callable
``unlearn_fn(model_dir: Path, forget: Dataset, retain: Dataset, out_dir: Path) -> model`` that unlearns
``forget`` from the model saved in ``model_dir`` and returns the result (saved under ``out_dir`` by the
callable, or here when it did not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from datasets import Dataset, concatenate_datasets
from transformers import AutoTokenizer

from hf_unlearn.evaluation.metrics import mean, rouge_l
from hf_unlearn.evaluation.qa import generate_continuations
from hf_unlearn.evaluation.tofu import qa_scores

UnlearnFn = Callable[[Path, Dataset, Dataset, Path], object]


def verbmem_split(tokenizer, text: str, prefix_tokens: int = 32) -> tuple[list[int], str]:
    """The prompt (BOS, where the tokenizer has one, + the first ``min(prefix_tokens, n // 2)`` of the text's
    ``n`` tokens) and the true continuation (the remaining tokens, decoded), as MUSE's VerbMem cuts texts."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    cut = min(prefix_tokens, len(ids) // 2)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + ids[:cut], tokenizer.decode(ids[cut:], skip_special_tokens=True).strip()


def verbmem(
    model,
    tokenizer,
    texts: list[str],
    prefix_tokens: int = 32,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    desc: str | None = None,
) -> dict:
    """MUSE VerbMem: mean ROUGE-L F1 between the greedy continuation of each text's prefix and its true
    continuation (1 = reproduces the forget text verbatim). Returns ``verbmem`` and the per-text ``f1``."""
    cuts = [verbmem_split(tokenizer, t, prefix_tokens) for t in texts]
    generated = generate_continuations(
        model, tokenizer, [p for p, _ in cuts], max_new_tokens, batch_size, desc
    )
    f1 = [rouge_l(g, truth)["f1"] for g, (_, truth) in zip(generated, cuts)]
    return {"verbmem": mean(f1), "f1": f1}


def knowledge(
    model, tokenizer, forget: Dataset, retain: Dataset, batch_size: int = 64, max_new_tokens: int = 32
) -> dict:
    """What the sweeps track after each unlearning request: KnowMem (ROUGE-L F1 of greedy answers) and
    teacher-forced exact match on the forget and retain QA (KnowMem on retain is MUSE's utility preservation)."""
    out = {}
    for name, ds in (("forget", forget), ("retain", retain)):
        scores = qa_scores(
            model, tokenizer, ds, perturbed=False, batch_size=batch_size, max_new_tokens=max_new_tokens
        )
        out[f"knowmem_{name}"] = mean(scores["rouge_f1"])
        out[f"{name}_em"] = float(scores["em"].mean())
    return out


def _unlearn_and_save(unlearn_fn: UnlearnFn, model_dir: Path, forget, retain, out_dir: Path):
    model = unlearn_fn(Path(model_dir), forget, retain, Path(out_dir))
    if not (Path(out_dir) / "config.json").exists():
        model.save_pretrained(out_dir)
    if not (Path(out_dir) / "tokenizer_config.json").exists():
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    return model


def forget_size_sweep(
    forget: Dataset, retain: Dataset, fractions: tuple[float, ...] = (0.1, 0.5, 1.0)
) -> dict[str, tuple[Dataset, Dataset]]:
    """Nested deletion requests of growing size for :func:`scalability`: the first ``fraction`` of the forget
    set's subjects (rows when there is no ``subject``), each paired with a retain set that also holds the
    forget rows not requested (the model keeps those). With a 10 % forget set, fractions 0.1 / 0.5 / 1.0 are
    MUSE's 1 / 5 / 10 % sweep.

    Raises:
        ValueError: a fraction outside (0, 1].
    """
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions={fractions}: each must be in (0, 1], e.g. (0.1, 0.5, 1.0).")
    keys = forget["subject"] if "subject" in forget.column_names else list(range(len(forget)))
    order = list(dict.fromkeys(keys))
    columns = [c for c in forget.column_names if c in retain.column_names]
    out = {}
    for fraction in fractions:
        chosen = set(order[: max(1, round(fraction * len(order)))])
        picked = [i for i, key in enumerate(keys) if key in chosen]
        rest = forget.select([i for i, key in enumerate(keys) if key not in chosen]).select_columns(columns)
        kept = concatenate_datasets([retain.select_columns(columns), rest]) if len(rest) else retain
        out[f"{round(fraction * 100)}pct_of_forget"] = (forget.select(picked), kept)
    return out


def scalability(
    model_dir: str | Path,
    requests: Mapping[str, tuple[Dataset, Dataset]],
    unlearn_fn: UnlearnFn,
    out_dir: str | Path,
    **knowledge_kwargs,
) -> dict[str, dict]:
    """MUSE scalability: unlearn forget sets of growing size (e.g. ``{"forget01": (forget01, retain99), ...}``; each label names the request's folder under ``out_dir``), each
    from the same original model, and report :func:`knowledge` plus the forget-set size for each."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = {}
    for label, (forget, retain) in requests.items():
        model = _unlearn_and_save(unlearn_fn, Path(model_dir), forget, retain, Path(out_dir) / label)
        out[label] = {
            "forget_rows": len(forget),
            **knowledge(model, tokenizer, forget, retain, **knowledge_kwargs),
        }
    return out


def deletion_requests(forget: Dataset, k: int) -> list[Dataset]:
    """``forget`` cut into ``k`` consecutive requests, whole subjects per request when rows have ``subject``.

    Raises:
        ValueError: fewer subjects (or rows) than requests.
    """
    keys = forget["subject"] if "subject" in forget.column_names else list(range(len(forget)))
    order = list(dict.fromkeys(keys))
    if k < 1 or len(order) < k:
        raise ValueError(
            f"Cannot cut {len(order)} subjects/rows into k={k} deletion requests; use 1 <= k <= {len(order)}."
        )
    groups = [set(order[i * len(order) // k : (i + 1) * len(order) // k]) for i in range(k)]
    return [forget.select([i for i, key in enumerate(keys) if key in g]) for g in groups]


def sustainability(
    model_dir: str | Path,
    forget: Dataset,
    retain: Dataset,
    unlearn_fn: UnlearnFn,
    out_dir: str | Path,
    k: int = 4,
    **knowledge_kwargs,
) -> list[dict]:
    """MUSE sustainability: ``k`` sequential deletion requests, each unlearned from the previous request's model.
    After request ``i``, :func:`knowledge` on everything forgotten so far and on ``retain``."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    requests = deletion_requests(forget, k)
    previous, out, done = Path(model_dir), [], []
    for i, request in enumerate(requests, start=1):
        step_dir = Path(out_dir) / f"request-{i}"
        model = _unlearn_and_save(unlearn_fn, previous, request, retain, step_dir)
        done.append(request)
        forgotten = Dataset.from_dict({c: [v for d in done for v in d[c]] for c in ("question", "answer")})
        out.append(
            {
                "request": i,
                "forget_rows": len(forgotten),
                **knowledge(model, tokenizer, forgotten, retain, **knowledge_kwargs),
            }
        )
        previous = step_dir
    return out
