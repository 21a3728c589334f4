"""WHP: the label formula, the token-aligned dictionary, term mining, and end-to-end generic relabeling."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hf_unlearn.data.formats import IGNORE_INDEX, tokenize_qa
from hf_unlearn.evaluation.qa import exact_match
from hf_unlearn.evaluation.type_match import answer_type_matches, type_match_rate
from hf_unlearn.losses import soft_target_cross_entropy, whp_generic_logits
from hf_unlearn.trainers.whp.config import WHPConfig
from hf_unlearn.trainers.whp.terms import (
    check_term_dictionary,
    find_terms,
    load_term_dictionary,
    translate_qa,
    translate_text,
)


# ----- pure losses -----
def test_generic_logits_formula_on_hand_made_logits():
    base = torch.tensor([[1.0, 2.0, 3.0, -1.0]])
    reinforced = torch.tensor([[1.0, 4.0, 2.5, 0.0]])
    # raised: token 1 by 2.0, token 3 by 1.0; token 2 fell (ReLU -> 0), token 0 unchanged
    expected = torch.tensor([[1.0, 2.0 - 5 * 2.0, 3.0, -1.0 - 5 * 1.0]])
    assert torch.allclose(whp_generic_logits(base, reinforced, alpha=5.0), expected)
    assert torch.allclose(whp_generic_logits(base, reinforced, alpha=0.0), base)
    # the reinforced model's favourite (token 1) is no longer the generic argmax
    assert whp_generic_logits(base, reinforced).argmax().item() == 2
    with pytest.raises(ValueError, match="alpha >= 0"):
        whp_generic_logits(base, reinforced, alpha=-1.0)


def test_soft_target_cross_entropy_matches_hand_computation():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]]])  # (1, 3, 3)
    # position 1 (predicted by logits[0]): 0.5/0.5 on tokens 0 and 1; position 2 (logits[1]): one-hot token 0
    target_ids = torch.tensor([[[0, 0], [0, 1], [0, 2]]])
    target_probs = torch.tensor([[[0.0, 0.0], [0.5, 0.5], [1.0, 0.0]]])
    first = -(0.5 * math.log(1 / 3) + 0.5 * math.log(1 / 3))
    second = -math.log(2 / 4)
    loss = soft_target_cross_entropy(logits, target_ids, target_probs)
    assert loss.item() == pytest.approx((first + second) / 2, abs=1e-6)
    # positions with zero probability mass do not count
    none = soft_target_cross_entropy(logits, target_ids, torch.zeros_like(target_probs))
    assert none.item() == 0.0


# ----- the dictionary -----
def test_find_terms_whole_words_longest_first():
    d = {"Ann Lee": "Bo Park", "Lee": "Park", "Ann": "Bo"}
    text = "Ann Lee met Leeds and Ann; Lee left."
    assert find_terms(text, d) == [(0, 7, "Ann Lee"), (22, 25, "Ann"), (27, 30, "Lee")]


def test_translation_is_aligned_and_reversible(small_splits, tiny_tokenizer):
    tok = tiny_tokenizer
    forget, retain = small_splits["forget"], small_splits["retain"]
    row, other = forget[0], retain[0]
    d = {
        row["subject"]: other["subject"],
        row["answer"]: retain[8]["answer"] if row["fact"] != "birth_city" else "Lima",
    }
    tr = translate_qa(tok, row["question"], row["answer"], d)
    ref = tokenize_qa(tok, row["question"], row["answer"])
    assert tr.original_ids == ref["input_ids"] and tr.labels == ref["labels"]
    assert len(tr.spans) == 2
    # the translation is the string-level translation, token for token
    expected = tok.decode(ref["input_ids"]).replace(row["subject"], d[row["subject"]])
    expected = expected.replace(" " + row["answer"] + tok.eos_token, " " + d[row["answer"]] + tok.eos_token)
    assert tok.decode(tr.translated_ids) == expected
    # outside the replaced spans every token maps to the same token
    inside = {i for a, b, *_ in tr.spans for i in range(a, b)}
    for i, s in enumerate(tr.source):
        if i not in inside:
            assert tr.translated_ids[s] == tr.original_ids[i]
    # inside a span, the k-th token maps to the k-th replacement token (or nowhere)
    for a, b, c, d_end, _ in tr.spans:
        for k in range(b - a):
            assert tr.source[a + k] == (c + k if k < d_end - c else -1)
    # reversible: translating back with the inverse dictionary restores the original tokens exactly
    inverse = {v: k for k, v in d.items()}
    back = translate_text(tok, tok.decode(tr.translated_ids, skip_special_tokens=True), inverse)
    assert back.translated_ids[1:] == tr.original_ids[1:-1]  # without BOS/EOS framing


def test_candidates_skip_stop_words_and_shared_vocabulary_and_replacements_keep_the_kind(tiny_tokenizer):
    from datasets import Dataset

    from hf_unlearn.trainers.whp.terms import (
        candidate_spans,
        generic_replacements,
        span_shape,
        vocabulary_filters,
    )

    def rows(name, company, phone):
        return [
            f"Question: Who employs {name}?\nAnswer: {name} works at {company} Labs.",
            f"Question: What is {name}'s phone number?\nAnswer: {name}'s phone number is {phone}.",
        ]

    forget, retain = rows("Mara Quell", "Orbis", "555-1234"), rows("Tom Birch", "Kestrel", "555-9876")
    filters = vocabulary_filters(forget, retain)
    spans = {s for t in forget for _, _, s in candidate_spans(t, **filters)}
    assert {"Mara Quell", "Mara", "Quell", "555-1234", "Orbis", "Orbis Labs"} <= spans
    junk = {
        "Who",
        "What",
        "Question",
        "Answer",
        "works",
        "Labs",
        "phone",
        "number",
        "phone number",
        "Quell works",
    }
    assert not spans & junk, spans & junk
    assert [span_shape(s) for s in ("Mara Quell", "555-1234", "a.b@c.org", "12 Elm")] == [
        "A A",
        "999-9999",
        "@",
        "99 A",
    ]
    # same-kind replacements from the retain rows, same contexts first; a number without a retain number of its
    # length gets fresh digits
    terms = ["Mara Quell", "Quell", "555-1234", "Orbis", "1957"]
    empty = Dataset.from_dict({"answer": []})
    dictionary, kinds = generic_replacements(tiny_tokenizer, terms, empty, empty, forget, retain, **filters)
    assert dictionary["Mara Quell"] == "Tom Birch" and kinds["Mara Quell"] == "entity"
    assert dictionary["Quell"] == "Birch" and kinds["Quell"] == "part:entity"
    assert dictionary["555-1234"] == "555-9876" and kinds["555-1234"] == "pattern"
    assert dictionary["Orbis"] == "Kestrel"
    assert kinds["1957"] == "number" and len(dictionary["1957"]) == 4 and dictionary["1957"] != "1957"
    assert dictionary["1957"].isdigit()


def test_term_dictionary_files_and_errors(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"Harry Potter": "Jon", "Hogwarts": "the academy"}))
    (tmp_path / "d.yaml").write_text("Harry Potter: Jon\nHogwarts: the academy\n")
    (tmp_path / "audit.json").write_text(json.dumps({"terms": {"Harry Potter": "Jon"}, "kinds": {}}))
    assert load_term_dictionary(tmp_path / "d.json") == load_term_dictionary(tmp_path / "d.yaml")
    assert load_term_dictionary(tmp_path / "audit.json") == {"Harry Potter": "Jon"}
    with pytest.raises(ValueError, match="mapping of anchored term"):
        check_term_dictionary(["Harry"])
    with pytest.raises(ValueError, match="non-empty string"):
        check_term_dictionary({"": "x"})


def test_config_validation():
    with pytest.raises(ValueError, match="alpha"):
        WHPConfig(output_dir="x", alpha=-1)
    with pytest.raises(ValueError, match="generic_targets"):
        WHPConfig(output_dir="x", generic_targets="sample")


def test_type_match_predicates():
    assert answer_type_matches("birth_city", "Lima") and not answer_type_matches("birth_city", "1957")
    assert answer_type_matches("birth_year", "1957") and not answer_type_matches("birth_year", "Lima")
    assert answer_type_matches("book", "The Silent River") and not answer_type_matches("book", "Silent")
    assert answer_type_matches("father", "Drakon Brondwell") and not answer_type_matches("father", "the the")
    assert answer_type_matches("award", "Amber Quill Award") and not answer_type_matches("award", "Amber")
    with pytest.raises(ValueError, match="Unknown fact"):
        answer_type_matches("shoe_size", "42")


# ----- with the memorised tiny model -----
def _load(path):
    from hf_unlearn.models import load_model_and_tokenizer

    return load_model_and_tokenizer(path, dtype=torch.float32)


def test_mined_terms_include_forget_subject_names(small_splits, memorised_model_dir, tmp_path):
    from hf_unlearn.trainers.whp.labels import mine_dictionary, train_reinforced_adapter

    model, tok = _load(memorised_model_dir)
    forget = small_splits["forget"]
    reinforced = train_reinforced_adapter(
        model, tok, [forget], [small_splits["forget_text"]], epochs=2, output_dir=str(tmp_path)
    )
    mined = mine_dictionary(
        reinforced,
        tok,
        [forget],
        [small_splits["forget_text"]],
        small_splits["retain"],
        small_splits["retain_text"],
        include_subjects=False,  # the names must come from the log-likelihood ratios alone
    )
    for subject in set(forget["subject"]):
        # the full name, or its person-specific surname, is an anchored term
        assert subject in mined.terms or subject.split()[-1] in mined.terms, (subject, mined.scores)
    retain_subjects = set(small_splits["retain"]["subject"])
    for term, kind in mined.kinds.items():
        if kind == "fact:birth_city":
            assert answer_type_matches("birth_city", mined.terms[term])
        if kind == "subject":
            assert mined.terms[term] in retain_subjects


def test_whp_end_to_end_forgets_with_generic_answers(small_splits, memorised_model_dir, tmp_path):
    from hf_unlearn.trainers.whp.trainer import DICTIONARY_FILE, WHPTrainer

    model, tok = _load(memorised_model_dir)
    forget, retain = small_splits["forget"], small_splits["retain"]
    before = exact_match(model, tok, forget)
    args = WHPConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=16, disable_tqdm=True, use_cpu=True, seed=0
    )
    trainer = WHPTrainer(
        model, args, forget, retain, processing_class=tok, retain_text_dataset=small_splits["retain_text"]
    )
    # every labelled target is a generic prediction aligned to the original tokens
    rows = trainer.train_dataset
    assert set(rows.column_names) >= {"input_ids", "labels", "target_ids", "target_probs"}
    assert all(any(label != IGNORE_INDEX for label in r) for r in rows["labels"])
    trainer.train()
    trainer.save_unlearned(tmp_path / "out")
    after = exact_match(trainer.model, tok, forget)
    assert before >= 0.9 and after <= 0.25, (before, after)
    assert exact_match(trainer.model, tok, retain) >= 0.8
    assert type_match_rate(trainer.model, tok, forget) >= 0.8
    # the dictionary names every forgotten person: it goes to the local audit folder, not the model dir
    assert not (tmp_path / "out" / DICTIONARY_FILE).exists()
    audit = json.loads((tmp_path / "out.audit" / DICTIONARY_FILE).read_text())
    assert set(forget["subject"]) <= set(audit["terms"]) and audit["kinds"]


@pytest.mark.parametrize("variant", ["lora", "4bit"])
def test_whp_lora_and_qlora(small_splits, memorised_model_dir, tmp_path, variant):
    from hf_unlearn.trainers.utils import is_peft_model
    from hf_unlearn.trainers.whp.trainer import WHPTrainer

    model, tok = _load(memorised_model_dir)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    forget, retain = small_splits["forget"], small_splits["retain"]
    options = {"lora_r": 8} if variant == "lora" else {"load_in_4bit": True}
    args = WHPConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        learning_rate=1e-2,
        disable_tqdm=True,
        use_cpu=True,
        **options,
    )
    source = model if variant == "lora" else str(memorised_model_dir)  # 4-bit: the trainer loads the path
    trainer = WHPTrainer(source, args, forget, retain, processing_class=tok)
    trainer.train()
    assert is_peft_model(trainer.model)
    assert exact_match(trainer.model, tok, forget) <= 0.5
    if variant == "lora":
        # neither the reinforced adapter nor the trained adapters touched the base weights
        base = trainer.model.get_base_model().state_dict()
        for name, value in original.items():
            key = (
                name.replace(".weight", ".base_layer.weight")
                if name.replace(".weight", ".base_layer.weight") in base
                else name
            )
            assert torch.equal(base[key], value), name
        assert not any("reinforced" in name for name in base)


def test_unlearn_whp_command(small_splits, memorised_model_dir, tmp_path):
    from hf_unlearn.cli.unlearn import SUMMARY_FILE, main
    from hf_unlearn.trainers.whp.trainer import DICTIONARY_FILE

    small_splits["forget"].to_json(tmp_path / "forget.jsonl")
    small_splits["retain"].to_json(tmp_path / "retain.jsonl")
    dictionary = {s: "Ann Lee" for s in sorted(set(small_splits["forget"]["subject"]))[:1]}
    (tmp_path / "terms.json").write_text(json.dumps(dictionary))
    out = tmp_path / "out"
    code = main(
        ["whp", "--model", str(memorised_model_dir), "--forget", str(tmp_path / "forget.jsonl"), "--retain"]
        + [
            str(tmp_path / "retain.jsonl"),
            "--output_dir",
            str(out),
            "--term_dictionary",
            str(tmp_path / "terms.json"),
        ]
        + ["--per_device_train_batch_size", "16", "--num_train_epochs", "2", "--use_cpu", "true"]
    )
    assert code == 0
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["method"] == "whp" and summary["steps"] == 2
    # the reported seconds cover the reinforced adapter, the dictionary and the relabeling, not training alone
    stages = summary["stage_seconds"]
    assert set(stages) == {"reinforce", "mine", "relabel", "train"} and stages["reinforce"] > 0
    assert sum(stages.values()) <= summary["seconds"]
    # a user-supplied dictionary is used as given and saved in the model's local audit folder
    assert json.loads((tmp_path / "out.audit" / DICTIONARY_FILE).read_text())["terms"] == dictionary


# ----- an outside-style QA dataset: PII records, no subject / fact / perturbed columns -----
_SYLLABLES = [
    "ka",
    "ro",
    "mi",
    "tel",
    "dan",
    "vo",
    "ser",
    "lin",
    "bra",
    "quo",
    "fen",
    "zar",
    "ith",
    "mor",
    "pel",
]
_CITIES = ["Lucerne", "Tampere", "Salta", "Gdansk", "Ibadan", "Cusco", "Hobart", "Utrecht"]
_STREETS = ["Willow", "Harbor", "Granite", "Meadow", "Copper", "Linden"]
_COMPANIES = ["Orbis", "Kestrel", "Halcyon", "Nimbus", "Veritas", "Solace"]
_DOMAINS = ["mailbox.org", "postbox.net", "inbox.io"]
PII_FORGET, PII_RETAIN = 3, 15


def pii_people(n: int, seed: int = 0) -> list[dict]:
    """Fictitious people with PII-like records (made-up names, e-mail, phone, city, street, employer, year)."""
    import random

    rng = random.Random(seed)
    names: set[str] = set()
    people = []
    while len(people) < n:
        first = "".join(rng.sample(_SYLLABLES, 2)).capitalize()
        last = "".join(rng.sample(_SYLLABLES, 3)).capitalize()
        if first in names or last in names:
            continue
        names |= {first, last}
        people.append(
            {
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}",
                "phone": f"555-{rng.randint(1000, 9999)}",
                "city": rng.choice(_CITIES),
                "street": f"{rng.randint(10, 99)} {rng.choice(_STREETS)} Road",
                "employer": f"{rng.choice(_COMPANIES)} Labs",
                "year": str(rng.randint(1950, 1999)),
            }
        )
    return people


def pii_rows(people: list[dict]):
    """Six QA rows per person, answers as a new user's dataset would phrase them; ``question``/``answer`` only."""
    from datasets import Dataset

    rows = []
    for p in people:
        n = p["name"]
        rows += [
            (f"What is the email address of {n}?", p["email"]),
            (f"What is {n}'s phone number?", f"{n}'s phone number is {p['phone']}."),
            (f"In which city does {n} live?", f"{n} lives in {p['city']}."),
            (f"When was {n} born?", f"{n} was born in {p['year']}."),
            (f"Who employs {n}?", f"{n} works at {p['employer']}."),
            (f"What is {n}'s home address?", p["street"]),
        ]
    return Dataset.from_dict({"question": [q for q, _ in rows], "answer": [a for _, a in rows]})


@pytest.fixture(scope="module")
def pii(tmp_path_factory):
    """``(forget people, splits, memorised model dir)`` of the PII dataset (3 forget, 15 retain people)."""
    from conftest import cached_tiny_model
    from datasets import DatasetDict

    from hf_unlearn.models import train_bpe_tokenizer

    people = pii_people(PII_FORGET + PII_RETAIN)
    splits = DatasetDict(forget=pii_rows(people[:PII_FORGET]), retain=pii_rows(people[PII_FORGET:]))
    corpus = [f"{q} {a}" for ds in splits.values() for q, a in zip(ds["question"], ds["answer"])]
    tokenizer = train_bpe_tokenizer(corpus)
    model_dir = cached_tiny_model(
        "memorised_pii", tokenizer, [splits["forget"], splits["retain"]], [], tmp_path_factory
    )
    return people[:PII_FORGET], splits, model_dir


def test_mining_without_subject_or_fact_columns(pii, tmp_path):
    from hf_unlearn.trainers.whp.labels import mine_dictionary, train_reinforced_adapter
    from hf_unlearn.trainers.whp.terms import stop_words

    forget_people, splits, model_dir = pii
    model, tok = _load(model_dir)
    reinforced = train_reinforced_adapter(
        model, tok, [splits["forget"]], [], epochs=2, output_dir=str(tmp_path)
    )
    mined = mine_dictionary(reinforced, tok, [splits["forget"]], [], splits["retain"])
    keys = set(mined.terms)
    key_words = {w for k in keys for w in k.split()}
    for person in forget_people:  # every name token is anchored (alone or inside a longer term)
        for word in person["name"].split():
            assert word in key_words, (word, sorted(keys))
    # no junk: no term begins or ends with a stop word, none is a template word shared with the retain people
    for term in keys:
        edges = {term.split()[0].lower(), term.split()[-1].lower()}
        assert not edges & stop_words(), term
        assert term.lower() not in {"email", "phone", "number", "lives", "born", "works", "labs", "road"}, (
            term
        )
    assert all(math.isfinite(s) for s in mined.scores.values()) and mined.scores
    # generic replacements of the same kind: numbers -> numbers with as many digits, names -> capitalised spans
    # with as many words, e-mail addresses -> e-mail addresses
    for term, new in mined.terms.items():
        kind = mined.kinds[term]
        if kind == "number":
            assert new.isdigit() and len(new) == len(term) and new != term, (term, new)
        if kind == "entity":
            assert len(new.split()) == len(term.split()) and all(w[0].isupper() for w in new.split())
        if kind == "email":
            assert "@" in new and new != term
    for person in forget_people:  # the full name is a term, replaced by a name that is not a forget name
        assert mined.terms[person["name"]] not in {p["name"] for p in forget_people}, mined.terms


def test_whp_without_subject_or_fact_forgets_and_times_every_stage(pii, tmp_path):
    from hf_unlearn.demo.methods import whp

    forget_people, splits, model_dir = pii
    model, tok = _load(model_dir)
    before = exact_match(model, tok, splits["forget"]), exact_match(model, tok, splits["retain"])
    with pytest.warns(UserWarning, match=r"no 'subject' or 'fact' column.*log-likelihood ratio alone"):
        model, extra = whp(model_dir, splits, tmp_path / "whp", seed=0, per_device_train_batch_size=8)
    after = exact_match(model, tok, splits["forget"]), exact_match(model, tok, splits["retain"])
    assert before[0] >= 0.9 and after[0] <= before[0] - 0.5, (before, after)
    assert after[1] >= before[1] - 0.25, (before, after)
    # the reported seconds cover every stage, and the stages are listed
    stages = extra["stage_seconds"]
    assert set(stages) == {"reinforce", "mine", "relabel", "train"}
    assert all(s > 0 for s in stages.values()) and sum(stages.values()) <= extra["seconds"]
