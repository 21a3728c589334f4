import json

import pytest
from huggingface_hub import ModelCard
from test_privacy import name_words, names_in

from hf_unlearn.cli.demo import main
from hf_unlearn.data.synthetic import synthetic_splits

# one method of each family: a trainer (NPO + GDR), WHP relabeling, the ECO guard, DP2
FAMILIES = ("npo_gdr", "whp", "eco", "dp2")
ROW_KEYS = ("forget_quality", "model_utility", "privleak", "forget_em", "retain_em", "seconds")


def test_demo_runs_every_method_family_and_reuses_finished_models(tmp_path, capsys, monkeypatch):
    from hf_unlearn.demo.methods import DEMO_SETTINGS

    # the demo's rows are tuned for 200 people (160 forget rows); on 2 forget people (16 rows) npo_gdr's
    # 5e-3 step raises the retain loss past the safety rail at once, so it gets a rate for this size
    method, settings = DEMO_SETTINGS["npo_gdr"]
    monkeypatch.setitem(DEMO_SETTINGS, "npo_gdr", (method, {**settings, "learning_rate": 2e-3}))
    out, cards = tmp_path / "demo", tmp_path / "model_cards"
    args = ["--out", str(out), "--people", "20", "--holdout", "4", "--methods", *FAMILIES]
    assert main([*args, "--model_cards_dir", str(cards)]) == 0
    results = json.loads((out / "results.json").read_text())
    for model in ("full", "gold"):
        for key in ("forget_em", "retain_em", "holdout_em", "forget_rouge", "seconds"):
            assert 0 <= results[model][key] <= (1 if key != "seconds" else 1e4)
    # the full model learned the people to forget; the gold model never saw them
    full = results["full"]
    assert full["forget_em"] >= 0.9 and full["retain_em"] >= 0.9
    assert results["gold"]["forget_em"] <= 0.3 and results["gold"]["retain_em"] >= 0.9
    assert full["holdout_em"] <= 0.3
    # every family's row has the headline keys, and its forget answers are gone (through the guard for ECO,
    # whose weights are the full model's: its served view is the `_api` key where the row has one)
    assert set(results["methods"]) == set(FAMILIES)
    for name, row in results["methods"].items():
        missing = [k for k in ROW_KEYS if k not in row]
        assert not missing, (name, missing)
        forget_em = row.get("forget_em_api", row["forget_em"]) if name == "eco" else row["forget_em"]
        assert forget_em <= full["forget_em"] - 0.5, (name, forget_em, full["forget_em"])
    # what the run was: its seed, versions and CPU
    assert results["seed"] == 0
    env = results["environment"]
    assert env["versions"]["torch"] and env["versions"]["transformers"] and env["cpu"]["cores"] >= 1
    quiet = capsys.readouterr()
    table = quiet.out
    assert "full" in table and "gold" in table and "forget_em" in table and "one run, seed 0" in table
    # the default log: one bar per stage and one line per model, no nested bars of the Trainer, the evaluation
    # or the libraries
    for name in ("full", "gold", *FAMILIES):
        assert f"{name}: forget_em " in table, name
    assert "full model" in quiet.err and "methods" in quiet.err
    for noise in ("forget QA", "paraphrased", "Generating train split", "Writing model shards", "'loss':"):
        assert noise not in quiet.err + quiet.out, noise
    assert quiet.err.count("\r") <= 50, quiet.err
    assert sorted(p.name for p in (out / "data").glob("*.jsonl")) == sorted(
        f"{s}{t}.jsonl" for s in ("forget", "retain", "holdout") for t in ("", "_text")
    )
    # --model_cards_dir: one card per method that saves a model (ECO changes no weights and writes none), with the
    # row's metrics, loadable by huggingface_hub and free of forgotten names
    assert sorted(p.name for p in cards.iterdir()) == ["dp2.md", "npo_gdr.md", "whp.md"]
    forgotten = name_words(synthetic_splits(n_people=20, n_holdout=4))
    for path in cards.iterdir():
        card = ModelCard.load(path)
        assert any(tag.startswith(f"unlearning-{path.stem}") for tag in card.data.tags), (
            card.data.tags
        )  # whp_gdr
        assert not names_in(path.read_text(), forgotten), path
        metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
        assert metrics["forget_em"] == pytest.approx(
            results["methods"][path.stem]["forget_em"], rel=1e-4, abs=1e-9
        )
    # a second run reuses the finished models: same training times recorded; --verbose brings the evaluation's
    # bars back
    assert main(["--out", str(out), "--people", "20", "--holdout", "4", "--methods", "--verbose"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["full"]["seconds"] == results["full"]["seconds"]
    verbose = capsys.readouterr()
    assert "forget QA" in verbose.err and "paraphrased" in verbose.err
    assert verbose.err.count("\r") > quiet.err.count("\r")


def test_demo_seeds_writes_mean_and_sd_per_model(tmp_path, capsys):
    """Two seeds on a small setting (no methods: the aggregation, not the methods, is under test here)."""
    out = tmp_path / "demo"
    assert (
        main(["--out", str(out), "--people", "10", "--holdout", "2", "--seeds", "0", "1", "--methods"]) == 0
    )
    summary = json.loads((out / "results_seeds.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["environment"]["versions"]["python"]
    per_seed = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in per_seed] == [0, 1]
    # the seed changes the split of people, not just the initialisation
    assert per_seed[0]["config"]["prompt_example"] != per_seed[1]["config"]["prompt_example"]
    gold = summary["gold"]
    values = [r["gold"]["retain_em"] for r in per_seed]
    assert gold["n_seeds"] == 2 and gold["retain_em_mean"] == pytest.approx(sum(values) / 2)
    assert gold["retain_em_sd"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert [r["retain_em"] for r in gold["per_seed"]] == values
    assert "± " in capsys.readouterr().out
