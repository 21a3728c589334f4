"""Non-member distillation: its loss, the renamed forget rows, and the trainer on the memorised tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from hf_unlearn.data.nonmembers import align_positions, assign_stand_ins, load_names, renamed
from hf_unlearn.data.synthetic import fictitious_names
from hf_unlearn.evaluation.qa import exact_match
from hf_unlearn.losses import nonmember_kl, sequence_log_probs
from hf_unlearn.models import load_model_and_tokenizer
from hf_unlearn.trainers import resolve_method
from hf_unlearn.trainers.base_trainer import pad_to_width
from hf_unlearn.trainers.nonmember_config import NonMemberConfig
from hf_unlearn.trainers.nonmember_trainer import INDEX, TARGET, NonMemberTrainer

IGNORE = -100


def test_nonmember_kl_compares_each_position_with_its_aligned_renamed_position():
    """Row position 1 is compared with renamed position 2 (a longer stand-in name before it): (0.5, 0.5) against
    the target's (0.8, 0.2); position 0 matches its target exactly; -1 positions (padding, the last token) do not
    count: the mean over the 2 counted positions."""
    v = 2
    target = torch.zeros(1, 4, v)
    target[0, 2] = torch.tensor([math.log(0.8), math.log(0.2)])
    target[0, 0] = torch.tensor([1.0, -1.0])
    logits = torch.zeros(1, 3, v)
    logits[0, 0] = torch.tensor([1.0, -1.0])
    logits[0, 2] = torch.tensor([5.0, -5.0])  # not counted
    index = torch.tensor([[0, 2, -1]])
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert nonmember_kl(logits, target, index).item() == pytest.approx(kl / 2, rel=1e-6)
    aligned = target[:, [0, 2, 3], :]
    assert nonmember_kl(aligned, target, index).item() == pytest.approx(0.0, abs=1e-7)


def test_nonmember_kl_gives_the_forget_name_piece_the_strangers_probability():
    """Position 0 predicts a name piece: the row's next token is 0, the renamed row's 2. The target
    (0.6, 0.3, 0.1) becomes (0.1, 0.3, 0.1) / 0.5 = (0.2, 0.6, 0.2); position 1 predicts the same token in both
    rows (1), so its target is kept. The model predicts (1/3, 1/3, 1/3) at both."""
    target = torch.log(torch.tensor([[[0.6, 0.3, 0.1], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]]))
    logits = torch.zeros(1, 3, 3)
    index = torch.tensor([[0, 1, -1]])
    ids, renamed_ids = torch.tensor([[5, 0, 1]]), torch.tensor([[5, 2, 1]])
    kl = lambda q: sum(x * math.log(x * 3) for x in q)  # noqa: E731
    expected = (kl([0.2, 0.6, 0.2]) + kl([0.5, 0.25, 0.25])) / 2
    assert nonmember_kl(logits, target, index, ids, renamed_ids).item() == pytest.approx(expected, rel=1e-5)
    # without the token ids the target is the reference's as it is
    plain = (kl([0.6, 0.3, 0.1]) + kl([0.5, 0.25, 0.25])) / 2
    assert nonmember_kl(logits, target, index).item() == pytest.approx(plain, rel=1e-5)


def test_renamed_rows_align_token_positions_outside_and_across_the_name():
    # "Where was [An a Lee] born ?" -> "Where was [Zed Qu] born ?": 3 name tokens onto 2
    original, renamed_ids = [1, 2, 10, 11, 12, 3, 4], [1, 2, 20, 21, 3, 4]
    assert align_positions(original, renamed_ids) == [0, 1, 2, 2, 3, 4, 5]
    assert align_positions([1, 10, 3], [1, 20, 21, 22, 3]) == [0, 3, 4]  # one name token: onto the last
    assert align_positions([1, 2, 3], [1, 2, 3]) == [0, 1, 2]


def test_each_forget_person_gets_one_stand_in_in_all_their_rows():
    rows = [
        {"question": "Where was Ana Lee born?", "answer": "Oslo", "subject": "Ana Lee"},
        {"question": "What did Ana Lee write?", "answer": "Tides", "subject": "Ana Lee"},
        {"text": "Bo Kim was born in Rome. Bo Kim writes.", "subject": "Bo Kim"},
    ]
    names = ["Zed Quon", "Mira Fask", "Tove Lund"]
    chosen = assign_stand_ins(rows, names, seed=3)
    assert (
        set(chosen) == {"Ana Lee", "Bo Kim"}
        and len(set(chosen.values())) == 2
        and set(chosen.values()) < set(names)
    )
    assert chosen == assign_stand_ins(rows, names, seed=3)  # seeded
    other = renamed(rows[2], "Bo Kim", chosen["Bo Kim"])
    assert other["text"] == f"{chosen['Bo Kim']} was born in Rome. {chosen['Bo Kim']} writes."
    assert (
        renamed({"question": "Is Bo Kimberly Bo Kim?"}, "Bo Kim", "X Y")["question"] == "Is X Kimberly X Y?"
    )
    # a surname left on its own (a parent's name) takes the stand-in's surname; other columns are kept
    father = renamed({"answer": "Jo Kim", "subject": "Bo Kim"}, "Bo Kim", "Zed Quon")
    assert father == {"answer": "Jo Quon", "subject": "Bo Kim"}
    assert renamed({"text": "Bo Kim and Kim"}, "Bo Kim", "Zed Van Quon")["text"] == "Zed Van Quon and Kim"
    with pytest.raises(ValueError, match="1 distinct non-member names for 2 forget subjects"):
        assign_stand_ins(rows, ["Zed Quon"])
    with pytest.raises(ValueError, match="include forget subjects"):
        assign_stand_ins(rows, ["Ana Lee", "Zed Quon"])
    unnamed = [rows[0], {**rows[1], "question": "What did she write?"}]
    with pytest.raises(
        ValueError, match=r"1 forget row\(s\) do not name their 'subject' in full .*\(rows \[1\]\)"
    ):
        assign_stand_ins(unnamed, names)
    with pytest.raises(ValueError, match=r"need a 'person' column"):
        assign_stand_ins(rows, names, column="person")


def answer_log_prob(model, batch, prefix=""):
    """Mean per-token log-prob of the answers of a collated batch (its ``<prefix>*`` columns)."""
    with torch.no_grad():
        logits = model(
            input_ids=batch[prefix + "input_ids"], attention_mask=batch[prefix + "attention_mask"]
        ).logits
    logps, counts = sequence_log_probs(logits, batch[prefix + "labels"])
    return (logps.sum() / counts.sum()).item()


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
    """QA rows and biographies: every renamed row keeps the original's length and label positions and names a
    stranger instead; after training the forget answers are about as likely as the original model finds them for
    the stand-ins (the per-token log-prob gap shrinks by > 70 %; 0.73 -> 0.003 nats when calibrated), exact match
    drops by >= 0.3 (1.0 -> 0.125), the loss by > 85 %, and retain EM stays within 0.1."""
    assert resolve_method("nonmember") == (NonMemberConfig, NonMemberTrainer)
    model, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    args = NonMemberConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=48, learning_rate=3e-3,
        use_cpu=True, disable_tqdm=True, logging_steps=2, seed=0, retain_weight=5.0,
    )  # fmt: skip
    forget, retain, texts = small_splits["forget"], small_splits["retain"], small_splits["forget_text"]
    trainer = NonMemberTrainer(
        model,
        args,
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=tok,
        forget_text_dataset=texts,
    )
    assert len(trainer.train_dataset) == len(forget) + len(texts)
    subjects = [*forget["subject"], *texts["subject"]]
    for row, subject in zip(trainer.train_dataset, subjects):
        ids, target, index = row["input_ids"], row[TARGET + "input_ids"], row[INDEX]
        assert subject in tok.decode(ids) and subject not in tok.decode(target)
        assert index[-1] == -1 and index[:-1] == sorted(index[:-1]) and index[-2] == len(target) - 2
        assert ids[0] == target[0] and ids[-1] == target[-1]  # BOS ... EOS
    before = exact_match(trainer.model, tok, forget), exact_match(trainer.model, tok, retain)
    reference = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)[0]
    qa = trainer.data_collator([trainer.train_dataset[i] for i in range(len(forget))])  # the QA rows
    strangers = answer_log_prob(reference, qa, TARGET)  # the original model's answers about the stand-ins
    gap_before = answer_log_prob(trainer.model, qa) - strangers
    trainer.train()
    after = exact_match(trainer.model, tok, forget), exact_match(trainer.model, tok, retain)
    gap_after = answer_log_prob(trainer.model, qa) - strangers
    losses = [h["forget_loss"] for h in trainer.state.log_history if "forget_loss" in h]
    assert after[0] <= before[0] - 0.3, (before, after)
    assert after[1] >= before[1] - 0.1, (before, after)
    # the forget answers are now about as likely as the original model finds them for strangers
    assert gap_before > 0.1 and abs(gap_after) < 0.5 * gap_before, (gap_before, gap_after)
    assert losses[-1] < 0.15 * losses[0], losses


def test_a_retain_batch_longer_than_the_forget_batch_pads_the_alignment_too(
    memorised_model_dir, small_splits, tmp_path
):
    """The joint forward pads the forget batch to a longer retain batch's width; the renamed-row alignment is
    padded with -1 (compared with nothing), so the loss is the unpadded batch's (this crashed with a shape error
    on the worst-case forget set, whose last batch held only short QA rows)."""
    model, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    long_retain = small_splits["retain"].map(lambda r: {"answer": r["answer"] + " and so on" * 20})
    args = NonMemberConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1,
                           use_cpu=True, disable_tqdm=True, seed=0, report_to=[])  # fmt: skip
    trainer = NonMemberTrainer(
        model, args, forget_dataset=small_splits["forget"], retain_dataset=long_retain, processing_class=tok
    )
    trainer.train()  # the joint forward with the longer retain rows runs
    assert trainer.state.global_step == 1
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    width = batch["input_ids"].shape[1] + 7
    padded = pad_to_width(batch, width, tok.pad_token_id, trainer.position_pads)
    assert padded[INDEX].shape == padded["input_ids"].shape == (4, width)
    assert (padded[INDEX][:, -7:] == -1).all() and (padded["labels"][:, -7:] == IGNORE).all()
    torch.manual_seed(0)
    logits = torch.randn(4, width, 11)
    target = torch.randn(4, batch[TARGET + "input_ids"].shape[1], 11)
    ids, target_ids = (t.remainder(11) for t in (padded["input_ids"], batch[TARGET + "input_ids"]))
    full = nonmember_kl(logits, target, padded[INDEX], ids, target_ids)
    unpadded = nonmember_kl(logits[:, : width - 7], target, batch[INDEX], ids[:, : width - 7], target_ids)
    assert full.item() == pytest.approx(unpadded.item())  # the padded positions count for nothing


def test_nonmember_bad_inputs_say_how_to_fix(memorised_model_dir, small_splits, tmp_path):
    model, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    forget, retain = small_splits["forget"], small_splits["retain"]

    def trainer(**config):
        args = NonMemberConfig(output_dir=str(tmp_path / "out"), use_cpu=True, **config)
        return NonMemberTrainer(
            model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tok
        )

    with pytest.raises(ValueError, match=r"need a 'person' column naming each row's person"):
        trainer(subject_column="person")
    names = tmp_path / "names.txt"
    names.write_text("Zed Quon\n")
    with pytest.raises(ValueError, match=r"1 distinct non-member names for 2 forget subjects"):
        trainer(nonmember_names_file=str(names))
    with pytest.raises(TypeError, match="args must be a NonMemberConfig"):
        NonMemberTrainer(model, object(), forget_dataset=forget)  # type: ignore[arg-type]
