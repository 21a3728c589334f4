import hashlib

import pytest

from hf_unlearn.data.synthetic import FACTS, N_PERTURBED, generate_people, synthetic_splits, write_synthetic
from hf_unlearn.io import read_json, write_json_atomic, written_atomically


def _digest(paths):
    return {split: hashlib.sha256(path.read_bytes()).hexdigest() for split, path in paths.items()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = _digest(write_synthetic(tmp_path / "a", n_people=30, n_holdout=5, seed=3))
    b = _digest(write_synthetic(tmp_path / "b", n_people=30, n_holdout=5, seed=3))
    c = _digest(write_synthetic(tmp_path / "c", n_people=30, n_holdout=5, seed=4))
    assert a == b
    assert a["forget"] != c["forget"]


def test_people_are_distinct_and_have_every_fact():
    people = generate_people(200, 20, seed=0)
    assert len({p.name for p in people}) == 220
    assert len(FACTS) >= 7
    assert all(p.fact(f) for p in people for f in FACTS)


def test_splits_are_disjoint_by_person_and_sized(small_splits):
    subjects = {split: set(small_splits[split]["subject"]) for split in ("forget", "retain", "holdout")}
    assert len(subjects["forget"]) == 2 and len(subjects["retain"]) == 18 and len(subjects["holdout"]) == 4
    assert not subjects["forget"] & subjects["retain"]
    assert not subjects["holdout"] & (subjects["forget"] | subjects["retain"])
    for split in ("forget", "retain", "holdout"):
        assert set(small_splits[f"{split}_text"]["subject"]) == subjects[split]
        assert len(small_splits[split]) == len(subjects[split]) * len(FACTS)


def test_forget_splits_are_nested():
    forget = {
        pct: set(synthetic_splits(n_people=200, forget_pct=pct)["forget"]["subject"]) for pct in (1, 5, 10)
    }
    assert len(forget[1]) == 2 and len(forget[5]) == 10 and len(forget[10]) == 20
    assert forget[1] < forget[5] < forget[10]


def test_rows_are_tofu_compatible(small_splits):
    row = small_splits["forget"][0]
    assert {
        "question",
        "answer",
        "paraphrased_question",
        "paraphrased_answer",
        "perturbed_answer",
        "subject",
    } <= set(row)
    assert row["subject"] in row["question"] and row["question"] != row["paraphrased_question"]
    for r in small_splits["forget"]:
        assert len(r["perturbed_answer"]) == N_PERTURBED and r["answer"] not in r["perturbed_answer"]
    # a birth-city row's wrong answers are cities, drawn from the same pool as the true answers
    city_row = next(r for r in small_splits["retain"] if r["fact"] == "birth_city")
    cities = {r["answer"] for r in synthetic_splits(n_people=200)["retain"] if r["fact"] == "birth_city"}
    assert set(city_row["perturbed_answer"]) <= cities


def test_bio_contains_every_fact(small_splits):
    people = {p.name: p for p in generate_people(20, 4, seed=0)}
    for row in small_splits["forget_text"]:
        person = people[row["subject"]]
        assert all(person.fact(f) in row["text"] for f in FACTS)


@pytest.mark.parametrize("kwargs", [{"forget_pct": 7}, {"n_people": 5}, {"n_holdout": 0}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        synthetic_splits(**kwargs)


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(RuntimeError, match="interrupted"):
        with written_atomically(path) as tmp:
            tmp.write_text('{"v": ')
            raise RuntimeError("interrupted")
    assert read_json(path) == {"v": 1} and sorted(tmp_path.iterdir()) == [path]
    (tmp_path / "d.tmp").mkdir()  # a folder left by a killed run is cleared before writing
    with written_atomically(tmp_path / "d") as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("1")
    assert (tmp_path / "d" / "x").read_text() == "1" and not (tmp_path / "d.tmp").exists()
