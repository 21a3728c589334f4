"""IdkNLL / IdkDPO: the packaged refusals, their seeded pairing with forget rows, and runs on the memorised model."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from hf_unlearn.data.refusals import REFUSAL_COLUMN, load_refusals, pair_refusals, refusal_rate
from hf_unlearn.evaluation.qa import exact_match, generate_answers, score_answers
from hf_unlearn.models import load_model_and_tokenizer
from hf_unlearn.trainers.idk_config import IdkDPOConfig, IdkNLLConfig
from hf_unlearn.trainers.idk_trainer import IdkDPOTrainer, IdkNLLTrainer


def test_packaged_refusals_load_and_are_distinct():
    refusals = load_refusals()
    assert 50 <= len(refusals) <= 60 and len(set(refusals)) == len(refusals)
    assert all(r == r.strip() and r for r in refusals)


def test_pairing_is_seeded_deterministic_and_covers_every_row(small_splits):
    forget, refusals = small_splits["forget"], load_refusals()
    first, again = pair_refusals(forget, refusals, seed=3), pair_refusals(forget, refusals, seed=3)
    assert len(first) == len(forget) and first[REFUSAL_COLUMN] == again[REFUSAL_COLUMN]
    assert all(r in refusals for r in first[REFUSAL_COLUMN])
    assert (
        first["question"] == forget["question"] and first["answer"] == forget["answer"]
    )  # rows kept in order
    assert pair_refusals(forget, refusals, seed=4)[REFUSAL_COLUMN] != first[REFUSAL_COLUMN]
    assert len(set(first[REFUSAL_COLUMN])) > 1  # a draw, not one refusal for every row
    # re-pairing replaces the column instead of failing on a duplicate
    assert pair_refusals(first, refusals, seed=3)[REFUSAL_COLUMN] == first[REFUSAL_COLUMN]


def test_bad_refusal_inputs_say_what_why_and_how(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*one refusal answer a line"):
        load_refusals(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="has no refusal in it.*at least one"):
        load_refusals(empty)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['question', 'answer'\]"):
        pair_refusals(Dataset.from_dict({"text": ["a bio"]}), ["I don't know."], seed=0)
    with pytest.raises(ValueError, match="beta=0.0 must be > 0"):
        IdkDPOConfig(output_dir=str(tmp_path), beta=0.0)


def test_refusal_rate_counts_whole_refusals_at_the_start():
    refusals = ["I don't know.", "No idea, sorry."]
    answers = ["i don't know", "No idea, sorry. Ask me later", "I don't", "Paris", "no idea sorry"]
    assert refusal_rate(answers, refusals) == pytest.approx(3 / 5)
    assert refusal_rate([], refusals) == 0.0


def run_idk(trainer_cls, config_cls, model_dir, splits, tmp_path, **config):
    """Unlearn the 2 forget people of the memorised model; return (before, after) of forget EM, retain EM and the
    greedy forget answers' refusal rate."""
    model, tok = load_model_and_tokenizer(model_dir, dtype=torch.float32)
    args = config_cls(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, use_cpu=True, disable_tqdm=True,
        logging_steps=5, seed=0, retain_weight=1.0, retain_batch_size=None, max_retain_loss_ratio=10.0,
        min_retain_loss_increase=1.0, **config,
    )  # fmt: skip
    trainer = trainer_cls(
        model, args, forget_dataset=splits["forget"], retain_dataset=splits["retain"], processing_class=tok
    )
    forget, retain = splits["forget"], splits["retain"]

    def measure():
        answers = generate_answers(trainer.model, tok, forget["question"], max_new_tokens=40)
        return (
            exact_match(trainer.model, tok, forget),
            exact_match(trainer.model, tok, retain),
            refusal_rate(answers, trainer.refusals),
        )

    before = measure()
    trainer.train()
    return trainer, before, measure()


def assert_forgets_by_refusing(before, after):
    (forget0, retain0, refuse0), (forget1, retain1, refuse1) = before, after
    assert forget0 >= 0.9 and forget1 <= forget0 - 0.5, (before, after)
    assert refuse1 >= refuse0 + 0.3, (before, after)  # the greedy answers became refusals
    assert retain1 >= retain0 - 0.2, (before, after)


def test_idknll_answers_forget_questions_with_refusals(memorised_model_dir, small_splits, tmp_path):
    trainer, before, after = run_idk(
        IdkNLLTrainer,
        IdkNLLConfig,
        memorised_model_dir,
        small_splits,
        tmp_path,
        learning_rate=3e-3,
        max_steps=120,
    )
    assert_forgets_by_refusing(before, after)
    logps = [e["forget_logp"] for e in trainer.state.log_history if "forget_logp" in e]
    assert logps[-1] > logps[0] + 1.0  # IdkNLL's forget_logp is the refusals': it rises


def test_idkdpo_prefers_the_refusal_over_the_forget_answer(memorised_model_dir, small_splits, tmp_path):
    """DPO against the reference with a three-refusal file of the user's own (the tiny model learns a few refusals
    to greedy fluency within the budget; on the 55 packaged ones it drifts towards them but garbles them)."""
    refusals = tmp_path / "refusals.txt"
    refusals.write_text("I don't know.\nI have no idea.\n\nSorry, I can't say.\n")
    trainer, before, after = run_idk(
        IdkDPOTrainer, IdkDPOConfig, memorised_model_dir, small_splits, tmp_path, learning_rate=3e-3,
        max_steps=150, beta=0.01, refusals_file=str(refusals),
    )  # fmt: skip
    assert trainer.refusals == ["I don't know.", "I have no idea.", "Sorry, I can't say."]
    assert_forgets_by_refusing(before, after)
    margins = [e["reward_margin"] for e in trainer.state.log_history if "reward_margin" in e]
    assert margins[-1] > 1.0


def test_idkdpo_caches_both_answers_reference_log_probs(memorised_model_dir, small_splits, tmp_path):
    model, tok = load_model_and_tokenizer(memorised_model_dir, dtype=torch.float32)
    forget = small_splits["forget"]
    args = IdkDPOConfig(output_dir=str(tmp_path), use_cpu=True, max_steps=1, regularizer="none", seed=5)
    trainer = IdkDPOTrainer(model, args, forget_dataset=forget, processing_class=tok)
    assert trainer.ref_model is None  # the frozen copy used for the cache was released
    paired = pair_refusals(forget, trainer.refusals, seed=5)  # the trainer's pairing: the same seeded draw
    rejected = score_answers(model, tok, forget["question"], forget["answer"])["log_prob"]
    chosen = score_answers(model, tok, forget["question"], paired[REFUSAL_COLUMN])["log_prob"]
    assert torch.allclose(torch.tensor(trainer.train_dataset["ref_logps"]), rejected, atol=1e-4)
    assert torch.allclose(torch.tensor(trainer.train_dataset["chosen_ref_logps"]), chosen, atol=1e-4)
    # at the reference the loss is log 2
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item(), rel=1e-4
    )


def test_idk_trainers_refuse_other_configs(memorised_model_dir, small_splits, tmp_path):
    from hf_unlearn.trainers.npo_config import NPOConfig

    with pytest.raises(TypeError, match="must be an IdkNLLConfig"):
        IdkNLLTrainer(str(memorised_model_dir), NPOConfig(output_dir=str(tmp_path)), small_splits["forget"])
    with pytest.raises(ValueError, match="does not exist"):
        IdkNLLTrainer(
            str(memorised_model_dir),
            IdkNLLConfig(
                output_dir=str(tmp_path), refusals_file=str(tmp_path / "none.txt"), regularizer="none"
            ),
            small_splits["forget"],
        )
