import json

import pytest
from datasets import Dataset

from hf_unlearn.data.loading import check_disjoint, load_rows, require_columns, row_kind


def test_loads_tofu_splits_by_path(tofu_dir):
    forget = load_rows(tofu_dir / "forget10.json")
    retain = load_rows(tofu_dir / "retain90.json")
    assert len(forget) == 400 and len(retain) == 3600
    assert row_kind(forget) == "qa" and row_kind(retain) == "qa"
    assert len(forget[0]["perturbed_answer"]) == 5
    check_disjoint(forget, retain)  # TOFU's forget10 and retain90 are disjoint
    for name in ("real_authors_perturbed", "world_facts_perturbed", "retain_perturbed"):
        ds = load_rows(tofu_dir / f"{name}.json")
        require_columns(ds, ["question", "answer", "perturbed_answer"], name)


def test_tofu_overlap_is_caught(tofu_dir):
    retain95 = load_rows(tofu_dir / "retain95.json")
    check_disjoint(load_rows(tofu_dir / "forget05.json"), retain95)
    # forget10 holds the 200 forget05 rows plus 200 rows that retain95 keeps (199 distinct questions)
    with pytest.raises(ValueError, match=r"share 199 question"):
        check_disjoint(load_rows(tofu_dir / "forget10.json"), retain95)


def test_jsonl_parquet_and_synthetic_sources(tmp_path, small_splits):
    small_splits["forget"].to_parquet(tmp_path / "f.parquet")
    small_splits["forget"].to_json(tmp_path / "f.jsonl")
    assert load_rows(tmp_path / "f.parquet")["question"] == small_splits["forget"]["question"]
    assert load_rows(tmp_path / "f.jsonl")["question"] == small_splits["forget"]["question"]
    text = load_rows("synthetic:forget_text", n_people=20, n_holdout=4)
    assert row_kind(text) == "text" and len(text) == 2


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (None, ".json", "neither an existing file"),
        ("a,b\n1,2\n", ".txt", "unsupported suffix '.txt'"),
        ('[{"question": "q", "answer": ', ".json", "Cannot parse"),
        ("[]", ".json", "has no rows"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"data{suffix}"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_rows(path)


def test_directory_and_unknown_synthetic_split(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_rows(tmp_path)
    with pytest.raises(ValueError, match="Unknown synthetic split"):
        load_rows("synthetic:nope", n_people=20, n_holdout=4)


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"prompt": "q", "completion": "a"}]))
    with pytest.raises(ValueError, match=r"missing \['answer', 'question'\]"):
        row_kind(load_rows(path), "rows.json")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['perturbed_answer'\]"):
        require_columns(Dataset.from_dict({"question": ["q"]}), ["question", "perturbed_answer"])


def test_overlap_by_subject_is_refused(small_splits):
    forget = small_splits["forget"]
    leaky_retain = Dataset.from_dict(
        {"question": ["Something else?"], "answer": ["x"], "subject": [forget[0]["subject"]]}
    )
    with pytest.raises(ValueError, match="share 1 subject"):
        check_disjoint(forget, leaky_retain)
    check_disjoint(forget, small_splits["retain"])
