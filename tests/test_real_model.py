"""``benchmarks/real_model.py`` (TOFU on SmolLM2) end to end on the tiny memorised model standing in for the
pretrained one: the rows it plans, the results file it writes, and a rerun that keeps every finished row."""

import json

import pytest

from tests.test_benchmarks import load_benchmark


@pytest.fixture(scope="module")
def real_model():
    return load_benchmark("real_model")


def test_row_plan_runs_full_rows_first_and_lora_only_where_a_method_takes_it(real_model):
    plan = real_model.row_plan(["ga", "npo", "eco", "dp2"], ["full", "lora"], steps=7)
    assert [key for key, _, _ in plan] == ["ga", "npo", "eco", "dp2", "ga_lora", "npo_lora"]
    kwargs = {key: kw for key, _, kw in plan}
    assert kwargs["ga"]["learning_rate"] == real_model.UNLEARN_LR and kwargs["ga"]["max_steps"] == 7
    assert kwargs["ga_lora"]["learning_rate"] == real_model.LORA_LR and kwargs["ga_lora"]["lora_r"] > 0
    assert kwargs["npo"]["beta"] == 0.1  # open-unlearning's NPO beta, not the tiny demo's
    assert kwargs["eco"] == {}  # a guard: no optimiser


def test_real_model_benchmark_writes_every_row_and_resumes(
    real_model, memorised_model_dir, tofu_dir, tmp_path, monkeypatch
):
    out, work = tmp_path / "real.json", tmp_path / "work"
    argv = [
        "--model", str(memorised_model_dir), "--tofu_dir", str(tofu_dir), "--work", str(work), "--out", str(out),
        "--retain_authors", "1", "--holdout_authors", "1", "--eval_rows", "4", "--finetune_epochs", "1",
        "--unlearn_steps", "2", "--methods", "ga", "--modes", "full", "lora", "--quiet",
    ]  # fmt: skip
    assert real_model.main(argv) == 0
    results = json.loads(out.read_text())
    assert results["n_authors"] == 3 and results["forget_authors"] == 2
    assert set(results["methods"]) == {"ga", "ga_lora"}
    for row in [results["base"], results["full"], results["gold"], *results["methods"].values()]:
        assert all(isinstance(row[k], float) for k in real_model.REPORTED), row
    assert results["gold"]["forget_quality"] == 1.0 and results["gold"]["privleak"] == 0.0
    assert results["methods"]["ga"]["steps"] == 2
    table = real_model.markdown_table(results).splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| base", "| full", "| gold", "| ga", "| ga_lora"]
    # the results file is published: it holds scores, never a forget question or answer
    forget = json.loads((tofu_dir / "forget01.json").read_text())
    text = out.read_text()
    assert not any(r["question"] in text or r["answer"] in text for r in forget)

    # a rerun with the same configuration trains and scores nothing again
    from hf_unlearn.evaluation import suite
    from hf_unlearn.trainers import finetune

    monkeypatch.setattr(real_model, "_call", lambda spec: pytest.fail(f"{spec} ran again"))
    monkeypatch.setattr(suite, "evaluate_model", lambda *a, **k: pytest.fail("a model was scored again"))
    monkeypatch.setattr(finetune, "train_lm", lambda *a, **k: pytest.fail("a model was fine-tuned again"))
    assert real_model.main(argv) == 0
    assert json.loads(out.read_text())["methods"]["ga"] == results["methods"]["ga"]
    monkeypatch.undo()

    # rows scored on other fine-tunes are not mixed with these: another full model scores every row again
    (work / "gold_reference.json").unlink()
    results["weights_sha256"]["full"] = "0" * 64
    out.write_text(json.dumps(results))
    assert real_model.main(argv) == 0
    again = json.loads(out.read_text())
    assert set(again["methods"]) == {"ga", "ga_lora"} and again["weights_sha256"]["full"] != "0" * 64
