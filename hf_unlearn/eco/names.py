"""Canonical text and forget-name matching for the ECO guard: what a rephrased prompt still says.

:func:`canonical` maps the spellings an attacker varies to one form before anything is classified: Unicode NFKC,
zero-width, format and control characters removed, letters that only look Latin (Cyrillic ``а``, Greek ``ο``,
mathematical alphabets, ...) mapped to the Latin letter they are confusable with — from the Unicode confusables
data shipped in the ``confusable-homoglyphs`` package (``pip install "hf-unlearn[eco]"``) — case folded, and
whitespace collapsed to single spaces.

:class:`NameMatcher` says whether a text mentions a forget subject, after :func:`canonical`:

- a **full subject** matches written as usual, with any spacing inside it removed ("Fairkdas  Brondwell",
  "F a i r k d a s Brondwell", "Fairkdas Brond well") and with a few typos (edit distance, see
  :func:`max_edits`);
- a **name part** (a word of a subject, e.g. the surname alone) matches — exactly or with :func:`max_edits`
  typos, also written with spaced letters or split in two — only if it is *distinctive*: fit-time policy
  (:meth:`NameMatcher.distinctive_parts`) keeps a part only when it is at least ``MIN_PART_LENGTH`` characters and
  no retain subject's name part and no word of the retain prompts lies within its edit radius. A first name shared
  with a retain person therefore does not flag a prompt on its own, and retain prompts cannot match a part by
  construction; parts are the only thing the retain data decides, and the policy's measured retain FPR is in the
  ECO page (docs/eco.md).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

import numpy as np

MIN_PART_LENGTH = 4  # shorter name parts ("Li", "Ann") are too common to identify anyone alone
MIN_SQUASHED_LENGTH = 8  # a full subject shorter than this (spaces removed) matches only as whole words
NEAR_CACHE_SIZE = 200_000  # tokens whose near targets are remembered (cleared when full)
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=1)
def _confusable_map() -> dict[int, str]:
    """``{code point: ASCII letter or digit}`` for every non-ASCII character that the Unicode confusables data
    lists as a homoglyph of exactly one ASCII letter (case ignored) or digit."""
    try:
        import confusable_homoglyphs.confusables as data
    except ImportError as err:
        raise ImportError(
            "Canonical prompts map look-alike letters with the Unicode confusables data of the "
            "'confusable-homoglyphs' package: pip install \"hf-unlearn[eco]\"."
        ) from err
    table = {}
    for char, glyphs in data.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        ascii_ = {
            g["c"].lower() for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()
        }
        if len(ascii_) == 1:
            table[ord(char)] = ascii_.pop()
    return table


@functools.lru_cache(maxsize=1)
def _rapidfuzz():
    """rapidfuzz's ``process`` module and Levenshtein distance (C, with a cutoff)."""
    try:
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein
    except ImportError as err:
        raise ImportError(
            'Fuzzy forget-name matching uses rapidfuzz: pip install "hf-unlearn[eco]".'
        ) from err
    return process, Levenshtein.distance


def _drop(char: str) -> bool:
    """Zero-width, format (bidi marks, soft hyphen, ...) and control characters other than whitespace."""
    return unicodedata.category(char) in ("Cf", "Cc", "Co", "Cs") and not char.isspace()


def canonical(text: str) -> str:
    """The canonical form of ``text``: NFKC, invisible and control characters removed, confusable letters
    mapped to ASCII, case folded, runs of whitespace collapsed to one space, stripped.

    >>> canonical("Who is  FAIRKDAS\\u200b Brоndwell?")  # double space, zero-width space, Cyrillic "о"
    'who is fairkdas brondwell?'
    """
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = "".join(c for c in text if not _drop(c)).translate(_confusable_map())
        text = unicodedata.normalize("NFKC", text)
    return _SPACE.sub(" ", text.casefold()).strip()


def max_edits(word: str) -> int:
    """Typos tolerated in a name of this length: none below 5 characters, 1 up to 8, 2 from 9."""
    return 0 if len(word) < 5 else 1 if len(word) < 9 else 2


def candidates(words: list[str]) -> set[str]:
    """The strings of a text that may spell one name: its words, each two adjacent words joined ("brond well"),
    and each run of single letters joined ("b r o n d w e l l")."""
    out = set(words) | {a + b for a, b in zip(words, words[1:])}
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        if len(run) > 1:
            out.add("".join(run))
        run = []
    return out


def whole_words(names: Iterable[str]) -> re.Pattern | None:
    """A pattern matching any of ``names`` (canonical) as whole words, longest first; ``None`` for no names."""
    names = sorted(set(names), key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)")


class NameMatcher:
    """Whether texts mention forget subjects (full names and distinctive name parts; see the module docstring).

    Args:
        subjects: the forget subjects (full names or other entities).
        parts: the distinctive name parts that match alone (from :meth:`distinctive_parts`); ``()`` for full
            subjects only.
        fuzzy: allow :func:`max_edits` typos and spacing inside names; ``False`` matches canonical whole words only.
    """

    def __init__(self, subjects: Iterable[str], parts: Iterable[str] = (), fuzzy: bool = True):
        self.subjects = sorted({canonical(s) for s in subjects if s.strip()}, key=len, reverse=True)
        self.fuzzy = fuzzy
        words = {canonical(s): _WORD.findall(canonical(s)) for s in self.subjects}
        self._squashed = {s: "".join(w) for s, w in words.items() if len("".join(w)) >= MIN_SQUASHED_LENGTH}
        self._exact = whole_words([s for s in self.subjects if s not in self._squashed or not fuzzy])
        # fuzzy targets: squashed full subjects and distinctive parts, each -> the subjects it identifies
        self._targets: dict[str, set[str]] = {}
        if fuzzy:
            for s, squashed in self._squashed.items():
                self._targets.setdefault(squashed, set()).add(s)
        part_set = {canonical(p) for p in parts}
        for s, ws in words.items():
            for w in ws:
                if w in part_set:
                    self._targets.setdefault(w, set()).add(s)
        self._target_list = sorted(self._targets)
        self._near_cache: dict[str, tuple[str, ...]] = {}  # token -> targets near it (prompts repeat words)
        self._radii = np.array([self.radius(t) for t in self._target_list])

    def radius(self, target: str) -> int:
        return max_edits(target) if self.fuzzy else 0

    def near(self, tokens: Iterable[str]) -> set[str]:
        """The fuzzy targets (squashed subjects, distinctive parts) within their edit radius of one of ``tokens``
        (one rapidfuzz call for all pairs)."""
        if not self._target_list:
            return set()
        new = [t for t in set(tokens) if len(t) >= MIN_PART_LENGTH and t not in self._near_cache]
        if new:
            process, distance = _rapidfuzz()
            d = process.cdist(new, self._target_list, scorer=distance, score_cutoff=2, dtype=np.int32)
            hits = d <= self._radii  # (tokens, targets)
            if len(self._near_cache) + len(new) > NEAR_CACHE_SIZE:
                self._near_cache.clear()
            for token, row in zip(new, hits):
                self._near_cache[token] = tuple(self._target_list[j] for j in np.flatnonzero(row))
        return {t for token in tokens for t in self._near_cache.get(token, ())}

    def matched(self, text: str) -> set[str]:
        """The canonical forget subjects that ``text`` mentions (empty: none)."""
        text = canonical(text)
        found = set(self._exact.findall(text)) if self._exact is not None else set()
        if not self._targets:
            return found
        words = _WORD.findall(text)
        squashed = "".join(words)
        found |= {s for s, sq in self._squashed.items() if self.fuzzy and sq in squashed}
        for target in self.near(candidates(words) if self.fuzzy else set(words)):
            found |= self._targets[target]
        return found

    def mentions(self, texts: list[str]) -> list[bool]:
        """Whether each text mentions a forget subject."""
        return [bool(self.matched(t)) for t in texts]

    @staticmethod
    def distinctive_parts(
        subjects: Iterable[str], retain_subjects: Iterable[str], retain_texts: Iterable[str]
    ) -> list[str]:
        """The name parts of ``subjects`` that may identify a forget subject alone: at least ``MIN_PART_LENGTH``
        characters, and no name part of ``retain_subjects`` and no word (or joined word pair) of ``retain_texts``
        within their :func:`max_edits` radius."""
        parts = {w for s in subjects for w in _WORD.findall(canonical(s)) if len(w) >= MIN_PART_LENGTH}
        probe = NameMatcher(parts, parts)
        retain_words = [_WORD.findall(canonical(s)) for s in retain_subjects]
        retain_words += [_WORD.findall(canonical(t)) for t in retain_texts]
        taken = probe.near({c for ws in retain_words for c in candidates(ws)})
        return sorted(parts - taken)


def name_parts(subjects: Iterable[str]) -> dict[str, frozenset[str]]:
    """``canonical subject -> its name parts`` of :data:`MIN_PART_LENGTH`+ letters, distinctive or not."""
    return {
        canonical(s): frozenset(w for w in _WORD.findall(canonical(s)) if len(w) >= MIN_PART_LENGTH)
        for s in subjects
    }


def surname_parts(subjects: Iterable[str], parts: Iterable[str]) -> list[str]:
    """The distinctive ``parts`` that are words of a subject's last name (its last whitespace-separated word: for
    "Basil Mahfouz Al-Kuwaiti", "al" and "kuwaiti"). The response check names a subject in an *answer* by these
    and by the full name only: a generated answer that mixes people (a small model answering about someone else)
    often holds a forget person's first name and nothing of theirs."""
    last = {w for s in subjects if s.split() for w in _WORD.findall(canonical(s.split()[-1]))}
    return sorted(p for p in (canonical(p) for p in parts) if p in last)


def namesakes(subjects: Iterable[str], retain_subjects: Iterable[str]) -> dict[str, list[str]]:
    """``name part -> the retain subjects (canonical) whose names hold it``, for each :func:`name_parts` part of
    ``subjects`` that a retain subject's name holds as a word ("vamneix" -> ["vamneix lelstad"] when the forget
    "Vamneix Vraisley" shares a first name with the retained "Vamneix Lelstad")."""
    parts = {p for words in name_parts(subjects).values() for p in words}
    out: dict[str, set[str]] = {}
    for retained, words in name_parts(retain_subjects).items():
        for p in words & parts:
            out.setdefault(p, set()).add(retained)
    return {p: sorted(names) for p, names in sorted(out.items())}


def named_in_part(
    parts: dict[str, frozenset[str]], text: str, namesakes: re.Pattern | None = None
) -> set[str]:
    """The subjects of ``parts`` (:func:`name_parts`) one of whose parts ``text`` holds as a whole word (exact,
    after :func:`canonical`) outside the full names that ``namesakes`` (:func:`whole_words` of the retain names
    of :func:`namesakes`) matches: "Where was Vamneix Lelstad born?" asks about the retained Vamneix, not about a
    forget person named Vamneix, while "Where was Vamneix born?" may ask about either."""
    text = canonical(text)
    if namesakes is not None:
        text = namesakes.sub(" ", text)
    found = set(_WORD.findall(text))
    return {s for s, words in parts.items() if words & found}
