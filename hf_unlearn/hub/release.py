"""Release staging and ``push``: the exact folder a release uploads, checked for forget-set text first.

:func:`stage_release` writes the folder (model or adapter files, tokenizer, the card re-rendered with eval and
guard metrics, ``eval/``, ``guard/``); :func:`push` stages it beside its target, refuses it on any leak
(:func:`~hf_unlearn.hub.leaks.check_release`) and uploads it with ``huggingface_hub.HfApi``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from hf_unlearn.audit import AUDIT_SUFFIX, SALT_FILE, SCAN_RECORD_FILE, audit_dir_for
from hf_unlearn.hub.card import (
    CARD_FILE,
    GUARD_KEYS,
    HUB_ID,
    flat_metrics,
    update_model_card,
    validate_card_offline,
)
from hf_unlearn.hub.leaks import check_release
from hf_unlearn.io import written_atomically

# Files a trainer leaves beside the model that are not part of a release (resumable state, logs, pickles).
# Audit material (hf_unlearn.audit) is never released, even when an audit folder was put inside the model dir.
_NOT_RELEASED = ("checkpoint-*", "runs", "optimizer.pt", "scheduler.pt", "rng_state*", "training_args.bin",
                 "*.tmp", "trainer_state.json", f"*{AUDIT_SUFFIX}", SALT_FILE, SCAN_RECORD_FILE)  # fmt: skip


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "chat_template.jinja")  # fmt: skip


def guard_metrics_from(guard_dir: str | Path) -> dict[str, float]:
    """The classifier metrics (``classifier_recall``, ``classifier_fpr``) found in the guard dir's JSON files."""
    found = {}
    for path in sorted(Path(guard_dir).glob("*.json")):
        for key, value in flat_metrics(path, nested=True).items():
            if key.rpartition(".")[2] in GUARD_KEYS:
                found[key] = value
    return found


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise ValueError(f"--model {str(model_dir)!r} is not a directory; pass a saved model or adapter dir.")
    if not ((model_dir / "config.json").exists() or (model_dir / "adapter_config.json").exists()):
        raise ValueError(
            f"{str(model_dir)!r} holds neither config.json nor adapter_config.json; pass the directory a "
            "trainer saved (save_model / save_pretrained)."
        )


# what a folder passed as --eval / --guard must hold, and model files it must not (a model is not a guard)
_RELEASE_PARTS = {
    "eval": ("results.json", "hf-unlearn eval --out DIR"),
    "guard": ("guard_config.json", "hf-unlearn eco-fit --out DIR"),
}
_MODEL_FILES = ("config.json", "adapter_config.json", "model.safetensors", "pytorch_model.bin")


def require_empty_staging(staging_dir: Path) -> None:
    if staging_dir.exists() and any(staging_dir.iterdir()):
        raise ValueError(f"Staging folder {str(staging_dir)!r} is not empty; remove it or pass another one.")


def check_release_part(sub: str, src: Path) -> None:
    """Refuse an ``--eval`` / ``--guard`` folder that is missing, lacks its main file, or holds a model.

    Raises:
        ValueError: naming the folder, what it lacks or holds, and the command that writes the right one.
    """
    required, writer = _RELEASE_PARTS[sub]
    if not src.is_dir():
        raise ValueError(f"--{sub} {str(src)!r} is not a directory; pass the folder `{writer}` wrote.")
    model_files = [name for name in _MODEL_FILES if (src / name).exists()]
    if model_files:
        raise ValueError(
            f"--{sub} {str(src)!r} holds a model ({', '.join(model_files)}), not a {sub} folder; pass the folder "
            f"`{writer}` wrote."
        )
    if not (src / required).exists():
        raise ValueError(f"--{sub} {str(src)!r} has no {required}; pass the folder `{writer}` wrote.")


def stage_release(
    model_dir: str | Path,
    staging_dir: str | Path,
    *,
    repo_id: str,
    guard_dir: str | Path | None = None,
    eval_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
) -> list[str]:
    """Write the exact folder that ``push`` uploads and return its files (relative paths, sorted).

    Layout: the model or adapter files of ``model_dir`` (checkpoints, optimizer state and pickled training
    arguments left out), the tokenizer (from ``tokenizer_dir`` when ``model_dir`` has none), ``README.md``
    re-rendered with the metrics of ``eval_dir/results.json`` and of the guard's JSON files, ``eval/`` (a copy
    of ``eval_dir``) and ``guard/`` (a copy of ``guard_dir``). The card is validated offline.
    """
    model_dir, staging_dir = Path(model_dir), Path(staging_dir)
    _check_model_dir(model_dir)
    require_empty_staging(staging_dir)
    shutil.copytree(model_dir, staging_dir, ignore=shutil.ignore_patterns(*_NOT_RELEASED), dirs_exist_ok=True)
    if tokenizer_dir is not None and not (staging_dir / "tokenizer_config.json").exists():
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).exists():
                shutil.copy2(Path(tokenizer_dir) / name, staging_dir / name)
    for sub, src in (("eval", eval_dir), ("guard", guard_dir)):
        if src is not None:
            check_release_part(sub, Path(src))
            shutil.copytree(src, staging_dir / sub, ignore=shutil.ignore_patterns("*.tmp"))
    eval_results = None
    if eval_dir is not None and (Path(eval_dir) / "results.json").exists():
        eval_results = Path(eval_dir) / "results.json"
    update_model_card(
        model_dir,
        eval_results=eval_results,
        guard_metrics=guard_metrics_from(guard_dir) if guard_dir is not None else None,
        repo_id=repo_id,
        out_dir=staging_dir,
    )
    validate_card_offline(staging_dir / CARD_FILE)
    return sorted(str(p.relative_to(staging_dir)) for p in staging_dir.rglob("*") if p.is_file())


GUARD_REFUSAL = (
    "--guard {guard}: an ECO guard holds the forget subjects by design (guard_config.json's 'subjects', the "
    "classifier's entities), so uploading it publishes who asked to be forgotten. Keep the guard on the serving "
    "machine, or push it to a separate private repository and pass --allow_guard_upload (with --private) to say "
    "that this is intended; see docs/hub.md, 'Keeping the guard private'."
)


def push(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    staging_dir: str | Path | None = None,
    guard_dir: str | Path | None = None,
    eval_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    forget_data: Iterable[str | Path] = (),
    audit_dir: str | Path | None = None,
    allow_guard_upload: bool = False,
    commit_message: str | None = None,
    api=None,
) -> dict:
    """Stage a release (see :func:`stage_release`), check it for forget-set text and upload it with
    ``huggingface_hub.HfApi``.

    Every staged file is scanned (:func:`check_release`) against the keyed scan record that the trainer wrote
    into the model's audit folder (``audit_dir``, default ``<model_dir>.audit``), and against the text of the
    ``forget_data`` files when given; a hit refuses the push. The folder is staged beside its target and moved
    into place only once it passed, so a refused push leaves no staging folder. ``guard_dir`` (an ECO guard,
    which names the forget subjects) is refused unless ``allow_guard_upload``; the guard is then not scanned.

    The token comes from the usual places (``HF_TOKEN``, ``huggingface-cli login``). With ``dry_run`` nothing
    is uploaded and the staging folder is kept (default ``<model_dir>-hub-staging``). ``api`` replaces
    ``HfApi()``.

    Returns:
        ``{"repo_id", "staging_dir" (None once uploaded from a temporary folder), "files", "url"}``.
    """
    import tempfile

    if not HUB_ID.match(repo_id):
        raise ValueError(f"--repo_id {repo_id!r} is not a Hub repository id; use ORG/NAME, e.g. me/npo-tofu.")
    if guard_dir is not None and not allow_guard_upload:
        raise ValueError(GUARD_REFUSAL.format(guard=guard_dir))
    model_dir = Path(model_dir)
    _check_model_dir(model_dir)
    audit = audit_dir_for(model_dir, audit_dir)
    if not (audit / SCAN_RECORD_FILE).exists():
        if audit_dir is not None or not forget_data:
            raise ValueError(
                f"No scan record at {str(audit / SCAN_RECORD_FILE)!r}, so the release cannot be checked for "
                "forget-set text. It is written when an hf-unlearn trainer saves the model; pass --audit_dir "
                "if the audit folder was moved, or --forget_data FILE to scan for the forget set's text itself."
            )
        audit = None
    if staging_dir is None and dry_run:
        staging_dir = model_dir.parent / f"{model_dir.name}-hub-staging"
    if staging_dir is not None:
        require_empty_staging(Path(staging_dir))
    tmp = None if staging_dir is not None else tempfile.TemporaryDirectory(prefix="hf-unlearn-push-")
    staging = Path(staging_dir) if staging_dir is not None else Path(tmp.name) / "release"
    try:
        with written_atomically(staging) as building:  # removed if staging or the check fails
            files = stage_release(
                model_dir,
                building,
                repo_id=repo_id,
                guard_dir=guard_dir,
                eval_dir=eval_dir,
                tokenizer_dir=tokenizer_dir,
            )
            check_release(building, audit, forget_data, skip_dirs=("guard",) if guard_dir is not None else ())
        url = None
        if not dry_run:
            if api is None:
                from huggingface_hub import HfApi

                api = HfApi()
            api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id,
                repo_type="model",
                folder_path=str(staging),
                commit_message=commit_message
                or f"Upload unlearned model ({len(files)} files) with hf-unlearn",
            )
            url = str(getattr(commit, "commit_url", commit))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"repo_id": repo_id, "staging_dir": None if tmp else str(staging), "files": files, "url": url}
