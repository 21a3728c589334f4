"""Nothing forgotten leaves the machine: the audit folder and its keyed scan record, push's refusals, DP noise that
cannot be regenerated, and the group-privacy bounds on the DP2 card.

The release tests build every demo method's output small, as the trainers write it (GA, NPO, SimNPO, WHP, DP2
model dirs and an ECO guard), and stage each with ``hf-unlearn push --dry_run``.
"""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
import torch
from datasets import concatenate_datasets

from hf_unlearn.audit import (
    SCAN_RECORD_FILE,
    audit_dir_for,
    keyed_digest,
    salt_of,
    scan_grams,
    scan_text,
    words,
    write_scan_record,
)
from hf_unlearn.cli.main import main as cli_main
from hf_unlearn.hub.card import CARD_FILE, write_model_card
from hf_unlearn.hub.release import push
from hf_unlearn.models import build_tiny_llama, load_model_and_tokenizer
from hf_unlearn.trainers.dp2.config import DP2Config
from hf_unlearn.trainers.dp2.privacy import dp_generators, group_privacy, request_bounds
from hf_unlearn.trainers.dp2.trainer import (
    DELETION_FILE,
    DP2Trainer,
    dp_step,
    make_private,
    privacy_units,
    request_fingerprint,
    verify_request,
)

QUIET = {"save_strategy": "no", "disable_tqdm": True, "logging_steps": 1000, "report_to": "none"}
# Published files that legitimately hold names as pieces: weights and tokenizer vocabularies.
NOT_TEXT = (".safetensors", ".bin", ".pt")
VOCABULARY = ("tokenizer.json",)


def name_words(splits) -> set[str]:
    """Every forgotten subject's full name and each part of it, casefolded."""
    subjects = set(splits["forget"]["subject"])
    return {s.casefold() for s in subjects} | {w for s in subjects for w in words(s) if len(w) >= 4}


def name_words_of(rows) -> set[str]:
    return {w for s in set(rows["subject"]) for w in words(s)}


def vocabulary_words(tokenizer_file) -> set[str]:
    """The words that are whole entries of a tokenizer vocabulary (decoded, casefolded)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    return {w for i in range(tokenizer.get_vocab_size()) for w in words(tokenizer.decode([i]))}


def test_the_demo_tokenizer_saw_no_forgotten_or_held_out_name(small_splits, tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    vocabulary = vocabulary_words(tmp_path / "tokenizer.json")
    retained = name_words_of(small_splits["retain"])
    for split in ("forget", "holdout"):  # the same footing for the membership attack: neither is a token
        unique = {w for w in name_words_of(small_splits[split]) - retained if len(w) >= 4}
        assert unique and vocabulary & unique == set(), split
    assert len(vocabulary & retained) >= len(retained) // 2  # the tokenizer did learn the retained names


def names_in(text: str, names: set[str]) -> list[str]:
    text = text.casefold()
    return sorted(n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text))


def staged_text_files(staging):
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        if path.suffix not in NOT_TEXT and path.name not in VOCABULARY:
            yield path


# -- the scan record ---------------------------------------------------------------------------------------


def test_scan_record_is_keyed_finds_names_in_any_form_and_spares_retained_text(small_splits, tmp_path):
    forget = [small_splits["forget"], small_splits["forget_text"]]
    retain = [small_splits["retain"], small_splits["retain_text"]]
    record = write_scan_record(tmp_path, forget, retain)
    saved = (tmp_path / SCAN_RECORD_FILE).read_text()
    assert names_in(saved, name_words(small_splits)) == []  # hashes only, no plaintext
    salt, hashes = salt_of(tmp_path, create=False), set(record["hashes"])
    subject = small_splits["forget"]["subject"][0]
    assert keyed_digest(salt, " ".join(words(subject))) in hashes
    surname = subject.split()[-1]
    for leak in (f"About {subject}.", f"x\n{subject.upper()}\n", f"id_{subject.replace(' ', '_')}"):
        assert scan_text(leak, salt, record["lengths"], hashes) == [2 if leak.startswith("x") else 1], leak
    # a name written with JSON's \u escapes is scanned as the name it encodes
    accented = write_scan_record(tmp_path / "accented", [[{"subject": "Zoë Brønd"}]])
    escaped = json.dumps({"who": "Zoë Brønd"})
    assert "\\u00eb" in escaped
    assert scan_text(
        escaped, salt_of(tmp_path / "accented"), accented["lengths"], set(accented["hashes"])
    ) == [1]
    assert scan_text(f"Dr. {surname} wrote", salt, record["lengths"], hashes) == [1]  # a name part alone
    # the retained people's own text, and a card's boilerplate, are not flagged
    retained = "\n".join(list(small_splits["retain"]["question"]) + list(small_splits["retain_text"]["text"]))
    assert scan_text(retained, salt, record["lengths"], hashes) == []
    # a string the forget set shares with the retained people identifies nobody: not recorded
    shared = set(small_splits["forget"]["answer"]) & set(small_splits["retain"]["answer"])
    grams = scan_grams(forget, retain)
    assert shared and not any(tuple(words(s)) in grams for s in shared)
    other = tmp_path / "other"
    write_scan_record(other, forget, retain)
    assert set(json.loads((other / SCAN_RECORD_FILE).read_text())["hashes"]).isdisjoint(
        hashes
    )  # per-run salt


def test_scan_record_on_tofu_finds_the_authors_and_spares_the_retained_authors(tofu_dir, tmp_path):
    from hf_unlearn.data.loading import load_rows

    forget, retain = load_rows(tofu_dir / "forget01.json"), load_rows(tofu_dir / "retain99.json")
    record = write_scan_record(tmp_path, [forget], [retain])
    salt, hashes = salt_of(tmp_path, create=False), set(record["hashes"])
    retained_text = " ".join(list(retain["question"]) + list(retain["answer"]))
    # TOFU's subjects are the authors and some places; a place a retained author shares is not recorded
    authors = [s for s in sorted(set(forget["subject"])) if s not in retained_text]
    assert len(authors) >= 2
    for author in authors:
        assert scan_text(f"Model card of\n{author}", salt, record["lengths"], hashes) == [2], author
    assert scan_text(forget[0]["answer"], salt, record["lengths"], hashes) == [1]
    sample = retain.select(range(0, len(retain), 10))
    retained = "\n".join(q + " " + a for q, a in zip(sample["question"], sample["answer"]))
    assert scan_text(retained, salt, record["lengths"], hashes) == []


# -- DP: randomness and group privacy ----------------------------------------------------------------------


def test_dp_generators_come_from_the_os_unless_the_research_flag_is_set():
    args = DP2Config(output_dir="unused", seed=7, **QUIET)
    assert args.reproducible_dp_noise is False  # never the default
    seeds = [g.initial_seed() for _ in range(2) for g in dp_generators(args)]
    assert len(set(seeds)) == 4 and not {7, 8} & set(seeds)
    research = DP2Config(output_dir="unused", seed=7, reproducible_dp_noise=True, **QUIET)
    assert [g.initial_seed() for g in dp_generators(research)] == [7, 8]


def _one_noisy_step(small_splits, tokenizer, **overrides) -> torch.Tensor:
    """The embedding matrix after one DP step (seed 0, Poisson-sampled batch, noise multiplier 1)."""
    units = privacy_units(tokenizer, [small_splits["forget"], small_splits["retain"]])
    args = DP2Config(output_dir="unused", seed=0, dp_noise_multiplier=1.0, dp_batch_size=5, target_delta=1e-3,
                     **QUIET, **overrides)  # fmt: skip
    torch.manual_seed(0)
    model = build_tiny_llama(tokenizer)
    dp = make_private(model, tokenizer, args, units)
    assert dp.optimizer.generator.initial_seed() != args.seed + 1 or args.reproducible_dp_noise
    batch = next(iter(dp.loader))
    dp_step(model, dp.optimizer, batch, dp.params, physical_rows=64)
    dp.hooks.cleanup()
    return model.model.embed_tokens.weight.detach().clone()


def test_two_dp_runs_with_the_same_seed_draw_different_noise_unless_reproducible(
    small_splits, tiny_tokenizer
):
    first, second = (_one_noisy_step(small_splits, tiny_tokenizer) for _ in range(2))
    assert not torch.equal(first, second)
    again = [_one_noisy_step(small_splits, tiny_tokenizer, reproducible_dp_noise=True) for _ in range(2)]
    assert torch.equal(again[0], again[1])


def test_group_privacy_is_the_standard_conversion():
    # (eps, delta)-DP -> (k eps, k e^{(k-1) eps} delta) for k units (Dwork & Roth 2014 §2.3; Vadhan 2017 Lemma 2.2)
    assert group_privacy(1.0, 1e-5, 1) == {"units": 1, "epsilon": 1.0, "delta": 1e-5}
    three = group_privacy(1.0, 1e-5, 3)
    assert three["epsilon"] == 3.0 and three["delta"] == pytest.approx(3 * math.e**2 * 1e-5, rel=1e-12)
    assert group_privacy(0.5, 1e-6, 4)["delta"] == pytest.approx(4 * math.exp(1.5) * 1e-6, rel=1e-12)
    assert group_privacy(8.0, 1e-5, 20)["delta"] == 1.0  # 20 e^152 1e-5 >> 1: nothing left, capped
    assert group_privacy(2.0, 0.0, 5) == {"units": 5, "epsilon": 10.0, "delta": 0.0}  # pure DP: k eps
    with pytest.raises(ValueError, match="k >= 1"):
        group_privacy(1.0, 1e-5, 0)
    privacy = {"epsilon": 1.0, "delta": 1e-5, "privacy_unit": "subject"}
    requests = [{"n_rows": 18, "n_subjects": 2}, {"n_rows": 9, "n_subjects": 1}]
    bounds = request_bounds(privacy, requests)
    assert [b["units"] for b in bounds["group_bounds"]] == [2, 1]
    assert bounds["group_bounds"][0]["delta"] == pytest.approx(2 * math.e * 1e-5)
    assert bounds["cumulative_bound"] == {"requests": 2, **group_privacy(1.0, 1e-5, 3)}
    records = request_bounds({**privacy, "privacy_unit": "record"}, requests, cumulative_units=20)
    assert [b["units"] for b in records["group_bounds"]] == [18, 9] and records["cumulative_bound"][
        "units"
    ] == 20


def test_dp2_card_states_per_subject_epsilon_group_bounds_and_no_seed(small_splits, tiny_tokenizer, tmp_path):
    qa = concatenate_datasets([small_splits["forget"], small_splits["retain"]])
    text = concatenate_datasets([small_splits["forget_text"], small_splits["retain_text"]])
    args = DP2Config(output_dir=str(tmp_path), seed=4321, dp_epochs=1, dp_batch_size=5, target_epsilon=2.0,
                     target_delta=1e-3, num_train_epochs=1, **QUIET)  # fmt: skip
    torch.manual_seed(0)
    trainer = DP2Trainer(build_tiny_llama(tiny_tokenizer), tiny_tokenizer, args, qa, text)
    privacy = trainer.train_dp_base()
    assert privacy["reproducible_dp_noise"] is False
    _, first = trainer.unlearn(small_splits["forget"], small_splits["forget_text"])
    person = small_splits["retain"]["subject"][0]
    _, second = trainer.unlearn(small_splits["retain"].filter(lambda r: r["subject"] == person))
    eps, delta = privacy["epsilon"], privacy["delta"]
    assert second["group_privacy"] == request_bounds(privacy, second["requests"], cumulative_units=3)
    card = (tmp_path / "request-2" / CARD_FILE).read_text()
    assert "model reveals about **one subject**" in card
    two, one, both = group_privacy(eps, delta, 2), group_privacy(eps, delta, 1), group_privacy(eps, delta, 3)
    assert f"| 1 | 2 | {two['epsilon']:.4g} | {two['delta']:.3g} |" in card
    assert f"| 2 | 1 | {one['epsilon']:.4g} | {one['delta']:.3g} |" in card
    assert f"| all 2 request(s) together | 3 | {both['epsilon']:.4g} | {both['delta']:.3g} |" in card
    assert "| `seed` |" not in card and "reproducible DP noise" not in card
    inputs = json.loads((tmp_path / "request-2" / "unlearning_card.json").read_text())
    assert "seed" not in inputs["hyperparameters"] and inputs["hyperparameters"]["num_train_epochs"] == 1
    # request fingerprints are keyed by the DP model's audit salt: verifiable with it, by nobody without it
    salt = salt_of(audit_dir_for(tmp_path / "dp_base"), create=False)
    request = concatenate_datasets([small_splits["forget"], small_splits["forget_text"]])
    assert verify_request(request, salt, first["requests"][0])
    assert not verify_request(request, b"\0" * 32, first["requests"][0])
    assert not verify_request(small_splits["forget"], salt, first["requests"][0])
    saved = (tmp_path / "request-1" / DELETION_FILE).read_text()
    assert names_in(saved + card, name_words(small_splits)) == []
    assert request_fingerprint(request, salt) == json.loads(saved)["requests"][0]


def test_a_reproducible_dp_noise_card_warns_and_only_then_shows_the_seed(small_splits, tmp_path):
    privacy = {"epsilon": 3.0, "delta": 1e-5, "privacy_unit": "subject"}
    config = {"seed": 99, "learning_rate": 0.01}
    card = str(write_model_card(tmp_path / "a", method="dp2", config=config, forget_dataset=small_splits["forget"],
                                privacy=privacy))  # fmt: skip
    assert "| `seed` |" not in card and "reproducible DP noise" not in card
    card = str(write_model_card(tmp_path / "b", method="dp2", config=config, forget_dataset=small_splits["forget"],
                                privacy={**privacy, "reproducible_dp_noise": True}))  # fmt: skip
    assert "| `seed` | `99` |" in card and "Warning: reproducible DP noise" in card and "voids" in card
    npo = str(
        write_model_card(tmp_path / "c", method="npo", config=config, forget_dataset=small_splits["forget"])
    )
    assert "| `seed` | `99` |" in npo  # no DP noise to regenerate: the seed stays for reproducibility


# -- releases of every demo method -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def method_dirs(small_splits, tiny_tokenizer, tmp_path_factory) -> dict:
    """Every demo method's output, written small by its own save path; ``eco`` is a guard directory.

    What is saved, not how well it forgets, is under test here, so the "full" model is an untrained tiny Llama
    with the demo's tokenizer (trained on the retain people's text only)."""
    from hf_unlearn.demo.methods import dp2_on_splits, unlearn_demo_row, whp
    from hf_unlearn.eco.fit import fit_classifier
    from hf_unlearn.eco.guard import ECOGuard, GuardConfig

    root = tmp_path_factory.mktemp("methods")
    full = root / "full"
    build_tiny_llama(tiny_tokenizer, seed=0).save_pretrained(full)
    tiny_tokenizer.save_pretrained(full)
    dirs = {}
    for name in ("ga", "npo", "simnpo"):
        unlearn_demo_row(name, full, small_splits, root / name, 0, max_steps=2)
        dirs[name] = root / name
    whp(full, small_splits, root / "whp", 0, max_steps=2, reinforce_epochs=1)
    dirs["whp"] = root / "whp"
    _, tokenizer = load_model_and_tokenizer(full)
    args = DP2Config(output_dir=str(root / "dp2"), seed=0, dp_epochs=1, dp_batch_size=5, target_delta=1e-3,
                     num_train_epochs=1, **QUIET)  # fmt: skip
    dp2_on_splits(build_tiny_llama(tokenizer), tokenizer, args, small_splits)
    dirs["dp2"] = root / "dp2" / "request-1"
    classifier = fit_classifier(tokenizer, small_splits["forget"], small_splits["retain"])
    subjects = sorted(set(small_splits["forget"]["subject"]))
    ECOGuard(classifier, tokenizer, GuardConfig(strength=2.0, subjects=subjects)).save_pretrained(
        root / "eco"
    )
    dirs["eco"] = root / "eco"
    return dirs


@pytest.mark.parametrize("method", ["ga", "npo", "simnpo", "whp", "dp2"])
def test_staged_release_of_every_demo_method_names_no_forgotten_person(
    method, method_dirs, small_splits, tmp_path
):
    names = name_words(small_splits)
    model_dir, guard_dir = method_dirs[method], method_dirs["eco"]
    assert names_in((guard_dir / "guard_config.json").read_text(), names)  # the guard names them by design
    staging = tmp_path / "staging"
    assert (
        cli_main(
            ["push", "--model", str(model_dir), "--repo_id", "t/x", "--dry_run", "--staging", str(staging)]
        )
        == 0
    )
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    assert "README.md" in files and not any(f.endswith((".audit", "salt", SCAN_RECORD_FILE)) for f in files)
    for path in staged_text_files(staging):
        assert names_in(path.read_text(errors="replace"), names) == [], path
    card = (staging / CARD_FILE).read_text()
    assert "HMAC-SHA256" in card and "Tokenizer vocabulary" not in card  # no forget-unique name is a token
    assert (
        vocabulary_words(staging / "tokenizer.json") & (names - name_words_of(small_splits["retain"]))
        == set()
    )
    if method == "whp":  # the anchored-term dictionary stays local
        assert (
            "whp_dictionary.json" not in files and (audit_dir_for(model_dir) / "whp_dictionary.json").exists()
        )
    # --guard: refused without --allow_guard_upload, and nothing is staged
    refused = tmp_path / "refused"
    with pytest.raises(SystemExit):
        cli_main(["push", "--model", str(model_dir), "--repo_id", "t/x", "--dry_run", "--staging", str(refused),
                  "--guard", str(guard_dir)])  # fmt: skip
    assert not refused.exists()
    with pytest.raises(ValueError, match="holds the forget subjects by design.*--allow_guard_upload"):
        push(model_dir, "t/x", dry_run=True, staging_dir=refused, guard_dir=guard_dir)
    # with it the guard goes in guard/ (for a private repo); everything else still names nobody
    allowed = push(model_dir, "t/x", dry_run=True, staging_dir=tmp_path / "with-guard", guard_dir=guard_dir,
                   allow_guard_upload=True)  # fmt: skip
    assert "guard/guard_config.json" in allowed["files"]
    for path in staged_text_files(tmp_path / "with-guard"):
        if path.relative_to(tmp_path / "with-guard").parts[0] != "guard":
            assert names_in(path.read_text(errors="replace"), names) == [], path


def test_push_refuses_a_planted_leak_and_leaves_no_staging_folder(
    method_dirs, small_splits, tmp_path, capsys
):
    model_dir = tmp_path / "ga"
    shutil.copytree(method_dirs["ga"], model_dir)
    shutil.copytree(audit_dir_for(method_dirs["ga"]), audit_dir_for(model_dir))
    subject = small_splits["forget"]["subject"][0]
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(
        json.dumps({**config, "_note": f"asked by {subject.lower()}"}, indent=1)
    )
    staging = tmp_path / "staging"
    with pytest.raises(SystemExit):
        cli_main(
            ["push", "--model", str(model_dir), "--repo_id", "t/x", "--dry_run", "--staging", str(staging)]
        )
    err = capsys.readouterr().err
    assert "config.json (line" in err and "nothing was uploaded" in err and subject.lower() not in err.lower()
    assert not staging.exists() and not (tmp_path / "staging.tmp").exists()
    # the audit folder moved elsewhere: found with --audit_dir, and without a scan record push refuses
    moved = tmp_path / "elsewhere"
    shutil.move(audit_dir_for(model_dir), moved)
    with pytest.raises(ValueError, match="No scan record"):
        push(model_dir, "t/x", dry_run=True, staging_dir=staging)
    with pytest.raises(ValueError, match="config.json"):
        push(model_dir, "t/x", dry_run=True, staging_dir=staging, audit_dir=moved)
    assert not staging.exists()
