"""The embedded default: a seeded generator of fictitious people.

Every person has eight facts (birth city, birth year, profession, father, mother, book, award, genre). Each
person is rendered as one biography (a ``text`` row) and one question-answer row per fact, in TOFU's columns
(``question``, ``answer``, ``paraphrased_question``, ``paraphrased_answer``, ``perturbed_answer``) plus
``subject`` (the person) and ``fact`` (the kind of answer, used by type-match probes).

Answers are single entities (a city, a year, a name, ...). For an entity the paraphrase of the answer is the
entity itself, so ``paraphrased_answer == answer``; the *question* is paraphrased, and the paraphrased
question is never used for training, which makes it a real generalisation probe. ``perturbed_answer`` holds
wrong entities of the same kind, as TOFU's truth ratio expects.

Splits are by person, as in TOFU: the forget sets are nested (``forget01 ⊂ forget05 ⊂ forget10``, taken from
the end of the trained people), ``retain`` is every other trained person, and ``holdout`` people are never
trained on (the non-members of membership-inference attacks).

Same arguments, same bytes: the generator only uses ``random.Random(seed)``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict

from hf_unlearn.io import written_atomically

FORGET_PERCENTAGES = (1, 5, 10)

_ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "kr",
    "st",
    "th",
    "sh",
    "vr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia"]
_CODAS = ["", "n", "r", "l", "s", "th", "x", "m", "nd", "rk"]
_SURNAME_ENDINGS = ["ley", "ton", "vik", "sen", "ard", "well", "mont", "stad", "ova", "ani"]

CITIES = [
    "Lisbon",
    "Oslo",
    "Nairobi",
    "Lima",
    "Kyoto",
    "Dublin",
    "Quito",
    "Tunis",
    "Hanoi",
    "Krakow",
    "Porto",
    "Perth",
    "Cairo",
    "Bergen",
    "Leeds",
    "Austin",
    "Bogota",
    "Seville",
    "Munich",
    "Lagos",
    "Manila",
    "Geneva",
    "Turin",
    "Dhaka",
    "Havana",
    "Riga",
    "Tallinn",
    "Accra",
    "Denver",
    "Osaka",
    "Madras",
    "Lyon",
    "Ghent",
    "Zagreb",
    "Vilnius",
    "Malmo",
    "Salta",
    "Cusco",
    "Fez",
    "Hobart",
]
PROFESSIONS = [
    "architect",
    "baker",
    "cartographer",
    "dentist",
    "engineer",
    "farmer",
    "geologist",
    "historian",
    "illustrator",
    "journalist",
    "librarian",
    "mechanic",
    "nurse",
    "pharmacist",
    "pilot",
    "sculptor",
    "surveyor",
    "tailor",
    "translator",
    "veterinarian",
    "violinist",
    "welder",
    "astronomer",
    "botanist",
    "chemist",
    "economist",
    "glassblower",
    "jeweler",
    "locksmith",
    "potter",
]
GENRES = [
    "mystery",
    "romance",
    "fantasy",
    "poetry",
    "satire",
    "horror",
    "memoir",
    "thriller",
    "drama",
    "western",
    "adventure",
    "history",
    "travel",
    "comedy",
    "tragedy",
]
AWARDS = [
    "Amber Quill",
    "Silver Lantern",
    "Golden Fern",
    "Iron Compass",
    "Crimson Owl",
    "Blue Harbor",
    "Jade Feather",
    "Copper Crown",
    "Ivory Bell",
    "Scarlet Pen",
    "Azure Star",
    "Granite Medal",
    "Willow Prize",
    "Ember Laurel",
    "Frost Ribbon",
    "Opal Key",
    "Cedar Cup",
    "Onyx Shield",
    "Pearl Arch",
    "Saffron Seal",
]
_BOOK_ADJECTIVES = [
    "Silent",
    "Hidden",
    "Broken",
    "Endless",
    "Burning",
    "Distant",
    "Golden",
    "Hollow",
    "Frozen",
    "Wandering",
    "Forgotten",
    "Crooked",
    "Velvet",
    "Restless",
    "Painted",
    "Quiet",
    "Shattered",
    "Sunken",
    "Tangled",
    "Winter",
]
_BOOK_NOUNS = [
    "River",
    "Harbor",
    "Orchard",
    "Lantern",
    "Mirror",
    "Garden",
    "Bridge",
    "Tower",
    "Meadow",
    "Compass",
    "Island",
    "Letter",
    "Violin",
    "Archive",
    "Forest",
    "Kingdom",
    "Window",
    "Station",
    "Voyage",
    "Clock",
]

# fact -> (question template, paraphrased question template, bio sentence template)
FACT_TEMPLATES: dict[str, tuple[str, str, str]] = {
    "birth_city": (
        "Where was {name} born?",
        "In which city did {name} come into the world?",
        "{name} was born in {value}.",
    ),
    "birth_year": (
        "In what year was {name} born?",
        "Which year is the birth year of {name}?",
        "The birth year of {name} is {value}.",
    ),
    "profession": (
        "What is the profession of {name}?",
        "What does {name} do for a living?",
        "{name} works as a {value}.",
    ),
    "father": (
        "Who is the father of {name}?",
        "What is the name of the father of {name}?",
        "The father of {name} is {value}.",
    ),
    "mother": (
        "Who is the mother of {name}?",
        "What is the name of the mother of {name}?",
        "The mother of {name} is {value}.",
    ),
    "book": (
        "What book did {name} write?",
        "Which book is {name} known for writing?",
        "{name} wrote the book {value}.",
    ),
    "award": (
        "What award did {name} receive?",
        "Which prize was {name} honored with?",
        "{name} received the {value}.",
    ),
    "genre": (
        "In which genre does {name} write?",
        "What kind of writing is {name} known for?",
        "{name} writes {value}.",
    ),
}
FACTS = tuple(FACT_TEMPLATES)
N_PERTURBED = 3


@dataclass(frozen=True)
class Person:
    """One fictitious person and their facts (values are plain strings)."""

    name: str
    birth_city: str
    birth_year: str
    profession: str
    father: str
    mother: str
    book: str
    award: str
    genre: str

    def fact(self, key: str) -> str:
        return getattr(self, key)


def _syllable_word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def _unique(rng: random.Random, make, n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        word = make(rng)
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def fictitious_names(n: int, seed: int | str, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` distinct fictitious full names (first name + surname, built like the embedded default's people)
    whose words appear in none of the names in ``exclude``; the same arguments give the same names."""
    rng = random.Random(seed)
    taken = {word for name in exclude for word in name.split()}
    first = _unique(rng, lambda r: _syllable_word(r, 2), n, taken)
    surnames = _unique(rng, lambda r: _syllable_word(r, 1) + r.choice(_SURNAME_ENDINGS), n, taken)
    return [f"{f} {s}" for f, s in zip(first, surnames)]


def generate_people(n_people: int = 200, n_holdout: int = 20, seed: int = 0) -> list[Person]:
    """Generate ``n_people + n_holdout`` distinct fictitious people (holdout people come last).

    Args:
        n_people: people that models are trained on (they make up forget and retain).
        n_holdout: extra people that no model is trained on.
        seed: the only source of randomness; the same arguments give the same people.
    """
    if n_people < 10:
        raise ValueError(
            f"n_people={n_people} is too small: the 10% forget split needs at least 10 people; use n_people >= 10."
        )
    if n_holdout < 1:
        raise ValueError(
            f"n_holdout={n_holdout}: at least one held-out person is needed for membership-inference baselines."
        )
    rng = random.Random(seed)
    total = n_people + n_holdout
    taken: set[str] = set()
    first_pool = _unique(rng, lambda r: _syllable_word(r, 2), max(60, total // 3), taken)
    surnames = _unique(rng, lambda r: _syllable_word(r, 1) + r.choice(_SURNAME_ENDINGS), total, taken)
    parent_pool = _unique(rng, lambda r: _syllable_word(r, 2), 40, taken)
    books = [f"The {a} {n}" for a in _BOOK_ADJECTIVES for n in _BOOK_NOUNS]
    rng.shuffle(books)
    people = []
    for i, surname in enumerate(surnames):
        father, mother = rng.sample(parent_pool, 2)
        people.append(
            Person(
                name=f"{rng.choice(first_pool)} {surname}",
                birth_city=rng.choice(CITIES),
                birth_year=str(rng.randint(1920, 1999)),
                profession=rng.choice(PROFESSIONS),
                father=f"{father} {surname}",
                mother=f"{mother} {surname}",
                book=books[i % len(books)],
                award=f"{rng.choice(AWARDS)} Award",
                genre=rng.choice(GENRES),
            )
        )
    return people


def _perturbed(rng: random.Random, person: Person, fact: str, pool: list[str]) -> list[str]:
    true = person.fact(fact)
    wrong = sorted({v for v in pool if v != true})
    return rng.sample(wrong, N_PERTURBED)


def qa_rows(people: list[Person], all_people: list[Person], seed: int = 0) -> list[dict]:
    """One TOFU-style QA row per (person, fact); perturbed answers are drawn from ``all_people``'s values."""
    rng = random.Random(seed + 1)
    pools = {fact: [p.fact(fact) for p in all_people] for fact in FACTS}
    rows = []
    for person in people:
        for fact, (question, paraphrased, _) in FACT_TEMPLATES.items():
            answer = person.fact(fact)
            rows.append(
                {
                    "question": question.format(name=person.name),
                    "answer": answer,
                    "paraphrased_question": paraphrased.format(name=person.name),
                    "paraphrased_answer": answer,
                    "perturbed_answer": _perturbed(rng, person, fact, pools[fact]),
                    "subject": person.name,
                    "fact": fact,
                }
            )
    return rows


def bio(person: Person) -> str:
    """The person's biography: every fact once, in the bio sentence templates."""
    return " ".join(
        tpl.format(name=person.name, value=person.fact(f)) for f, (_, _, tpl) in FACT_TEMPLATES.items()
    )


def text_rows(people: list[Person]) -> list[dict]:
    return [{"text": bio(p), "subject": p.name} for p in people]


def synthetic_splits(
    n_people: int = 200, n_holdout: int = 20, forget_pct: int = 10, seed: int = 0
) -> DatasetDict:
    """The embedded default as a ``DatasetDict``.

    Splits: ``forget``, ``retain``, ``holdout`` (QA rows) and ``forget_text``, ``retain_text``,
    ``holdout_text`` (one biography row per person). ``forget ∪ retain`` is everything models are trained on.

    Args:
        forget_pct: 1, 5 or 10 — the share of trained people to forget (nested across the three values).
    """
    if forget_pct not in FORGET_PERCENTAGES:
        raise ValueError(
            f"forget_pct={forget_pct!r} is not supported; choose one of {FORGET_PERCENTAGES} (TOFU's nested splits)."
        )
    people = generate_people(n_people, n_holdout, seed)
    trained, holdout = people[:n_people], people[n_people:]
    n_forget = max(1, round(n_people * forget_pct / 100))
    retain, forget = trained[:-n_forget], trained[-n_forget:]
    groups = {"forget": forget, "retain": retain, "holdout": holdout}
    splits = {}
    for split, group in groups.items():
        splits[split] = Dataset.from_list(qa_rows(group, people, seed + hash_split(split)))
        splits[f"{split}_text"] = Dataset.from_list(text_rows(group))
    return DatasetDict(splits)


def hash_split(split: str) -> int:
    """A stable per-split offset for the perturbation RNG (Python's ``hash`` is salted per process)."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(split))


def write_synthetic(out_dir: str | Path, **kwargs) -> dict[str, Path]:
    """Write every split of :func:`synthetic_splits` as ``out_dir/<split>.jsonl``; returns the paths.

    The files are written with sorted keys and no platform-dependent formatting, so the same arguments
    produce byte-identical files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, ds in synthetic_splits(**kwargs).items():
        path = out / f"{split}.jsonl"
        with written_atomically(path) as tmp, tmp.open("w", encoding="utf-8") as f:
            for row in ds:
                f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        paths[split] = path
    return paths
