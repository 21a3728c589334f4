"""The evaluation suite end to end on the memorised tiny model and a small gold model retrained without the
forget people: the demo's rows, the ``hf-unlearn eval`` command, the relearning attack, and the MUSE sweeps
with a simple gradient-ascent unlearning function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.cli.main import main as cli_main
from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.formats import tokenize_qa
from hf_unlearn.evaluation.muse import forget_size_sweep, scalability, sustainability
from hf_unlearn.evaluation.probes import relearn_attack
from hf_unlearn.evaluation.report import RESULT_KEYS


def load(path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_demo_rows_gold_against_itself_and_full_against_gold(
    memorised_model_dir, gold_model_dir, small_splits
):
    from hf_unlearn.demo.pipeline import evaluate_row, gold_reference

    gold, tok = load(gold_model_dir)
    gold_row, reference = gold_reference(gold, tok, small_splits)
    full, _ = load(memorised_model_dir)
    full_row = evaluate_row(full, tok, small_splits, reference)
    for row in (gold_row, full_row):
        assert all(isinstance(row[k], float) for k in RESULT_KEYS), row
        assert {"forget_em", "retain_em", "holdout_em", "forget_rouge"} <= set(row)
    assert gold_row["forget_quality"] == 1.0 and gold_row["privleak"] == 0.0
    assert full_row["forget_quality"] < 0.01
    assert full_row["privleak"] < -20  # the forget people are far more familiar than to the gold model
    assert full_row["mia_auc"] > 0.9 and 0.2 < gold_row["mia_auc"] < 0.8
    assert full_row["knowmem_forget"] > 0.9 > 0.5 > gold_row["knowmem_forget"]
    assert full_row["verbmem_forget"] > gold_row["verbmem_forget"]
    assert min(full_row["model_utility"], gold_row["model_utility"]) > 0.8  # both know the retain people
    assert gold_row["details"]["model_utility_sets"] == ["retain"]


def test_eval_command_writes_results_report_and_plots(memorised_model_dir, gold_model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli_main(
        [
            "eval",
            "--model",
            f"full={memorised_model_dir}",
            "--retain-model",
            str(gold_model_dir),
            "--data",
            "synthetic",
            "--people",
            "20",
            "--holdout_people",
            "4",
            "--out",
            str(out),
            "--relearn_steps",
            "3",
            "--unlearn_fn",
            "test_eval_suite:cli_unlearn",
            "--sustainability_requests",
            "2",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert all(k in results for k in RESULT_KEYS)
    assert results["forget_quality"] < 0.01 and results["privleak"] < -20
    assert set(results["models"]) == {"full", "retrained"}
    assert results["models"]["retrained"]["forget_quality"] == 1.0
    assert results["data"]["splits"]["forget"] == 16 and results["config"]["relearn_steps"] == 3
    assert set(results["details"]["mia_auc"]) == {"min_k", "min_k_pp", "loss", "zlib"}
    report = (out / "report.md").read_text()
    assert "| full |" in report and "retrained (retrained)" in report
    for png in ("tradeoff.png", "summary.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "Wrote" in capsys.readouterr().out
    # the sweeps of --unlearn_fn, from the first --model: nested 10/50/100 % of the 2 forget people
    sizes = {k: v["forget_rows"] for k, v in results["scalability"].items()}
    assert sizes == {"10pct_of_forget": 8, "50pct_of_forget": 8, "100pct_of_forget": 16}
    assert [v["forget_rows"] for v in results["sustainability"]] == [8, 16]
    # the sweeps run inside the folder written beside --out, which is then renamed into place
    assert (
        cli_unlearn.calls[-1] == out.with_name(out.name + ".tmp") / "sweeps" / "sustainability" / "request-1"
    )
    assert (out / "sweeps" / "sustainability" / "request-1").is_dir()
    assert "sustainability request 2" in report
    assert cli_main(["eval", "--model", "m", "--retain_model", "g", "--unlearn_fn", "json"]) == 2
    assert "package.module:function" in capsys.readouterr().err


def test_eval_command_reads_tofu_files_by_path(tofu_dir, tmp_path):
    from hf_unlearn.cli.eval import EvalScriptArguments, load_eval_splits

    splits = load_eval_splits(
        EvalScriptArguments(model=["m"], retain_model="g", data=str(tofu_dir), forget_split="forget01")
    )
    assert {k: len(v) for k, v in splits.items()} == {
        "forget": 40,
        "retain": 400,
        "real_authors": 100,
        "world_facts": 117,
    }
    with pytest.raises(ValueError, match="TOFU layout"):
        load_eval_splits(EvalScriptArguments(model=["m"], retain_model="g", data=str(tmp_path)))


def gradient_ascent(steps: int = 8, lr: float = 3e-3):
    """A minimal unlearning function for the sweeps: a few steps of gradient ascent on the forget QA."""
    calls = []

    def unlearn(model_dir, forget, retain, out_dir):
        calls.append(Path(model_dir))
        model, tok = load(model_dir)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        batch = PaddingCollator(tok.pad_token_id)(
            [tokenize_qa(tok, q, a) for q, a in zip(forget["question"], forget["answer"])]
        )
        for _ in range(steps):
            (-model(**batch).loss).backward()
            optimizer.step()
            optimizer.zero_grad()
        model.save_pretrained(out_dir)
        return model

    unlearn.calls = calls
    return unlearn


cli_unlearn = gradient_ascent()  # for the eval command's --unlearn_fn


def test_forget_size_sweep_nests_subjects_and_keeps_the_rest(small_splits):
    forget, retain = small_splits["forget"], small_splits["retain"]
    sweep = forget_size_sweep(forget, retain, (0.5, 1.0))
    (half, half_retain), (whole, whole_retain) = sweep.values()
    assert list(sweep) == ["50pct_of_forget", "100pct_of_forget"]
    assert len(set(half["subject"])) == 1 and len(half) == 8 and len(whole) == 16
    assert len(half_retain) == len(retain) + 8 and len(whole_retain) == len(retain)
    with pytest.raises(ValueError, match="fractions"):
        forget_size_sweep(forget, retain, (0.0,))


def test_scalability_and_sustainability_sweeps(memorised_model_dir, small_splits, tmp_path):
    forget, retain = small_splits["forget"], small_splits["retain"]
    first = forget.filter(lambda r: r["subject"] == forget[0]["subject"])
    unlearn = gradient_ascent()
    sweep = scalability(
        memorised_model_dir,
        {"1 person": (first, retain), "2 people": (forget, retain)},
        unlearn,
        tmp_path / "scal",
    )
    assert [v["forget_rows"] for v in sweep.values()] == [8, 16]
    assert unlearn.calls == [Path(memorised_model_dir)] * 2  # each size starts from the original model
    assert all(v["knowmem_forget"] < 0.9 for v in sweep.values())  # the memorised model starts near 1.0
    assert (tmp_path / "scal" / "2 people" / "tokenizer_config.json").exists()

    unlearn = gradient_ascent()
    steps = sustainability(memorised_model_dir, forget, retain, unlearn, tmp_path / "sust", k=2)
    assert [s["forget_rows"] for s in steps] == [8, 16]
    assert unlearn.calls == [Path(memorised_model_dir), tmp_path / "sust" / "request-1"]  # chained
    assert all(0 <= s["knowmem_retain"] <= 1 for s in steps)


def test_relearning_attack_leaves_the_model_unchanged(gold_model_dir, small_splits):
    model, tok = load(gold_model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = relearn_attack(model, tok, small_splits["forget"], steps=5, learning_rate=5e-3)
    assert result["recovery"] == pytest.approx(result["after"] - result["before"])
    assert result["before"] <= 0.3  # the gold model never saw the forget people
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=">= 2 forget rows"):
        relearn_attack(model, tok, small_splits["forget"].select([0]))


def test_evaluate_model_reports_what_the_data_allows(memorised_model_dir, small_splits):
    """Plain QA (no perturbed answers, no holdout, subjects not in the questions): the metrics that need the
    missing columns are None or skipped with the reason, the rest are computed."""
    from hf_unlearn.evaluation.suite import EvalConfig, evaluate_model

    model, tok = load(memorised_model_dir)
    splits = {
        "forget": small_splits["forget"].map(lambda r: {"subject": "Nobody"}),
        "retain": small_splits["retain"].select(range(40)).select_columns(["question", "answer"]),
    }
    config = EvalConfig(relearn_steps=0, quant_bits=[])
    row, reference = evaluate_model(model, tok, splits, None, config, progress=False)
    assert row["model_utility"] is None and row["privleak"] is None and row["mia_auc"] is None
    assert row["relearn_recovery"] is None and reference.mia_auc == {}
    assert row["forget_quality"] == 1.0  # forget still has perturbed answers: compared with itself
    not_computed = row["details"]["not_computed"]
    assert "does not occur" in not_computed["forget_perturbed_question_rouge"]
    assert "no perturbed_answer" in not_computed["model_utility"] and "holdout" in not_computed["privleak"]
    assert row["mapping_recovery"] is not None and row["mapping_control_recovery"] is None
    assert "holdout" in not_computed["mapping_control_recovery"]
    assert row["knowmem_forget"] > 0.9 and row["retain_em"] > 0.9
    with pytest.raises(ValueError, match="missing \\['retain'\\]"):
        evaluate_model(model, tok, {"forget": splits["forget"]})


def test_eval_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["eval", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in ("--retain_model", "--unlearn_fn", "--min_k", "--relearn_steps"))
    assert "Min-K% Prob" in text and "100 %" in text
