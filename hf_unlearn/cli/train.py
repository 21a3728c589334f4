"""``hf-unlearn train``: the command-line face of :mod:`hf_unlearn.trainers.finetune`.

Examples::

    # a tiny Llama from scratch on the embedded default's retain people (the "gold" model)
    hf-unlearn train --tiny --qa_files synthetic:retain --text_files synthetic:retain_text --output_dir runs/gold

    # fine-tune a Hub or local model on TOFU, arguments from YAML
    hf-unlearn train --config scripts/configs/train_tofu.yaml
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hf_unlearn.cli.parsing import dataclass_parser, verbose_field
from hf_unlearn.console import quiet_output
from hf_unlearn.io import check_model_source, check_output_dir, written_atomically
from hf_unlearn.trainers.finetune_config import TrainConfig


@dataclass
class TrainScriptArguments:
    """What to train and on which data (the optimiser settings are in ``TrainConfig``)."""

    qa_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "QA sources (question/answer columns): local .json/.jsonl/.parquet/.csv, Hub ids, or synthetic:<split>."
        },
    )
    text_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Raw-text sources (a 'text' column), packed with the QA data."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Config name for Hub dataset sources (e.g. forget10)."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to read from Hub dataset sources."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model directory or Hub id to fine-tune. Omit with --tiny."}
    )
    tiny: bool = field(
        default=False, metadata={"help": "Train a tiny Llama from scratch instead of fine-tuning."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer to use. With --tiny and no tokenizer, a byte-level BPE is trained on the data."
        },
    )
    tokenizer_extra_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "--tiny without a tokenizer: QA or text sources added to the BPE corpus only, never trained on "
            "(e.g. the holdout people, so that their names are tokens like the trained people's and a membership "
            "attack compares like with like)."
        },
    )
    vocab_size: int = field(
        default=2048, metadata={"help": "--tiny: BPE vocabulary size when training a tokenizer."}
    )
    hidden_size: int = field(default=64, metadata={"help": "--tiny: hidden size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "--tiny: transformer layers."})
    num_attention_heads: int = field(
        default=2, metadata={"help": "--tiny: attention heads (head_dim >= 32 for vLLM on CPU)."}
    )
    intermediate_size: int = field(default=256, metadata={"help": "--tiny: MLP inner size."})
    verbose: bool = verbose_field()
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Replace an output_dir that already holds a result (the whole folder, once the new one is "
            "complete). Without it such a folder is refused before any work starts."
        },
    )


def build_model_and_tokenizer(script: TrainScriptArguments, corpus: list[str], seed: int):
    """Load the model to fine-tune, or build a tiny one (training a tokenizer on ``corpus`` if none is given)."""
    from transformers import AutoTokenizer

    from hf_unlearn.models import build_tiny_llama, load_model_and_tokenizer, train_bpe_tokenizer

    if script.tiny == (script.model_name_or_path is not None):
        raise ValueError(
            f"Got tiny={script.tiny} and model_name_or_path={script.model_name_or_path!r}: pass exactly one of "
            "--tiny (train from scratch) or --model_name_or_path (fine-tune)."
        )
    if not script.tiny:
        return load_model_and_tokenizer(script.model_name_or_path, script.tokenizer_name_or_path)
    if script.tokenizer_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(script.tokenizer_name_or_path)
    else:
        tokenizer = train_bpe_tokenizer(corpus, script.vocab_size)
    model = build_tiny_llama(
        tokenizer,
        hidden_size=script.hidden_size,
        num_hidden_layers=script.num_hidden_layers,
        num_attention_heads=script.num_attention_heads,
        intermediate_size=script.intermediate_size,
        seed=seed,
    )
    return model, tokenizer


def load_training_data(script: TrainScriptArguments, max_length: int, prog: str = "hf-unlearn train"):
    """Load ``script``'s QA and text sources, check their columns, and return them with the tokenizer corpus.

    Raises:
        SystemExit: no data, or a source whose columns do not fit its option.
    """
    from hf_unlearn.data.loading import load_rows, row_kind, warn_long_rows

    if not script.qa_files and not script.text_files:
        raise SystemExit(f"{prog}: no data given; pass --qa_files and/or --text_files.")
    qa_sets = [load_rows(s, script.dataset_config, script.dataset_split) for s in script.qa_files]
    text_sets = [load_rows(s, script.dataset_config, script.dataset_split) for s in script.text_files]
    for source, ds in zip(script.qa_files, qa_sets):
        if row_kind(ds, source) != "qa":
            raise SystemExit(f"{prog}: {source!r} has no question/answer columns; pass it with --text_files.")
    for source, ds in zip(script.text_files, text_sets):
        if "text" not in ds.column_names:
            raise SystemExit(f"{prog}: {source!r} has no 'text' column; pass QA data with --qa_files.")
    for source, ds in zip([*script.qa_files, *script.text_files], [*qa_sets, *text_sets]):
        warn_long_rows(ds, max_length, repr(source))
    corpus = [f"{q} {a}" for ds in qa_sets for q, a in zip(ds["question"], ds["answer"])]
    corpus += [t for ds in text_sets for t in ds["text"]]
    for source in script.tokenizer_extra_files:  # the tokenizer's corpus only (row_kind raises on other rows)
        ds = load_rows(source, script.dataset_config, script.dataset_split)
        if row_kind(ds, source) == "qa":
            corpus += [f"{q} {a}" for q, a in zip(ds["question"], ds["answer"])]
        else:
            corpus += list(ds["text"])
    return qa_sets, text_sets, corpus


def check_training_run(script: TrainScriptArguments, args) -> str:
    """Refuse, before any data or model loads, what would fail or overwrite later: ``max_steps=0``, a
    missing model, an output folder that cannot be used. Returns the output folder.

    Raises:
        ValueError: see :func:`~hf_unlearn.trainers.base_config.check_max_steps`,
            :func:`~hf_unlearn.io.check_model_source` and :func:`~hf_unlearn.io.check_output_dir`.
    """
    from hf_unlearn.trainers.base_config import check_max_steps

    check_max_steps(args.max_steps)
    if script.model_name_or_path is not None:
        check_model_source(script.model_name_or_path, "--model_name_or_path")
    return str(check_output_dir(args.output_dir, script.overwrite))


def written_run(output_dir: str, args):
    """:func:`~hf_unlearn.io.written_atomically` for a training run: a resumed run continues in the folder
    an interrupted one left, and a run that saves checkpoints keeps them there when it fails."""
    return written_atomically(
        output_dir, clear_leftover=not args.resume_from_checkpoint, keep_on_error=args.save_strategy != "no"
    )


def main(argv: list[str] | None = None) -> int:
    parser = dataclass_parser((TrainScriptArguments, TrainConfig), prog="hf-unlearn train")
    script, args = parser.parse_args_and_config(args=argv)
    from hf_unlearn.trainers.finetune import (
        train_lm,  # the Trainer stack, once the options parsed (not for --help)
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    output_dir = check_training_run(script, args)
    qa_sets, text_sets, corpus = load_training_data(script, args.max_length)
    model, tokenizer = build_model_and_tokenizer(script, corpus, args.seed)
    with written_run(output_dir, args) as tmp, quiet_output(script.verbose):
        args.output_dir = str(tmp)
        summary = train_lm(
            model, tokenizer, args, qa_sets, text_sets, resume_from_checkpoint=args.resume_from_checkpoint
        )
    print(f"Saved model and tokenizer to {output_dir}: {summary}")
    return 0
