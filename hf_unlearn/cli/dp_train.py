"""The command-line faces of DP2Unlearning: ``hf-unlearn dp-train`` (the DP stage) and the deletion stage.

Examples::

    # DP stage: a tiny Llama from scratch, subject-level DP-SGD (epsilon 8) on the embedded default
    hf-unlearn dp-train --tiny --qa_files synthetic:forget synthetic:retain \\
        --text_files synthetic:forget_text synthetic:retain_text --target_epsilon 8 --output_dir runs/dp_base

    # deletion stage: fine-tune that DP model on the retain data only
    hf-unlearn unlearn dp2 --dp_model runs/dp_base --forget_files synthetic:forget \\
        --retain_files synthetic:retain --retain_text_files synthetic:retain_text --output_dir runs/dp2
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hf_unlearn.cli.parsing import dataclass_parser
from hf_unlearn.cli.train import (
    TrainScriptArguments,
    build_model_and_tokenizer,
    check_training_run,
    load_training_data,
    written_run,
)
from hf_unlearn.console import quiet_output
from hf_unlearn.io import check_output_dir, read_json
from hf_unlearn.trainers.finetune_config import TrainConfig


def main(argv: list[str] | None = None) -> int:
    """``hf-unlearn dp-train``: the DP stage; saves the model with ``dp_privacy.json``."""
    from hf_unlearn.trainers.dp2.config import DP2Config

    parser = dataclass_parser((TrainScriptArguments, DP2Config), prog="hf-unlearn dp-train")
    script, args = parser.parse_args_and_config(args=argv)
    from hf_unlearn.trainers.dp2.trainer import train_dp_base  # opacus and the Trainer, not for --help

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    output_dir = check_training_run(script, args)
    qa_sets, text_sets, corpus = load_training_data(script, args.max_length, "hf-unlearn dp-train")
    model, tokenizer = build_model_and_tokenizer(script, corpus, args.seed)
    with written_run(output_dir, args) as tmp, quiet_output(script.verbose):
        args.output_dir = str(tmp)
        record = train_dp_base(model, tokenizer, args, qa_sets, text_sets)
    print(
        f"Saved the DP model to {output_dir}: epsilon {record['epsilon']:.3g} at delta {record['delta']:.2g}, "
        f"{record['privacy_unit']}-level, N={record['n_units']}, noise multiplier "
        f"{record['noise_multiplier']:.3g}, sample rate {record['sample_rate']:.3g}, {record['steps']} steps."
    )
    return 0


@dataclass
class DP2UnlearnArguments:
    """The DP model and the deletion request (the optimiser settings of the retain fine-tune are in TrainConfig)."""

    dp_model: str = field(
        default=None, metadata={"help": "Directory written by `hf-unlearn dp-train` (with dp_privacy.json)."}
    )
    forget_files: list[str] = field(
        default_factory=list,
        metadata={"help": "QA sources of the deletion request (recorded by keyed fingerprint)."},
    )
    forget_text_files: list[str] = field(
        default_factory=list, metadata={"help": "Text sources of the deletion request."}
    )
    retain_files: list[str] = field(
        default_factory=list,
        metadata={"help": "QA sources to keep: the DP training data minus every request answered so far."},
    )
    retain_text_files: list[str] = field(default_factory=list, metadata={"help": "Text sources to keep."})
    previous_deletion: str | None = field(
        default=None,
        metadata={
            "help": "dp2_deletion.json of an earlier request on the same DP model: its requests are carried "
            "into this record (the retain sources must exclude them too)."
        },
    )
    subject_column: str = field(
        default="subject",
        metadata={"help": "Column naming each row's subject (for the request fingerprint)."},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an output_dir that already holds a result (the whole folder)."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Config name for Hub dataset sources."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to read from Hub dataset sources."})


def unlearn_main(argv: list[str] | None = None) -> int:
    """``hf-unlearn unlearn dp2``: the deletion stage; saves the model with ``dp2_deletion.json`` and its card.

    The request is fingerprinted with the salt of the DP model's audit folder (``DP_MODEL.audit``), so the
    fingerprints of every request answered from one DP model are comparable.
    """
    from datasets import concatenate_datasets

    from hf_unlearn.audit import audit_dir_for, salt_of
    from hf_unlearn.data.loading import check_disjoint, load_rows
    from hf_unlearn.trainers.base_config import check_max_steps
    from hf_unlearn.trainers.dp2.trainer import DELETION_FILE, request_fingerprint, unlearn_from_dp_base

    parser = dataclass_parser((DP2UnlearnArguments, TrainConfig), prog="hf-unlearn unlearn dp2")
    script, args = parser.parse_args_and_config(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not script.dp_model:
        raise SystemExit(
            "hf-unlearn unlearn dp2: pass --dp_model, a directory written by `hf-unlearn dp-train`."
        )
    if not script.forget_files and not script.forget_text_files:
        raise SystemExit(
            "hf-unlearn unlearn dp2: pass the deletion request with --forget_files/--forget_text_files."
        )
    if not script.retain_files and not script.retain_text_files:
        raise SystemExit(
            "hf-unlearn unlearn dp2: pass the data to keep with --retain_files/--retain_text_files."
        )
    check_max_steps(args.max_steps)
    output_dir = str(check_output_dir(args.output_dir, script.overwrite))
    load = lambda sources: [load_rows(s, script.dataset_config, script.dataset_split) for s in sources]  # noqa: E731
    forget_sets = load(script.forget_files) + load(script.forget_text_files)
    retain_qa, retain_text = load(script.retain_files), load(script.retain_text_files)
    for forget_part in forget_sets:
        for keep in [*retain_qa, *retain_text]:
            check_disjoint(forget_part, keep)
    forget = concatenate_datasets(forget_sets)
    requests = read_json(script.previous_deletion)["requests"] if script.previous_deletion else []
    salt = salt_of(audit_dir_for(script.dp_model))
    requests.append(request_fingerprint(forget, salt, script.subject_column))
    with written_run(output_dir, args) as tmp:
        args.output_dir = str(tmp)
        _, record = unlearn_from_dp_base(
            script.dp_model,
            args,
            retain_qa,
            retain_text,
            requests,
            forget_dataset={f"request-{len(requests)}": forget},
        )
    args.output_dir = output_dir
    training = record["training"]
    print(
        f"Saved the unlearned model to {args.output_dir} ({DELETION_FILE}: {len(requests)} request(s) answered) "
        f"after {training['epochs']:.0f} epochs, {training['seconds']:.1f} s; DP model epsilon "
        f"{record['privacy']['epsilon']:.3g} ({record['privacy']['privacy_unit']}-level)."
    )
    return 0
