"""Unlearning trainers: one config/trainer pair per method, on a shared ``UnlearningTrainer`` base.

Import the pairs from :mod:`hf_unlearn` (``from hf_unlearn import NPOConfig, NPOTrainer``) or their modules
(``hf_unlearn.trainers.npo_trainer``). :data:`METHODS` names every method's pair by import path, so looking a
method up (``hf-unlearn unlearn <method>``) imports nothing until the pair is needed; a new method is one line
there. WHP and DP2Unlearning, whose pipelines have several stages, are the sub-packages ``whp/`` and ``dp2/``.
"""

from __future__ import annotations

import importlib

# method name -> ("module:ConfigClass", "module:TrainerClass"); regularised variants use --regularizer.
METHODS: dict[str, tuple[str, str]] = {
    "ga": (
        "hf_unlearn.trainers.grad_ascent_config:GradientAscentConfig",
        "hf_unlearn.trainers.grad_ascent_trainer:GradientAscentTrainer",
    ),
    "npo": ("hf_unlearn.trainers.npo_config:NPOConfig", "hf_unlearn.trainers.npo_trainer:NPOTrainer"),
    "simnpo": (
        "hf_unlearn.trainers.npo_config:SimNPOConfig",
        "hf_unlearn.trainers.npo_trainer:SimNPOTrainer",
    ),
    "idknll": (
        "hf_unlearn.trainers.idk_config:IdkNLLConfig",
        "hf_unlearn.trainers.idk_trainer:IdkNLLTrainer",
    ),
    "idkdpo": (
        "hf_unlearn.trainers.idk_config:IdkDPOConfig",
        "hf_unlearn.trainers.idk_trainer:IdkDPOTrainer",
    ),
    "rmu": ("hf_unlearn.trainers.rmu_config:RMUConfig", "hf_unlearn.trainers.rmu_trainer:RMUTrainer"),
    "undial": (
        "hf_unlearn.trainers.undial_config:UNDIALConfig",
        "hf_unlearn.trainers.undial_trainer:UNDIALTrainer",
    ),
    "nonmember": (
        "hf_unlearn.trainers.nonmember_config:NonMemberConfig",
        "hf_unlearn.trainers.nonmember_trainer:NonMemberTrainer",
    ),
    "whp": ("hf_unlearn.trainers.whp.config:WHPConfig", "hf_unlearn.trainers.whp.trainer:WHPTrainer"),
}


def import_path(path: str):
    """The attribute named by ``"package.module:attribute"``."""
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def resolve_method(name: str):
    """``(ConfigClass, TrainerClass)`` of a registered method.

    Raises:
        ValueError: the name is not in :data:`METHODS`.
    """
    if name not in METHODS:
        raise ValueError(f"Unknown unlearning method {name!r}; choose one of {sorted(METHODS)}.")
    return tuple(import_path(path) for path in METHODS[name])
