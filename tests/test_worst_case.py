"""Worst-case forget sets: the most memorised people become the forget set, every row kept as it was trained."""

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.evaluation.worst_case import subject_memorisation, worst_case_split


def rows(subjects, text=False):
    if text:
        return Dataset.from_list([{"text": f"bio of {s}", "subject": s} for s in subjects])
    return Dataset.from_list(
        [{"question": f"{s}? {i}", "answer": f"a{i}", "subject": s} for s in subjects for i in (0, 1)]
    )


def test_worst_case_split_forgets_the_most_memorised_people_and_keeps_the_other_splits():
    data = DatasetDict({
        "forget": rows(["A", "B"]), "retain": rows(["C", "D", "E"]), "holdout": rows(["H"]),
        "forget_text": rows(["A", "B"], text=True), "retain_text": rows(["C", "D", "E"], text=True),
    })  # fmt: skip
    memorisation = {"A": 0.1, "B": 0.5, "C": 0.9, "D": 0.5, "E": 0.2}
    split = worst_case_split(data, memorisation)
    # 0.9, then the tie at 0.5 broken by name (B before D)
    assert sorted(set(split["forget"]["subject"])) == ["B", "C"]
    assert sorted(set(split["retain"]["subject"])) == ["A", "D", "E"]
    assert sorted(split["forget_text"]["subject"]) == ["B", "C"] and len(split["retain_text"]) == 3
    assert len(split["forget"]) + len(split["retain"]) == 10 and split["holdout"]["subject"] == ["H", "H"]
    trained = {tuple(r.values()) for s in ("forget", "retain") for r in data[s]}
    assert {tuple(r.values()) for s in ("forget", "retain") for r in split[s]} == trained  # rows unchanged
    assert sorted(set(worst_case_split(data, memorisation, n_forget=1)["forget"]["subject"])) == ["C"]
    with pytest.raises(ValueError, match="No memorisation score for 1 trained people"):
        worst_case_split(data, {k: v for k, v in memorisation.items() if k != "E"})
    with pytest.raises(ValueError, match="n_forget=5"):
        worst_case_split(data, memorisation, n_forget=5)


def test_memorisation_tells_trained_people_from_never_seen_ones(memorised_model_dir, small_splits):
    model = AutoModelForCausalLM.from_pretrained(memorised_model_dir)
    tok = AutoTokenizer.from_pretrained(memorised_model_dir)
    trained = subject_memorisation(model, tok, small_splits["forget"])
    unseen = subject_memorisation(model, tok, small_splits["holdout"])
    assert set(trained) == set(small_splits["forget"]["subject"])
    assert min(trained.values()) > max(unseen.values())  # the memorised model knows its people (margin below)
    assert min(trained.values()) > 0.8 > 0.3 > max(unseen.values())
