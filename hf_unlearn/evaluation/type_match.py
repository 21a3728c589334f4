"""Type match on the embedded default: is an answer an entity of the kind the question asks for?

A method that forgets by answering with *another* plausible entity (WHP's generic answers) should answer a
birth-city question with a city and a year question with a year, not with gibberish. The synthetic rows carry
a ``fact`` column naming the kind; the generator's value pools define each kind.
"""

from __future__ import annotations

import re

from datasets import Dataset

from hf_unlearn.data.synthetic import AWARDS, CITIES, GENRES, PROFESSIONS
from hf_unlearn.evaluation.qa import generate_answers

_NAME = re.compile(r"[A-Z][a-z]+ [A-Z][a-z]+")
_TITLE = re.compile(r"The [A-Z][a-z]+ [A-Z][a-z]+")
_YEAR = re.compile(r"1[0-9]{3}|20[0-9]{2}")
_AWARDS = {f"{a} Award" for a in AWARDS}

#: fact -> predicate on the (stripped) answer text
TYPE_CHECKS = {
    "birth_city": lambda a: a in CITIES,
    "birth_year": lambda a: bool(_YEAR.fullmatch(a)),
    "profession": lambda a: a in PROFESSIONS,
    "genre": lambda a: a in GENRES,
    "award": lambda a: a in _AWARDS,
    "book": lambda a: bool(_TITLE.fullmatch(a)),
    "father": lambda a: bool(_NAME.fullmatch(a)),
    "mother": lambda a: bool(_NAME.fullmatch(a)),
}


def answer_type_matches(fact: str, answer: str) -> bool:
    """Whether ``answer`` is an entity of kind ``fact`` (a city for ``birth_city``, a year for ``birth_year``,
    a ``First Last`` name for ``father``/``mother``, a ``The Adjective Noun`` title for ``book``, ...).

    Raises:
        ValueError: ``fact`` is not one of the synthetic data's facts.
    """
    if fact not in TYPE_CHECKS:
        raise ValueError(f"Unknown fact {fact!r}; type checks exist for {sorted(TYPE_CHECKS)}.")
    return TYPE_CHECKS[fact](answer.strip())


def type_match_rate(model, tokenizer, ds: Dataset, batch_size: int = 64) -> float:
    """Fraction of ``ds``'s questions whose greedy answer has the type of the row's ``fact``.

    Raises:
        ValueError: ``ds`` has no ``fact`` column (only the embedded synthetic data has one).
    """
    if "fact" not in ds.column_names:
        raise ValueError(
            f"type_match_rate needs a 'fact' column naming each answer's kind; got columns {ds.column_names}."
        )
    answers = generate_answers(model, tokenizer, ds["question"], batch_size=batch_size)
    hits = [answer_type_matches(f, a) for f, a in zip(ds["fact"], answers)]
    return sum(hits) / max(len(hits), 1)
