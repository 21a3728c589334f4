import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from hf_unlearn.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, summary) in COMMANDS.items():
        assert name in out and summary in out


def test_console_module_runs_in_a_fresh_interpreter():
    done = subprocess.run(
        [sys.executable, "-m", "hf_unlearn.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert "commands:" in done.stdout and "demo" in done.stdout


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_train_help_documents_every_field(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--qa_files",
        "--tiny",
        "--target_exact_match",
        "--packing",
        "--learning_rate",
        "--config",
    ):
        assert option in out


def test_train_rejects_conflicting_model_choice(tmp_path, capsys):
    assert main(["train", "--qa_files", "synthetic:forget", "--output_dir", str(tmp_path)]) == 2
    assert "exactly one of --tiny" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exactly one of --tiny"):  # --debug lets the exception through
        main(["train", "--qa_files", "synthetic:forget", "--output_dir", str(tmp_path), "--debug"])


def test_train_reads_yaml_config(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        "tiny: true\nqa_files: [synthetic:forget]\nnum_train_epochs: 1\nvocab_size: 500\n"
        f"output_dir: {tmp_path / 'out'}\ndisable_tqdm: true\n"
    )
    assert main(["train", "--config", str(config)]) == 0
    assert (tmp_path / "out" / "training_summary.json").exists()


@pytest.mark.parametrize("command", ["demo", "push"])
def test_hand_written_commands_take_underscore_flags_and_their_dash_aliases(command):
    """One flag style: ``--forget_pct`` (documented) and ``--forget-pct`` (kept working) parse the same."""
    module = importlib.import_module(f"hf_unlearn.cli.{command}")
    underscored = {
        "demo": ["--forget_pct", "5", "--model_cards_dir", "cards", "--out", "o"],
        "push": [
            "--model",
            "m",
            "--repo_id",
            "me/x",
            "--dry_run",
            "--forget_data",
            "f.jsonl",
            "--audit_dir",
            "a",
        ],
    }[command]
    dashed = [a.replace("_", "-") if a.startswith("--") else a for a in underscored]
    assert dashed != underscored
    parsed = vars(module.build_parser().parse_args(underscored))
    assert parsed == vars(module.build_parser().parse_args(dashed))
    given = {a[2:] for a in underscored if a.startswith("--")}
    assert given <= set(parsed) and all(parsed[k] not in (None, False, []) for k in given)
    helptext = module.build_parser().format_help()
    assert "--forget_pct" in helptext if command == "demo" else "--repo_id" in helptext
