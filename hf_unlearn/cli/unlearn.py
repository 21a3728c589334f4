"""``hf-unlearn unlearn <method>``: run an unlearning trainer from the command line or a YAML file.

Examples::

    hf-unlearn unlearn npo --model runs/demo/full --forget synthetic:forget --retain synthetic:retain \\
        --output_dir runs/npo --regularizer gdr
    hf-unlearn unlearn ga --config scripts/configs/ga.yaml --lora_r 8 --load_in_4bit --merge
    accelerate launch scripts/unlearn.py --config scripts/configs/npo.yaml   # method: npo in the YAML

``hf-unlearn unlearn <method> --help`` lists every field of the method's config. Methods live in
:data:`hf_unlearn.trainers.METHODS`, a plain dict; a new method is one line there.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from hf_unlearn.cli.parsing import dataclass_parser, verbose_field
from hf_unlearn.console import quiet_output
from hf_unlearn.io import check_model_source, check_output_dir, write_json_atomic, written_atomically
from hf_unlearn.trainers import METHODS, import_path, resolve_method

logger = logging.getLogger(__name__)
SUMMARY_FILE = "unlearning_summary.json"

# Methods that are pipelines of their own rather than an UnlearningTrainer: name -> "module:main(argv)".
PIPELINES: dict[str, str] = {"dp2": "hf_unlearn.cli.dp_train:unlearn_main"}


@dataclass
class UnlearnScriptArguments:
    """What to unlearn from which model (the optimisation settings are in the method's config)."""

    method: str | None = field(
        default=None,
        metadata={
            "help": "Unlearning method; given as the first argument on the command line or in the YAML."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model directory or Hub id to unlearn from.", "aliases": ["--model"]}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer (default: the model's).", "aliases": ["--tokenizer"]}
    )
    forget: str | None = field(
        default=None,
        metadata={"help": "Forget rows: local .json/.jsonl/.parquet/.csv, a Hub id, or synthetic:<split>."},
    )
    retain: str | None = field(
        default=None, metadata={"help": "Retain rows (needed by --regularizer gdr/klr and the safety rail)."}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Config of Hub dataset sources (e.g. forget10 / retain90 for TOFU)."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to read from Hub dataset sources."})
    verbose: bool = verbose_field()
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Replace an output_dir that already holds a result (the whole folder, once the new one is "
            "complete). Without it such a folder is refused before any work starts."
        },
    )
    allow_degraded: bool = field(
        default=False,
        metadata={
            "help": "When the safety rail stops the run, save the restored weights (the last step within the "
            "rail) and exit 0. Without it nothing is saved and the command exits 3."
        },
    )


def parameter_digest(model) -> str:
    """SHA-256 of every parameter's bytes, in name order: equal digests mean bit-identical weights.

    A sharded (FSDP2 ``DTensor``) parameter is gathered whole first, so every rank of a sharded run digests the
    full model (all ranks must call this together).
    """
    import torch
    from torch.distributed.tensor import DTensor

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        value = param.detach()
        value = value.full_tensor() if isinstance(value, DTensor) else value
        digest.update(name.encode())
        digest.update(value.cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
    return digest.hexdigest()


def run_unlearning(method: str, script: UnlearnScriptArguments, args) -> dict:
    """Check the inputs and the output folder, load data and model, unlearn, save, and return (and write to
    ``output_dir``) a summary.

    The model, card and summary are written to a folder beside ``output_dir`` and renamed into place when all
    are written, so an interrupted run leaves the previous result or nothing. The summary holds ``method``,
    ``seconds`` (building the trainer — loading the model, tokenizing, stages such as WHP's reinforced adapter,
    mining and relabeling — and training), ``stage_seconds`` (the trainer's own ``stage_seconds`` plus ``train``;
    they sum to at most ``seconds``), ``steps`` (the updates the saved weights have), ``stopped_early`` (the safety
    rail's record or ``None``), the last logged metrics, and ``rank_parameter_digests`` (one per process: equal
    digests prove that distributed replicas stayed in sync).

    Raises:
        ValueError: a missing model or forget set, an output folder that cannot be used (see
            :func:`hf_unlearn.io.check_output_dir`).
        hf_unlearn.cli.parsing.CLIError: the safety rail stopped the run and ``script.allow_degraded`` is off (exit 3;
            nothing is saved).
    """
    if not script.forget:
        raise ValueError(
            "No --forget given; pass the rows to unlearn (a file, a Hub id or synthetic:<split>)."
        )
    check_model_source(script.model_name_or_path)
    output_dir = str(check_output_dir(args.output_dir, script.overwrite))
    main_process = args.process_index == 0
    with written_atomically(output_dir) if main_process else nullcontext(Path(output_dir + ".tmp")) as tmp:
        args.output_dir = str(tmp)  # checkpoints, if any, go with the rest of the result
        trainer, result, seconds, stages = _train(method, script, args)
        args.output_dir = output_dir  # as the card and the summary record it
        rail = trainer.stopped_early
        if rail is not None and not script.allow_degraded:
            from hf_unlearn.cli.parsing import CLIError

            raise CLIError(
                f"{rail['message']} Nothing was saved ({output_dir!r} is unchanged); pass --allow_degraded to save "
                f"the restored weights.",
                exit_code=3,
            )
        digests = _gather([parameter_digest(trainer.accelerator.unwrap_model(trainer.model))])
        trainer.save_unlearned(tmp)
        logged = [entry for entry in trainer.state.log_history if "forget_loss" in entry]
        summary = {
            "method": method,
            "regularizer": args.regularizer,
            "seconds": seconds,
            "stage_seconds": stages,
            "steps": result.global_step,
            "train_loss": result.training_loss,
            "stopped_early": rail,
            "last_metrics": logged[-1] if logged else {},
            "rank_parameter_digests": digests,
        }
        if trainer.is_world_process_zero():
            write_json_atomic(Path(tmp) / SUMMARY_FILE, summary)
    return summary


def _gather(values: list) -> list:
    from accelerate.utils import gather_object

    return gather_object(values)


def _train(method: str, script: UnlearnScriptArguments, args):
    """Load the data and the model and run the method's trainer: ``(trainer, TrainOutput, seconds,
    stage_seconds)``."""
    from hf_unlearn.data.loading import load_rows

    _, trainer_cls = resolve_method(method)
    forget = load_rows(script.forget, script.dataset_config, script.dataset_split)
    retain = load_rows(script.retain, script.dataset_config, script.dataset_split) if script.retain else None
    tokenizer = None
    if script.tokenizer_name_or_path:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(script.tokenizer_name_or_path)
    # building the trainer runs stages too (reference log-probs, WHP's relabeling)
    start = time.perf_counter()
    trainer = trainer_cls(
        model=script.model_name_or_path,
        args=args,
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=tokenizer,
    )
    built = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    stages = {**getattr(trainer, "stage_seconds", {}), "train": time.perf_counter() - built}
    return trainer, result, time.perf_counter() - start, stages


def _method_from_config(argv: list[str]) -> str | None:
    import yaml

    if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
        return None
    with open(argv[argv.index("--config") + 1]) as fh:
        return (yaml.safe_load(fh) or {}).get("method")


def usage() -> str:
    return (
        "usage: hf-unlearn unlearn {"
        + ",".join([*METHODS, *PIPELINES])
        + "} --model DIR --forget PATH [--retain PATH] "
        "--output_dir DIR [--config file.yaml] [--regularizer none|gdr|klr] [--lora_r N] [--load_in_4bit] "
        "[--merge] [...]\n(dp2 takes its own options: --dp_model, --forget_files, --retain_files, ...)\n\n"
        "Run 'hf-unlearn unlearn <method> --help' for every option of a method."
    )


def _end_process_group() -> None:
    """Tear down the distributed process group a multi-process launch opened, all ranks together.

    gloo's threads otherwise die with the interpreter, which aborted a rank at exit ("terminate called without an
    active exception", no Python frame left) after the run had finished and saved. ``destroy_process_group`` is
    collective, so every rank first waits at a barrier for the others to finish; and the group is only freed
    once nothing holds it: the finished trainer's DDP wrapper (in reference cycles) is collected first and the
    group again after it is destroyed, while the interpreter is still whole.
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        method, rest = argv[0], argv[1:]
        in_config = _method_from_config(rest)
        if in_config and in_config != method:
            raise ValueError(
                f"method {method!r} on the command line but {in_config!r} in --config; drop one of them."
            )
    else:
        method, rest = _method_from_config(argv), argv
    if method is None:
        print(usage(), file=sys.stdout if any(a in ("-h", "--help") for a in argv) else sys.stderr)
        return 0 if any(a in ("-h", "--help") for a in argv) else 2
    if method in PIPELINES:
        return import_path(PIPELINES[method])(rest) or 0
    if method not in METHODS:
        print(
            f"hf-unlearn unlearn: unknown method {method!r}; choose one of {sorted([*METHODS, *PIPELINES])}.",
            file=sys.stderr,
        )
        return 2
    config_cls = import_path(METHODS[method][0])  # the trainer (and torch's training stack) only once it runs
    parser = dataclass_parser((UnlearnScriptArguments, config_cls), prog=f"hf-unlearn unlearn {method}")
    script, args = parser.parse_args_and_config(args=rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with quiet_output(script.verbose):
        summary = run_unlearning(method, script, args)
    _end_process_group()
    if args.process_index == 0:
        rail = summary["stopped_early"]
        print(
            f"Unlearned with {method} ({args.regularizer}) into {args.output_dir}: {summary['steps']} steps, "
            f"{summary['seconds']:.1f} s."
            + (f" {rail['message']} Saved the restored weights (--allow_degraded)." if rail else "")
        )
    return 0
