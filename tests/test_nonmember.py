"""Non-member distillation: its loss, the renamed forget rows, and the trainer on the memorised tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from hf_unlearn.data.nonmembers import load_names, swap_subjects
from hf_unlearn.data.synthetic import fictitious_names
from hf_unlearn.evaluation.qa import exact_match
from hf_unlearn.losses import nonmember_kl
from hf_unlearn.models import load_model_and_tokenizer
from hf_unlearn.trainers import resolve_method
from hf_unlearn.trainers.nonmember_config import NonMemberConfig
from hf_unlearn.trainers.nonmember_trainer import TARGET, NonMemberTrainer

IGNORE = -100


def test_nonmember_kl_aligns_the_answer_tokens_of_two_prompts_and_equals_the_hand_computed_kl():
    """Row 0's one answer token sits at position 2 of the forget row and at position 3 of the renamed one; the
    KL is taken between those two positions' distributions, not position by position."""
    v = 2
    logits = torch.zeros(1, 3, v)  # the model predicts (0.5, 0.5) everywhere
    labels = torch.tensor([[IGNORE, IGNORE, 1]])  # token 2 is the answer: predicted by position 1
    target_logits = torch.zeros(1, 4, v)
    target_logits[0, 2] = torch.tensor([math.log(0.8), math.log(0.2)])  # position 2 predicts the answer token
    target_labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 1]])
    expected = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert nonmember_kl(logits, labels, target_logits, target_labels).item() == pytest.approx(
        expected, rel=1e-6
    )
    # the model already at the target: 0; the target's other positions do not count
    aligned = target_logits[:, 1:, :]
    assert nonmember_kl(aligned, labels, target_logits, target_labels).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match=r"same answer tokens in both batches; got \[1\] and \[2\]"):
        nonmember_kl(logits, labels, target_logits, torch.tensor([[IGNORE, IGNORE, 1, 1]]))


def test_each_forget_person_gets_one_stand_in_named_in_all_their_questions():
    rows = Dataset.from_list(
        [
            {"question": "Where was Ana Lee born?", "answer": "Oslo", "subject": "Ana Lee"},
            {"question": "What did Ana Lee write?", "answer": "Tides", "subject": "Ana Lee"},
            {"question": "Who is Bo Kim's father?", "answer": "Jo Kim", "subject": "Bo Kim"},
        ]
    )
    names = ["Zed Quon", "Mira Fask", "Tove Lund"]
    renamed = swap_subjects(rows, names, seed=3)
    first = renamed[0]["question"].removeprefix("Where was ").removesuffix(" born?")
    assert first in names and renamed[1]["question"] == f"What did {first} write?"
    assert renamed[2]["question"].endswith("'s father?") and "Bo Kim" not in renamed[2]["question"]
    assert renamed["answer"] == rows["answer"] and renamed["subject"] == rows["subject"]
    assert swap_subjects(rows, names, seed=3)["question"] == renamed["question"]  # seeded
    with pytest.raises(
        ValueError, match=r"2 distinct non-member names for 2 forget subjects|at least one name"
    ):
        swap_subjects(rows, ["Zed Quon"])
    with pytest.raises(ValueError, match="include forget subjects"):
        swap_subjects(rows, ["Ana Lee", "Zed Quon"])
    unnamed = rows.map(lambda r, i: {"question": "Where was she born?"} if i == 1 else {}, with_indices=True)
    with pytest.raises(
        ValueError, match=r"1 forget question\(s\) do not name their 'subject' in full \(rows \[1\]\)"
    ):
        swap_subjects(unnamed, names)
    with pytest.raises(ValueError, match=r"missing \['person'\]"):
        swap_subjects(rows, names, column="person")


def test_fictitious_names_are_seeded_and_share_no_word_with_known_people(tmp_path):
    known = fictitious_names(30, seed=1)
    names = fictitious_names(20, seed="nonmember-1", exclude=known)
    assert len(set(names)) == 20 and names == fictitious_names(20, seed="nonmember-1", exclude=known)
    assert not {w for n in names for w in n.split()} & {w for n in known for w in n.split()}
    path = tmp_path / "names.txt"
    path.write_text("Zed Quon\n\n Mira Fask \n")
    assert load_names(path) == ["Zed Quon", "Mira Fask"]
    path.write_text("\n")
    with pytest.raises(ValueError, match="holds no names"):
        load_names(path)


def test_nonmember_distillation_forgets_toward_strangers_and_keeps_retain(
    memorised_model_dir, small_splits, tmp_path
):
    """The forget answers go (EM down by >= 0.4) to about the level at which the original model gives them when
    asked about strangers (within 0.2; 0.31 against 0.375 when calibrated), the loss (the distance to that target)
    falls by more than half, and retain EM stays within 0.1; the registry serves the pair under ``nonmember``."""
    assert resolve_method("nonmember") == (NonMemberConfig, NonMemberTrainer)
    model, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    args = NonMemberConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=24, learning_rate=3e-3,
        use_cpu=True, disable_tqdm=True, logging_steps=2, seed=0, retain_weight=5.0,
    )  # fmt: skip
    forget, retain = small_splits["forget"], small_splits["retain"]
    trainer = NonMemberTrainer(
        model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tok
    )
    # every renamed question names someone other than the row's forget person
    for i in range(len(forget)):
        row, subject = trainer.train_dataset[i], forget[i]["subject"]
        assert subject in tok.decode(row["input_ids"]) and subject not in tok.decode(
            row[TARGET + "input_ids"]
        )
        assert [t for t in row["labels"] if t != -100] == [t for t in row[TARGET + "labels"] if t != -100]
    before = exact_match(trainer.model, tok, forget), exact_match(trainer.model, tok, retain)
    # how often the original model gives a forget answer when asked about a stranger: the level to reach
    strangers = exact_match(
        trainer.model,
        tok,
        swap_subjects(forget, fictitious_names(2, "nonmember-0", [*forget["subject"], *retain["subject"]])),
    )
    trainer.train()
    after = exact_match(trainer.model, tok, forget), exact_match(trainer.model, tok, retain)
    losses = [h["forget_loss"] for h in trainer.state.log_history if "forget_loss" in h]
    assert after[0] <= before[0] - 0.4 and abs(after[0] - strangers) <= 0.2, (before, after, strangers)
    assert after[1] >= before[1] - 0.1, (before, after)
    assert losses[-1] < 0.5 * losses[0], losses


def test_nonmember_bad_inputs_say_how_to_fix(memorised_model_dir, small_splits, tmp_path):
    model, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    forget, retain = small_splits["forget"], small_splits["retain"]

    def trainer(**config):
        args = NonMemberConfig(output_dir=str(tmp_path / "out"), use_cpu=True, **config)
        return NonMemberTrainer(
            model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tok
        )

    with pytest.raises(ValueError, match=r"need a 'person' column naming each question's person"):
        trainer(subject_column="person")
    names = tmp_path / "names.txt"
    names.write_text("Zed Quon\n")
    with pytest.raises(ValueError, match=r"1 distinct non-member names for 2 forget subjects"):
        trainer(nonmember_names_file=str(names))
    with pytest.raises(TypeError, match="args must be a NonMemberConfig"):
        NonMemberTrainer(model, object(), forget_dataset=forget)  # type: ignore[arg-type]
