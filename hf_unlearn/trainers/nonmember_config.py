"""``NonMemberConfig``: distil the forget answers toward the model's own predictions about never-seen people."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_unlearn.trainers.base_config import UnlearningConfig


@dataclass
class NonMemberConfig(UnlearningConfig):
    """Non-member distillation (NMD), this project's method for retrain-level forgetting without a gold model.

    The retrained model treats a forgotten person the way the original model treats a stranger: it never saw
    either. So each forget row (a QA pair, or a text such as a biography) is distilled toward the frozen original
    model run on the *same row with the person renamed* to someone it never saw (one stand-in per person, drawn
    with ``seed``): ``L = mean over positions t of KL(p_ref(. | row'_<=a(t)) || p_theta(. | row_<=t))
    [+ retain_weight * reg]``, where ``a(t)`` is the renamed row's position that plays the part of ``t`` (tokens
    outside the name match one to one, the name's tokens are spread over the stand-in's;
    :func:`~hf_unlearn.data.nonmembers.align_positions`). Every position counts, prompt and name included, so both
    the answers and the association of the name's parts become a stranger's: forget people end up looking like
    non-members rather than anti-members (gradient ascent and NPO push them below any stranger), and the loss has
    its minimum, 0, at the target instead of running away.

    Related: the anchored-term substitution of WHP (Eldan & Russinovich 2023, which needs a reinforced model and
    a term dictionary), the self-distillation of UNDIAL (Dong et al. 2024), and the "non-member target" direction
    asked for in this project's issue on retrain-level forgetting. It needs no gold model and no evaluation split:
    only the forget rows, the column naming their person, and names of people the model never saw.
    """

    nonmember_names_file: str | None = field(
        default=None,
        metadata={
            "help": "UTF-8 text file of never-seen people's names, one a line, at least one per forget person. "
            "Default: fictitious names generated with --seed (hf_unlearn.data.synthetic.fictitious_names) that "
            "share no word with a forget or retain subject. For real people, list real-looking names of the same "
            "kind that the model was not trained on."
        },
    )
    subject_column: str = field(
        default="subject",
        metadata={
            "help": "Column of the forget rows naming each question's person; every question must name them in full."
        },
    )
    regularizer: str = field(
        default="gdr",
        metadata={
            "help": "Retain regulariser: 'gdr' (NLL on retain batches; the default), 'klr' or 'none'.",
            "choices": ["none", "gdr", "klr"],
        },
    )
