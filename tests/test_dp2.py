"""DP2Unlearning: privacy accounting, subject-level clipping, settings errors, DP stage + deletion end to end."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from datasets import concatenate_datasets

from hf_unlearn.audit import audit_dir_for, salt_of
from hf_unlearn.evaluation.qa import exact_match
from hf_unlearn.losses import token_log_probs
from hf_unlearn.models import build_tiny_llama
from hf_unlearn.trainers.dp2.config import DP2Config
from hf_unlearn.trainers.dp2.trainer import (
    DELETION_FILE,
    PRIVACY_FILE,
    DP2Trainer,
    UnitCollator,
    check_dp_settings,
    dp_step,
    make_private,
    privacy_units,
    request_fingerprint,
    train_dp_base,
)

QUIET = {"save_strategy": "no", "disable_tqdm": True, "logging_steps": 1000, "report_to": "none"}


def _train_sets(splits):
    qa = concatenate_datasets([splits["forget"], splits["retain"]])
    text = concatenate_datasets([splits["forget_text"], splits["retain_text"]])
    return qa, text


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_matches_opacus_accountant_with_subjects_as_n(
    small_splits, tiny_tokenizer, tmp_path, accountant
):
    from opacus.accountants import create_accountant

    qa, text = _train_sets(small_splits)
    args = DP2Config(
        output_dir=str(tmp_path), dp_noise_multiplier=1.3, dp_batch_size=5, dp_epochs=1, target_delta=1e-3,
        dp_accountant=accountant, **QUIET,
    )  # fmt: skip
    record = train_dp_base(build_tiny_llama(tiny_tokenizer), tiny_tokenizer, args, [qa], [text])
    # 20 people (2 forget + 18 retain): N counts subjects, not their 180 records
    assert record["privacy_unit"] == "subject" and record["n_units"] == 20 and record["n_records"] == 180
    assert record["sample_rate"] == pytest.approx(5 / 20)
    assert record["steps"] == 4
    reference = create_accountant(accountant)
    reference.history = [(1.3, 5 / 20, 4)]
    assert record["epsilon"] == pytest.approx(reference.get_epsilon(1e-3), rel=1e-6)
    assert json.loads((tmp_path / PRIVACY_FILE).read_text())["epsilon"] == pytest.approx(record["epsilon"])


def test_epsilon_target_is_met_at_record_level(small_splits, tiny_tokenizer, tmp_path):
    qa, text = _train_sets(small_splits)
    args = DP2Config(
        output_dir=str(tmp_path), privacy_unit="record", target_epsilon=4.0, target_delta=1e-4,
        dp_batch_size=40, dp_epochs=1, dp_accountant="rdp", **QUIET,
    )  # fmt: skip
    record = train_dp_base(build_tiny_llama(tiny_tokenizer), tiny_tokenizer, args, [qa], [text])
    assert record["n_units"] == 180  # 20 people x (8 QA + 1 bio), each its own unit
    assert record["sample_rate"] == pytest.approx(1 / 5)  # ceil(180 / 40) = 5 loader batches
    assert 3.6 <= record["epsilon"] <= 4.0 + 1e-6


def _one_step_grad(model, tokenizer, units, max_grad_norm, batch_units=None):
    """One DP step (noise std 1e-12 x C) on ``batch_units`` (default: all ``units``); the summed clipped grad."""
    args = DP2Config(
        output_dir="unused", dp_noise_multiplier=1e-12, dp_max_grad_norm=max_grad_norm,
        dp_batch_size=len(units), target_delta=1e-6, **QUIET,
    )  # fmt: skip
    dp = make_private(model, tokenizer, args, units)
    batch = UnitCollator(tokenizer.pad_token_id)(batch_units or units)
    dp_step(model, dp.optimizer, batch, dp.params, physical_rows=4)
    expected = dp.optimizer.expected_batch_size
    grads = [p.grad.detach().clone() * expected for p in dp.params]  # undo the mean over expected units
    dp.hooks.cleanup()
    return grads


def _norm(grads):
    return torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()


def test_subject_gradient_is_clipped_as_one_unit(small_splits, tiny_tokenizer):
    clip = 1e-3
    person = small_splits["forget"]["subject"][0]
    one = small_splits["forget"].filter(lambda r: r["subject"] == person)
    text = small_splits["forget_text"].filter(lambda r: r["subject"] == person)
    subject_units = privacy_units(tiny_tokenizer, [one], [text], unit="subject")
    record_units = privacy_units(tiny_tokenizer, [one], [text], unit="record")
    assert len(subject_units) == 1 and len(record_units) == 9
    other = privacy_units(tiny_tokenizer, [small_splits["retain"].select(range(8))])  # N >= 2 for the setup
    torch.manual_seed(0)
    model = build_tiny_llama(tiny_tokenizer)
    subject_norm = _norm(
        _one_step_grad(copy.deepcopy(model), tiny_tokenizer, subject_units + other, clip, subject_units)
    )
    record_norm = _norm(_one_step_grad(copy.deepcopy(model), tiny_tokenizer, record_units, clip))
    # one subject with 9 records moves the model by at most C; as 9 record units it moves it ~9 C
    assert subject_norm == pytest.approx(clip, rel=1e-3)
    assert record_norm > 5 * clip


def test_unclipped_unit_gradient_is_sum_of_record_gradients(small_splits, tiny_tokenizer):
    units = privacy_units(tiny_tokenizer, [small_splits["forget"]], [small_splits["forget_text"]])
    assert len(units) == 2
    torch.manual_seed(0)
    model = build_tiny_llama(tiny_tokenizer)
    reference = copy.deepcopy(model)
    dp_grads = _one_step_grad(model, tiny_tokenizer, units, max_grad_norm=1e3)  # no clipping
    batch = UnitCollator(tiny_tokenizer.pad_token_id)(units)
    logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps, mask = token_log_probs(logits, batch["labels"])
    (-logps.sum(-1) / mask.sum(-1)).sum().backward()
    for got, param in zip(dp_grads, [p for p in reference.parameters() if p.requires_grad]):
        torch.testing.assert_close(got, param.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "n_units", "message"),
    [
        ({"target_epsilon": 0.0}, 20, "epsilon must be > 0"),
        ({"target_epsilon": -1.0}, 20, "epsilon must be > 0"),
        ({"dp_noise_multiplier": 0.0}, 20, "noise multiplier must be > 0"),
        ({"target_delta": 0.05}, 20, r"delta must be in \(0, 1/N\)"),
        ({"target_delta": 1e-3}, 2000, r"delta must be in \(0, 1/N\)"),
        ({"dp_batch_size": 0}, 20, "between 1 and N"),
        ({"dp_batch_size": 21}, 20, "between 1 and N"),
        ({}, 1, "at least 2"),
    ],
)
def test_impossible_settings_raise(overrides, n_units, message):
    args = DP2Config(output_dir="unused", **{**QUIET, "target_delta": 1e-5, **overrides})
    with pytest.raises(ValueError, match=message):
        check_dp_settings(args, n_units)


def test_model_opacus_cannot_wrap_raises_with_advice(small_splits, tiny_tokenizer):
    model = build_tiny_llama(tiny_tokenizer)
    model.model.extra_norm = torch.nn.BatchNorm1d(8)  # opacus rejects BatchNorm (it mixes examples)
    units = privacy_units(tiny_tokenizer, [small_splits["forget"]])
    args = DP2Config(output_dir="unused", dp_batch_size=1, target_delta=1e-3, **QUIET)
    with pytest.raises(ValueError, match="ModuleValidator.fix"):
        make_private(model, tiny_tokenizer, args, units)


def test_subject_unit_needs_subject_column(small_splits, tiny_tokenizer):
    with pytest.raises(ValueError, match="privacy_unit='record'"):
        privacy_units(tiny_tokenizer, [small_splits["forget"].remove_columns("subject")])


def test_dp_lora_trains_adapters_only_and_merges(small_splits, tiny_tokenizer, tmp_path):
    from hf_unlearn.models import load_model_and_tokenizer

    torch.manual_seed(0)
    model = build_tiny_llama(tiny_tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qa, text = _train_sets(small_splits)
    args = DP2Config(
        output_dir=str(tmp_path), dp_lora_r=4, dp_epochs=1, dp_batch_size=5, target_delta=1e-3,
        dp_learning_rate=5e-2, **QUIET,
    )  # fmt: skip
    record = train_dp_base(model, tiny_tokenizer, args, [qa], [text])
    after = load_model_and_tokenizer(str(tmp_path))[0].state_dict()
    assert record["lora_r"] == 4 and record["steps"] == 4
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert not torch.equal(
        after["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"]
    )


def test_dp_stage_then_sequential_deletions(small_splits, tiny_tokenizer, tmp_path):
    qa, text = _train_sets(small_splits)
    args = DP2Config(
        output_dir=str(tmp_path), dp_epochs=2, dp_batch_size=5, target_epsilon=8.0, target_delta=1e-3,
        num_train_epochs=2, **QUIET,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = DP2Trainer(build_tiny_llama(tiny_tokenizer), tiny_tokenizer, args, qa, text)
    privacy = trainer.train_dp_base()
    saved = json.loads((tmp_path / "dp_base" / PRIVACY_FILE).read_text())
    assert saved["epsilon"] == pytest.approx(privacy["epsilon"]) and 7.0 < saved["epsilon"] <= 8.0 + 1e-6
    assert saved["privacy_unit"] == "subject" and saved["n_units"] == 20 and saved["delta"] == 1e-3
    assert saved["noise_multiplier"] > 0 and saved["steps"] == 2 * 4 and saved["sample_rate"] == 0.25

    model, first = trainer.unlearn(small_splits["forget"], small_splits["forget_text"])
    assert exact_match(model, tiny_tokenizer, small_splits["forget"]) <= 0.1
    request = concatenate_datasets([small_splits["forget"], small_splits["forget_text"]])
    salt = salt_of(audit_dir_for(tmp_path / "dp_base"), create=False)
    assert first["requests"] == [request_fingerprint(request, salt)]
    assert first["removed_rows"] == 18 and first["retain_rows"] == 162
    assert first["privacy"]["epsilon"] == pytest.approx(privacy["epsilon"])
    assert json.loads((tmp_path / "request-1" / DELETION_FILE).read_text())["requests"] == first["requests"]
    assert all(person not in json.dumps(first) for person in set(small_splits["forget"]["subject"]))
    card = (tmp_path / "request-1" / "README.md").read_text()
    assert "dp2" in card.lower() and f"{privacy['epsilon']:.3g}"[:3] in card
    assert all(person not in card for person in set(small_splits["forget"]["subject"]))

    person = small_splits["retain"]["subject"][0]
    _, second = trainer.unlearn(small_splits["retain"].filter(lambda r: r["subject"] == person))
    assert second["dp_model_sha256"] == first["dp_model_sha256"]  # the same DP model, not the last output
    assert len(second["requests"]) == 2 and second["removed_rows"] == 9  # 8 QA + 1 bio
    assert second["retain_rows"] == 162 - 9  # both requests are out of the retain data
    with pytest.raises(ValueError, match="matches nothing"):
        trainer.unlearn(small_splits["forget"])
    assert math.isfinite(second["training"]["train_loss"])


def _write_jsonl(splits, names, folder):
    for name in names:
        splits[name].to_json(folder / f"{name}.jsonl")
    return [str(folder / f"{name}.jsonl") for name in names]


def test_cli_dp_train_then_unlearn_dp2(small_splits, tmp_path, capsys):
    from hf_unlearn.cli.dp_train import unlearn_main
    from hf_unlearn.cli.main import main as cli_main

    forget, retain, forget_text, retain_text = _write_jsonl(
        small_splits, ["forget", "retain", "forget_text", "retain_text"], tmp_path
    )
    quiet = ["--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none"]
    base = tmp_path / "dp_base"
    cli_main(
        ["dp-train", "--tiny", "--qa_files", forget, retain, "--text_files", forget_text, retain_text,
         "--privacy_unit", "subject", "--dp_epochs", "1", "--dp_batch_size", "5", "--target_epsilon", "3",
         "--target_delta", "1e-3", "--output_dir", str(base), *quiet]
    )  # fmt: skip
    privacy = json.loads((base / PRIVACY_FILE).read_text())
    assert privacy["n_units"] == 20 and privacy["epsilon"] <= 3 + 1e-6 and privacy["target_epsilon"] == 3
    assert "epsilon 3" in capsys.readouterr().out

    out = tmp_path / "unlearned"
    common = ["--dp_model", str(base), "--forget_files", forget, "--forget_text_files", forget_text]
    unlearn_main(
        [*common, "--retain_files", retain, "--retain_text_files", retain_text, "--num_train_epochs", "1",
         "--output_dir", str(out), *quiet]
    )  # fmt: skip
    record = json.loads((out / DELETION_FILE).read_text())
    request = concatenate_datasets([small_splits["forget"], small_splits["forget_text"]])
    assert record["requests"] == [request_fingerprint(request, salt_of(audit_dir_for(base), create=False))]
    assert record["privacy"]["epsilon"] == pytest.approx(privacy["epsilon"]) and record["retain_rows"] == 162
    with pytest.raises(ValueError, match="share 2 subject"):  # the retain data must not hold the request
        unlearn_main([*common, "--retain_files", forget, "--output_dir", str(tmp_path / "x"), *quiet])
    with pytest.raises(ValueError, match="not a model from the DP stage"):
        unlearn_main(
            ["--dp_model", str(out), "--forget_files", forget, "--retain_files", retain,
             "--output_dir", str(tmp_path / "y"), *quiet]
        )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["dp-train", "--help"], ["--privacy_unit", "--target_epsilon", "--dp_max_grad_norm", "--dp_lora_r"]),
        (None, ["--dp_model", "--forget_files", "--retain_files", "--previous_deletion", "--learning_rate"]),
        (["unlearn", "dp2", "--help"], ["--dp_model", "--forget_files", "--retain_text_files"]),
    ],
)
def test_cli_help_documents_options(argv, options, capsys):
    from hf_unlearn.cli.dp_train import unlearn_main
    from hf_unlearn.cli.main import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv) if argv else unlearn_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in options)


def test_dp_stage_accepts_a_model_loaded_in_eval_mode(small_splits, tiny_tokenizer, tmp_path):
    from hf_unlearn.models import load_model_and_tokenizer

    build_tiny_llama(tiny_tokenizer).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    model, tokenizer = load_model_and_tokenizer(str(tmp_path))  # from_pretrained returns eval mode
    assert not model.training
    units = privacy_units(tokenizer, [small_splits["forget"]], [small_splits["forget_text"]])
    args = DP2Config(output_dir="unused", dp_batch_size=1, target_delta=1e-3, **QUIET)
    dp = make_private(model, tokenizer, args, units)
    assert model.training and dp.noise_multiplier > 0 and dp.sample_rate == 0.5
    dp.hooks.cleanup()


def test_a_step_that_draws_no_unit_releases_noise_only(small_splits, tiny_tokenizer):
    """Poisson sampling can draw nobody (more likely now that sampling is not seeded): the step must not fail,
    reports no loss, and moves the weights by the noise alone."""
    units = privacy_units(tiny_tokenizer, [small_splits["forget"]], [small_splits["forget_text"]])
    model = build_tiny_llama(tiny_tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    args = DP2Config(
        output_dir="unused", dp_noise_multiplier=1.0, dp_batch_size=len(units), target_delta=1e-6, **QUIET
    )
    dp = make_private(model, tiny_tokenizer, args, units)
    full = UnitCollator(tiny_tokenizer.pad_token_id)(units)
    empty = {k: v[:0] for k, v in full.items()}  # a batch with no rows
    loss = dp_step(model, dp.optimizer, empty, dp.params, physical_rows=4)
    assert math.isnan(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # the noise was released
    # the loader's very first batch empty: opacus' collate gives the collator's structure with zero rows
    first_empty = dp.loader.collate_fn([])
    assert set(first_empty) == set(full) and all(v.shape[0] == 0 for v in first_empty.values())
    assert math.isnan(dp_step(model, dp.optimizer, first_empty, dp.params, physical_rows=4))
    dp.hooks.cleanup()
