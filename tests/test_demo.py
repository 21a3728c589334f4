import json

from hf_unlearn.demo import main


def test_demo_writes_results_and_reuses_finished_models(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--out", str(out), "--people", "20", "--holdout", "4", "--methods"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    for model in ("full", "gold"):
        for key in ("forget_em", "retain_em", "holdout_em", "forget_rouge", "seconds"):
            assert 0 <= results[model][key] <= (1 if key != "seconds" else 1e4)
    # the full model learned the people to forget; the gold model never saw them
    assert results["full"]["forget_em"] >= 0.9 and results["full"]["retain_em"] >= 0.9
    assert results["gold"]["forget_em"] <= 0.3 and results["gold"]["retain_em"] >= 0.9
    assert results["full"]["holdout_em"] <= 0.3
    table = capsys.readouterr().out
    assert "full" in table and "gold" in table and "forget_em" in table
    assert sorted(p.name for p in (out / "data").glob("*.jsonl")) == sorted(
        f"{s}{t}.jsonl" for s in ("forget", "retain", "holdout") for t in ("", "_text")
    )
    # a second run reuses the finished models: same training times recorded
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["full"]["seconds"] == results["full"]["seconds"]
