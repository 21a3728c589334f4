"""``hf-unlearn eco-fit``: fit an ECO guard for a model (the command-line face of :mod:`hf_unlearn.eco.fit`).

Examples::

    # guard the embedded default's full model; target = the model's own EM on never-seen people
    hf-unlearn eco-fit --model runs/demo/full --forget runs/demo/data/forget.jsonl \\
        --retain runs/demo/data/retain.jsonl --holdout runs/demo/data/holdout.jsonl --out runs/guard

    # target = the retrained (gold) model's forget metric
    hf-unlearn eco-fit --model runs/demo/full --forget ... --retain ... --target_model runs/demo/gold --out ...

The strength search needs a target for the forget metric: the retrained model's (``--target_model``), the
unguarded model's on people it never saw (``--holdout``, a proxy needing no retraining), or a number
(``--target``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from hf_unlearn.cli.parsing import dataclass_parser, verbose_field
from hf_unlearn.console import configure_logging, quiet_output
from hf_unlearn.eco.config import FORGET_METRICS, ClassifierConfig, GuardConfig
from hf_unlearn.io import check_model_source, check_output_dir, written_atomically

logger = logging.getLogger(__name__)


@dataclass
class ECOFitArguments:
    """What to guard, with which data, and how to search the corruption strength."""

    model: str = field(metadata={"help": "The served model's directory (or Hub id)."})
    forget: str = field(
        metadata={"help": "Forget QA rows (question/answer[/subject]): file, Hub id, synthetic:<split>."}
    )
    retain: str = field(metadata={"help": "Retain / general QA rows: the classifier's negatives."})
    out: str = field(
        metadata={"help": "Guard directory to write (guard_config.json, classifier/, fit_report.json)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an --out folder that already holds a guard (or another result)."},
    )
    holdout: str | None = field(
        default=None,
        metadata={
            "help": "QA rows about never-seen subjects: target = the unguarded model's metric on them."
        },
    )
    target_model: str | None = field(
        default=None, metadata={"help": "Retrained (gold) model: target = its forget metric."}
    )
    target: float | None = field(
        default=None, metadata={"help": "Target forget metric value, given directly."}
    )
    metric: str = field(
        default="prob",
        metadata={
            "help": f"Forget metric to match: one of {FORGET_METRICS} ('prob' is smooth, 'em' step-like)."
        },
    )
    steps: int = field(default=20, metadata={"help": "Zeroth-order search steps (two forward passes each)."})
    lr: float = field(default=0.05, metadata={"help": "Search step size on log(strength)."})
    mu: float = field(default=0.25, metadata={"help": "Two-point smoothing radius on log(strength)."})
    verbose: bool = verbose_field()


def main(argv: list[str] | None = None) -> int:
    parser = dataclass_parser((ECOFitArguments, GuardConfig, ClassifierConfig), prog="hf-unlearn eco-fit")
    args, guard_config, classifier_config = parser.parse_args_and_config(args=argv)
    from hf_unlearn.data.loading import check_disjoint, load_rows  # the model stack, not for --help
    from hf_unlearn.eco.fit import fit_guard, save_guard
    from hf_unlearn.models import load_model_and_tokenizer

    configure_logging(args.verbose)
    logging.getLogger("hf_unlearn").setLevel(
        logging.INFO
    )  # the strength search's steps are this command's progress
    check_model_source(args.model)
    check_output_dir(args.out, args.overwrite, "--out")
    forget, retain = load_rows(args.forget), load_rows(args.retain)
    check_disjoint(forget, retain)  # forget == retain would fit a guard that flags nothing
    if not guard_config.subjects and "subject" not in forget.column_names:
        logger.warning(
            "%s has no 'subject' column and no --subjects were given: the guard matches no names and relies on the "
            "classifier alone. Add a 'subject' column naming each row's person, or pass --subjects.",
            args.forget,
        )
    with quiet_output(args.verbose):
        model, tokenizer = load_model_and_tokenizer(args.model)
        target_model = None
        if args.target_model is not None:
            target_model, _ = load_model_and_tokenizer(args.target_model)
        holdout = load_rows(args.holdout) if args.holdout else None
        guarded, report = fit_guard(
            model,
            tokenizer,
            forget,
            retain,
            guard_config,
            classifier_config,
            args.target,
            target_model,
            holdout,
            args.metric,
            args.steps,
            args.lr,
            args.mu,
        )
    report["args"] = asdict(args)
    with written_atomically(args.out) as tmp:
        save_guard(guarded, report, tmp)
    print(
        f"Wrote the guard to {args.out}: strength {report['strength']:.4g}, forget {args.metric} gap "
        f"{report['gap']:.4f} to the target {report['target']:.4f} ({report['target_source']})."
    )
    return 0
