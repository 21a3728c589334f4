"""Model cards and ``hf-unlearn push``: fingerprints, rendering, offline validation, no forget text, staging.

No network here: the upload path runs against a fake ``HfApi`` that records its calls (a real upload cannot
be tested offline); the card metadata is validated offline (YAML + ``model-index`` round trip).
"""

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from transformers import TrainingArguments

from hf_unlearn.audit import audit_dir_for, forget_fingerprint, salt_of, verify_fingerprint
from hf_unlearn.cli.main import main as cli_main
from hf_unlearn.hub.card import (
    CARD_FILE,
    METHODS,
    card_hyperparameters,
    validate_card_offline,
    write_model_card,
)
from hf_unlearn.hub.release import push
from hf_unlearn.trainers import METHODS as TRAINER_METHODS
from hf_unlearn.trainers.base_config import REGULARIZERS

EVAL = {
    "forget_quality": 1.7e-21,  # p-values this small must survive the card (TOFU finetuned model)
    "model_utility": 0.5,
    "verbmem_forget": 0.125,
    "knowmem_forget": 0.375,
    "knowmem_retain": 0.75,
    "privleak": -12.5,
    "mia_auc": 0.625,
    "relearn_recovery": 0.0625,
}


@dataclass
class ToyUnlearnConfig(TrainingArguments):
    beta: float = field(default=0.1, metadata={"help": "NPO temperature."})
    retain_weight: float = field(default=1.0, metadata={"help": "Retain loss weight."})
    target_epsilon: float | None = field(default=None, metadata={"help": "DP epsilon."})
    anchor_terms: dict = field(default_factory=dict, metadata={"help": "WHP anchored terms."})


def forget_texts(splits) -> list[str]:
    """Every question, paraphrase, answer, subject and bio of the forget people."""
    qa, bios = splits["forget"], splits["forget_text"]
    return sorted(
        set(
            list(qa["question"])
            + list(qa["paraphrased_question"])
            + list(qa["answer"])
            + list(qa["subject"])
            + list(bios["text"])
        )
    )


def leaked(text: str, strings) -> list[str]:
    """Long strings anywhere, short ones (single words, years) as whole words."""
    return [
        s
        for s in strings
        if (s in text if len(s) >= 12 else re.search(rf"(?<!\w){re.escape(s)}(?!\w)", text))
    ]


@pytest.fixture()
def model_dir(tmp_path, tiny_tokenizer):
    from hf_unlearn.models import build_tiny_llama

    out = tmp_path / "npo-model"
    build_tiny_llama(tiny_tokenizer, hidden_size=16, intermediate_size=32).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    (out / "checkpoint-5").mkdir()
    (out / "checkpoint-5" / "optimizer.pt").write_bytes(b"state")
    (out / "training_args.bin").write_bytes(b"pickle")
    return out


def test_fingerprint_is_keyed_order_free_and_matches_hand_computed_hmac():
    rows = [{"question": "Q2", "answer": "A2"}, {"answer": "A1", "question": "Q1"}]
    canonical = b'{"answer":"A1","question":"Q1"}\n{"answer":"A2","question":"Q2"}'
    salt = bytes(range(32))
    expected = hmac.new(salt, canonical, hashlib.sha256).hexdigest()
    assert forget_fingerprint(rows, salt) == {"count": 2, "hmac_sha256": expected}
    assert forget_fingerprint(list(reversed(rows)), salt)["hmac_sha256"] == expected
    assert forget_fingerprint([rows[0], {"question": "Q1", "answer": "A1!"}], salt)["hmac_sha256"] != expected
    # an auditor with the salt verifies; without it (another key, or the plain SHA-256) nobody can test rows
    fingerprint = forget_fingerprint(rows, salt)
    assert verify_fingerprint(list(reversed(rows)), salt, fingerprint)
    assert not verify_fingerprint(rows[:1], salt, fingerprint)
    assert not verify_fingerprint(rows, bytes(32), fingerprint)
    assert hashlib.sha256(canonical).hexdigest() != expected


def test_fingerprint_of_a_dataset_equals_that_of_its_rows(small_splits):
    ds, salt = small_splits["forget"], b"k" * 32
    assert forget_fingerprint(ds, salt) == forget_fingerprint([dict(r) for r in ds], salt)
    assert forget_fingerprint(ds, salt)["count"] == len(ds)


def test_hyperparameters_keep_the_method_fields_first_and_drop_plumbing():
    args = ToyUnlearnConfig(output_dir="/secret/path", learning_rate=1e-4, logging_steps=7, report_to="none")
    hp = card_hyperparameters(args)
    assert list(hp)[:2] == ["beta", "retain_weight"]
    assert hp["learning_rate"] == 1e-4 and hp["num_train_epochs"] == 3.0
    for dropped in (
        "output_dir",
        "logging_steps",
        "report_to",
        "hub_token",
        "target_epsilon",
        "anchor_terms",
    ):
        assert dropped not in hp
    assert card_hyperparameters({"beta": 0.5, "run_name": "x", "data_path": "/d"}) == {"beta": 0.5}
    with pytest.raises(TypeError, match="got int"):
        card_hyperparameters(3)


@pytest.mark.parametrize("regularizer", REGULARIZERS[1:])
@pytest.mark.parametrize("method", sorted(TRAINER_METHODS))
def test_every_trainer_method_with_a_regularizer_has_a_card_entry(method, regularizer):
    # a trainer's card names it <method>_<regularizer> (UnlearningTrainer.card_method); an entry missing from
    # METHODS would print the raw key with no description (the demo's simnpo_gdr and whp_gdr cards did)
    title, description = METHODS[f"{method}_{regularizer}"]
    assert title.endswith(f"+{regularizer.upper()})")
    assert description.startswith(METHODS[method][1])
    term = {"gdr": "NLL on the retain set", "klr": "KL(reference || model) on the retain set"}[regularizer]
    assert description.endswith(f"combined with {term} to preserve utility.")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_card_for_each_method_renders_loads_back_and_has_no_forget_text(method, model_dir, small_splits):
    strings = forget_texts(small_splits)
    extra = {}
    if method == "dp2":
        extra["config"] = ToyUnlearnConfig(output_dir=str(model_dir), target_epsilon=8.0)
    if method == "whp":  # an anchored-term dictionary names forget people: must be redacted
        subject = small_splits["forget"][0]["subject"]
        extra["config"] = ToyUnlearnConfig(output_dir=str(model_dir), anchor_terms={subject: "a person"})
    card = write_model_card(
        model_dir,
        method=method,
        config=extra.get("config", ToyUnlearnConfig(output_dir=str(model_dir))),
        forget_dataset={"forget": small_splits["forget"], "forget_text": small_splits["forget_text"]},
        base_model="TinyOrg/tiny-llama",
        data_sources={"forget": "synthetic:forget", "retain": "synthetic:retain"},
        eval_results=EVAL,
        guard_metrics={"classifier_recall": 0.96, "classifier_fpr": 0.02} if method == "eco" else None,
        repo_id=f"me/{method}-tiny",
    )
    text = (model_dir / CARD_FILE).read_text()
    assert text == str(card)
    assert leaked(text, strings) == []
    assert leaked((model_dir / "unlearning_card.json").read_text(), strings) == []
    loaded = ModelCard.load(model_dir / CARD_FILE)
    assert loaded.data.base_model == "TinyOrg/tiny-llama"
    assert f"unlearning-{method}" in loaded.data.tags
    assert {r.metric_type: r.metric_value for r in loaded.data.eval_results} == EVAL
    validate_card_offline(model_dir / CARD_FILE)
    fp = forget_fingerprint(small_splits["forget"], salt_of(audit_dir_for(model_dir), create=False))
    assert f"| forget | {fp['count']} | `{fp['hmac_sha256']}` |" in text
    assert METHODS[method][0] in text and "## Limitations" in text
    assert ("## Differential privacy" in text) == (method == "dp2")
    assert ("## Inference-time guard (ECO)" in text) == (method == "eco")
    if method == "dp2":
        assert "- target_epsilon: `8.0`" in text
    if method == "whp":
        assert "`anchor_terms`" in text and "not published" in text


def test_forget_text_outside_the_hyperparameters_stops_the_card(model_dir, small_splits):
    subject = small_splits["forget"][0]["subject"]
    with pytest.raises(ValueError, match="Forget-set text would be published"):
        write_model_card(
            model_dir,
            method="npo",
            config={},
            forget_dataset=small_splits["forget"],
            eval_results={f"em_{subject}": 1.0},
        )
    assert not (model_dir / CARD_FILE).exists() and not (model_dir / "unlearning_card.json").exists()
    with pytest.raises(ValueError, match="forget_dataset is required"):
        write_model_card(model_dir, method="npo", config={}, forget_dataset=None)
    with pytest.raises(TypeError, match="must map split names to datasets"):
        write_model_card(model_dir, method="npo", config={}, forget_dataset={"question": "Q", "answer": "A"})


def test_a_dataset_dict_of_forget_splits_gets_one_fingerprint_per_split(tmp_path, small_splits):
    forget = type(small_splits)(
        {"forget": small_splits["forget"], "forget_text": small_splits["forget_text"]}
    )
    card = write_model_card(tmp_path, method="ga", config={}, forget_dataset=forget)
    fp = forget_fingerprint(small_splits["forget_text"], salt_of(audit_dir_for(tmp_path), create=False))
    assert f"| forget_text | 2 | `{fp['hmac_sha256']}` |" in str(card)


def test_dp_accounting_saved_beside_the_model_goes_into_the_card(tmp_path, small_splits):
    record = {"epsilon": 7.5, "delta": 1e-5, "privacy_unit": "subject", "n_units": 18, "history": [1, 2]}
    (tmp_path / "dp_privacy.json").write_text(json.dumps(record))
    card = str(write_model_card(tmp_path, method="dp2", config={}, forget_dataset=small_splits["forget"]))
    assert "- epsilon: `7.5`" in card and "- privacy_unit: `subject`" in card and "history" not in card


def test_adapter_card_names_peft_and_the_adapter_base(tmp_path, small_splits):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Org/base-1b"}))
    card = write_model_card(
        tmp_path, method="simnpo", config={"beta": 2.5}, forget_dataset=small_splits["forget"]
    )
    assert card.data.library_name == "peft" and card.data.base_model == "Org/base-1b"
    assert "AutoPeftModelForCausalLM" in str(card) and card.data.eval_results is None


def _release(model_dir, small_splits, tmp_path):
    write_model_card(model_dir, method="npo_gdr", config={"beta": 0.1}, forget_dataset=small_splits["forget"])
    eval_dir, guard_dir = tmp_path / "eval", tmp_path / "guard"
    eval_dir.mkdir()
    guard_dir.mkdir()
    # hf-unlearn eval's layout: the model's metrics at the top level, per-model rows and details below
    nested = {
        "models": {"npo_gdr": EVAL, "gold": {"forget_quality": 1.0}},
        "details": {"splits": {"em": 0.5}},
    }
    (eval_dir / "results.json").write_text(json.dumps({**EVAL, **nested, "forget_quality": None}))
    (eval_dir / "report.md").write_text("| metric | value |\n|---|---|\n| forget_quality | 0.25 |\n")
    (guard_dir / "guard_config.json").write_text(
        json.dumps({"sigma": 4.0, "metrics": {"classifier_recall": 0.9, "classifier_fpr": 0.05}})
    )
    return eval_dir, guard_dir


def test_dry_run_writes_the_exact_release_folder_and_uploads_nothing(model_dir, small_splits, tmp_path):
    eval_dir, guard_dir = _release(model_dir, small_splits, tmp_path)
    staging = tmp_path / "staging"
    code = cli_main(
        ["push", "--model", str(model_dir), "--repo_id", "me/npo-gdr-tiny", "--dry_run", "--staging", str(staging),
         "--eval", str(eval_dir), "--guard", str(guard_dir), "--allow_guard_upload"]
    )  # fmt: skip
    assert code == 0
    files = {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()}
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "eval/results.json", "eval/report.md", "guard/guard_config.json"} <= files  # fmt: skip
    assert not any(f.startswith("checkpoint-") or f == "training_args.bin" for f in files)
    card = ModelCard.load(staging / CARD_FILE)
    assert card.data.model_name == "npo-gdr-tiny"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        k: v for k, v in EVAL.items() if k != "forget_quality"
    }  # top-level numbers only: no None, no per-model or per-split details
    assert "| metrics.classifier_recall | 0.9 |" in str(card)
    validate_card_offline(staging / CARD_FILE)
    # No forget text anywhere: full questions and bios in every file (weights and vocabularies included),
    # and answers/subjects in every file but the weights and tokenizer vocabulary (names are tokens there).
    long_strings = forget_texts(small_splits)
    for path in staging.rglob("*"):
        if path.is_file():
            content = path.read_bytes().decode("utf-8", errors="replace")
            strings = (
                long_strings
                if path.suffix in (".md", ".json") and path.name != "tokenizer.json"
                else [s for s in long_strings if " " in s and len(s) > 30]
            )
            assert leaked(content, strings) == [], path


def test_push_uploads_the_staged_folder_through_hf_api(model_dir, small_splits, tmp_path):
    eval_dir, guard_dir = _release(model_dir, small_splits, tmp_path)

    class FakeApi:
        def __init__(self):
            self.calls = []

        def create_repo(self, **kwargs):
            self.calls.append(("create_repo", kwargs))

        def upload_folder(self, **kwargs):
            folder = Path(kwargs["folder_path"])
            files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            self.calls.append(("upload_folder", {**kwargs, "files": files}))
            return "https://huggingface.co/me/npo/commit/abc"

    api = FakeApi()
    result = push(
        model_dir,
        "me/npo",
        private=True,
        eval_dir=eval_dir,
        guard_dir=guard_dir,
        allow_guard_upload=True,
        api=api,
    )
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/npo", "repo_type": "model", "private": True, "exist_ok": True}
    upload = api.calls[1][1]
    assert upload["repo_id"] == "me/npo" and upload["files"] == result["files"]
    assert "README.md" in upload["files"] and "guard/guard_config.json" in upload["files"]
    assert not Path(upload["folder_path"]).exists()  # the temporary staging folder is cleaned up
    assert result["url"].endswith("/commit/abc")


def test_push_refuses_forget_text_in_eval_outputs_and_bad_inputs(model_dir, small_splits, tmp_path):
    eval_dir, _ = _release(model_dir, small_splits, tmp_path)
    row = small_splits["forget"][0]
    (eval_dir / "generations.jsonl").write_text(json.dumps({"q": row["question"], "a": "?"}) + "\n")
    forget_file = tmp_path / "forget.jsonl"
    small_splits["forget"].to_json(forget_file)

    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"HfApi.{name} must not be called")

    with pytest.raises(ValueError, match=r"eval/generations.jsonl \(line 1\).*nothing was uploaded"):
        push(model_dir, "me/npo", eval_dir=eval_dir, api=NoCalls())  # the keyed scan record, by default
    with pytest.raises(ValueError, match=r"eval/generations.jsonl.*nothing was uploaded"):
        push(model_dir, "me/npo", eval_dir=eval_dir, forget_data=[forget_file], api=NoCalls())
    with pytest.raises(ValueError, match="not a Hub repository id"):
        push(model_dir, "no-slash", dry_run=True, api=NoCalls())
    with pytest.raises(ValueError, match="neither config.json nor adapter_config.json"):
        push(tmp_path / "eval", "me/x", dry_run=True, api=NoCalls())
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="No scan record at .*bare.audit"):  # nothing to scan against
        push(tmp_path / "bare", "me/x", dry_run=True, staging_dir=tmp_path / "s2", api=NoCalls())
    with pytest.raises(ValueError, match="has no unlearning_card.json"):
        push(tmp_path / "bare", "me/x", dry_run=True, staging_dir=tmp_path / "s2", forget_data=[forget_file])
    assert not (tmp_path / "s2").exists()  # a refused push leaves no half-written staging folder
