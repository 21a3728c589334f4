"""ECO guard core: corruptions, strength search, prompt classifier, guard and guarded model, eco-fit CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data.formats import IGNORE_INDEX, encode_prompt, format_prompt, tokenize_qa
from hf_unlearn.evaluation.qa import exact_match, generate_answers, score_answers
from hf_unlearn.losses import sequence_log_probs
from hf_unlearn.serving.eco.classifier import (
    ClassifierConfig,
    PromptClassifier,
    SentenceEncoder,
    fpr_threshold,
    mentions,
)
from hf_unlearn.serving.eco.corruption import (
    corrupt,
    gaussian_noise,
    reverse,
    shuffle,
    sign_flip,
    zero_out,
)
from hf_unlearn.serving.eco.guard import (
    ECOGuard,
    GuardConfig,
    GuardedModel,
    input_embedding_weight,
    subject_token_mask,
)
from hf_unlearn.serving.eco.optimize import zeroth_order_search

EMBEDS = torch.arange(24, dtype=torch.float32).reshape(4, 6) - 11.5  # (seq=4, hidden=6), no zeros


# -- corruptions ----------------------------------------------------------------------------------------------
def test_gaussian_noise_first_n_dims_seeded_and_scaled():
    out = gaussian_noise(EMBEDS, sigma=0.5, dims=2, seed=3)
    assert torch.equal(out[:, 2:], EMBEDS[:, 2:])  # only the first 2 dims move
    assert not torch.equal(out[:, :2], EMBEDS[:, :2])
    assert torch.equal(out, gaussian_noise(EMBEDS, 0.5, 2, seed=3))  # deterministic
    assert not torch.equal(out, gaussian_noise(EMBEDS, 0.5, 2, seed=4))
    expected = EMBEDS[:, :2] + 0.5 * torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out[:, :2], expected)
    big = gaussian_noise(torch.zeros(2000, 8), sigma=2.0, seed=0)  # all dims
    assert abs(big.std().item() - 2.0) < 0.05 and abs(big.mean().item()) < 0.05
    assert torch.equal(gaussian_noise(EMBEDS, 0.0), EMBEDS)
    assert EMBEDS[0, 0].item() == -11.5  # input untouched


def test_zero_out_and_sign_flip():
    z = zero_out(EMBEDS, dims=3)
    assert torch.all(z[:, :3] == 0) and torch.equal(z[:, 3:], EMBEDS[:, 3:])
    assert torch.all(zero_out(EMBEDS) == 0)
    f = sign_flip(EMBEDS, dims=2)
    assert torch.equal(f[:, :2], -EMBEDS[:, :2]) and torch.equal(f[:, 2:], EMBEDS[:, 2:])
    assert torch.equal(sign_flip(EMBEDS), -EMBEDS)


def test_shuffle_and_reverse_reorder_tokens():
    s = shuffle(EMBEDS, seed=1)
    order = torch.randperm(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s, EMBEDS[order])
    assert torch.equal(s, shuffle(EMBEDS, seed=1))
    assert torch.equal(reverse(EMBEDS), EMBEDS[[3, 2, 1, 0]])


def test_corrupt_only_selected_positions_and_errors():
    mask = torch.tensor([False, True, True, False])
    out = corrupt(EMBEDS, "reverse", positions=mask)
    assert torch.equal(out, EMBEDS[[0, 2, 1, 3]])
    out = corrupt(EMBEDS, "zero_out", positions=mask)
    assert torch.all(out[1:3] == 0) and torch.equal(out[[0, 3]], EMBEDS[[0, 3]])
    with pytest.raises(ValueError, match="Unknown corruption"):
        corrupt(EMBEDS, "blur")
    with pytest.raises(ValueError, match=r"\(seq, hidden\)"):
        gaussian_noise(EMBEDS[None], 1.0)
    with pytest.raises(ValueError, match="dims must be"):
        zero_out(EMBEDS, dims=7)
    with pytest.raises(ValueError, match="bool mask"):
        corrupt(EMBEDS, "reverse", positions=torch.tensor([0, 1, 1, 0]))


# -- zeroth-order search ----------------------------------------------------------------------------------------
def test_search_finds_known_optimum_in_log_space():
    result = zeroth_order_search(lambda x: (math.log(x) - math.log(3.0)) ** 2, init=0.5, steps=40, lr=0.5)
    assert abs(result.best - 3.0) < 0.1
    assert len(result.history) <= 2 * 40 + 2


def test_search_finds_known_optimum_in_linear_space():
    result = zeroth_order_search(
        lambda x: (x - 2.5) ** 2, init=7.0, steps=40, lr=0.3, mu=0.1, log_space=False, bounds=(-10, 10)
    )
    assert abs(result.best - 2.5) < 0.05


def test_search_escapes_flat_region_of_a_step_objective():
    # an EM-like step metric: 1.0 below strength 4, 0.1 above; target 0.1. Flat around the start point.
    result = zeroth_order_search(lambda x: abs((1.0 if x < 4 else 0.1) - 0.1), init=0.2, steps=20, tol=0.01)
    assert result.best >= 4 and result.best_value == 0.0
    with pytest.raises(ValueError, match="init"):
        zeroth_order_search(lambda x: x, init=0.0)


# -- classifier -------------------------------------------------------------------------------------------------
def test_fpr_threshold_and_mentions_by_hand():
    scores = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.4, 0.5, 0.6, 0.7, 0.05])
    assert fpr_threshold(scores, 0.2) == 0.7  # 2 of 10 negatives (0.9, 0.8) may lie above
    assert fpr_threshold(scores, 0.01) == 0.9  # none above
    got = mentions(["Who is Ann Lee?", "Who is Anne Leek?", "ANN LEE wrote", "nothing"], ["Ann Lee"])
    assert got.tolist() == [1.0, 0.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


def test_encoder_unit_vectors_and_paraphrase_similarity(encoder):
    x = encoder.encode(["Where was Ann born?", "In which city did Ann come into the world?", "Bake bread."])
    assert x.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2]


def test_classifier_calibration_and_round_trip(small_splits, tiny_tokenizer, encoder, tmp_path):
    fmt = lambda qs: [format_prompt(tiny_tokenizer, q) for q in qs]  # noqa: E731
    forget, retain = small_splits["forget"], small_splits["retain"]
    config = ClassifierConfig(target_fpr=0.05, entities=sorted(set(forget["subject"])))
    clf = PromptClassifier.fit(fmt(forget["question"]), fmt(retain["question"]), config, encoder)
    assert clf.stats["n_negatives_calibration"] == 29
    assert clf.stats["calibration_fpr"] <= 0.05
    # held-out paraphrases: every forget prompt flagged, almost no retain prompt
    assert clf.predict(fmt(forget["paraphrased_question"])).mean() == 1.0
    assert clf.predict(fmt(retain["paraphrased_question"])).mean() <= 0.05
    clf.save_pretrained(tmp_path)
    loaded = PromptClassifier.from_pretrained(tmp_path, encoder)
    probe = fmt(forget["paraphrased_question"][:3] + retain["paraphrased_question"][:3])
    np.testing.assert_allclose(loaded.scores(probe), clf.scores(probe), rtol=1e-6)
    assert loaded.threshold == clf.threshold and loaded.config == clf.config
    with pytest.raises(ValueError, match="target_fpr"):
        ClassifierConfig(target_fpr=0.0)
    with pytest.raises(ValueError, match="No classifier.json"):
        PromptClassifier.from_pretrained(tmp_path / "missing")


# -- guard ------------------------------------------------------------------------------------------------------
def test_subject_token_mask(tiny_tokenizer, small_splits):
    subject = small_splits["forget"][0]["subject"]
    ids = encode_prompt(tiny_tokenizer, f"Where was {subject} born?")
    mask = subject_token_mask(tiny_tokenizer, ids, [subject.upper()])
    assert 0 < mask.sum() < len(ids)
    assert tiny_tokenizer.decode([i for i, m in zip(ids, mask) if m]).strip() == subject
    assert not subject_token_mask(tiny_tokenizer, ids, ["Nobody Here"]).any()
    with pytest.raises(ValueError, match="subjects"):
        ECOGuard(None, tiny_tokenizer, GuardConfig(token_selection="subjects"))


def write_jsonl(path, ds):
    path.write_text("".join(json.dumps(row) + "\n" for row in ds))
    return str(path)


def test_eco_fit_cli_guards_memorised_model(memorised_model_dir, small_splits, tmp_path):
    """eco-fit end to end on the memorised model: forget EM falls to the held-out level, retain EM stays."""
    from hf_unlearn.serving.eco.fit import main

    forget, retain, holdout = small_splits["forget"], small_splits["retain"], small_splits["holdout"]
    out = tmp_path / "guard"
    argv = [
        "--model", str(memorised_model_dir),
        "--forget", write_jsonl(tmp_path / "forget.jsonl", forget),
        "--retain", write_jsonl(tmp_path / "retain.jsonl", retain),
        "--holdout", write_jsonl(tmp_path / "holdout.jsonl", holdout),
        "--out", str(out), "--steps", "10",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "fit_report.json").read_text())
    assert report["target_source"] == "holdout" and report["strength"] > 0

    model = AutoModelForCausalLM.from_pretrained(memorised_model_dir)
    tok = AutoTokenizer.from_pretrained(memorised_model_dir)
    guard = ECOGuard.from_pretrained(out, tok, embedding_weight=input_embedding_weight(memorised_model_dir))
    assert guard.config.strength == report["strength"]
    assert guard.config.subjects == sorted(set(forget["subject"]))
    guarded = GuardedModel(model, guard)
    plain_forget, plain_retain = exact_match(model, tok, forget), exact_match(model, tok, retain)
    holdout_em = exact_match(model, tok, holdout)
    assert plain_forget >= 0.9
    assert exact_match(guarded, tok, forget) <= holdout_em + 0.1
    assert exact_match(guarded, tok, retain) >= 0.97 * plain_retain

    # guard(): token ids for retain prompts, corrupted embeddings of the model's own weights for forget prompts
    forget_prompt = format_prompt(tok, forget[0]["question"])
    retain_prompt = format_prompt(tok, retain[0]["question"])
    ids = guard.prompt_ids(forget_prompt)
    out_forget, out_retain, out_ids = guard.guard_batch([forget_prompt, retain_prompt, ids])
    assert out_retain == {"prompt_token_ids": guard.prompt_ids(retain_prompt)}
    clean = model.get_input_embeddings().weight[ids]
    assert out_forget["prompt_embeds"].shape == clean.shape
    torch.testing.assert_close(out_forget["prompt_embeds"], guard.corrupt_embeds(ids, clean.detach()))
    assert not torch.allclose(out_forget["prompt_embeds"], clean)
    torch.testing.assert_close(out_ids["prompt_embeds"], out_forget["prompt_embeds"])  # str and ids agree

    # token_selection="subjects": only the forget subject's tokens change
    guard.config.token_selection = "subjects"
    subject_mask = subject_token_mask(tok, ids, guard.config.subjects)
    only_subject = guard.corrupt_embeds(ids, clean.detach())
    assert 0 < subject_mask.sum() < len(ids)
    assert torch.equal(only_subject[~subject_mask], clean.detach()[~subject_mask])
    assert not torch.allclose(only_subject[subject_mask], clean.detach()[subject_mask])
    guard.config.token_selection = "all"

    # teacher-forced scoring corrupts the prompt only (score_answers passes prompt_lengths): same log-prob as
    # the model on [corrupted prompt embeddings, clean answer embeddings]
    row = tokenize_qa(tok, forget[0]["question"], forget[0]["answer"])
    n_prompt = row["labels"].count(IGNORE_INDEX)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(torch.tensor([row["input_ids"]]))[0]  # (T, H)
        embeds[:n_prompt] = guard.corrupt_embeds(row["input_ids"][:n_prompt], embeds[:n_prompt])
        logits = model(inputs_embeds=embeds[None]).logits
    expected, _ = sequence_log_probs(logits, torch.tensor([row["labels"]]))
    got = score_answers(guarded, tok, [forget[0]["question"]], [forget[0]["answer"]])["log_prob"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    # generate: unflagged rows answer exactly as the unguarded model; forget answers are gone
    questions = forget["question"][:4] + retain["question"][:4]
    plain, guarded_answers = (
        generate_answers(model, tok, questions),
        generate_answers(guarded, tok, questions),
    )
    assert guarded_answers[4:] == plain[4:]
    assert sum(g == a for g, a in zip(guarded_answers[:4], forget["answer"][:4])) <= 1

    # the decision cache stays bounded and evicting never changes a decision
    guard.cache_size = 2
    prompts = [forget_prompt, retain_prompt, format_prompt(tok, retain[1]["question"])]
    assert guard.flags(prompts) == [True, False, False]
    assert len(guard._flag_cache) == 2
