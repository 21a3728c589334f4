"""``hf-unlearn unlearn`` end to end, YAML configs, and a real 2-process CPU DDP run of scripts/unlearn.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_unlearn.cli.main import main as cli_main
from hf_unlearn.cli.unlearn import SUMMARY_FILE, parameter_digest
from hf_unlearn.io import read_json
from hf_unlearn.trainers import METHODS

REPO = Path(__file__).resolve().parents[1]
# NPO + GDR with LoRA r=8 for 12 steps, lowered from 5e-3: at 5e-3 the safety rail cut the run at step 8 on another
# CPU (retain loss 3.26 from 0.012, issue 14). Not yet measured across fixture seeds (HF_UNLEARN_TEST_SEED=1, 2).
LORA_NPO_LR = "3e-3"


@pytest.fixture
def split_files(small_splits, tmp_path):
    paths = {}
    for split in ("forget", "retain"):
        paths[split] = tmp_path / f"{split}.jsonl"
        small_splits[split].to_json(paths[split])
    return paths


def test_help_documents_every_config_field(capsys):
    from hf_unlearn.trainers.npo_config import NPOConfig

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["unlearn", "npo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--beta", "--regularizer", "--lora_r", "--load_in_4bit", "--merge", "--model", "--forget"):
        assert option in text
    own_fields = set(NPOConfig.__dataclass_fields__) - set(
        __import__("transformers").TrainingArguments.__dataclass_fields__
    )
    assert all(f"--{name}" in text for name in own_fields)


@pytest.mark.parametrize(
    "method, own",
    [
        ("rmu", {"steering_layer", "steering_coeff"}),
        ("undial", {"beta"}),
        ("idknll", {"refusals_file"}),
        ("idkdpo", {"refusals_file", "beta"}),
        ("nonmember", {"nonmember_names_file", "subject_column"}),
    ],
)
def test_help_documents_every_field_of_the_newer_methods(method, own, capsys):
    from transformers import TrainingArguments

    from hf_unlearn.trainers import resolve_method

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["unlearn", method, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    own_fields = set(resolve_method(method)[0].__dataclass_fields__) - set(
        TrainingArguments.__dataclass_fields__
    )
    assert own <= own_fields and ("beta" in own_fields) == ("beta" in own)
    assert all(f"--{name}" in text for name in own_fields | {"regularizer", "lora_r"})


def test_unknown_method_is_refused(capsys):
    assert cli_main(["unlearn", "nope", "--model", "x"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert {"ga", "npo", "simnpo", "rmu", "undial"} <= set(METHODS)


def test_cli_lora_npo_with_merge(memorised_model_dir, split_files, small_splits, tmp_path):
    """Behaviour with margins, not step counts: the forget answers go, the retain answers stay."""
    from hf_unlearn.evaluation.qa import exact_match
    from hf_unlearn.models import load_model_and_tokenizer

    full, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    forget_before = exact_match(full, tok, small_splits["forget"])
    retain_before = exact_match(full, tok, small_splits["retain"])
    out = tmp_path / "npo"
    argv = ["unlearn", "npo", "--model", str(memorised_model_dir), "--forget", str(split_files["forget"])]
    argv += ["--retain", str(split_files["retain"]), "--output_dir", str(out), "--regularizer", "gdr"]
    argv += ["--lora_r", "8", "--merge", "--learning_rate", LORA_NPO_LR, "--max_steps", "24"]
    argv += ["--per_device_train_batch_size", "8", "--use_cpu", "--disable_tqdm", "true"]
    assert cli_main(argv) == 0
    summary = read_json(out / SUMMARY_FILE)
    assert summary["method"] == "npo" and summary["regularizer"] == "gdr", summary
    assert 1 <= summary["steps"] <= 24, summary
    model, _ = load_model_and_tokenizer(out, dtype=torch.float32)  # merged: a plain model directory
    forget_after = exact_match(model, tok, small_splits["forget"])
    retain_after = exact_match(model, tok, small_splits["retain"])
    assert forget_after <= forget_before - 0.5, (forget_before, forget_after, summary)
    assert retain_after >= retain_before - 0.3, (retain_before, retain_after, summary)


def test_yaml_config_names_the_method(memorised_model_dir, split_files, tmp_path, capsys):
    config = tmp_path / "ga.yaml"
    config.write_text(
        f"method: ga\nmodel_name_or_path: {memorised_model_dir}\nforget: {split_files['forget']}\n"
        f"output_dir: {tmp_path / 'ga'}\nmax_steps: 2\nper_device_train_batch_size: 4\nuse_cpu: true\n"
    )
    assert cli_main(["unlearn", "--config", str(config)]) == 0
    summary = read_json(tmp_path / "ga" / SUMMARY_FILE)
    assert summary["method"] == "ga" and 1 <= summary["steps"] <= 2 and summary["regularizer"] == "none"
    assert cli_main(["unlearn", "npo", "--config", str(config)]) == 2
    assert "'npo' on the command line but 'ga'" in capsys.readouterr().err


def test_safety_rail_saves_nothing_unless_allowed(memorised_model_dir, split_files, tmp_path, capsys):
    out = tmp_path / "ga"
    argv = ["unlearn", "ga", "--model", str(memorised_model_dir), "--forget", str(split_files["forget"])]
    argv += ["--retain", str(split_files["retain"]), "--output_dir", str(out), "--learning_rate", "3e-2"]
    argv += ["--max_steps", "60", "--per_device_train_batch_size", "8", "--use_cpu", "--disable_tqdm", "true"]
    assert cli_main(argv) == 3
    err = capsys.readouterr().err
    assert "Safety rail" in err and "Nothing was saved" in err and "--allow_degraded" in err
    assert not out.exists() and not (tmp_path / "ga.tmp").exists()
    assert cli_main([*argv, "--allow_degraded"]) == 0
    summary = read_json(out / SUMMARY_FILE)
    rail = summary["stopped_early"]
    assert summary["steps"] == rail["restored_step"] == rail["step"] - 1 < rail["steps_run"] < 60
    assert f"after {rail['step']} update(s)" in rail["message"]
    assert "Saved the restored weights" in capsys.readouterr().out


def test_overwrite_replaces_the_whole_output_dir(memorised_model_dir, split_files, tmp_path, capsys):
    out = tmp_path / "npo"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "whp_dictionary.json").write_text('{"names": ["a forgotten name"]}')
    before = sorted(p.name for p in out.iterdir())
    argv = ["unlearn", "npo", "--model", str(memorised_model_dir), "--forget", str(split_files["forget"])]
    argv += ["--retain", str(split_files["retain"]), "--output_dir", str(out), "--max_steps", "2"]
    argv += ["--per_device_train_batch_size", "4", "--use_cpu", "--disable_tqdm", "true"]
    assert cli_main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert cli_main([*argv, "--overwrite"]) == 0
    assert not (out / "whp_dictionary.json").exists() and (out / SUMMARY_FILE).exists()
    assert not (tmp_path / "npo.tmp").exists() and not (tmp_path / "npo.old").exists()


def test_interrupted_save_leaves_the_previous_result(memorised_model_dir, split_files, tmp_path, monkeypatch):
    from hf_unlearn.trainers.base_trainer import UnlearningTrainer

    out = tmp_path / "npo"
    out.mkdir()
    (out / "config.json").write_text('{"previous": true}')

    def save_then_interrupt(self, output_dir=None):
        (Path(output_dir) / "model.safetensors").write_bytes(b"half")  # SIGINT midway through the save
        raise KeyboardInterrupt

    monkeypatch.setattr(UnlearningTrainer, "save_unlearned", save_then_interrupt)
    argv = ["unlearn", "npo", "--model", str(memorised_model_dir), "--forget", str(split_files["forget"])]
    argv += [
        "--retain",
        str(split_files["retain"]),
        "--output_dir",
        str(out),
        "--max_steps",
        "1",
        "--overwrite",
    ]
    argv += ["--per_device_train_batch_size", "4", "--use_cpu", "--disable_tqdm", "true"]
    with pytest.raises(KeyboardInterrupt):
        cli_main(argv)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert (out / "config.json").read_text() == '{"previous": true}'
    assert not (tmp_path / "npo.tmp").exists()


def test_two_process_cpu_ddp_keeps_replicas_identical(memorised_model_dir, split_files, free_port, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["--num_machines", "1", "--main_process_port", str(free_port)]
    cmd += [str(REPO / "scripts" / "unlearn.py"), "npo", "--model", str(memorised_model_dir)]
    cmd += ["--forget", str(split_files["forget"])]
    cmd += ["--retain", str(split_files["retain"]), "--regularizer", "gdr", "--output_dir", str(out)]
    cmd += ["--max_steps", "3", "--per_device_train_batch_size", "4", "--use_cpu", "--learning_rate", "3e-3"]
    cmd += ["--allow_degraded"]  # the rail may cut the run on some CPU; the replicas must agree either way
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(out / SUMMARY_FILE)
    # however many steps ran before the safety rail (if it fired; both ranks take its decision together), at
    # least one did, and both replicas hold the same parameters
    assert 1 <= summary["steps"] <= 3, summary
    digests = summary["rank_parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    start = parameter_digest(AutoModelForCausalLM.from_pretrained(memorised_model_dir))
    assert digests[0] != start  # the replicas moved, together


@pytest.mark.parametrize(
    "config", sorted((REPO / "scripts" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_yaml_configs_parse(config):
    import yaml
    from trl import TrlParser

    from hf_unlearn.cli.unlearn import UnlearnScriptArguments
    from hf_unlearn.trainers import resolve_method

    method = yaml.safe_load(config.read_text())["method"]
    config_cls, _ = resolve_method(method)
    parser = TrlParser((UnlearnScriptArguments, config_cls))
    script, args = parser.parse_args_and_config(args=["--config", str(config)])
    assert script.method == method and script.forget == "synthetic:forget"
    assert args.regularizer in ("gdr", "klr") and args.retain_batch_size == 64
