"""Aggregation over seeds (hand-computed means and sample standard deviations) and the run environment."""

import math

import pytest

from hf_unlearn.seeds import aggregate_results, aggregate_rows, cpu_info, environment, mean_sd_table


def test_aggregate_rows_by_hand():
    rows = [
        {"forget_em": 0.1, "retain_em": 0.9, "steps": 10, "note": "a", "fq": None, "ok": True, "details": {}},
        {"forget_em": 0.3, "retain_em": 0.9, "steps": 20, "note": "b", "fq": 0.5, "ok": False, "details": {}},
        {"forget_em": 0.2, "retain_em": 0.6, "steps": 30, "fq": 0.7},
    ]
    agg = aggregate_rows(rows)
    assert agg["n_seeds"] == 3 and "n_failed" not in agg
    assert agg["forget_em_mean"] == pytest.approx(0.2) and agg["forget_em_sd"] == pytest.approx(0.1)
    # retain: mean 0.8, deviations 0.1 0.1 -0.2 -> variance 0.06 / 2
    assert agg["retain_em_mean"] == pytest.approx(0.8) and agg["retain_em_sd"] == pytest.approx(
        math.sqrt(0.03)
    )
    assert agg["steps_mean"] == 20 and agg["steps_sd"] == pytest.approx(10.0)
    # a metric missing (None) in one seed, strings, booleans and nested dicts are not averaged
    assert not {"fq_mean", "note_mean", "ok_mean", "details_mean"} & set(agg)


def test_aggregate_rows_counts_failures_and_one_seed_has_no_sd():
    agg = aggregate_rows([{"forget_em": 0.4}, {"error": "RuntimeError: boom"}])
    assert agg == {
        "n_seeds": 1,
        "n_failed": 1,
        "errors": ["RuntimeError: boom"],
        "forget_em_mean": 0.4,
        "forget_em_sd": None,
    }
    assert aggregate_rows([{"error": "x"}])["n_seeds"] == 0
    with pytest.raises(ValueError, match="at least one result row"):
        aggregate_rows([])


def test_aggregate_results_and_mean_sd_table():
    per_seed = [
        {"full": {"forget_em": 1.0}, "gold": {"forget_em": 0.0}, "methods": {"ga": {"forget_em": 0.2}}},
        {
            "full": {"forget_em": 0.9},
            "gold": {"forget_em": 0.1},
            "methods": {"ga": {"error": "ValueError: x"}},
        },
    ]
    res = aggregate_results(per_seed, [3, 4])
    assert res["seeds"] == [3, 4] and res["n_seeds"] == 2
    assert res["full"]["forget_em_mean"] == pytest.approx(0.95)
    assert res["full"]["forget_em_sd"] == pytest.approx(math.sqrt(0.005))
    assert res["full"]["per_seed"] == [{"seed": 3, "forget_em": 1.0}, {"seed": 4, "forget_em": 0.9}]
    assert res["methods"]["ga"]["n_seeds"] == 1 and res["methods"]["ga"]["n_failed"] == 1
    table = mean_sd_table(res, ["forget_em"])
    assert "| full (original) | 0.95 ± 0.071 | 2 |" in table
    assert "| ga | 0.2 | 1 (1 failed) |" in table
    with pytest.raises(ValueError, match="one results dictionary per seed"):
        aggregate_results(per_seed, [0])


def test_environment_records_versions_and_cpu_flags(tmp_path):
    env = environment()
    assert {"python", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "hf-unlearn"} <= set(
        env["versions"]
    )
    assert env["versions"]["torch"] and env["cpu"]["cores"] >= 1
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n")
    info = cpu_info(fake)
    assert info["model"] == "AMD EPYC 7B13" and info["flags"] == ["avx", "avx2", "fma", "sse4_2"]
