"""``hf_unlearn``: machine unlearning for Hugging Face causal language models.

The public API, imported on first use (``import hf_unlearn`` loads neither torch nor transformers)::

    from hf_unlearn import NPOConfig, NPOTrainer

    args = NPOConfig(output_dir="runs/npo", regularizer="gdr")
    trainer = NPOTrainer(model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    trainer.train()
    trainer.save_unlearned("runs/npo")

Every name below lives in one module of the package (see the README's layout); this table is the only place
that lists them together.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_API: dict[str, str] = {
    # trainers: one config/trainer pair per method, on a shared base
    "UnlearningConfig": "hf_unlearn.trainers.base_config",
    "UnlearningTrainer": "hf_unlearn.trainers.base_trainer",
    "GradientAscentConfig": "hf_unlearn.trainers.grad_ascent_config",
    "GradientAscentTrainer": "hf_unlearn.trainers.grad_ascent_trainer",
    "NPOConfig": "hf_unlearn.trainers.npo_config",
    "SimNPOConfig": "hf_unlearn.trainers.npo_config",
    "NPOTrainer": "hf_unlearn.trainers.npo_trainer",
    "SimNPOTrainer": "hf_unlearn.trainers.npo_trainer",
    "IdkNLLConfig": "hf_unlearn.trainers.idk_config",
    "IdkDPOConfig": "hf_unlearn.trainers.idk_config",
    "IdkNLLTrainer": "hf_unlearn.trainers.idk_trainer",
    "IdkDPOTrainer": "hf_unlearn.trainers.idk_trainer",
    "RMUConfig": "hf_unlearn.trainers.rmu_config",
    "RMUTrainer": "hf_unlearn.trainers.rmu_trainer",
    "UNDIALConfig": "hf_unlearn.trainers.undial_config",
    "UNDIALTrainer": "hf_unlearn.trainers.undial_trainer",
    "NonMemberConfig": "hf_unlearn.trainers.nonmember_config",
    "NonMemberTrainer": "hf_unlearn.trainers.nonmember_trainer",
    "WHPConfig": "hf_unlearn.trainers.whp.config",
    "WHPTrainer": "hf_unlearn.trainers.whp.trainer",
    "DP2Config": "hf_unlearn.trainers.dp2.config",
    "DP2Trainer": "hf_unlearn.trainers.dp2.trainer",
    "TrainConfig": "hf_unlearn.trainers.finetune_config",
    "train_lm": "hf_unlearn.trainers.finetune",
    # evaluation against the retrained model, and the gold-free audit
    "EvalConfig": "hf_unlearn.evaluation.config",
    "evaluate_model": "hf_unlearn.evaluation.suite",
    # ECO, the inference-time guard
    "GuardConfig": "hf_unlearn.eco.config",
    "ClassifierConfig": "hf_unlearn.eco.config",
    "ECOGuard": "hf_unlearn.eco.guard",
    "GuardedModel": "hf_unlearn.eco.guard",
    "input_embedding_weight": "hf_unlearn.eco.guard",
    "fit_guard": "hf_unlearn.eco.fit",
    "GuardedLLM": "hf_unlearn.serving.engine",
    # model cards and release
    "write_model_card": "hf_unlearn.hub.card",
    "push": "hf_unlearn.hub.release",
    # data and models
    "load_rows": "hf_unlearn.data.loading",
    "synthetic_splits": "hf_unlearn.data.synthetic",
    "load_refusals": "hf_unlearn.data.refusals",
    "load_model_and_tokenizer": "hf_unlearn.models",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(
            f"module 'hf_unlearn' has no attribute {name!r}; the public names are {sorted(_API)}."
        )
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
