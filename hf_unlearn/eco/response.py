"""The guard's output side: does a generated answer name a forget subject or state one of its facts?

A prompt that names nobody ("The father of", an empty prompt sampled at temperature 1) can still make the model
name a forgotten person, and a corrupted prompt can still let a true fact through. With
``GuardConfig.response_check`` on, every answer is checked before it is returned:

- it **names a forget subject** (the classifier's :class:`~hf_unlearn.eco.names.NameMatcher`: full names
  with typos and spacing, distinctive name parts), or
- it **states a fact of a subject the prompt named**: the forget answers are stored as keyed hashes of
  ``(subject, answer n-gram)`` — an answer of at most ``SHORT_ANSWER_WORDS`` words as a whole (it must appear
  whole), a longer one as its word 4-grams (``MIN_GRAM_HITS`` of them must appear) — so the guard folder holds no
  answer text. The hashes are keyed BLAKE2b with a random per-guard key saved beside them: they stop casual
  reading, not a dictionary attack by someone holding the folder, which stays local (it is never pushed with its
  model card's data; the guard folder is local-only by design).

- it **states an identifying fact** of a forget subject, whoever the prompt named: a forget answer that no
  retain answer shares (a book title, not a city or a profession) is stored as a keyed hash of its words (up to
  ``IDENTIFYING_WORDS``) mapped to its subject. The same hashes flag a *prompt* that describes a forgotten person
  by such a fact instead of by name ("Where was the author of <their book> born?").

What the server then answers is in :meth:`~hf_unlearn.eco.guard.ECOGuard.response_leaks`' callers: an
unflagged prompt is answered again from its corrupted embeddings (what the guard would have done had it flagged
the prompt), and an answer that still leaks — or one from an already-corrupted prompt — is replaced by
``GuardConfig.response_refusal``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from hf_unlearn.eco.names import canonical

SHORT_ANSWER_WORDS = 4
IDENTIFYING_WORDS = 8  # the longest answer stored as an identifying fact
IDENTIFYING_MIN_CHARS = 6  # a one-word identifying fact must be at least this long (and not a number)
GRAM = 4
MIN_GRAM_HITS = 3
_WORD = re.compile(r"\w+")


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(canonical(text)))


def _spans(words: tuple[str, ...], longest: int) -> set[tuple[str, ...]]:
    """Every run of 1 to ``longest`` consecutive ``words``."""
    return {words[i : i + n] for n in range(1, longest + 1) for i in range(len(words) - n + 1)}


def fact_hash(key: bytes, subject: str, kind: str, gram: tuple[str, ...]) -> int:
    """The keyed 64-bit hash of one ``(subject, n-gram)``; ``kind`` is ``"w"`` (whole short answer) or ``"g"``."""
    text = "\x1f".join((canonical(subject), kind, *gram))
    return int.from_bytes(hashlib.blake2b(text.encode(), key=key, digest_size=8).digest(), "big")


def fact_hashes(key: bytes, facts: Iterable[tuple[str, str]]) -> list[int]:
    """Sorted hashes of ``(subject, answer)`` pairs: a short answer whole, a long one as its word 4-grams."""
    out = set()
    for subject, answer in facts:
        words = _words(answer)
        if not words:
            continue
        if len(words) <= SHORT_ANSWER_WORDS:
            out.add(fact_hash(key, subject, "w", words))
        else:
            out |= {fact_hash(key, subject, "g", words[i : i + GRAM]) for i in range(len(words) - GRAM + 1)}
    return sorted(out)


def states_fact(key: bytes, hashes: set[int], subject: str, response: str) -> bool:
    """Whether ``response`` holds a short answer of ``subject`` whole or ``MIN_GRAM_HITS`` 4-grams of a long one."""
    words = _words(response)
    if any(fact_hash(key, subject, "w", span) in hashes for span in _spans(words, SHORT_ANSWER_WORDS)):
        return True
    grams = {words[i : i + GRAM] for i in range(len(words) - GRAM + 1)}
    return sum(fact_hash(key, subject, "g", g) in hashes for g in grams) >= MIN_GRAM_HITS


def identifying_facts(
    key: bytes, facts: Iterable[tuple[str, str]], retain_answers: Iterable[str]
) -> dict[str, str]:
    """``{hash hex: subject}`` of the forget answers (``(subject, answer)`` pairs) that identify their subject: no
    retain answer has the same words, it is at most :data:`IDENTIFYING_WORDS` words long, and a one-word answer has
    at least :data:`IDENTIFYING_MIN_CHARS` letters. An answer that two forget subjects share maps to neither."""
    shared = {_words(a) for a in retain_answers}
    owners: dict[tuple[str, ...], set[str]] = {}
    for subject, answer in facts:
        words = _words(answer)
        if not words or words in shared or len(words) > IDENTIFYING_WORDS:
            continue
        if len(words) == 1 and (len(words[0]) < IDENTIFYING_MIN_CHARS or words[0].isdigit()):
            continue
        owners.setdefault(words, set()).add(canonical(subject))
    return {
        f"{fact_hash(key, '', 'i', words):016x}": next(iter(subjects))
        for words, subjects in owners.items()
        if len(subjects) == 1
    }


def identified_subjects(key: bytes, facts: dict[str, str], text: str) -> set[str]:
    """The subjects of ``facts`` (:func:`identifying_facts`) whose identifying fact ``text`` holds."""
    spans = _spans(_words(text), IDENTIFYING_WORDS)
    return {s for span in spans if (s := facts.get(f"{fact_hash(key, '', 'i', span):016x}")) is not None}
