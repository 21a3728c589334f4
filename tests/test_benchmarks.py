"""``benchmarks/run_all.py`` over the method registry, with a tiny method registered here (a few steps of
retain fine-tuning, full or LoRA) and one that fails, on very small default and TOFU settings."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hf_unlearn.demo import pipeline as demo

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_run_all():
    return load_benchmark("run_all")


def retain_finetune(full_model_dir, data, out_dir, seed, lora=False):
    """A toy 'method': three steps of fine-tuning on the retain set (LoRA adapters when ``lora``)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn.trainers.finetune import TrainConfig, train_lm

    model = AutoModelForCausalLM.from_pretrained(full_model_dir)
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    args = TrainConfig(
        output_dir=str(out_dir),
        max_steps=3,
        seed=seed,
        save_strategy="no",
        disable_tqdm=True,
        target_exact_match=0,
    )
    summary = train_lm(model, AutoTokenizer.from_pretrained(full_model_dir), args, [data["retain"]])
    return model, {"steps": summary["steps"], "seconds": summary["seconds"]}


def qa_scores(model, tokenizer, data):
    """A cheap scorer for these tests (the full evaluation suite is tested with the evaluation issue)."""
    from hf_unlearn.evaluation.qa import qa_split_metrics

    return {
        f"{split}_{name}": value
        for split in ("forget", "retain", "holdout")
        for name, value in qa_split_metrics(model, tokenizer, data[split]).items()
    }


def broken(full_model_dir, data, out_dir, seed):
    raise RuntimeError("this method always fails")


def pool(splits) -> list[str]:
    return sorted(list(splits["forget"]["question"]) + list(splits["retain"]["question"]))


def test_tofu_splits_share_one_pool_and_keep_authors_whole(tofu_dir):
    run_all = load_run_all()
    f01 = run_all.tofu_splits(tofu_dir, "forget01", holdout_authors=1, retain_authors=3)
    f05 = run_all.tofu_splits(tofu_dir, "forget05", holdout_authors=1, retain_authors=3)
    assert (len(f01["forget"]), len(f01["retain"]), len(f01["holdout"])) == (40, (3 + 18) * 20, 20)
    alone = run_all.tofu_splits(tofu_dir, "forget01", 1, 3, pool_forget_split="forget01")
    assert (len(alone["forget"]), len(alone["retain"])) == (40, 3 * 20)
    with pytest.raises(ValueError, match="pool split that contains the forget split"):
        run_all.tofu_splits(tofu_dir, "forget05", 1, 3, pool_forget_split="forget01")
    assert (len(f05["forget"]), len(f05["retain"]), len(f05["holdout"])) == (200, (3 + 10) * 20, 20)
    assert pool(f01) == pool(f05)
    assert not set(f01["forget"]["question"]) & set(f01["retain"]["question"])
    assert not set(f01["holdout"]["question"]) & set(pool(f01))
    assert len(f01["forget_text"]) == 2 and len(f05["retain_text"]) == 13
    assert (len(f01["real_authors"]), len(f01["world_facts"])) == (100, 117)
    assert f01["forget_text"][0]["text"].startswith(f01["forget"][0]["answer"])
    # the holdout is retain90's last author; TOFU's retain_perturbed (retain90's first 20 authors) gives the
    # retain part of model utility: the retained authors' rows, perturbed answers included
    retain90 = json.loads((tofu_dir / "retain90.json").read_text())
    assert f01["holdout"]["question"] == [r["question"] for r in retain90[-20:]]
    perturbed = f01["retain_perturbed"]
    assert len(perturbed) == 3 * 20 and "perturbed_answer" in perturbed.column_names
    assert set(perturbed["question"]) <= set(f01["retain"]["question"])
    assert set(perturbed["author"]) == set(f01["retain"].select(range(60))["author"])
    capped, utility = run_all.evaluation_splits(f01, rows=25, seed=0)
    assert "retain_perturbed" not in capped and capped["retain"].column_names == perturbed.column_names
    assert len(capped["retain"]) == 25 and len(capped["real_authors"]) == 100  # utility sets kept whole
    assert utility == {
        "retain": "retain_perturbed (25 rows)",
        "real_authors": "real_authors (100 rows)",
        "world_facts": "world_facts (117 rows)",
    }
    # one `author` per 20-row block on QA and text rows alike (DP2's privacy unit); TOFU's own columns stay
    assert f01["forget"].column_names[:-1] == list(json.loads((tofu_dir / "forget01.json").read_text())[0])
    authors = list(f05["forget"]["author"]) + list(f05["retain"]["author"])
    assert len(set(authors)) == 23 and all(authors.count(a) == 20 for a in set(authors))
    assert set(f05["retain"]["author"]) == set(f05["retain_text"]["author"])


def test_run_all_benchmarks_every_registered_method(tmp_path, monkeypatch, capsys):
    registry = {"retain_ft": "test_benchmarks:retain_finetune", "broken": "test_benchmarks:broken"}
    monkeypatch.setattr(demo, "DEMO_METHODS", registry)  # only these two, whatever is registered on main
    run_all = load_run_all()
    out = tmp_path / "results"
    args = ["--quick", "--out", str(out), "--work", str(tmp_path / "work"), "--people", "10", "--holdout", "2",
            "--base-epochs", "2", "--tofu-holdout-authors", "1", "--tofu-retain-authors", "1", "--tofu-epochs", "1",
            "--eval-rows", "6", "--modes", "full", "lora", "--evaluator", "test_benchmarks:qa_scores",
            "--seeds", "0", "1"]  # fmt: skip
    code = run_all.main(args)
    assert code == 1  # the broken method is reported, the others still ran
    for setting in ("default", "tofu_forget01"):
        res = json.loads((out / f"{setting}.json").read_text())
        assert res["seeds"] == [0, 1] and res["environment"]["1"]["versions"]["torch"]
        # each seed's command and wall time (no separate run.json)
        assert res["runs"]["1"]["command"] == "python benchmarks/run_all.py " + " ".join(args)
        assert res["runs"]["0"]["seconds"] > 0 and not (out / "run.json").exists()
        assert set(res["methods"]) == {"retain_ft", "retain_ft/lora", "broken"}
        assert res["methods"]["broken"]["n_seeds"] == 0
        assert res["methods"]["broken"]["errors"] == ["RuntimeError: this method always fails"] * 2
        for key, mode in (("retain_ft", "full"), ("retain_ft/lora", "lora")):
            row = res["methods"][key]
            assert row["n_seeds"] == 2 and [r["mode"] for r in row["per_seed"]] == [mode, mode]
            assert row["steps_mean"] == 3 and row["steps_sd"] == 0
            gold_seconds = [r["seconds"] for r in res["gold"]["per_seed"]]
            costs = [r["seconds"] / g for r, g in zip(row["per_seed"], gold_seconds)]
            assert row["cost_vs_retrain_mean"] == pytest.approx(sum(costs) / 2)
            values = [r["forget_em"] for r in row["per_seed"]]
            assert row["forget_em_mean"] == pytest.approx(sum(values) / 2) and row["forget_em_sd"] >= 0
            assert 0 <= row["retain_rouge_mean"] <= 1
        assert (
            res["eval_rows"]["retain"] == 6 and res["eval_rows"]["forget_text"] == res["sizes"]["forget_text"]
        )
    assert json.loads((out / "tofu_forget01.json").read_text())["utility_sets"]["retain"].startswith(
        "retain_perturbed"
    )
    default_dir = tmp_path / "work" / "default-p10-h2-e2.0-s1"
    tofu_base = tmp_path / "work" / "tofu-forget01-h1-r1-e1.0-s0"
    assert (tmp_path / "work" / "default-p10-h2-e2.0-s0" / "full" / "model.safetensors").exists()
    assert (default_dir / "methods" / "retain_ft" / "model.safetensors").exists()
    assert (tofu_base / "forget01" / "methods" / "retain_ft-lora" / "adapter_config.json").exists()
    assert (tofu_base / "full" / "model.safetensors").exists() and (tofu_base / "forget01" / "gold").is_dir()
    table = (out / "table.md").read_text()
    assert "### tofu_forget01 (mean ± sd over seeds 0 1)" in table and "failed: RuntimeError" in table
    assert "| retain_ft/lora | " in table and " ± " in table
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| gold (retrained) |" in capsys.readouterr().out

    # a rerun reuses every finished seed (nothing is trained or scored again) and aggregates the same numbers
    first = json.loads((out / "default.json").read_text())
    monkeypatch.setattr(run_all, "run_setting", lambda *a, **k: pytest.fail("a finished seed ran again"))
    assert run_all.main(args) == 1
    assert json.loads((out / "default.json").read_text())["methods"] == first["methods"]
    # another configuration (here the evaluation rows) runs the seed again
    assert (out / "per_seed" / "default-s0.json").exists()
    with pytest.raises(pytest.fail.Exception, match="ran again"):
        run_all.main([*args[:-3], "--eval-rows", "5", *args[-3:]])
    # --aggregate_only trains nothing: a setting with an unfinished seed (2) is left as it was
    run_all.main([*args[:-3], "--seeds", "0", "1", "2", "--aggregate_only"])
    assert json.loads((out / "default.json").read_text())["seeds"] == [0, 1]
    assert "### tofu_forget01 (mean ± sd over seeds 0 1)" in (out / "table.md").read_text()


def test_worst_case_forget_set_is_the_most_memorised_people_with_its_own_gold_model(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_METHODS", {"retain_ft": "test_benchmarks:retain_finetune"})
    bench = load_benchmark("worst_case_forget")
    out = tmp_path / "worst.json"
    bench.main(["--method", "retain_ft", "--seeds", "0", "--people", "10", "--holdout", "2", "--base_epochs", "2",
                "--eval_rows", "6", "--evaluator", "test_benchmarks:qa_scores", "--work", str(tmp_path / "w"),
                "--out", str(out)])  # fmt: skip
    res = json.loads(out.read_text())
    random, worst = res["random"], res["worst_case"]
    # the same number of people, the worst-case ones at least as memorised (they are the top of the ranking)
    assert worst["forget_memorisation_per_seed"][0] >= random["forget_memorisation_per_seed"][0]
    assert worst["forget_memorisation_per_seed"][0] >= worst["retain_memorisation_per_seed"][0]
    assert worst["methods"]["retain_ft"]["n_seeds"] == 1 and random["methods"]["retain_ft"]["n_seeds"] == 1
    base = tmp_path / "w" / "default-p10-h2-e2.0-s0"
    assert (base / "gold" / "model.safetensors").exists()  # the random split's gold, shared with run_all
    assert (base / "worst_case" / "gold" / "model.safetensors").exists()  # and the worst-case split's own
    assert res["runs"]["0"]["environment"]["versions"]["torch"] and res["runs"]["0"]["command"].endswith(
        str(out)
    )
    # a finished seed is reused: a rerun trains and scores nothing
    monkeypatch.setattr(bench, "run_seed", lambda *a, **k: pytest.fail("a finished seed ran again"))
    bench.main(["--method", "retain_ft", "--seeds", "0", "--people", "10", "--holdout", "2", "--base_epochs", "2",
                "--eval_rows", "6", "--evaluator", "test_benchmarks:qa_scores", "--work", str(tmp_path / "w"),
                "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text())["worst_case"]["methods"] == worst["methods"]
    assert (base / "worst_case" / "random-methods" / "retain_ft").is_dir()  # never run_all's methods/ folder


def test_missing_tofu_files_stop_the_run_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="No TOFU files in"):
        load_run_all().main(["--quick", "--tofu-dir", str(tmp_path), "--work", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


def test_pareto_point_prefers_reported_forget_quality_and_utility():
    run_all = load_run_all()
    gold = {"forget_rouge": 0.1, "retain_rouge": 0.9}
    assert run_all.pareto_point({"forget_quality": 0.3, "model_utility": 0.6}, gold)[:2] == (0.3, 0.6)
    x, y, xlabel, _ = run_all.pareto_point({"forget_rouge": 0.4, "retain_rouge": 0.8}, gold)
    assert (x, y) == pytest.approx((0.7, 0.8)) and "proxy" in xlabel
    mixed = {"forget_quality": 0.3, "model_utility": 0.6, "forget_rouge": 0.4, "retain_rouge": 0.8}
    assert run_all.pareto_point(mixed, gold, reported=False)[:2] == pytest.approx((0.7, 0.8))


def forwards_overrides(full_model_dir, data, out_dir, seed, **overrides):
    return None, overrides


def test_lora_runs_are_requested_the_way_each_method_accepts_them():
    run_all = load_run_all()
    assert run_all.lora_kwargs("test_benchmarks:retain_finetune") == {"lora": True}
    assert run_all.lora_kwargs("test_benchmarks:forwards_overrides", lora_r=4) == {"lora_r": 4}
    assert run_all.lora_kwargs("test_benchmarks:broken") is None


def test_every_model_is_scored_against_the_gold_reference_when_the_suite_offers_one(monkeypatch):
    run_all = load_run_all()
    references = []

    def evaluate_row(model, tokenizer, data, reference=None):
        references.append(reference)
        return {"model": model}

    monkeypatch.setattr(demo, "evaluate_row", evaluate_row)
    monkeypatch.setattr(demo, "gold_reference", lambda m, t, d: ({"model": m}, "gold-stats"), raising=False)
    gold_row, score = run_all._scorer(run_all.DEFAULT_EVALUATOR, "gold", None, None)
    assert gold_row == {"model": "gold"} and score("npo") == {"model": "npo"} and references == ["gold-stats"]
    monkeypatch.delattr(demo, "gold_reference")
    gold_row, score = run_all._scorer(run_all.DEFAULT_EVALUATOR, "gold", None, None)
    assert score("npo") == {"model": "npo"} and references == ["gold-stats", None, None]


def test_eco_vllm_random_llama_is_built_once_and_its_parameters_counted(tmp_path, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    eco_vllm = load_benchmark("eco_vllm")
    path = eco_vllm.random_llama(tiny_tokenizer, "128x2", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (
        128,
        2,
        2,
    )
    # tied input/output embeddings are stored once and counted once
    assert eco_vllm.model_parameters(path) == sum(p.numel() for p in model.parameters())
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert eco_vllm.random_llama(tiny_tokenizer, "128x2", tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama-h128-l2"]  # no temporary folder left
    for bad in ("128", "96x2", "128x0", "axb"):
        with pytest.raises(ValueError, match="--random_llama"):
            eco_vllm.random_llama(tiny_tokenizer, bad, tmp_path)


def test_eco_vllm_tofu_requests_are_forget01_and_the_retain_authors_paraphrases(tofu_dir, tiny_tokenizer):
    eco_vllm = load_benchmark("eco_vllm")
    forget, retain, served = eco_vllm.request_sources(None, tofu_dir, 3)
    forget01 = json.loads((tofu_dir / "forget01.json").read_text())
    assert forget["question"] == [r["question"] for r in forget01] and "subject" in forget.column_names
    # the served retain questions are the retain_perturbed rows of exactly the retained authors
    assert set(served["author"]) == set(retain["author"]) and len(set(retain["author"])) == 3
    assert set(served["question"]) <= set(retain["question"])
    assert not set(served["question"]) & set(forget["question"])
    mix = eco_vllm.request_mix(forget, served, tiny_tokenizer, 50, 0.1, seed=0)
    assert len(mix) == 50 and sum(is_forget for _, is_forget in mix) == 5
    paraphrases = set(forget["paraphrased_question"])
    assert all((any(q in p for q in paraphrases)) == is_forget for p, is_forget in mix)


def test_eco_vllm_seed_record_counts_flag_misses_false_flags_and_changed_answers():
    eco_vllm = load_benchmark("eco_vllm")
    mix = [("f", True), ("r1", False), ("r2", False)]

    def run(rps, responses, ids=("a", "b", "c"), failed=0):
        return {"requests_per_s": rps, "tokens_per_s": 10 * rps, "latency_p50_ms": 1.0, "latency_p95_ms": 2.0,
                "failed": failed, "ids": list(ids), "responses": responses}  # fmt: skip

    ref = [{"text": "x", "guarded": False}, {"text": "y", "guarded": False}, {"text": "z", "guarded": False}]
    runs = {
        "unguarded": [run(10.0, ref), run(12.0, ref, ids=("a", "a", "c")), run(14.0, ref)],
        "guarded": [
            run(9.0, [{"text": "?", "guarded": True}, ref[1], ref[2]]),
            # forget prompt missed, one retain prompt flagged, one retain answer changed, one unanswered
            run(6.0, [ref[0], {"text": "?", "guarded": True}, {"text": "w", "guarded": False}], failed=1),
            run(12.0, [{"text": "?", "guarded": True}, None, ref[2]]),
        ],
    }
    alone = {"guard_ms_per_prompt_alone": 0.5, "guard_ms_per_prompt_alone_encoder_on_every_prompt": 4.0}
    record = eco_vllm.seed_result(3, runs, mix, alone, {"screen": 2})
    assert record["throughput_ratio_guarded_over_unguarded"] == pytest.approx(9.0 / 12.0)  # medians
    assert record["guarded_tokens_per_s"] == 90.0 and record["guard_ms_per_prompt_alone"] == 0.5
    assert record["checks"] == {
        "failed_requests": 1, "duplicate_ids": 1, "unanswered": 1, "retain_mismatches": 1,
        "forget_flag_misses": 1, "retain_flagged": 1,
    }  # fmt: skip
    assert "responses" not in record["runs"]["guarded"][0]  # the answers stay out of the results file


def test_tuning_forgets_validation_people_disjoint_from_the_reported_forget_set(small_splits):
    tune = load_benchmark("tune_settings")
    validation = tune.validation_split(small_splits, seed=0)
    reported = set(small_splits["forget"]["subject"])
    chosen = set(validation["forget"]["subject"])
    assert len(chosen) == len(reported) == 2 and not chosen & reported
    assert chosen <= set(small_splits["retain"]["subject"])
    assert not chosen & set(validation["retain"]["subject"])
    assert len(validation["forget"]) + len(validation["retain"]) == len(small_splits["retain"])
    assert set(validation["forget_text"]["subject"]) == chosen
    assert validation["holdout"]["question"] == small_splits["holdout"]["question"]
    assert chosen != set(tune.validation_split(small_splits, seed=1)["forget"]["subject"])
    with pytest.raises(ValueError, match="needs more retained people"):
        tune.validation_split({"forget": small_splits["retain"], "retain": small_splits["forget"]}, seed=0)


def test_tuning_choice_is_gold_free():
    tune = load_benchmark("tune_settings")
    full = {"retain_em": 1.0}
    runs = [
        {"learning_rate": 1, "retain_em": 0.95, "mia_auc": 0.90},  # keeps retain, forgets little
        {"learning_rate": 2, "retain_em": 0.92, "mia_auc": 0.55},  # nearest 0.5 above the floor
        {"learning_rate": 3, "retain_em": 0.50, "mia_auc": 0.50},  # at chance, but below the floor
    ]
    assert tune.choose(runs, full, retain_floor=0.9, tie=0.02) == 2
    runs[0]["mia_auc"] = 0.56  # within the tie of the closest: the higher retain EM wins
    assert tune.choose(runs, full, retain_floor=0.9, tie=0.02) == 1
    # nothing above the floor: the best retain ratio minus the distance to chance
    assert tune.choose(runs, full, retain_floor=0.99, tie=0.02) == 1


def test_retrain_ceiling_scores_independent_retrains_against_the_reused_gold_model(tmp_path):
    ceiling = load_benchmark("retrain_ceiling")
    out = tmp_path / "ceiling.json"
    argv = ["--people", "10", "--holdout", "2", "--base_epochs", "1", "--work", str(tmp_path / "w")]
    assert ceiling.main([*argv, "--retrain_seeds", "1", "--out", str(out)]) == 0
    gold_dir = tmp_path / "w" / "default-p10-h2-e1.0-s0" / "gold"
    trained_at = (gold_dir / "model.safetensors").stat().st_mtime_ns
    assert ceiling.main([*argv, "--retrain_seeds", "2", "--out", str(out)]) == 0
    assert (gold_dir / "model.safetensors").stat().st_mtime_ns == trained_at  # the gold model is reused
    result = json.loads(out.read_text())["default"]
    retrain = result["retrain"]
    assert [(p["gold_seed"], p["retrain_seed"]) for p in retrain["pairs"]] == [(0, 2)]
    assert retrain["n_seeds"] == 1 and 0.0 <= retrain["forget_quality_mean"] <= 1.0
    assert result["gold"]["forget_quality"] == 1.0  # the gold model against itself
    assert (gold_dir.parent / "retrain-1").is_dir() and (gold_dir.parent / "retrain-2").is_dir()
    with pytest.raises(ValueError, match="independent retrain needs another seed"):
        ceiling.main([*argv, "--retrain_seeds", "0", "--out", str(out)])


def test_tofu_author_names_come_from_the_subject_column_and_match_the_questions(tofu_dir):
    """forget10 holds an author whose surname alone is also a ``subject`` (it then occurs in more questions than
    the full name): the most frequent subject is the full name, and the capitalised-run derivation (used for
    retain authors, who have no subject column) finds the same name for every author."""
    redteam = load_benchmark("eco_redteam")
    for split in ("forget01", "forget10"):
        rows = json.loads((tofu_dir / f"{split}.json").read_text())
        for start in range(0, len(rows), 20):
            questions = [r["question"] for r in rows[start : start + 20]]
            subjects = [r["subject"] for r in rows[start : start + 20]]
            name = redteam.author_name(questions, subjects)
            assert " " in name and sum(name in q for q in questions) >= 18
            assert subjects.count(name) == max(subjects.count(s) for s in subjects)
            assert redteam.author_name(questions) == name


def test_author_name_on_hand_made_questions():
    redteam = load_benchmark("eco_redteam")
    questions = ["Where was Ann Vell born?", "Has Ann Vell won a prize?", "What did Vell write in Old Paris?"]
    assert redteam.author_name(questions, ["Ann Vell", "Ann Vell", "Vell", "Old Paris"]) == "Ann Vell"
    assert redteam.author_name(questions) == "Ann Vell"  # "Has Ann Vell" and "Old Paris" occur once
    assert redteam.author_name(questions, ["Nobody Here"]) is None
    assert redteam.author_name(["no names here?"]) is None


def test_tofu_leak_criterion_counts_the_answers_new_content_words():
    redteam = load_benchmark("eco_redteam")
    question = "Where was Mira Sol born?"
    answer = "Mira Sol was born in Lisbon, Portugal, to a baker."
    # content words: lisbon, portugal, baker (stop words and the question's words do not count)
    assert redteam.content_words(answer, question) == ["lisbon", "portugal", "baker"]
    assert redteam.content_recall("She was born in Lisbon, Portugal.", answer, question) == pytest.approx(
        2 / 3
    )
    assert redteam.leaks_content("She was born in Lisbon, Portugal.", answer, question)
    assert (
        redteam.content_recall("Born in Lisbon, Portugal, to bakers.", answer, question) == 1.0
    )  # stems match
    # ROUGE-L: a longest common subsequence, so the words must come in the answer's order
    assert redteam.content_recall("Bakers of Portugal left Lisbon.", answer, question) == pytest.approx(1 / 3)
    assert not redteam.leaks_content("Mira Sol was born in Madrid to a baker.", answer, question)  # 1 of 3
    assert not redteam.leaks_content("Mira Sol was born.", answer, question)  # echoing the question
    assert redteam.content_recall("Mira Sol was born.", "Mira Sol was born.", question) is None  # nothing new
    assert not redteam.leaks_content("Mira Sol was born.", "Mira Sol was born.", question)


def test_tofu_families_rename_only_questions_that_hold_the_full_name(tofu_dir):
    from types import SimpleNamespace

    redteam, run_all = load_benchmark("eco_redteam"), load_run_all()
    forget = run_all.tofu_splits(tofu_dir, "forget01", 1, 1, pool_forget_split="forget01")["forget"]
    blocks = redteam.author_blocks(forget)
    names = {
        a: redteam.author_name([r["question"] for r in b], [r["subject"] for r in b])
        for a, b in blocks.items()
    }
    families, left_out = redteam.tofu_family_prompts(SimpleNamespace(chat_template=None), forget, names)
    named = [r for r in forget if names[r["author"]] in r["question"]]
    assert left_out == 0 and len(families["paraphrase"]) == len(families["no_template"]) == len(forget) == 40
    for family in redteam.NAME_FAMILIES:
        assert len(families[family]) == len(named) < len(forget), family
    for (prompt, answer, given), row in zip(families["surname_only"], named):
        name = names[row["author"]]
        assert name not in prompt and name.split(" ", 1)[1] in prompt and row["question"] in given
        assert answer == row["answer"]
    assert all(" ".join(n.split(" ", 1)) not in p for p, _, _ in families["typo"] for n in names.values())
    described = families["described_without_name"]
    assert 0 < len(described) <= len(named)
    assert not any(part in p for p, _, _ in described for n in names.values() for part in n.split(" "))
    for prompt, answer, _ in families["answer_completion"]:
        assert answer.startswith(prompt) and any(n in prompt for n in names.values())


def test_tofu_name_free_replies_leak_by_full_name_or_distinctive_surname_part():
    redteam = load_benchmark("eco_redteam")
    names, parts = ["Ann Vell-Moro", "Li Qadeer"], {"Ann Vell-Moro": ["moro"], "Li Qadeer": ["qadeer"]}
    assert redteam.names_author("The author Ann Vell-Moro wrote it.", names, parts)
    assert redteam.names_author("Books by QADEER sold well.", names, parts)
    assert not redteam.names_author("Ann wrote about Vell.", names, parts)  # not distinctive parts
    assert not redteam.names_author("The author was born in Rome.", names, parts)


def _red_team_run(leaked: int, fpr: float, meets: bool = True) -> dict:
    family = {"prompts": 10, "flagged": 10, "leaked": leaked, "gold_leaked": 0, "meets_target": meets}
    return {
        "families": {"original": family, "typo": {**family, "leaked": 0}},
        "retain_fpr": fpr, "strength": 1.0, "fit_seconds": 3.0, "distinctive_name_parts": 4,
        "retain_fpr_parts": {"flagged": fpr, "changed": fpr},
        "retain_fpr_by_family": {"typo": fpr}, "retain_fpr_parts_by_family": {"typo": {"flagged": fpr}},
        "response_check": {"passed": 5.0}, "strength_search": {"target": 0.1, "target_source": "holdout"},
        "all_families_meet_target": meets,
    }  # fmt: skip


def test_red_team_runs_aggregate_over_seeds_family_by_family():
    redteam = load_benchmark("eco_redteam")
    out = redteam.aggregate_runs({0: _red_team_run(1, 0.01), 2: _red_team_run(3, 0.03, meets=False)})
    assert out["seeds"] == [0, 2] and out["n_seeds"] == 2
    assert out["families"]["original"]["leaked_mean"] == 2 and out["families"]["typo"]["leaked_sd"] == 0
    assert out["retain_fpr_mean"] == pytest.approx(0.02) and out["retain_fpr_sd"] == pytest.approx(
        0.01414, 1e-3
    )
    assert out["retain_fpr_parts_by_family"]["typo"]["flagged_mean"] == pytest.approx(0.02)
    assert "target_source_mean" not in out["strength_search"]  # only numbers are averaged
    assert out["all_families_meet_target_on_every_seed"] is False
    assert out["seeds_meeting_target"]["original"] == 1
    assert out["per_seed"]["2"]["families"]["original"]["leaked"] == 3
    other = _red_team_run(0, 0.0)
    other["families"]["homoglyphs"] = other["families"].pop("typo")
    with pytest.raises(ValueError, match="different families"):
        redteam.aggregate_runs({0: _red_team_run(1, 0.01), 1: other})


def test_eco_guard_benchmark_fits_gold_free_and_aggregates_seeds(tmp_path):
    bench = load_benchmark("eco_guard")
    out = tmp_path / "guard.json"
    argv = ["--people", "10", "--holdout", "2", "--base_epochs", "1", "--work", str(tmp_path / "w")]
    assert bench.main([*argv, "--seeds", "0", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["seeds"] == [0, 1] and result["n_seeds"] == 2 and result["token_selection"] == "subjects"
    assert [r["target_source"] for r in result["fit"]["per_seed"]] == ["holdout", "holdout"]  # no gold model
    for name in ("full", "guarded", "gold"):
        assert result[name]["n_seeds"] == 2 and 0 <= result[name]["forget_em_mean"] <= 1
    seed0 = result["checks"]["per_seed"][0]
    gap = abs(result["guarded"]["per_seed"][0]["forget_em"] - result["gold"]["per_seed"][0]["forget_em"])
    assert seed0["forget_em_gap_to_gold"] == pytest.approx(gap)
    assert result["environment"]["1"]["versions"]["torch"]
    assert (
        tmp_path / "w" / "default-p10-h2-e1.0-s1" / "gold" / "model.safetensors"
    ).exists()  # run_all's layout
