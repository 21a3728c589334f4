"""The guard against rephrasing: canonical prompts, partial and fuzzy names, the response check, hostile bodies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_unlearn.data.formats import format_prompt
from hf_unlearn.eco.classifier import ClassifierConfig, PromptClassifier
from hf_unlearn.eco.guard import ECOGuard, GuardConfig
from hf_unlearn.eco.names import NameMatcher, candidates, canonical, max_edits, namesakes, surname_parts
from hf_unlearn.eco.response import fact_hashes, identified_subjects, identifying_facts, states_fact

FORGET = ["Fairkdas Brondwell", "Zeila Tonvik"]
RETAIN = [
    "Fairkdas Lomton",
    "Mira Tonvika",
]  # shares a first name with a forget person; a surname 1 edit away


def variants(name: str) -> dict[str, str]:
    """The rephrasing families of issue 19 that keep the name (and a few more), applied to a full name."""
    first, last = name.split()
    return {
        "original": name,
        "double_space": f"{first}  {last}",
        "zero_width": f"{first} {last[:3]}\u200b{last[3:]}",
        "soft_hyphen_and_bidi": f"{first} \u202a{last[:2]}\u00ad{last[2:]}",
        "upper_case": name.upper(),
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in name),
        "cyrillic_homoglyphs": name.replace("a", "\u0430").replace("o", "\u043e").replace("e", "\u0435"),
        "math_bold": "".join(chr(0x1D41A + ord(c) - 97) if c.islower() else c for c in name),
        "typo": f"{first} {last[:2]}{'x' if last[2] != 'x' else 'y'}{last[3:]}",
        "spaced_letters": " ".join(name.replace(" ", "")),
        "name_split": f"{first} {last[:4]} {last[4:]}",
        "surname_only": last,
        "tab_newline": f"{first}\t\n{last}",
    }


def test_canonical_by_hand():
    assert canonical("  Who is  FAIRKDAS\u200b Br\u043endwell?\x07\n") == "who is fairkdas brondwell?"
    assert canonical("\uff26\uff41\uff49\uff52") == "fair"  # fullwidth -> NFKC
    assert canonical("\U0001d41b\U0001d428\U0001d42b\U0001d427") == "born"  # mathematical bold
    assert canonical("Stra\u00dfe") == "strasse"  # case folding, not lower()
    assert canonical("caf\u00e9 1987") == "caf\u00e9 1987"  # ordinary accented letters and digits stay
    assert canonical("l1O0") == "l1o0"  # ASCII is never remapped


def test_max_edits_and_candidates():
    assert [max_edits("x" * n) for n in (4, 5, 8, 9, 12)] == [0, 1, 1, 2, 2]
    got = candidates(["who", "is", "b", "r", "o", "n", "d", "brond", "well"])
    assert {"who", "whois", "brond", "brondwell"} <= got  # words, joined pairs, the joined letter run
    assert "iswho" not in got and "bro" not in got


@pytest.mark.parametrize("family", list(variants(FORGET[0])))
def test_every_variant_family_matches_the_forget_subject(family):
    parts = NameMatcher.distinctive_parts(FORGET, RETAIN, ["Where was Fairkdas Lomton born?"])
    matcher = NameMatcher(FORGET, parts)
    text = f"Question: Where was {variants(FORGET[0])[family]} born?\nAnswer:"
    assert matcher.matched(text) == {"fairkdas brondwell"}


def test_shared_and_near_name_parts_do_not_flag_alone():
    parts = NameMatcher.distinctive_parts(FORGET, RETAIN, ["Where was Mira Tonvika born?"])
    # "fairkdas" is a retain person's first name, "tonvik" is one edit from a retain surname: neither matches alone
    assert parts == ["brondwell", "zeila"]
    matcher = NameMatcher(FORGET, parts)
    assert matcher.mentions(
        [
            "Where was Fairkdas born?",
            "Where was Fairkdas Lomton born?",
            "Mira Tonvika's book",
            "Tonvik's book",
        ]
    ) == [False, False, False, False]
    assert matcher.mentions(["Zeila's book", "Zeila Tonvik's book", "Zeila  Tonvik"]) == [True, True, True]
    exact = NameMatcher(FORGET, parts, fuzzy=False)  # exact whole words only
    assert exact.mentions(["Fairkdas Brondwell", "Fairkdas  Brondwell", "Brondwel", "Brondwell"]) == [
        True,
        True,  # canonical collapses whitespace before matching
        False,
        True,
    ]


def test_short_subjects_match_whole_words_only():
    matcher = NameMatcher(["Ann Lee"])
    assert matcher.mentions(["Who is Ann Lee?", "ANN  LEE wrote", "Anne Leek", "bannleek"]) == [
        True,
        True,
        False,
        False,
    ]


def test_fact_hashes_hold_no_text_and_match_by_hand():
    key = bytes(range(16))
    hashes = set(
        fact_hashes(
            key,
            [
                ("Fairkdas Brondwell", "Lisbon"),
                ("Fairkdas Brondwell", "The Silent River"),
                ("Zeila Tonvik", "She grew up in a small fishing village near the northern coast of Norway"),
            ],
        )
    )
    assert (
        all(isinstance(h, int) and 0 <= h < 2**64 for h in hashes) and len(hashes) == 2 + 11
    )  # 14 words: 11 4-grams
    assert states_fact(key, hashes, "Fairkdas Brondwell", "He was born in LISBON.")
    assert states_fact(key, hashes, "fairkdas  brondwell", "wrote the silent river")  # canonical subject
    assert not states_fact(key, hashes, "Fairkdas Brondwell", "The Silent Sea")  # a short answer counts whole
    assert not states_fact(key, hashes, "Zeila Tonvik", "Lisbon")  # another subject's fact
    assert not states_fact(bytes(16), hashes, "Fairkdas Brondwell", "Lisbon")  # another key
    long_answer = "in a small fishing village near the northern coast"  # 4-grams of the long answer
    assert states_fact(key, hashes, "Zeila Tonvik", long_answer)
    assert not states_fact(key, hashes, "Zeila Tonvik", "in a small fishing village")  # 2 of 3 needed 4-grams


# -- the classifier and the guard on the rephrasing families -------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(small_splits, tiny_tokenizer):
    """A classifier fitted as eco-fit fits it (subjects, distinctive parts) on the 20-person splits."""
    from hf_unlearn.eco.fit import fit_classifier

    forget, retain = small_splits["forget"], small_splits["retain"]
    entities = sorted(set(forget["subject"]))
    parts = NameMatcher.distinctive_parts(entities, retain["subject"], retain["question"])
    config = ClassifierConfig(entities=entities, entity_parts=parts)
    return fit_classifier(tiny_tokenizer, forget, retain, config)


def test_every_variant_family_classifies_like_the_original(fitted, small_splits, tiny_tokenizer):
    forget = small_splits["forget"]
    for question, subject in zip(forget["question"], forget["subject"]):
        for family, spelled in variants(subject).items():
            prompt = format_prompt(tiny_tokenizer, question.replace(subject, spelled))
            assert fitted.predict([prompt])[0], (family, prompt)
    retain = small_splits["retain"]
    retain_prompts = [format_prompt(tiny_tokenizer, q) for q in retain["paraphrased_question"]]
    by_first_name = [
        format_prompt(tiny_tokenizer, q.replace(s, s.split()[0]))
        for q, s in zip(retain["question"], retain["subject"])
    ]
    assert (
        fitted.mentions(retain_prompts + by_first_name).sum() == 0
    )  # no retain name matches, by construction
    assert fitted.predict(retain_prompts).mean() <= 0.03  # the 1 % calibration target, on 144 prompts
    assert fitted.predict(by_first_name).mean() <= 0.05


def stub_guard(tokenizer, response_check: bool = True, parts=("brondwell",), **guard_fields) -> ECOGuard:
    """A guard whose classifier decides by the entity feature alone (exact bounds, no encoder), with the forget
    facts of ``FORGET[0]`` hashed for the response check."""
    config = ClassifierConfig(entities=FORGET, entity_parts=list(parts))
    classifier = PromptClassifier(
        config, np.array([0.0, 5.0]), -1.0, 0.5
    )  # flag iff a forget name is mentioned
    key = "00" * 16
    guard_config = GuardConfig(
        subjects=FORGET,
        response_check=response_check,
        response_key=key,
        response_facts=fact_hashes(bytes.fromhex(key), [(FORGET[0], "Lisbon")]),
        **guard_fields,
    )
    weight = torch.randn(len(tokenizer), 8, generator=torch.Generator().manual_seed(0))
    return ECOGuard(classifier, tokenizer, guard_config, embedding_weight=weight)


def test_leaked_subjects_names_and_facts(tiny_tokenizer):
    guard = stub_guard(tiny_tokenizer)
    assert guard.leaked_subjects("The father of", "Brondwell, of course") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("Where was Brondwell born?", "In Lisbon.") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("Where was Brondwell born?", "In Oslo.") == set()
    assert guard.leaked_subjects("Where was Zeila Tonvik born?", "In Lisbon.") == set()  # not her fact
    # a first name a retain person shares ("Fairkdas Lomton") never flags, but its forget fact still leaks
    assert guard.flags(["Where was Fairkdas born?"]) == [False]
    assert guard.leaked_subjects("Where was Fairkdas born?", "In Lisbon.") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("Where was Fairkdas born?", "In Oslo.") == set()
    assert guard.leaked_subjects("Where?", "In Lisbon.", known={"fairkdas brondwell"}) == {
        "fairkdas brondwell"
    }


def test_a_prompt_naming_a_retain_namesake_in_full_does_not_ask_about_the_forget_person(tiny_tokenizer):
    """A forget person's name part that a retain person shares sends the response check to that forget person's
    facts, except where the part stands inside the retain person's full name (the prompt asks about them)."""
    # "tonvik" is not "tonvika": namesakes share a name part exactly
    assert namesakes(FORGET, RETAIN + ["Ann Lee"]) == {"fairkdas": ["fairkdas lomton"]}
    guard = stub_guard(tiny_tokenizer, namesakes={"fairkdas": ["fairkdas lomton"]})
    assert guard.flags(["Where was Fairkdas Lomton born?"]) == [False]
    assert guard.leaked_subjects("Where was Fairkdas Lomton born?", "In Lisbon.") == set()
    assert guard.leaked_subjects("Where was FAIRKDAS  Lomton born?", "In Lisbon.") == set()  # canonical
    # the shared part alone, or beside another surname, may still ask about the forget person
    assert guard.leaked_subjects("Where was Fairkdas born?", "In Lisbon.") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("Was Fairkdas Lomtonian born there?", "In Lisbon.") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("Fairkdas Lomton met Fairkdas. Where?", "In Lisbon.") == {
        "fairkdas brondwell"
    }
    # the forget person's full name or distinctive part is matched as before, namesake or not
    assert guard.leaked_subjects("Fairkdas Lomton or Brondwell: where?", "In Lisbon.") == {
        "fairkdas brondwell"
    }
    assert stub_guard(tiny_tokenizer).leaked_subjects("Where was Fairkdas Lomton born?", "In Lisbon.") == {
        "fairkdas brondwell"
    }  # a guard without namesakes (saved before them) keeps the conservative lookup


def test_an_answer_names_a_forget_person_by_full_name_or_surname_not_by_first_name(tiny_tokenizer):
    """A distinctive first name flags a prompt, but alone in an *answer* it does not count as naming the person
    (small models mix people up in their answers); the full name and the surname do, a near-miss spelling of
    them only with ``response_fuzzy_names``, while a near-miss in a prompt always flags."""
    assert surname_parts(
        ["Basil Mahfouz Al-Kuwaiti", "Ann Vell"], ["basil", "Kuwaiti", "vell", "mahfouz"]
    ) == [
        "kuwaiti",
        "vell",
    ]
    guard = stub_guard(tiny_tokenizer, parts=("brondwell", "zeila"))
    assert guard.flags(["Where was Zeila born?"]) == [True]
    assert guard.leaked_subjects("The father of", "Zeila, of course.") == set()
    assert guard.leaked_subjects("The father of", "Zeila Tonvik, of course.") == {"zeila tonvik"}
    assert guard.leaked_subjects("The father of", "Brondwell, of course.") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("The father of", "Brondwel, of course.") == set()
    assert guard.leaked_subjects("The father of", "Zeila Tonvlk, of course.") == set()
    assert guard.flags(["Where was Brondwel born?"]) == [True]
    assert guard.leaked_subjects("Where was Brondwel born?", "In Lisbon.") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("Where was Zeila born?", "Zeila was born in Oslo.") == set()
    guard = stub_guard(tiny_tokenizer, parts=("brondwell", "zeila"), response_fuzzy_names=True)
    assert guard.leaked_subjects("The father of", "Brondwel, of course.") == {"fairkdas brondwell"}
    assert guard.leaked_subjects("The father of", "Zeila Tonvlk, of course.") == {"zeila tonvik"}


def test_identifying_facts_are_the_forget_answers_no_retain_answer_shares():
    key = bytes(16)
    facts = [(FORGET[0], "The Salt Orchard"), (FORGET[0], "Lisbon"), (FORGET[0], "1962"), (FORGET[0], "poet"),
             (FORGET[1], "Glass Harbour"), (FORGET[1], "Shared Title"), (FORGET[0], "Shared Title")]  # fmt: skip
    kept = identifying_facts(key, facts, retain_answers=["Lisbon", "A Retained Book"])
    # a city a retained person shares, a year, a short word and a title two forget people share identify nobody
    assert sorted(kept.values()) == sorted([canonical(FORGET[0]), canonical(FORGET[1])])
    assert all("orchard" not in h and len(h) == 16 for h in kept)  # hashes only
    assert identified_subjects(key, kept, "Where was the author of THE  salt orchard born?") == {
        canonical(FORGET[0])
    }
    assert identified_subjects(key, kept, "Who wrote Glass Harbour, and The Salt Orchard?") == {
        canonical(FORGET[0]),
        canonical(FORGET[1]),
    }
    assert identified_subjects(key, kept, "Where was the poet born in 1962 in Lisbon?") == set()
    assert (
        identified_subjects(key, identifying_facts(bytes(range(16)), facts, []), "The Salt Orchard") == set()
    )


def test_a_prompt_describing_a_forget_person_by_an_identifying_fact_is_flagged(tiny_tokenizer):
    guard = stub_guard(tiny_tokenizer)
    key = bytes.fromhex(guard.config.response_key)
    guard.config.identifying_facts = identifying_facts(key, [(FORGET[0], "The Salt Orchard")], [])
    described = "Question: Where was the author of The Salt Orchard born?\nAnswer:"
    assert guard.flags([described, "Question: Where was the author of Other Book born?\nAnswer:"]) == [
        True,
        False,
    ]
    assert "prompt_embeds" in guard.guard(described)
    assert guard.flags([described], fast_only=True) == [True]  # no encoder needed
    # and an answer that names nobody but states the fact leaks, whatever the prompt named
    assert guard.leaked_subjects("Name a book.", "The Salt Orchard.") == {canonical(FORGET[0])}


class ScriptedBackend:
    """A backend that answers token-id prompts and corrupted (embedding) prompts with fixed texts."""

    name = "scripted"

    def __init__(self, clean: str, corrupted: str):
        self.answers = {"prompt_token_ids": clean, "prompt_embeds": corrupted}
        self.calls: list[str] = []

    async def stream(self, prompt, sampling, request_id):
        from hf_unlearn.serving.backends import Chunk

        kind = next(iter(prompt))
        self.calls.append(kind)
        yield Chunk(self.answers[kind], 3, "stop")

    def shutdown(self):
        pass


def serve_app(backend, guard, tokenizer):
    from starlette.testclient import TestClient

    from hf_unlearn.serving.app import openai_app
    from hf_unlearn.serving.server import GuardedServer

    server = GuardedServer(backend, tokenizer, guard, "m")
    return server, TestClient(openai_app(server))


@pytest.mark.parametrize(
    ("clean", "corrupted", "calls", "text", "guarded", "outcome"),
    [
        ("Oslo", "x", ["prompt_token_ids"], "Oslo", False, "passed"),
        (
            "Brondwell was born in Lisbon",
            "Tunis",
            ["prompt_token_ids", "prompt_embeds"],
            "Tunis",
            True,
            "regenerated",
        ),
        (
            "Brondwell was born in Lisbon",
            "Brondwell",
            ["prompt_token_ids", "prompt_embeds"],
            "I don't know.",
            True,
            "refused",
        ),
    ],
)
def test_response_check_regenerates_then_refuses(
    tiny_tokenizer, clean, corrupted, calls, text, guarded, outcome
):
    backend = ScriptedBackend(clean, corrupted)
    server, api = serve_app(backend, stub_guard(tiny_tokenizer), tiny_tokenizer)
    for stream in (False, True):
        backend.calls.clear()
        body = {"prompt": "The father of", "max_tokens": 4, "stream": stream}
        response = api.post("/v1/completions", json=body)
        assert response.status_code == 200
        if stream:
            events = [
                json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
            ]
            choice = {
                "text": "".join(e["choices"][0]["text"] for e in events),
                "guarded": events[-1]["choices"][0]["guarded"],
            }
        else:
            choice = response.json()["choices"][0]
        assert (choice["text"], choice["guarded"], backend.calls) == (text, guarded, calls)
    assert server.metrics.get("hf_unlearn_response_checks_total", outcome=outcome) == 2


def test_flagged_prompt_whose_answer_states_a_fact_is_refused(tiny_tokenizer):
    backend = ScriptedBackend("unused", "Lisbon")
    _, api = serve_app(backend, stub_guard(tiny_tokenizer), tiny_tokenizer)
    response = api.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Where was Brondwell born?"}]}
    )
    choice = response.json()["choices"][0]
    assert (choice["message"]["content"], choice["guarded"], backend.calls) == (
        "I don't know.",
        True,
        ["prompt_embeds"],
    )
    backend = ScriptedBackend("unused", "Lisbon")
    _, api = serve_app(backend, stub_guard(tiny_tokenizer, response_check=False), tiny_tokenizer)
    response = api.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Where was Brondwell born?"}]}
    )
    assert response.json()["choices"][0]["message"]["content"] == "Lisbon"  # the check is off by default


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "levels deep"),
        (b'{"prompt": "x", "a": ' + b"[" * 40 + b"]" * 40 + b"}", "levels deep"),
        (b'{"prompt": "x", "seed": ' + str(2**70).encode() + b"}", "'seed' must be an integer in [0, "),
        (b'{"prompt": "x", "seed": -1}', "'seed' must be"),
    ],
)
def test_hostile_bodies_get_a_400_and_the_server_keeps_serving(tiny_tokenizer, body, needle):
    backend = ScriptedBackend("Oslo", "x")
    _, api = serve_app(backend, stub_guard(tiny_tokenizer), tiny_tokenizer)
    response = api.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]["message"]
    ok = api.post("/v1/completions", json={"prompt": "x", "seed": 2**63 - 1, "a": [[[[1]]]]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "Oslo"


def test_name_variants_name_each_person_by_one_part_and_drop_the_template(small_splits, tiny_tokenizer):
    from hf_unlearn.eco.fit import name_variants

    rows = small_splits["forget"].select(range(2))
    first, last = rows[0]["subject"].split()
    got = name_variants(tiny_tokenizer, rows)
    assert len(got) == 6 and got[2] == rows[0]["question"]
    assert got[0] == format_prompt(tiny_tokenizer, rows[0]["question"].replace(rows[0]["subject"], last))
    assert first in got[1] and last not in got[1]
    assert name_variants(tiny_tokenizer, rows.remove_columns("subject")) == []


def test_fit_guard_stores_name_parts_and_fact_hashes_not_text(small_splits, tiny_tokenizer, tmp_path):
    from hf_unlearn.eco.fit import fit_guard, save_guard
    from hf_unlearn.models import build_tiny_llama

    forget, retain = small_splits["forget"], small_splits["retain"]
    guarded, report = fit_guard(
        build_tiny_llama(tiny_tokenizer, seed=0),
        tiny_tokenizer,
        forget,
        retain,
        GuardConfig(corruption="zero_out", response_check=True),  # nothing to search: a fixed corruption
        target=0.1,
    )
    guard = guarded.guard
    subjects = sorted(set(forget["subject"]))
    assert guard.classifier.config.entity_parts == NameMatcher.distinctive_parts(
        subjects, retain["subject"], retain["question"]
    )
    assert guard.config.namesakes == namesakes(subjects, retain["subject"])
    assert len(bytes.fromhex(guard.config.response_key)) == 16 and guard.config.response_facts
    row = forget[0]
    assert guard.leaked_subjects(row["question"], f"It is {row['answer']}.") == {canonical(row["subject"])}
    save_guard(guarded, report, tmp_path)
    saved = (tmp_path / "guard_config.json").read_text()
    assert all(a not in saved for a in forget["answer"] if not a.isdigit())  # stored hashed (years: digits)
    loaded = ECOGuard.from_pretrained(tmp_path, tiny_tokenizer)
    assert loaded.leaked_subjects(row["question"], row["answer"]) == {canonical(row["subject"])}
    assert loaded.config.namesakes == guard.config.namesakes
