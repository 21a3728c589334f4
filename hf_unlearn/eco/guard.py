"""The ECO guard: classify a prompt, and if it is about the forget topic, hand the model corrupted embeddings.

:class:`ECOGuard` needs only a tokenizer, the classifier, and the served model's input-embedding matrix, so
serving engines (vLLM with ``enable_prompt_embeds=True``) can use it without a transformers model::

    guard = ECOGuard.from_pretrained("guard_dir", tokenizer, embedding_weight=input_embedding_weight("model_dir"))
    guard.guard("Question: Where was Fairkdas Brondwell born?\\nAnswer:")
    # -> {"prompt_embeds": tensor (seq, hidden)}   (flagged: corrupted embeddings)
    # -> {"prompt_token_ids": [...]}                 (not flagged: the prompt's token ids)

:class:`GuardedModel` is the transformers backend: it wraps a causal LM, corrupts the prompt embeddings of
flagged rows and runs the real model on ``inputs_embeds`` for both ``forward`` and ``generate``.

A guard directory holds ``guard_config.json`` (corruption, strength, token selection, seed, subjects, search
record) and ``classifier/`` (:class:`~hf_unlearn.eco.classifier.PromptClassifier`).
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import torch

from hf_unlearn.eco.classifier import LockHolder, PromptClassifier
from hf_unlearn.eco.config import GuardConfig
from hf_unlearn.eco.corruption import corrupt
from hf_unlearn.eco.names import NameMatcher, name_parts, named_in_part, surname_parts, whole_words
from hf_unlearn.eco.response import identified_subjects, states_fact
from hf_unlearn.io import read_json, write_json_atomic

GUARD_CONFIG_FILE = "guard_config.json"
CLASSIFIER_DIR = "classifier"
_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "embed_in.weight", "word_embeddings.weight")


def subject_token_mask(tokenizer, ids: list[int], subjects: list[str]) -> torch.Tensor:
    """``(seq,)`` bool: the tokens of ``ids`` whose decoded text overlaps a mention of one of ``subjects``.

    Matching is case-insensitive on the decoded prompt; each token's character span comes from decoding the
    growing prefix, so it works for any tokenizer and for prompts given as token ids.
    """
    ends = [len(tokenizer.decode(ids[: i + 1])) for i in range(len(ids))]
    text = tokenizer.decode(ids).lower()
    spans = [m.span() for s in subjects if s.strip() for m in re.finditer(re.escape(s.strip().lower()), text)]
    mask = torch.zeros(len(ids), dtype=torch.bool)
    start = 0
    for i, end in enumerate(ends):
        mask[i] = any(a < end and start < b for a, b in spans)
        start = end
    return mask


def input_embedding_weight(model_dir: str | Path) -> torch.Tensor:
    """The input-embedding matrix ``(vocab, hidden)`` of a saved model, read from its safetensors files only
    (no model is built), for engines that serve the model themselves.

    Raises:
        ValueError: no safetensors file, or no (or several) tensors named like an input embedding.
    """
    from safetensors import safe_open

    from hf_unlearn.packaged import resolve_model_source

    model_dir = resolve_model_source(model_dir)
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"No *.safetensors in {model_dir}; save the model with save_pretrained first.")
    found = []
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            found += [(path, k) for k in f.keys() if k.endswith(_EMBEDDING_SUFFIXES)]
    if len(found) != 1:
        raise ValueError(
            f"Expected one input-embedding tensor (a name ending in {_EMBEDDING_SUFFIXES}) in {model_dir}, found "
            f"{[k for _, k in found]}; pass embedding_weight=model.get_input_embeddings().weight instead."
        )
    path, key = found[0]
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(key)


class ECOGuard(LockHolder):
    """Prompt classifier + embedding corruption for one served model.

    Args:
        classifier: the fitted prompt classifier.
        tokenizer: the served model's tokenizer.
        config: corruption settings.
        embedding_weight: the served model's input-embedding matrix ``(vocab, hidden)``; needed by
            :meth:`guard` for flagged prompts (not by :class:`GuardedModel`, which embeds with the model).
        cache_size: classifier decisions remembered per prompt text (oldest dropped first), so repeated
            prompts (scoring, the strength search) are encoded once and a server's memory stays bounded.
    """

    def __init__(
        self,
        classifier: PromptClassifier,
        tokenizer,
        config: GuardConfig | None = None,
        embedding_weight: torch.Tensor | None = None,
        cache_size: int = 4096,
    ):
        self.classifier = classifier
        self.tokenizer = tokenizer
        self.config = config or GuardConfig()
        if self.config.token_selection == "subjects" and not self.config.subjects:
            raise ValueError(
                "token_selection='subjects' needs the forget subjects (the forget data's 'subject' column or an "
                "entity list in GuardConfig.subjects); none were given."
            )
        self.embedding_weight = embedding_weight
        self.cache_size = cache_size
        self._flag_cache: dict[str, bool] = {}
        self._facts: set[int] | None = None  # config.response_facts as a set, built on first use
        self._name_parts = name_parts(self.config.subjects)  # for the response check's shared-part lookup
        self._namesakes = whole_words(n for names in self.config.namesakes.values() for n in names)
        self._answer_matcher: NameMatcher | None = None  # built on first use, see answer_matcher
        self._lock = threading.Lock()  # a server's two guard stages run in two threads

    # -- classification -------------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str | list[int], add_special_tokens: bool = True) -> list[int]:
        """Token ids of a prompt; a string is tokenized as engines do for completions, with the tokenizer's
        special tokens (pass ``add_special_tokens=False`` for chat-templated text that already holds them)."""
        if isinstance(prompt, str):
            return self.tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        if isinstance(prompt, (list, tuple)) and all(isinstance(t, int) for t in prompt):
            return list(prompt)
        raise TypeError(f"A prompt is a str or a list of int token ids; got {type(prompt).__name__}.")

    def prompt_text(self, prompt: str | list[int]) -> str:
        """The text the classifier reads: the prompt itself, or its token ids decoded."""
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.decode(self.prompt_ids(prompt), skip_special_tokens=True)

    def flags(self, prompts: list[str | list[int]], fast_only: bool = False) -> list[bool | None]:
        """Whether each prompt is a forget-topic prompt (one classifier batch for the uncached ones).

        With ``fast_only`` the classifier's encoder does not run (:meth:`PromptClassifier.triage`): a prompt that
        needs it gets ``None``.
        """
        texts = [self.prompt_text(p) for p in prompts]
        with self._lock:
            known = {t: self._flag_cache[t] for t in texts if t in self._flag_cache}
        todo = [t for t in dict.fromkeys(texts) if t not in known]
        if todo:
            described = {t: True for t in todo if self.identified(t)}  # a forget person described, not named
            todo = [t for t in todo if t not in described]
            if not todo:
                new = {}
            elif fast_only:
                flags, decided = self.classifier.triage(todo)
                new = {t: bool(f) for t, f, d in zip(todo, flags, decided) if d}
            else:
                new = dict(zip(todo, (bool(f) for f in self.classifier.predict(todo))))
            new.update(described)
            known.update(new)
            with self._lock:
                self._flag_cache.update(new)
                for old in list(self._flag_cache)[: max(0, len(self._flag_cache) - self.cache_size)]:
                    del self._flag_cache[old]
        return [known.get(t) for t in texts]

    # -- corruption -----------------------------------------------------------------------------------------
    def corrupt_embeds(self, ids: list[int], embeds: torch.Tensor) -> torch.Tensor:
        """Corrupt the ``(seq, hidden)`` embeddings of the prompt ``ids`` (deterministic per prompt)."""
        c = self.config
        positions = None
        if c.token_selection == "subjects":
            positions = subject_token_mask(self.tokenizer, ids, c.subjects).to(embeds.device)
        seed = c.seed * 1_000_003 + zlib.crc32(repr(list(ids)).encode())
        return corrupt(embeds, c.corruption, c.strength, c.dims, seed, positions)

    def embed(self, ids: list[int]) -> torch.Tensor:
        """``(seq, hidden)`` embeddings of ``ids`` from the served model's embedding matrix."""
        if self.embedding_weight is None:
            raise ValueError(
                "This guard has no embedding matrix; pass embedding_weight= (e.g. "
                "input_embedding_weight(model_dir) or model.get_input_embeddings().weight)."
            )
        return self.embedding_weight[torch.tensor(ids, device=self.embedding_weight.device)].detach()

    def guard(self, prompt: str | list[int], add_special_tokens: bool = True) -> dict:
        """``{"prompt_token_ids": ids}`` for a clean prompt, ``{"prompt_embeds": (seq, hidden)}`` for a flagged one."""
        return self.guard_batch([prompt], add_special_tokens)[0]

    def guard_batch(
        self, prompts: list[str | list[int]], add_special_tokens: bool = True, fast_only: bool = False
    ) -> list[dict | None]:
        """:meth:`guard` for many prompts, classified in one batch; with ``fast_only`` (see :meth:`flags`), ``None``
        for each prompt that needs the classifier's encoder."""
        out = []
        for prompt, flagged in zip(prompts, self.flags(prompts, fast_only)):
            ids = self.prompt_ids(prompt, add_special_tokens)
            if flagged is None:
                out.append(None)
            elif flagged:
                out.append(self.corrupted(ids))
            else:
                out.append({"prompt_token_ids": ids})
        return out

    def corrupted(self, ids: list[int]) -> dict:
        """``{"prompt_embeds": (seq, hidden)}``: the corrupted embeddings of ``ids``, whatever the classifier says."""
        with torch.no_grad():
            return {"prompt_embeds": self.corrupt_embeds(ids, self.embed(ids))}

    def named_in_part(self, text: str) -> set[str]:
        """The forget subjects (``config.subjects``) one of whose name parts ``text`` holds as a word, distinctive
        or not. A part shared with a retain person never flags a prompt, but the response check still looks for
        that forget subject's facts in the answer ("Where was <shared surname> born?") — unless the part stands
        inside the full name of a retain person who holds it (``config.namesakes``)."""
        return named_in_part(self._name_parts, text, self._namesakes)

    def identified(self, text: str) -> set[str]:
        """The forget subjects whose identifying fact (``config.identifying_facts``) ``text`` holds."""
        if not self.config.identifying_facts:
            return set()
        return identified_subjects(
            bytes.fromhex(self.config.response_key), self.config.identifying_facts, text
        )

    # -- the response check ---------------------------------------------------------------------------------
    @property
    def answer_matcher(self) -> NameMatcher:
        """The matcher that says whether an *answer* names a forget subject: the classifier's, with its single name
        parts cut to the surname's (:func:`~hf_unlearn.eco.names.surname_parts`); a first name alone in an answer
        does not count (it still does in a prompt, and a fact of the person it names still leaks). Names match
        as canonical whole words, near-miss spellings only with ``config.response_fuzzy_names``."""
        if self._answer_matcher is None:
            c = self.classifier.config
            parts = surname_parts(c.entities, c.entity_parts)
            fuzzy = c.fuzzy_names and self.config.response_fuzzy_names
            self._answer_matcher = NameMatcher(c.entities, parts, fuzzy)
        return self._answer_matcher

    def leaked_subjects(self, prompt: str | list[int], response: str, known: Iterable[str] = ()) -> set[str]:
        """The forget subjects ``response`` leaks (empty: none): those it names, and those named by ``prompt`` (or
        given in ``known``) whose stored facts it states (:mod:`~hf_unlearn.eco.response`; used when
        ``config.response_check`` is on)."""
        matcher = self.classifier.matcher
        leaked = self.answer_matcher.matched(response) | self.identified(response)
        if not self.config.response_facts:
            return leaked
        if self._facts is None:
            self._facts = set(self.config.response_facts)
        key = bytes.fromhex(self.config.response_key)
        text = self.prompt_text(prompt)
        asked = matcher.matched(text) | self.named_in_part(text) | set(known)
        return leaked | {s for s in asked if states_fact(key, self._facts, s, response)}

    # -- persistence ----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``guard_config.json`` and ``classifier/`` into ``directory``."""
        directory = Path(directory)
        self.classifier.save_pretrained(directory / CLASSIFIER_DIR)
        write_json_atomic(directory / GUARD_CONFIG_FILE, asdict(self.config))

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, tokenizer, embedding_weight: torch.Tensor | None = None
    ) -> ECOGuard:
        directory = Path(directory)
        if not (directory / GUARD_CONFIG_FILE).exists():
            raise ValueError(
                f"No {GUARD_CONFIG_FILE} in {directory}; build a guard with 'hf-unlearn eco-fit --out {directory}'."
            )
        config = GuardConfig(**read_json(directory / GUARD_CONFIG_FILE))
        return cls(
            PromptClassifier.from_pretrained(directory / CLASSIFIER_DIR), tokenizer, config, embedding_weight
        )


class GuardedModel(torch.nn.Module):
    """A causal LM behind an :class:`ECOGuard` (the transformers backend, no vLLM needed).

    ``forward`` and ``generate`` take the usual ``input_ids`` / ``attention_mask``; the attended tokens of each
    row are its prompt unless ``prompt_lengths`` (``(B,)``, the first that many attended tokens) says where the
    prompt ends — teacher-forced scorers pass it so that answers are never corrupted; a row whose prompt is empty
    (length 0: a raw text scored as it is) is never classified nor corrupted. Flagged rows run on corrupted
    ``inputs_embeds``; ``generate`` returns prompt + new tokens like ``model.generate(input_ids=...)``.

    The guard lives in the serving path only: :attr:`unguarded` is the wrapped model itself, the weights that a
    white-box attacker (the relearning and quantization attacks of the evaluation suite) holds.
    """

    accepts_prompt_lengths = True

    def __init__(self, model, guard: ECOGuard):
        super().__init__()
        self.model = model
        self.guard = guard

    @property
    def config(self):
        return self.model.config

    @property
    def unguarded(self):
        """The wrapped model: what the weights compute without the guard (the white-box view)."""
        return self.model

    def guarded_embeds(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        prompt_lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor, list[bool]]:
        """``(B, T, hidden)`` input embeddings with flagged rows' prompt tokens corrupted, and the flags."""
        embeds = self.model.get_input_embeddings()(input_ids)  # (B, T, H)
        mask = (
            torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        )
        positions = []
        for b in range(input_ids.shape[0]):
            pos = mask[b].nonzero().squeeze(-1)
            positions.append(pos if prompt_lengths is None else pos[: int(prompt_lengths[b])])
        prompts = [input_ids[b, pos].tolist() for b, pos in enumerate(positions)]
        asked = [i for i, ids in enumerate(prompts) if ids]  # an empty prompt is never flagged
        flags = [False] * len(prompts)
        for i, flagged in zip(asked, self.guard.flags([prompts[i] for i in asked]) if asked else []):
            flags[i] = bool(flagged)
        rows = []
        for b, (pos, ids, flagged) in enumerate(zip(positions, prompts, flags)):
            row = embeds[b]
            if flagged:
                row = row.clone()
                row[pos] = self.guard.corrupt_embeds(ids, embeds[b, pos])
            rows.append(row)
        return torch.stack(rows), flags

    def forward(self, input_ids, attention_mask=None, prompt_lengths=None, **kwargs):
        embeds, _ = self.guarded_embeds(input_ids, attention_mask, prompt_lengths)
        return self.model(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, **kwargs):
        embeds, _ = self.guarded_embeds(input_ids, attention_mask, None)
        new = self.model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)
