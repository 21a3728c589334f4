"""A guard is scored as its users meet it: prompts only are corrupted (answers and scored texts never), the
weights' view under the standard keys and the served API's under ``*_api`` keys, the relearning attack on the
weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data.forget_retain import PaddingCollator
from hf_unlearn.data.formats import IGNORE_INDEX, tokenize_qa
from hf_unlearn.eco.guard import ECOGuard, GuardConfig, GuardedModel
from hf_unlearn.evaluation.qa import score_answers, text_token_scores
from hf_unlearn.evaluation.report import result_rows
from hf_unlearn.evaluation.suite import EvalConfig, evaluate_model, membership_texts


class MentionClassifier:
    """Flags a prompt that mentions one of ``names``; counts the prompts it was asked about."""

    def __init__(self, names):
        self.names, self.asked = list(names), 0

    def predict(self, texts):
        self.asked += len(texts)
        return np.array([any(n in t for n in self.names) for t in texts])


def guarded(model_dir, subjects, strength=20.0):
    model, tok = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    guard = ECOGuard(MentionClassifier(subjects), tok, GuardConfig(strength=strength))
    return GuardedModel(model, guard), model, tok


def test_guard_corrupts_prompt_tokens_only(memorised_model_dir, small_splits):
    forget = small_splits["forget"].select(range(4))
    wrapper, model, tok = guarded(memorised_model_dir, set(forget["subject"]))
    rows = [tokenize_qa(tok, q, a) for q, a in zip(forget["question"], forget["answer"])]
    batch = PaddingCollator(tok.pad_token_id)(rows)
    prompt_lengths = (batch["labels"] != IGNORE_INDEX).int().argmax(-1)
    clean = model.get_input_embeddings()(batch["input_ids"])
    with torch.no_grad():
        embeds, flags = wrapper.guarded_embeds(batch["input_ids"], batch["attention_mask"], prompt_lengths)
    assert all(flags)
    for b, n in enumerate(prompt_lengths.tolist()):
        width = int(batch["attention_mask"][b].sum())
        assert torch.equal(embeds[b, n:width], clean[b, n:width])  # the answer is never corrupted
        assert not torch.allclose(embeds[b, :n], clean[b, :n])  # the prompt is
    # a raw text (prompt length 0) is neither classified nor corrupted
    asked = wrapper.guard.classifier.asked
    with torch.no_grad():
        embeds, flags = wrapper.guarded_embeds(
            batch["input_ids"], batch["attention_mask"], torch.zeros(len(rows), dtype=torch.long)
        )
    assert not any(flags) and torch.equal(embeds, clean) and wrapper.guard.classifier.asked == asked


def test_membership_scores_through_the_guard(memorised_model_dir, small_splits):
    wrapper, model, tok = guarded(memorised_model_dir, set(small_splits["forget"]["subject"]))
    texts, lengths = membership_texts(small_splits, tok, "forget")
    plain = text_token_scores(model, tok, texts, lengths)
    api = text_token_scores(wrapper, tok, texts, lengths)
    n_qa = len(small_splits["forget"])
    for i in range(len(texts)):
        same = torch.equal(plain["log_prob"][i], api["log_prob"][i])
        assert same == (i >= n_qa)  # bios (no prompt) are untouched, QA texts have corrupted questions
    # the answers the API gives are worse than the weights'
    forget = small_splits["forget"]
    em = {
        name: score_answers(m, tok, forget["question"], forget["answer"])["exact_match"].mean().item()
        for name, m in (("weights", model), ("api", wrapper))
    }
    assert em["weights"] > 0.9 and em["api"] < em["weights"] - 0.3, em


def test_eco_demo_row_reports_weights_and_api_views(
    memorised_model_dir, gold_model_dir, small_splits, tmp_path
):
    """The demo's ECO row: the weights (the full model's, unchanged) under the standard keys, the guarded API
    under ``*_api``; the relearning attack fine-tunes the weights."""
    from hf_unlearn.demo.methods import eco as eco_demo

    config = EvalConfig(relearn_steps=2, quant_bits=[])
    gold, tok = (
        AutoModelForCausalLM.from_pretrained(gold_model_dir),
        AutoTokenizer.from_pretrained(gold_model_dir),
    )
    _, reference = evaluate_model(gold, tok, small_splits, None, config, progress=False)
    full = AutoModelForCausalLM.from_pretrained(memorised_model_dir)
    full_row, _ = evaluate_model(full, tok, small_splits, reference, config, progress=False)
    wrapper, extra = eco_demo(memorised_model_dir, small_splits, tmp_path / "guard", seed=0)
    row, _ = evaluate_model(wrapper, tok, small_splits, reference, config, progress=False)
    for key in ("forget_em", "retain_em", "mia_auc", "forget_quality", "model_utility", "relearn_recovery",
                "mapping_recovery_prob"):  # fmt: skip
        assert row[key] == pytest.approx(full_row[key]), key  # ECO leaves the weights alone
    # the retrained model's numbers under the same attacks sit beside each model's own
    assert row["details"]["mapping"]["retrained_prob_recovery"] == reference.mapping["prob_recovery"]
    assert row["details"]["relearn"]["retrained_recovery"] == reference.relearn["recovery"]
    assert abs(row["privleak"] - full_row["privleak"]) <= 2
    for key in ("forget_em", "privleak", "mia_auc", "forget_quality", "model_utility", "retain_em"):
        assert f"{key}_api" in row, key
    assert row["forget_em_api"] < row["forget_em"] - 0.3  # the guard blocks the forget answers
    assert row["retain_em_api"] > row["retain_em"] - 0.2  # and lets retain questions through
    assert not any(
        k.startswith(("relearn", "mapping", "quant")) and k.endswith("_api") for k in row
    )  # weights
    names = [n for n, _ in result_rows({"methods": {"eco": {**row, **extra}}})]
    assert names == ["eco (weights)", "eco (API)"]
