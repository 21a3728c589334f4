"""Unlearning trainers: one config/trainer pair per method, on a shared ``UnlearningTrainer`` base.

Import the pairs from their modules, e.g. ``from hf_unlearn.trainer.npo_trainer import NPOTrainer``.
"""
