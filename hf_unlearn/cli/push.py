"""``hf-unlearn push``: the command-line face of :func:`hf_unlearn.hub.release.push`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_unlearn.cli.parsing import add_flag
from hf_unlearn.hub.release import push


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn push",
        description="Upload an unlearned model (or adapter), its tokenizer, model card, guard and evaluation "
        "results to the Hugging Face Hub. The token comes from HF_TOKEN or 'huggingface-cli login'.",
    )
    add_flag(parser, "model", type=Path, required=True, help="Saved model or adapter directory.")
    add_flag(parser, "repo_id", required=True, help="Target repository, ORG/NAME.")
    add_flag(parser, "private", action="store_true", help="Create the repository as private.")
    add_flag(
        parser,
        "dry_run",
        action="store_true",
        help="Write the folder that would be uploaded; upload nothing.",
    )
    add_flag(
        parser,
        "staging",
        type=Path,
        default=None,
        help="Staging folder (default with --dry_run: MODEL-hub-staging).",
    )
    add_flag(
        parser,
        "guard",
        type=Path,
        default=None,
        help="ECO guard directory to include (guard/); it names the forget subjects, so this is refused "
        "without --allow_guard_upload.",
    )
    add_flag(parser, "eval", type=Path, default=None, help="Evaluation output directory to include (eval/).")
    add_flag(parser, "tokenizer", type=Path, default=None, help="Tokenizer dir, if MODEL has none.")
    add_flag(
        parser,
        "forget_data",
        nargs="*",
        default=[],
        help="Forget-set file(s) to scan for as well: refuse to upload if any staged text file contains "
        "their text (the keyed scan record of the audit folder is always checked).",
    )
    add_flag(
        parser,
        "audit_dir",
        type=Path,
        default=None,
        help="The model's local audit folder with the scan record (default: MODEL.audit beside MODEL).",
    )
    add_flag(
        parser,
        "allow_guard_upload",
        action="store_true",
        help="Upload the --guard folder although it names the forget subjects (for a private guard repo).",
    )
    add_flag(parser, "commit_message", default=None, help="Commit message on the Hub.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = push(
            args.model,
            args.repo_id,
            private=args.private,
            dry_run=args.dry_run,
            staging_dir=args.staging,
            guard_dir=args.guard,
            eval_dir=args.eval,
            tokenizer_dir=args.tokenizer,
            forget_data=args.forget_data,
            audit_dir=args.audit_dir,
            allow_guard_upload=args.allow_guard_upload,
            commit_message=args.commit_message,
        )
    except ValueError as err:
        parser.error(str(err))
    print("\n".join(result["files"]))
    if args.guard is not None and not args.private:
        print(
            "\nWarning: guard/ names the forget subjects and the repository was not created --private; "
            "check its visibility on the Hub."
        )
    if args.dry_run:
        print(f"\nDry run: {len(result['files'])} files staged in {result['staging_dir']}; nothing uploaded.")
    else:
        print(f"\nUploaded {len(result['files'])} files to {result['repo_id']}: {result['url']}")
    return 0
