"""The gold-free audit: Min-K %++ by hand, the utility-set and generation-length rules, the relearning control,
the quantization attack, the tokenizer-footing warning, and ``hf-unlearn eval`` on plain QA files without a
retrained model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.cli.main import main as cli_main
from hf_unlearn.evaluation.mia import attack_auc, attack_scores, min_k_plus_plus, next_token_moments
from hf_unlearn.evaluation.probes import mapping_attack, quantization_attack, quantized_copy, relearn_attack
from hf_unlearn.evaluation.qa import text_token_scores
from hf_unlearn.evaluation.suite import (
    GENERATION_CAP,
    GENERATION_MARGIN,
    EvalConfig,
    generation_length,
    membership_texts,
    tokenizer_footing,
    utility_sets,
)


def load(path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


# --- pure functions -----------------------------------------------------------------------------------------


def test_next_token_moments_of_a_toy_distribution():
    # p = (1/2, 1/4, 1/4): log p = (-ln 2, -2 ln 2, -2 ln 2)
    # mu = 1/2 (-ln 2) + 1/2 (-2 ln 2) = -1.5 ln 2; every |log p - mu| = 0.5 ln 2, so sigma = 0.5 ln 2
    log_probs = torch.tensor([[0.5, 0.25, 0.25]]).log()
    mu, sigma = next_token_moments(log_probs)
    ln2 = math.log(2)
    assert mu.item() == pytest.approx(-1.5 * ln2) and sigma.item() == pytest.approx(0.5 * ln2)
    # a point mass: mu = 0 (0 log 0 = 0), sigma = 0
    mu, sigma = next_token_moments(torch.tensor([[1.0, 0.0, 0.0]]).log())
    assert mu.item() == 0.0 and sigma.item() == 0.0


def test_min_k_plus_plus_standardises_then_takes_the_lowest_fraction():
    ln2 = math.log(2)
    mu, sd = -1.5 * ln2, 0.5 * ln2
    # the likely token (log 1/2) is +1 sd above the mean, the unlikely one (log 1/4) -1 sd
    logps = [math.log(0.5), math.log(0.25), math.log(0.25), math.log(0.5)]
    means, stds = [mu] * 4, [sd] * 4
    assert min_k_plus_plus(logps, means, stds, k=0.5) == pytest.approx(-1.0)  # the lowest 2: -1, -1
    assert min_k_plus_plus(logps, means, stds, k=1.0) == pytest.approx(0.0)  # mean of +1, -1, -1, +1
    assert min_k_plus_plus(logps, means, stds, k=0.1) == pytest.approx(-1.0)  # at least one token
    # sigma 0 (a point mass): the token counts as 0 instead of dividing by zero
    assert min_k_plus_plus([-0.3], [-0.1], [0.0], k=1.0) == 0.0
    with pytest.raises(ValueError, match="one mean and one std per token"):
        min_k_plus_plus(logps, means[:2], stds)
    scores = attack_scores([logps], ["x"], min_k=0.5, moments=[(means, stds)])
    assert scores["min_k_pp"] == pytest.approx([-1.0])
    assert "min_k_pp" not in attack_scores([logps], ["x"])  # without moments only the plain attacks


def qa(n, perturbed=True, answer="Paris"):
    rows = {"question": [f"Q{i}?" for i in range(n)], "answer": [answer] * n}
    if perturbed:
        rows["perturbed_answer"] = [["Rome", "Oslo"]] * n
    return Dataset.from_dict(rows)


def test_utility_sets_never_drop_a_set_silently():
    assert utility_sets({"retain": qa(2), "real_authors": qa(2)}) == (["retain", "real_authors"], None)
    sets, reason = utility_sets({"retain": qa(2, perturbed=False)})
    assert sets == [] and "retain rows have no perturbed_answer" in reason
    # TOFU with a retain set stripped of its perturbed answers: an error that says what, why and how to fix
    with pytest.raises(ValueError, match=r"\['retain'\] have no 'perturbed_answer'.*retain_perturbed"):
        utility_sets({"retain": qa(2, perturbed=False), "real_authors": qa(2), "world_facts": qa(2)})
    with pytest.raises(ValueError, match=r"\['world_facts'\]"):
        utility_sets({"retain": qa(2), "world_facts": qa(2, perturbed=False)})


def test_generation_length_follows_the_longest_reference_answer(tiny_tokenizer):
    tok = tiny_tokenizer
    long_answer = "born in Fez in 1950 and wrote novels about the sea for many long years"
    splits = {"forget": qa(2, answer=long_answer), "retain": qa(3)}
    n = len(tok(" " + long_answer, add_special_tokens=False)["input_ids"])
    assert generation_length(tok, splits, EvalConfig()) == n + 1 + GENERATION_MARGIN  # + EOS + margin
    assert generation_length(tok, splits, EvalConfig(max_new_tokens=5)) == 5  # an explicit value wins
    huge = {"forget": qa(1, answer=" ".join(["word"] * 400)), "retain": qa(1)}
    assert generation_length(tok, huge, EvalConfig()) == GENERATION_CAP


def test_tokenizer_footing_warns_when_holdout_names_are_not_tokens(small_splits, tiny_tokenizer):
    fair = {"forget": small_splits["forget"], "holdout": small_splits["holdout"]}
    assert tokenizer_footing(tiny_tokenizer, fair) is None  # the demo tokenizer saw neither (retain only)
    strangers = small_splits["holdout"].map(lambda r: {"subject": "Qzvxwk Jhplrtq"})
    warning = tokenizer_footing(tiny_tokenizer, {"forget": small_splits["forget"], "holdout": strangers})
    assert "holdout names take" in warning and "tokenization" in warning


def test_membership_prompt_lengths(small_splits, tiny_tokenizer):
    texts, lengths = membership_texts(small_splits, tiny_tokenizer, "forget")
    n_qa = len(small_splits["forget"])
    assert len(texts) == n_qa + len(small_splits["forget_text"])
    assert all(n > 1 for n in lengths[:n_qa]) and set(lengths[n_qa:]) == {0}  # raw texts have no prompt


# --- model-level: the fixtures --------------------------------------------------------------------------------


def test_gold_model_cannot_tell_forget_from_holdout_people(gold_model_dir, small_splits):
    """Membership footing: the retrained model saw neither the forget nor the holdout people, and the tokenizer
    saw both, so every attack's AUC is near chance. Margin 0.5 +- 0.15: 2 forget and 4 holdout people (18 vs 36
    texts) give one AUC a standard error of ~0.08; a tokenizer without the holdout people pushes it to ~0.8."""
    model, tok = load(gold_model_dir)
    scores = {}
    for prefix in ("forget", "holdout"):
        texts, lengths = membership_texts(small_splits, tok, prefix)
        tokens = text_token_scores(model, tok, texts, lengths)
        scores[prefix] = attack_scores(
            tokens["log_prob"], texts, 0.4, list(zip(tokens["mean"], tokens["std"]))
        )
    aucs = {a: attack_auc(scores["forget"][a], scores["holdout"][a]) for a in scores["forget"]}
    assert all(abs(auc - 0.5) <= 0.15 for auc in aucs.values()), aucs


def test_relearning_attack_reports_probability_and_rouge_with_a_control(memorised_model_dir, small_splits):
    model, tok = load(memorised_model_dir)
    forget = relearn_attack(model, tok, small_splits["forget"], steps=2, learning_rate=1e-3)
    control = relearn_attack(model, tok, small_splits["holdout"], steps=2, learning_rate=1e-3)
    for result in (forget, control):
        for prefix in ("", "prob_", "rouge_"):
            assert result[f"{prefix}recovery"] == pytest.approx(
                result[f"{prefix}after"] - result[f"{prefix}before"]
            )
    # the memorised model knows the forget people and not the holdout people
    assert forget["before"] > 0.8 > 0.3 > control["before"]
    assert forget["rouge_before"] > control["rouge_before"] + 0.3


def test_mapping_attack_raises_the_answer_probability_within_its_budget(gold_model_dir, small_splits):
    """The retrained model never saw the forget answers; a bounded perturbation of the questions' embeddings
    still pushes them up (that is the chance level a method is compared with), more with a larger budget, and
    not at all with a vanishing one. Margins: seed 0 gave +0.08 (budget 0.05) and +0.36 (0.2)."""
    model, tok = load(gold_model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget = small_splits["forget"]
    small = mapping_attack(model, tok, forget, budget=0.05, steps=20)
    large = mapping_attack(model, tok, forget, budget=0.2, steps=20)
    tiny = mapping_attack(model, tok, forget, budget=1e-6, steps=5)
    assert small["prob_before"] == pytest.approx(large["prob_before"])  # the unperturbed scores
    assert small["prob_recovery"] > 0.02 and large["prob_recovery"] > small["prob_recovery"] + 0.05
    assert (
        large["recovery"] == pytest.approx(large["em_after"] - large["em_before"]) and large["em_after"] > 0
    )
    assert abs(tiny["prob_recovery"]) < 1e-3 and tiny["recovery"] == 0
    assert large["radius"] == pytest.approx(4 * small["radius"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    with pytest.raises(ValueError, match="mapping attack needs"):
        mapping_attack(model, tok, forget, budget=0.0)


def test_quantization_attack_reloads_the_weights(memorised_model_dir, small_splits):
    model, tok = load(memorised_model_dir)
    result = quantization_attack(model, tok, small_splits["forget"], bits=(8, 4), max_new_tokens=16)
    assert set(result) == {f"quant{b}_forget_{m}" for b in (8, 4) for m in ("em", "rouge")}
    assert result["quant8_forget_em"] > 0.8  # 8-bit keeps the memorised answers (NOTES: EM preserved)
    assert all(0 <= v <= 1 for v in result.values())
    quantized = quantized_copy(model, 4)
    assert any("4bit" in type(m).__name__ for m in quantized.modules())  # really reloaded in 4 bits
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the evaluated model is untouched
    with pytest.raises(ValueError, match="8 or 4 bits"):
        quantized_copy(model, 3)


# --- hf-unlearn eval without a retrained model, on plain QA files -------------------------------------------


def test_gold_free_eval_on_plain_qa_files_uses_exactly_those(
    memorised_model_dir, small_splits, tmp_path, capsys
):
    plain = ["question", "answer", "subject"]
    files = {}
    for split in ("forget", "retain", "holdout"):
        files[split] = tmp_path / f"{split}.jsonl"
        small_splits[split].select_columns(plain).to_json(files[split])
    out = tmp_path / "audit"
    argv = ["eval", "--model", f"full={memorised_model_dir}", "--out", str(out), "--relearn_steps", "2"]
    argv += [arg for split, path in files.items() for arg in (f"--{split}", str(path))]
    assert cli_main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    # files given = files used: no bios from the synthetic default, and the missing splits said so
    assert results["data"]["splits"] == {s: len(small_splits[s]) for s in files}
    assert {"forget_text", "real_authors"} <= set(results["data"]["missing"])
    assert results["gold_free"] and results["forget_quality"] is None and results["privleak"] is None
    assert results["model_utility"] is None and results["model_utility_sets"] == []
    # the audit keys, all computed
    audit = [
        "mia_auc_min_k",
        "mia_auc_min_k_pp",
        "mia_auc_loss",
        "mia_auc_zlib",
        "forget_perturbed_question_rouge",
    ]
    audit += [f"relearn{c}_recovery{s}" for c in ("", "_control") for s in ("", "_prob", "_rouge")]
    audit += [f"quant{b}_forget_{m}" for b in (8, 4) for m in ("em", "rouge")]
    assert all(isinstance(results[k], float) for k in audit), {k: results.get(k) for k in audit}
    assert results["mia_auc_min_k"] > 0.9  # the memorised model: the forget people are members
    assert results["config"]["max_new_tokens"] is None and results["config"]["max_new_tokens_used"] < 32
    report = (out / "report.md").read_text()
    assert "## Gold-free audit" in report and "quant4_forget_em" in report
    assert "forget_quality: not computed — forget rows have no perturbed_answer" in report
    assert "Missing split forget_text" in report
    printed = capsys.readouterr().out
    assert (
        "WARNING: full: model_utility: not computed" in printed
        and "WARNING: split holdout_text missing" in printed
    )
    # the model card reads the top-level numbers of results.json: the audit keys flow through
    from hf_unlearn.hub.card import flat_metrics

    card_metrics = flat_metrics(out / "results.json")
    assert {
        "quant8_forget_em",
        "quant4_forget_em",
        "mia_auc_min_k_pp",
        "relearn_control_recovery",
        "mapping_recovery",
        "mapping_control_recovery_prob",
    } <= set(card_metrics)


def test_train_tokenizer_extra_files_put_holdout_names_on_the_same_footing(small_splits, tmp_path):
    """``train --tiny --tokenizer_extra_files holdout.jsonl``: the holdout people reach the BPE corpus (and only
    it), so the eval warning about holdout names tokenizing longer disappears."""
    from hf_unlearn.cli.train import TrainScriptArguments, load_training_data
    from hf_unlearn.models import train_bpe_tokenizer

    paths = {}
    for split in ("forget", "retain", "holdout"):
        paths[split] = str(tmp_path / f"{split}.jsonl")
        small_splits[split].to_json(paths[split])
    splits = {s: small_splits[s] for s in ("forget", "holdout")}
    trained = [paths["forget"], paths["retain"]]
    footing = {}
    for extra in ([], [paths["holdout"]]):
        script = TrainScriptArguments(tiny=True, qa_files=trained, tokenizer_extra_files=extra)
        qa_sets, text_sets, corpus = load_training_data(script, max_length=512)
        assert [len(ds) for ds in qa_sets] == [len(small_splits["forget"]), len(small_splits["retain"])]
        footing[bool(extra)] = tokenizer_footing(train_bpe_tokenizer(corpus, 2048), splits)
    assert "holdout names take" in footing[False] and footing[True] is None
