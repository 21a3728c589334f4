"""Every evaluation metric against numbers computed by hand: pure functions first, then model-level scoring
on a toy model whose next-token probabilities are fixed."""

from __future__ import annotations

import math
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_unlearn.data.formats import framed_ids
from hf_unlearn.evaluation.metrics import (
    choice_prob,
    forget_quality,
    harmonic_mean,
    model_utility,
    normalised_prob,
    privleak,
    rouge_l,
    truth_ratio,
    truth_ratio_score,
)
from hf_unlearn.evaluation.mia import attack_auc, attack_scores, loss_score, min_k_prob, zlib_score
from hf_unlearn.evaluation.muse import deletion_requests, verbmem_split
from hf_unlearn.evaluation.probes import perturb_subject, perturbed_questions, relearn_split
from hf_unlearn.evaluation.qa import text_token_scores
from hf_unlearn.evaluation.tofu import perturbed_matrix, qa_scores, tofu_stats


def test_length_normalised_probability():
    # P(a|q) = e^-2 over 2 tokens and e^-3 over 3 tokens: both e^-1 per token
    assert np.allclose(normalised_prob([-2.0, -3.0], [2, 3]), [math.exp(-1), math.exp(-1)])


def test_choice_probability_normalises_over_correct_and_perturbed():
    # correct: e^-1 per token; two perturbed answers at e^-2 per token -> e^-1 / (e^-1 + 2 e^-2)
    got = choice_prob([-2.0], [2], [[-4.0, -6.0]], [[2, 3]])
    expected = math.exp(-1) / (math.exp(-1) + 2 * math.exp(-2))
    assert got[0] == pytest.approx(expected)


def test_truth_ratio_is_geometric_mean_of_perturbed_over_paraphrased():
    # paraphrase: -1 per token; perturbed: -2 and -2 per token -> R = exp(-2 - (-1)) = e^-1
    got = truth_ratio([-1.0], [1], [[-2.0, -4.0]], [[1, 2]])
    assert got[0] == pytest.approx(math.exp(-1))
    # unequal perturbed: per-token -1 and -3 average to -2 in log space (geometric mean), paraphrase -2 -> R = 1
    assert truth_ratio([-4.0], [2], [[-1.0, -3.0]], [[1, 1]])[0] == pytest.approx(1.0)


def test_truth_ratio_scores_follow_tofu():
    ratios = [0.5, 2.0, 0.25]
    # forget: mean(min(R, 1/R)) = (0.5 + 0.5 + 0.25) / 3
    assert truth_ratio_score(ratios, forget=True) == pytest.approx(1.25 / 3)
    # retain-like: mean(max(0, 1 - R)) = (0.5 + 0 + 0.75) / 3
    assert truth_ratio_score(ratios, forget=False) == pytest.approx(1.25 / 3)
    assert truth_ratio_score([2.0], forget=False) == 0.0


def test_forget_quality_is_the_ks_p_value():
    same = np.linspace(0.1, 1.0, 10)
    assert forget_quality(same, same) == 1.0
    # fully separated samples of 10 and 10: D = 1, exact two-sided p = 2 / C(20, 10)
    assert forget_quality(same, same + 10) == pytest.approx(2 / math.comb(20, 10))


def test_harmonic_mean_and_model_utility():
    assert harmonic_mean([1, 2, 4]) == pytest.approx(3 / 1.75)
    assert harmonic_mean([0.5, 0.0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        harmonic_mean([])
    # one set: 3 / (1/0.5 + 1/0.5 + 1/1) = 0.6
    assert model_utility({"retain": {"prob": 0.5, "rouge": 0.5, "truth_ratio": 1.0}}) == pytest.approx(0.6)
    two = {
        "retain": {"prob": 1, "rouge": 1, "truth_ratio": 1},
        "world_facts": {"prob": 0.25, "rouge": 1, "truth_ratio": 1},
    }
    assert model_utility(two) == pytest.approx(6 / (5 + 4))
    with pytest.raises(ValueError, match="lacks \\['truth_ratio'\\]"):
        model_utility({"retain": {"prob": 0.5, "rouge": 0.5, "truth_ratio": None}})


def test_privleak_follows_muse_orientation():
    # attack AUC 0.9 vs retrained 0.5: MUSE AUCs 0.1 and 0.5 -> (0.1 - 0.5) / 0.5 = -80 %
    assert privleak(0.9, 0.5) == pytest.approx(-80.0)
    assert privleak(0.5, 0.5) == 0.0
    # over-unlearning: the forget set looks less familiar than unseen data -> positive
    assert privleak(0.2, 0.6) == pytest.approx((0.8 - 0.4) / 0.4 * 100)
    with pytest.raises(ValueError, match="denominator"):
        privleak(0.7, 1.0)


def test_membership_attacks():
    logps = [-1.0, -5.0, -3.0, -2.0, -4.0]
    assert min_k_prob(logps, k=0.4) == pytest.approx(-4.5)  # the lowest 2 of 5: -5, -4
    assert min_k_prob(logps, k=0.1) == pytest.approx(-5.0)  # at least one token
    assert loss_score(logps) == pytest.approx(-3.0)
    assert zlib_score(logps, "aaaa") == pytest.approx(-3.0 / len(zlib.compress(b"aaaa")))
    with pytest.raises(ValueError, match="fraction"):
        min_k_prob(logps, k=0)
    with pytest.raises(ValueError, match="at least one"):
        loss_score([])
    scores = attack_scores([logps, [-1.0]], ["x", "y"], min_k=0.2)
    assert scores["min_k"] == [-5.0, -1.0] and scores["loss"] == [-3.0, -1.0]


def test_attack_auc():
    assert attack_auc([3, 4], [1, 2]) == 1.0
    # pairs (member > non-member): (1,2) no, (1,4) no, (3,2) yes, (3,4) no -> 1/4
    assert attack_auc([1, 3], [2, 4]) == 0.25
    assert attack_auc([1], [1]) == 0.5
    with pytest.raises(ValueError, match="non-members"):
        attack_auc([1], [])


def test_probe_helpers():
    garbled = perturb_subject("Where was Fairkdas Brondwell born?", "Fairkdas Brondwell")
    assert (
        garbled.startswith("Where was F")
        and garbled.endswith(" born?")
        and "Fairkdas Brondwell" not in garbled
    )
    assert sorted(garbled[10:28]) == sorted("Fairkdas Brondwell")  # same letters, shuffled inside words
    with pytest.raises(ValueError, match="does not occur"):
        perturb_subject("Who is she?", "Fairkdas Brondwell")
    ds = Dataset.from_dict({"question": ["q1"], "answer": ["a"]})
    with pytest.raises(ValueError, match="perturbed_question"):
        perturbed_questions(ds)
    train, held = relearn_split(Dataset.from_dict({"question": list("abcde"), "answer": list("abcde")}))
    assert train["question"] == ["a", "c", "e"] and held["question"] == ["b", "d"]


def test_deletion_requests_keep_subjects_whole():
    ds = Dataset.from_dict({"question": list("abcdef"), "answer": list("abcdef"), "subject": list("xxyyzz")})
    requests = deletion_requests(ds, 3)
    assert [r["question"] for r in requests] == [["a", "b"], ["c", "d"], ["e", "f"]]
    with pytest.raises(ValueError, match="k=4"):
        deletion_requests(ds, 4)


def test_perturbed_matrix_rejects_ragged_rows():
    ds = Dataset.from_dict(
        {"question": ["q", "r"], "answer": ["a", "b"], "perturbed_answer": [["x", "y"], ["z"]]}
    )
    with pytest.raises(ValueError, match="same number"):
        perturbed_matrix(ds)


# --- model-level scoring on a toy model with fixed next-token probabilities -----------------------------------


class FixedLogits(torch.nn.Module):
    """Predicts the same next-token distribution ``softmax(logits)`` at every position."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, input_ids, attention_mask=None, labels=None):
        batch, length = input_ids.shape
        return SimpleNamespace(logits=self.logits.expand(batch, length, -1))


def test_toy_model_statistics_match_hand_computed_values(tiny_tokenizer):
    tok = tiny_tokenizer
    vocab = len(tok)
    # EOS gets probability 1/2, every other token (1/2) / (V - 1)
    logits = torch.full((vocab,), math.log(0.5 / (vocab - 1)))
    logits[tok.eos_token_id] = math.log(0.5)
    model = FixedLogits(logits)
    ds = Dataset.from_dict(
        {
            "question": ["Where was Ann born?"],
            "answer": ["Lisbon"],
            "paraphrased_answer": ["Lisbon"],
            "perturbed_answer": [["Oslo", "Lima"]],
        }
    )

    def n_tokens(answer):  # answer tokens after the prompt, plus the labelled EOS
        return len(tok(" " + answer, add_special_tokens=False)["input_ids"]) + 1

    def per_token(answer):  # (n - 1) ordinary tokens and one EOS, averaged
        n = n_tokens(answer)
        return ((n - 1) * math.log(0.5 / (vocab - 1)) + math.log(0.5)) / n

    scores = qa_scores(model, tok, ds, generate=False)
    assert scores["n_tokens"][0] == n_tokens("Lisbon")
    assert scores["log_prob"][0] == pytest.approx(per_token("Lisbon") * n_tokens("Lisbon"), rel=1e-5)
    forget = tofu_stats(scores, "forget")
    assert forget["prob"] == pytest.approx(math.exp(per_token("Lisbon")), rel=1e-5)
    ratio = math.exp((per_token("Oslo") + per_token("Lima")) / 2 - per_token("Lisbon"))
    assert forget["truth_ratios"][0] == pytest.approx(ratio, rel=1e-5)
    assert forget["truth_ratio"] == pytest.approx(min(ratio, 1 / ratio), rel=1e-5)
    assert tofu_stats(scores, "retain")["truth_ratio"] == pytest.approx(max(0.0, 1 - ratio), rel=1e-5)
    factual = tofu_stats(scores, "factual")  # real authors / world facts: normalised over the 3 choices
    p = {a: math.exp(per_token(a)) for a in ("Lisbon", "Oslo", "Lima")}
    assert factual["prob"] == pytest.approx(p["Lisbon"] / sum(p.values()), rel=1e-5)


def test_uniform_toy_model_cannot_tell_true_from_false(tiny_tokenizer):
    model = FixedLogits(torch.zeros(len(tiny_tokenizer)))  # every token 1/V
    ds = Dataset.from_dict(
        {
            "question": ["Q one?", "Q two?"],
            "answer": ["Lisbon", "The Shattered Meadow"],
            "perturbed_answer": [["Oslo", "Lima", "Quito"], ["A", "B", "C"]],
        }
    )
    stats = tofu_stats(qa_scores(model, tiny_tokenizer, ds, generate=False), "factual")
    assert stats["prob"] == pytest.approx(1 / 4)  # four equally likely choices
    assert np.allclose(stats["truth_ratios"], 1.0)  # R = 1: indifferent
    assert stats["truth_ratio"] == pytest.approx(0.0, abs=1e-6)  # max(0, 1 - R)
    assert forget_quality(stats["truth_ratios"], stats["truth_ratios"]) == 1.0


def test_verbmem_split_cuts_half_at_most(tiny_tokenizer):
    text = "Fairkdas Brondwell was born in Fez. The birth year of Fairkdas Brondwell is 1949."
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt, rest = verbmem_split(tiny_tokenizer, text, prefix_tokens=1000)
    assert prompt == [tiny_tokenizer.bos_token_id] + ids[: len(ids) // 2]
    assert rest == tiny_tokenizer.decode(ids[len(ids) // 2 :]).strip()
    prompt, _ = verbmem_split(tiny_tokenizer, text, prefix_tokens=3)
    assert prompt == [tiny_tokenizer.bos_token_id] + ids[:3]


def test_rouge_l_recall_precision_f1():
    # LCS of "the cat sat" and "the cat sat on the mat" is 3 tokens: recall 3/6, precision 3/3, F1 2/3
    score = rouge_l("the cat sat", "the cat sat on the mat")
    assert score == pytest.approx({"recall": 0.5, "precision": 1.0, "f1": 2 / 3})


def test_membership_log_probs_of_a_uniform_toy_model(tiny_tokenizer):
    model = FixedLogits(torch.zeros(len(tiny_tokenizer)))  # every next token 1/V
    texts = ["Fairkdas Brondwell was born in Fez.", "Oslo"]
    tokens = text_token_scores(model, tiny_tokenizer, texts)
    log_v = math.log(len(tiny_tokenizer))
    for text, lp, mu, sd in zip(texts, tokens["log_prob"], tokens["mean"], tokens["std"]):
        # BOS + text + EOS, every token after the first scored at log(1/V)
        assert len(lp) == len(framed_ids(tiny_tokenizer, text)) - 1
        assert torch.allclose(lp, torch.full_like(lp, -log_v))
        # a uniform distribution: every log p(z) is log(1/V), so mean log(1/V) and std 0
        assert torch.allclose(mu, torch.full_like(mu, -log_v)) and torch.allclose(
            sd, torch.zeros_like(sd), atol=1e-3
        )
    moments = list(zip(tokens["mean"], tokens["std"]))
    scores = attack_scores(tokens["log_prob"], texts, moments=moments)
    assert scores["min_k"] == pytest.approx([-log_v] * 2)
    assert scores["min_k_pp"] == pytest.approx([0.0, 0.0], abs=1e-2)  # exactly as likely as expected
    assert attack_auc(scores["min_k"][:1], scores["min_k"][1:]) == 0.5  # indistinguishable
