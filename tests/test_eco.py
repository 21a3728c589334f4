"""ECO guard core: corruptions, strength search, prompt classifier, guard and guarded model, eco-fit CLI."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.formats import IGNORE_INDEX, encode_prompt, format_prompt, tokenize_qa
from hf_unlearn.data.synthetic import synthetic_splits
from hf_unlearn.eco.classifier import (
    SCREEN_FILE,
    ClassifierConfig,
    PromptClassifier,
    Screen,
    SentenceEncoder,
    fpr_threshold,
)
from hf_unlearn.eco.config import CORRUPTION_NAMES
from hf_unlearn.eco.corruption import (
    CORRUPTIONS,
    corrupt,
    gaussian_noise,
    reverse,
    shuffle,
    sign_flip,
    zero_out,
)
from hf_unlearn.eco.guard import (
    ECOGuard,
    GuardConfig,
    GuardedModel,
    input_embedding_weight,
    subject_token_mask,
)
from hf_unlearn.eco.names import NameMatcher
from hf_unlearn.eco.optimize import zeroth_order_search

EMBEDS = torch.arange(24, dtype=torch.float32).reshape(4, 6) - 11.5  # (seq=4, hidden=6), no zeros


# -- corruptions ----------------------------------------------------------------------------------------------
def test_the_config_names_every_corruption_and_refuses_others():
    """``eco/config.py`` lists the corruption names without importing torch; they must match the functions."""
    assert sorted(CORRUPTION_NAMES) == sorted(CORRUPTIONS)
    with pytest.raises(ValueError, match="Unknown corruption 'blur'; choose one of"):
        GuardConfig(corruption="blur")


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
    got = NameMatcher(["Ann Lee"], fuzzy=False).mentions(
        ["Who is Ann Lee?", "Who is Anne Leek?", "ANN LEE wrote", "x"]
    )
    assert got == [True, False, True, False]


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
    assert (tmp_path / SCREEN_FILE).exists() and loaded.screen.margin == clf.screen.margin
    np.testing.assert_array_equal(loaded.predict(probe), clf.predict(probe))
    with pytest.raises(ValueError, match="target_fpr"):
        ClassifierConfig(target_fpr=0.0)
    with pytest.raises(ValueError, match="screen_margin_scale must be >= 1"):
        ClassifierConfig(screen_margin_scale=0.5)
    with pytest.raises(ValueError, match="No classifier.json"):
        PromptClassifier.from_pretrained(tmp_path / "missing")


class CountingEncoder:
    """Unit vectors along the first axis; counts the texts it was asked to encode."""

    def __init__(self, dim: int = 4):
        self.dim, self.calls = dim, []

    def encode(self, texts):
        self.calls += list(texts)
        x = np.zeros((len(texts), self.dim), dtype=np.float32)
        x[:, 0] = 1.0
        return x


def test_cascade_bounds_decide_without_the_encoder():
    # logit = w.e + 6 * mention - 2 with |w| = 0.5; threshold 0.5 (logit 0)
    config = ClassifierConfig(entities=["Ann Lee"], screen=False)
    encoder = CountingEncoder()
    clf = PromptClassifier(config, np.array([0.3, 0.4, 0, 0, 6.0]), -2.0, 0.5, encoder=encoder)
    # a mention puts the logit in [3.5, 4.5] > 0: flagged; none puts it in [-2.5, -1.5] < 0: cleared
    assert clf.predict(["Who is Ann Lee?", "Bake bread."]).tolist() == [True, False]
    assert encoder.calls == [] and clf.counts == {"bound": 2}
    clf.intercept = -0.2  # no mention: logit in [-0.7, 0.3], undecided -> encoder (w.e = 0.3 -> 0.1 > 0)
    flags, decided = clf.triage(["Who is Ann Lee?", "Bake bread."])  # the cheap steps alone
    assert flags.tolist() == [True, False] and decided.tolist() == [True, False] and encoder.calls == []
    assert clf.predict(["Bake bread."]).tolist() == [True] and encoder.calls == ["bake bread."]  # canonical
    assert clf.counts == {"bound": 2 + 1 + 0, "encoder": 1}
    copied = copy.deepcopy(clf)  # holds a lock, still copyable (the relearn probe deep-copies guarded models)
    assert copied.predict(["Bake bread."]).tolist() == [True] and copied._lock is not clf._lock


def test_screen_clears_most_retain_prompts_and_agrees_with_the_full_classifier(tiny_tokenizer, encoder):
    # the screen needs hundreds of training prompts for a margin narrower than the scores' spread (on 20 people
    # it clears nothing and every prompt goes to the encoder): 100 people, 800 questions
    data = synthetic_splits(n_people=100, n_holdout=1, forget_pct=10, seed=1)
    fmt = lambda qs: [format_prompt(tiny_tokenizer, q) for q in qs]  # noqa: E731
    forget, retain = data["forget"], data["retain"]
    config = ClassifierConfig(entities=sorted(set(forget["subject"])))
    clf = PromptClassifier.fit(fmt(forget["question"]), fmt(retain["question"]), config, encoder)
    assert clf.screen.margin > 0 and clf.stats["screen_margin"] == clf.screen.margin
    probe = fmt(list(retain["paraphrased_question"]) + list(forget["paraphrased_question"]))
    # the served estimate (text by text, no sparse matrix) is the fitted ridge on the vectorizers' features
    np.testing.assert_allclose(
        clf.screen.estimate(probe), clf.screen.linear(Screen.features(probe)), rtol=1e-5, atol=1e-6
    )
    full = clf.scores(probe) > clf.threshold
    cascade = clf.predict(probe)
    assert (cascade == full).mean() >= 0.99 and cascade[len(retain) :].all()  # every forget prompt flagged
    assert clf.counts["bound"] == len(forget)  # named forget people: flagged by the bound alone
    assert clf.counts["screen"] >= 0.5 * len(
        retain
    )  # the screen, not the encoder, cleared most retain prompts
    assert sum(clf.counts.values()) == len(probe)


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


class MentionClassifier:
    """Flags a prompt when it names one of ``subjects`` (a stand-in for the fitted classifier)."""

    def __init__(self, subjects):
        self.subjects = [s.lower() for s in subjects]

    def predict(self, texts):
        return np.array([any(s in t.lower() for s in self.subjects) for t in texts])


def captured_inputs_embeds(model):
    """Record the ``inputs_embeds`` of each call of ``model`` that is given embeddings (not token ids)."""
    seen = []

    def hook(module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            seen.append(kwargs["inputs_embeds"].detach())

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_guarded_model_corrupts_flagged_prompts_and_never_the_scored_answers(
    memorised_model_dir, small_splits
):
    """Teacher-forced scoring through the guard (``prompt_lengths`` given): a flagged row's prompt embeddings are
    corrupted, its answer embeddings are the model's own, and an unflagged row is the plain model's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn.evaluation.qa import score_answers

    model = AutoModelForCausalLM.from_pretrained(memorised_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(memorised_model_dir)
    forget, retain = small_splits["forget"][0], small_splits["retain"][0]
    guard = ECOGuard(MentionClassifier([forget["subject"]]), tok, GuardConfig(strength=2.0))
    guarded = GuardedModel(model, guard)
    rows = [tokenize_qa(tok, r["question"], r["answer"]) for r in (forget, retain)]
    batch = PaddingCollator(tok.pad_token_id)(rows)
    n_prompt = [r["labels"].count(IGNORE_INDEX) for r in rows]
    seen = captured_inputs_embeds(model)
    with torch.no_grad():
        clean = model.get_input_embeddings()(batch["input_ids"])  # (2, T, H)
        logits = guarded(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            prompt_lengths=torch.tensor(n_prompt),
        ).logits
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert len(seen) == 1  # the guarded call ran on embeddings, the plain call on token ids
    fed = seen[0]
    p, n = n_prompt[0], len(rows[0]["input_ids"])
    assert not torch.allclose(fed[0, :p], clean[0, :p])  # the flagged prompt is corrupted ...
    torch.testing.assert_close(fed[0, :p], guard.corrupt_embeds(rows[0]["input_ids"][:p], clean[0, :p]))
    torch.testing.assert_close(fed[0, p:n], clean[0, p:n])  # ... its answer is not
    torch.testing.assert_close(fed[1], clean[1])  # the retain row is untouched
    torch.testing.assert_close(logits[1], plain[1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(logits[0, :n], plain[0, :n], atol=1e-3)
    # score_answers passes the prompt lengths itself: the same log-prob as the model on [corrupted prompt, answer]
    from hf_unlearn.losses import sequence_log_probs

    expected, _ = sequence_log_probs(logits[:1, :n], batch["labels"][:1, :n])
    got = score_answers(guarded, tok, [forget["question"]], [forget["answer"]])["log_prob"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    retain_plain = score_answers(model, tok, [retain["question"]], [retain["answer"]])["log_prob"]
    retain_guarded = score_answers(guarded, tok, [retain["question"]], [retain["answer"]])["log_prob"]
    torch.testing.assert_close(retain_guarded, retain_plain, rtol=1e-4, atol=1e-4)


class StrengthGuarded:
    """What search_strength needs of a guarded model: ``.guard.config.strength``."""

    def __init__(self, strength=1.0):
        self.guard = type("G", (), {"config": GuardConfig(strength=strength)})()


def test_search_strength_lands_on_the_target(monkeypatch):
    from hf_unlearn.eco import fit

    # a forget metric that falls with the strength as exp(-s): target exp(-2) <=> strength 2
    monkeypatch.setattr(fit, "forget_metric", lambda g, *a: math.exp(-g.guard.config.strength))
    guarded = StrengthGuarded(1.0)
    forget = {"question": ["q"], "answer": ["a"]}
    got = fit.search_strength(guarded, None, forget, math.exp(-2), "prob", steps=60, lr=0.3, mu=0.25, seed=0)
    assert abs(got["strength"] - 2.0) < 0.1, got
    assert guarded.guard.config.strength == got["strength"]  # the guard keeps the best strength found
    assert got["reached"] == pytest.approx(math.exp(-got["strength"]))
    assert got["gap"] == pytest.approx(abs(got["reached"] - math.exp(-2)))
    assert got["history"][0] == (1.0, pytest.approx(math.exp(-1.0)))


def test_resolve_target_needs_exactly_one_source():
    from hf_unlearn.eco.fit import resolve_target

    assert resolve_target(None, None, None, "prob", target=0.25) == (0.25, "given")
    with pytest.raises(ValueError, match="exactly one target"):
        resolve_target(None, None, None, "prob")
    with pytest.raises(ValueError, match="exactly one target"):
        resolve_target(None, None, None, "prob", target=0.1, holdout={"question": [], "answer": []})


def write_jsonl(path, ds):
    path.write_text("".join(json.dumps(row) + "\n" for row in ds))
    return str(path)


def test_eco_fit_cli_guards_memorised_model(memorised_model_dir, small_splits, tmp_path, caplog):
    """eco-fit end to end on the memorised model (fit_guard: classifier, subjects, strength search): forget EM
    falls to the held-out level, retain EM stays; without --verbose its own progress (the search's steps) is
    still logged."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn.cli.eco_fit import main
    from hf_unlearn.evaluation.qa import exact_match, generate_answers

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
    assert report["target_source"] == "holdout" and report["strength"] > 0 and report["history"]
    steps = [r for r in caplog.records if r.name == "hf_unlearn.eco.fit" and "strength" in r.getMessage()]
    assert len(steps) >= len(report["history"])

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
    clean = model.get_input_embeddings().weight[ids].detach()
    assert out_forget["prompt_embeds"].shape == clean.shape
    torch.testing.assert_close(out_forget["prompt_embeds"], guard.corrupt_embeds(ids, clean))
    assert not torch.allclose(out_forget["prompt_embeds"], clean)
    torch.testing.assert_close(out_ids["prompt_embeds"], out_forget["prompt_embeds"])  # str and ids agree

    # token_selection="subjects": only the forget subject's tokens change
    guard.config.token_selection = "subjects"
    subject_mask = subject_token_mask(tok, ids, guard.config.subjects)
    only_subject = guard.corrupt_embeds(ids, clean)
    assert 0 < subject_mask.sum() < len(ids)
    assert torch.equal(only_subject[~subject_mask], clean[~subject_mask])
    assert not torch.allclose(only_subject[subject_mask], clean[subject_mask])
    guard.config.token_selection = "all"

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
    guard._flag_cache.clear()  # the scoring above filled it; the bound applies as new prompts come in
    prompts = [forget_prompt, retain_prompt, format_prompt(tok, retain[1]["question"])]
    assert guard.flags(prompts) == [True, False, False]
    assert len(guard._flag_cache) == 2
    assert guard.flags(prompts) == [True, False, False]  # evicted prompts are classified again, the same way
