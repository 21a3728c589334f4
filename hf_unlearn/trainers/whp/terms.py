"""WHP's anchored-term dictionary: load it, apply it token for token, or mine it from the forget data.

An *anchored term* is a span tied to the forget content (a person's name, their city, their book); its
*generic term* is what a model that never saw the forget data would plausibly put there (another person's
name, another city). WHP runs the baseline model on the forget text with every anchored term replaced by its
generic term, and trains the model to predict those generic continuations on the original text.

Applying the dictionary is done on tokens, not only on strings, so that each original token knows which
translated token it corresponds to (:class:`Translation`): the generic predictions computed on the translated
text are mapped back to the original positions exactly. Terms are matched as whole words, longest first,
and only where their boundaries fall on token boundaries.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset

from hf_unlearn.data.formats import IGNORE_INDEX, answer_text, format_prompt

PLACEHOLDER = "someone"


@dataclass
class Translation:
    """One text (or QA pair) in original and dictionary-translated token ids, aligned token for token.

    Attributes:
        original_ids: token ids of the original text.
        translated_ids: token ids with every anchored term's tokens replaced by its generic term's tokens.
        source: for each original position, the translated position of the token that plays its role, or -1.
            Outside terms that is the same token; inside a term of ``n`` tokens replaced by ``m`` tokens, the
            ``k``-th original token maps to the ``k``-th replacement token for ``k < min(n, m)`` (extra
            original tokens map to -1: there is no generic counterpart to learn).
        spans: ``(orig_start, orig_end, trans_start, trans_end, term)`` for every replaced term occurrence.
        labels: ``original_ids``-long labels (-100 where the position is not trained, e.g. QA prompts).
    """

    original_ids: list[int] = field(default_factory=list)
    translated_ids: list[int] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    spans: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def extend(self, other: Translation) -> Translation:
        """Append ``other`` (shifting its translated positions) and return ``self``."""
        no, nt = len(self.original_ids), len(self.translated_ids)
        self.original_ids += other.original_ids
        self.translated_ids += other.translated_ids
        self.source += [s + nt if s >= 0 else -1 for s in other.source]
        self.spans += [(a + no, b + no, c + nt, d + nt, term) for a, b, c, d, term in other.spans]
        self.labels += other.labels
        return self

    def truncate(self, max_length: int) -> Translation:
        """Keep the first ``max_length`` original tokens (and the translated tokens they map into)."""
        if len(self.original_ids) <= max_length:
            return self
        cut = max((s for s in self.source[:max_length] if s >= 0), default=-1) + 1
        self.original_ids, self.labels = self.original_ids[:max_length], self.labels[:max_length]
        self.source = self.source[:max_length]
        self.translated_ids = self.translated_ids[: max(cut, 1)]
        self.spans = [s for s in self.spans if s[1] <= max_length]
        return self


def load_term_dictionary(path: str | Path) -> dict[str, str]:
    """Read a ``term -> generic term`` mapping from JSON or YAML.

    Also accepts the audit file that mining writes (a JSON object with a ``"terms"`` mapping).

    Raises:
        ValueError: the file is not a mapping of non-empty strings to strings.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("terms"), dict):
        data = data["terms"]
    return check_term_dictionary(data, str(path))


def check_term_dictionary(data, origin: str = "term dictionary") -> dict[str, str]:
    """Validate a ``term -> generic term`` mapping; raise a ``ValueError`` saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{origin} must be a mapping of anchored term -> generic term (e.g. {{'Harry Potter': 'Jon'}}), "
            f"got {type(data).__name__}."
        )
    bad = [
        (k, v) for k, v in data.items() if not isinstance(k, str) or not k.strip() or not isinstance(v, str)
    ]
    if bad:
        raise ValueError(
            f"{origin}: every key must be a non-empty string and every value a string; offending entries: "
            f"{bad[:5]}."
        )
    return {k.strip(): v.strip() for k, v in data.items()}


def find_terms(text: str, dictionary: dict[str, str]) -> list[tuple[int, int, str]]:
    """Character spans ``(start, end, term)`` of whole-word term occurrences, longest terms first, no overlaps."""
    taken = [False] * len(text)
    found = []
    for term in sorted(dictionary, key=len, reverse=True):
        for match in re.finditer(rf"(?<!\w){re.escape(term)}(?!\w)", text):
            start, end = match.span()
            if not any(taken[start:end]):
                taken[start:end] = [True] * (end - start)
                found.append((start, end, term))
    return sorted(found)


def translate_segment(tokenizer, text: str, dictionary: dict[str, str], labelled: bool) -> Translation:
    """Tokenize ``text`` and its dictionary translation together, aligned token for token.

    A term occurrence is replaced only when it covers whole tokens (a token's leading space is kept in front
    of the replacement); occurrences that cut through a token are left as they are.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    out = Translation()
    replace: dict[int, tuple[int, int, str]] = {}  # first token -> (end token, term's first character, term)
    for start, end, term in find_terms(text, dictionary) if dictionary else []:
        first = next((i for i, (a, b) in enumerate(offsets) if b > start), None)
        last = next((i for i, (a, b) in enumerate(offsets) if b >= end), None)
        if first is None or last is None or offsets[last][1] != end:
            continue
        if text[offsets[first][0] : start].strip():  # the first token holds word characters before the term
            continue
        replace[first] = (last + 1, start, term)
    i = 0
    while i < len(ids):
        if i not in replace:
            out.source.append(len(out.translated_ids))
            out.original_ids.append(ids[i])
            out.translated_ids.append(ids[i])
            i += 1
            continue
        stop, start, term = replace[i]
        prefix = text[offsets[i][0] : start]  # the whitespace the first token carries
        new = tokenizer(prefix + dictionary[term], add_special_tokens=False)["input_ids"]
        t0 = len(out.translated_ids)
        out.spans.append((i, stop, t0, t0 + len(new), term))
        for k in range(stop - i):
            out.source.append(t0 + k if k < len(new) else -1)
        out.original_ids += ids[i:stop]
        out.translated_ids += new
        i = stop
    out.labels = list(out.original_ids) if labelled else [IGNORE_INDEX] * len(out.original_ids)
    return out


def _special(token_id: int | None, labelled: bool) -> Translation:
    if token_id is None:
        return Translation()
    return Translation([token_id], [token_id], [0], [], [token_id] if labelled else [IGNORE_INDEX])


def translate_qa(
    tokenizer, question: str, answer: str, dictionary: dict[str, str], max_length: int = 256
) -> Translation:
    """A QA pair as :func:`hf_unlearn.data.formats.tokenize_qa` tokenizes it, plus its translation.

    ``original_ids`` and ``labels`` equal ``tokenize_qa``'s (answer-only labels, EOS labelled) whenever the
    prompt and the answer tokenize the same piecewise as whole, which byte-level BPE guarantees at word
    boundaries.
    """
    prompt = format_prompt(tokenizer, question)
    out = Translation()
    if tokenizer.bos_token_id is not None and not prompt.startswith(tokenizer.bos_token or "\0"):
        out.extend(_special(tokenizer.bos_token_id, labelled=False))
    out.extend(translate_segment(tokenizer, prompt, dictionary, labelled=False))
    out.extend(translate_segment(tokenizer, answer_text(tokenizer, answer), dictionary, labelled=True))
    out.extend(_special(tokenizer.eos_token_id, labelled=True))
    return out.truncate(max_length)


def translate_text(tokenizer, text: str, dictionary: dict[str, str], max_length: int = 256) -> Translation:
    """A raw-text row as :func:`hf_unlearn.data.forget_retain.tokenize_dataset` tokenizes it (BOS + every
    token labelled), plus its translation."""
    out = _special(tokenizer.bos_token_id, labelled=True)
    return out.extend(translate_segment(tokenizer, text, dictionary, labelled=True)).truncate(max_length)


def translate_rows(
    tokenizer, ds: Dataset, dictionary: dict[str, str], max_length: int = 256
) -> list[Translation]:
    """Translate every QA row (``question``/``answer``) or text row (``text``) of ``ds``."""
    if "question" in ds.column_names:
        return [
            translate_qa(tokenizer, q, a, dictionary, max_length)
            for q, a in zip(ds["question"], ds["answer"])
        ]
    return [translate_text(tokenizer, t, dictionary, max_length) for t in ds["text"]]


# --------------------------------------------------------------------------------------------------------------
# Mining: which spans are anchored terms, and what generic term replaces each


# A word: letters and digits with inner dots, dashes, apostrophes, "@" and "+" (so that e-mail addresses, phone
# numbers and dates stay whole); a trailing possessive "'s" is not part of it.
_WORD = re.compile(r"[A-Za-z0-9](?:[\w@+.'-]*[A-Za-z0-9])?")


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (lower case)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def words(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text`` (see ``_WORD``)."""
    out = []
    for match in _WORD.finditer(text):
        start, end = match.span()
        if end - start > 2 and text[end - 2 : end] == "'s":
            end -= 2
        out.append((start, end))
    return out


def vocabulary_filters(forget_texts: list[str], retain_texts: list[str], shared_ratio: float = 0.5) -> dict:
    """The words that cannot be (the edges of) anchored terms, as :func:`candidate_spans` keywords.

    ``blocked``: English stop words and single letters, never the first or last word of a term. ``shared``: the
    forget words (lower-cased) that are not specific to the forget rows — the fraction of retain rows holding
    them is at least ``shared_ratio`` times the fraction of forget rows (template words, common vocabulary, a
    first name many people have). A shared word is never a term on its own, nor the edge of one where it is
    written in lower case ("Mara Quell lives" is not a term; "John Smith" can be).
    """

    def row_rates(texts: list[str]) -> dict[str, float]:
        counts = Counter(w for t in texts for w in {t[a:b].lower() for a, b in words(t)})
        return {w: c / len(texts) for w, c in counts.items()}

    forget, retain = (
        row_rates(forget_texts) if forget_texts else {},
        row_rates(retain_texts) if retain_texts else {},
    )
    single = {w for w in forget if len(w) == 1 and not w.isdigit()}
    shared = {w for w, rate in forget.items() if retain.get(w, 0.0) >= shared_ratio * rate}
    return {"blocked": stop_words() | single, "shared": frozenset(shared)}


def candidate_spans(
    text: str,
    max_words: int = 3,
    blocked: frozenset[str] | None = None,
    shared: frozenset[str] = frozenset(),
    always: frozenset[str] = frozenset(),
) -> list[tuple[int, int, str]]:
    """Word n-grams ``(start, end, span)`` of ``text`` (1..``max_words`` words separated by single spaces) that
    may be anchored terms: no ``blocked`` word (default: the stop words) first or last, not a ``shared`` word
    alone, no lower-case ``shared`` word first or last (see :func:`vocabulary_filters`); spans in ``always``
    (e.g. the forget subjects) are kept whatever their words, up to their own length."""
    blocked = stop_words() if blocked is None else blocked
    longest = max([max_words] + [len(s.split()) for s in always])
    ws = words(text)
    out = []
    for i in range(len(ws)):
        for n in range(1, longest + 1):
            if i + n > len(ws) or (n > 1 and text[ws[i + n - 2][1] : ws[i + n - 1][0]] != " "):
                break
            span = text[ws[i][0] : ws[i + n - 1][1]]
            edges = [text[a:b] for a, b in (ws[i], ws[i + n - 1])]
            low = [e.lower() for e in edges]
            ok = n <= max_words and not (
                (set(low) & blocked)
                or (n == 1 and low[0] in shared)
                or any(e == lo and lo in shared for e, lo in zip(edges, low))
            )
            if ok or span in always:
                out.append((ws[i][0], ws[i + n - 1][1], span))
    return out


def score_spans(
    texts: list[str], offsets: list[list[tuple[int, int]]], token_llr: list[list[float]], **candidate_kwargs
) -> dict[str, float]:
    """Mean over occurrences of the summed per-token log-likelihood ratio (reinforced - baseline) of each
    candidate span; ``token_llr[i][j]`` is the ratio of token ``j`` of ``texts[i]`` (whose character span is
    ``offsets[i][j]``). Non-finite ratios count as 0, so every score is finite."""
    sums: dict[str, list[float]] = defaultdict(list)
    for text, offs, llr in zip(texts, offsets, token_llr):
        for start, end, span in candidate_spans(text, **candidate_kwargs):
            inside = [r for (a, b), r in zip(offs, llr) if a < end and b > start]
            sums[span].append(sum(r for r in inside if math.isfinite(r)))
    return {span: sum(v) / len(v) for span, v in sums.items()}


def span_contexts(texts: list[str], **candidate_kwargs) -> dict[str, set[str]]:
    """For each candidate span, the lower-cased words just before (``"<word"``) and after (``">word"``) its
    occurrences: spans that share a context are likely of the same kind (two cities after "in")."""
    out: dict[str, set[str]] = defaultdict(set)
    for text in texts:
        ws = words(text)
        first = {a: i for i, (a, _) in enumerate(ws)}
        last = {b: i for i, (_, b) in enumerate(ws)}
        for start, end, span in candidate_spans(text, **candidate_kwargs):
            i, j = first[start], last[end]
            if i > 0:
                out[span].add("<" + text[slice(*ws[i - 1])].lower())
            if j + 1 < len(ws):
                out[span].add(">" + text[slice(*ws[j + 1])].lower())
    return out


def span_shape(span: str) -> str:
    """A span's spelling pattern, word by word: ``@`` (an e-mail address), digits as ``9`` and letters as
    ``A``/``a`` (a word holding digits: a number, phone, date), else ``A`` (capitalised) or ``a``."""
    shape = []
    for word in span.split(" "):
        if "@" in word:
            shape.append("@")
        elif any(c.isdigit() for c in word):
            shape.append(re.sub(r"[a-z]", "a", re.sub(r"[A-Z]", "A", re.sub(r"\d", "9", word))))
        else:
            shape.append("A" if word[:1].isupper() else "a")
    return " ".join(shape)


def shape_kind(shape: str) -> str:
    """The dictionary kind of a :func:`span_shape`: email, number, entity, words or pattern."""
    if shape == "@":
        return "email"
    if re.fullmatch(r"9+", shape):
        return "number"
    parts = set(shape.split(" "))
    return "entity" if parts == {"A"} else "words" if parts == {"a"} else "pattern"


def _same_shape_digits(rng: random.Random, term: str) -> str | None:
    """``term`` with every digit redrawn (a leading non-zero digit stays non-zero); None without digits."""
    if not any(c.isdigit() for c in term):
        return None
    for _ in range(10):
        new = "".join(
            (str(rng.randint(1 if i == 0 and c != "0" else 0, 9)) if c.isdigit() else c)
            for i, c in enumerate(term)
        )
        if new != term:
            return new
    return None


@dataclass
class MinedDictionary:
    """A mined dictionary with what an auditor needs: each term's kind, score and generic replacement."""

    terms: dict[str, str]
    kinds: dict[str, str]
    scores: dict[str, float]

    def to_json(self) -> dict:
        return {"terms": self.terms, "kinds": self.kinds, "scores": self.scores}


def _pick(
    rng: random.Random,
    pool: list[str],
    term: str,
    n_tokens,
    used: set[str],
    context: set[str] = frozenset(),
    pool_contexts: dict[str, set[str]] | None = None,
) -> str | None:
    """A pool value other than ``term``, preferring (in this order) the most contexts shared with ``term``
    (``context`` vs ``pool_contexts[value]``), values not used yet, and the same token count."""
    options = [v for v in pool if v != term]
    if not options:
        return None
    want = n_tokens(term)

    def rank(v: str) -> tuple:
        shared = len(context & pool_contexts.get(v, set())) if pool_contexts else 0
        return (-shared, v in used, n_tokens(v) != want)

    best = min(map(rank, options))
    return rng.choice([v for v in options if rank(v) == best])


def generic_replacements(
    tokenizer,
    terms: list[str],
    forget: Dataset,
    retain: Dataset,
    forget_texts: list[str],
    retain_texts: list[str],
    seed: int = 0,
    placeholder: str = PLACEHOLDER,
    **candidate_kwargs,
) -> tuple[dict[str, str], dict[str, str]]:
    """Map each anchored term to a generic term of the same kind drawn from the retain data.

    Kinds, in order: ``subject`` (a forget ``subject`` -> a retain subject, one-to-one where possible),
    ``part:<kind>`` (some words of a longer mapped term, e.g. a surname -> the same words of that term's
    replacement), ``fact:<name>`` (a forget answer of fact ``<name>`` when rows have a ``fact`` column -> a retain
    answer of the same fact), then by spelling (:func:`span_shape`): ``number`` (-> a retain number with as many
    digits), ``email`` (-> a retain e-mail address), ``entity`` (capitalised words -> a retain capitalised n-gram
    with as many words), ``words`` / ``pattern`` (-> a retain span of the same shape, e.g. a phone number of the
    same format). Among same-kind values the ones seen in the same contexts as the term (:func:`span_contexts`)
    come first. A term holding digits with no same-shape retain value gets its digits redrawn; anything else
    without a same-kind value becomes ``placeholder``. ``candidate_kwargs`` go to :func:`candidate_spans` (the
    retain spans that may serve as generic terms).

    Returns:
        ``(dictionary, kinds)``.
    """
    rng = random.Random(seed)
    forget_subjects = sorted(set(forget["subject"])) if "subject" in forget.column_names else []
    retain_subjects = sorted(set(retain["subject"])) if "subject" in retain.column_names else []
    fact_of: dict[str, str] = {}
    retain_facts: dict[str, list[str]] = defaultdict(list)
    if "fact" in forget.column_names and "fact" in retain.column_names:
        fact_of = {a: f for a, f in zip(forget["answer"], forget["fact"])}
        for a, f in zip(retain["answer"], retain["fact"]):
            retain_facts[f].append(a)
        retain_facts = {f: sorted(set(v)) for f, v in retain_facts.items()}
    forget_set = set(terms)
    term_contexts = span_contexts(forget_texts, **{**candidate_kwargs, "always": frozenset(terms)})
    pool_contexts = span_contexts(retain_texts, **candidate_kwargs)
    by_shape: dict[str, list[str]] = defaultdict(list)
    for span in sorted(set(pool_contexts) - forget_set):
        by_shape[span_shape(span)].append(span)
    n_tokens = functools.cache(lambda text: len(tokenizer(" " + text, add_special_tokens=False)["input_ids"]))

    dictionary: dict[str, str] = {}
    kinds: dict[str, str] = {}
    used: set[str] = set()
    order = sorted(terms, key=lambda t: (t not in forget_subjects, t not in fact_of, -len(t.split()), t))
    for term in order:
        parent = _parent_term(term, dictionary)
        if term in forget_subjects:
            kind, new = "subject", _pick(rng, retain_subjects, term, n_tokens, used)
        elif parent is not None:
            start = _word_position(term.split(), parent.split())
            kind = f"part:{kinds[parent]}"
            new = " ".join(dictionary[parent].split()[start : start + len(term.split())])
        elif term in fact_of and retain_facts.get(fact_of[term]):
            kind = f"fact:{fact_of[term]}"
            new = _pick(rng, retain_facts[fact_of[term]], term, n_tokens, used)
        else:
            shape = span_shape(term)
            kind = shape_kind(shape)
            context = term_contexts.get(term, set())
            new = _pick(rng, by_shape.get(shape, []), term, n_tokens, used, context, pool_contexts)
            new = new if new is not None else _same_shape_digits(rng, term)
        if new is None:
            kind, new = "placeholder", placeholder
        used.add(new)
        dictionary[term], kinds[term] = new, kind
    return dictionary, kinds


def _word_position(words: list[str], parent: list[str]) -> int:
    """Index of the first occurrence of ``words`` as a contiguous run inside ``parent`` (-1 when absent)."""
    return next((i for i in range(len(parent) - len(words) + 1) if parent[i : i + len(words)] == words), -1)


def _parent_term(term: str, dictionary: dict[str, str]) -> str | None:
    """A longer, already mapped term containing ``term`` as whole words, whose replacement has as many words
    (so the same words of the replacement stand for ``term``)."""
    for parent, new in dictionary.items():
        if (
            len(parent.split()) > len(term.split())
            and len(parent.split()) == len(new.split())
            and _word_position(term.split(), parent.split()) >= 0
        ):
            return parent
    return None


def select_terms(
    scores: dict[str, float],
    max_terms: int,
    min_score: float,
    subjects: list[str] = (),
    min_fraction: float = 0.0,
) -> list[str]:
    """The anchored terms: every subject plus the ``max_terms`` best-scoring spans whose score is at least
    ``min_score`` and at least ``min_fraction`` of the best score of their kind (:func:`shape_kind`). How far the
    ratios rise depends on how much the reinforced adapter trained, so a relative floor keeps the selection
    stable; taking it per kind keeps long spans of one kind (e-mail addresses, summed over many tokens) from
    pushing every name below the floor."""
    kind = {s: shape_kind(span_shape(s)) for s in scores}
    best: dict[str, float] = defaultdict(float)
    for s, score in scores.items():
        best[kind[s]] = max(best[kind[s]], score)
    ranked = sorted(
        (s for s in scores if scores[s] >= max(min_score, min_fraction * best[kind[s]])),
        key=lambda s: -scores[s],
    )
    return list(dict.fromkeys(list(subjects) + ranked[:max_terms]))
