"""ECO guard core: corruptions, strength search, prompt classifier, guard and guarded model, eco-fit CLI."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from hf_unlearn.data.formats import format_prompt
from hf_unlearn.data.synthetic import synthetic_splits
from hf_unlearn.serving.eco.classifier import (
    SCREEN_FILE,
    ClassifierConfig,
    PromptClassifier,
    Screen,
    SentenceEncoder,
    fpr_threshold,
)
from hf_unlearn.serving.eco.corruption import (
    corrupt,
    gaussian_noise,
    reverse,
    shuffle,
    sign_flip,
    zero_out,
)
from hf_unlearn.serving.eco.names import NameMatcher
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
