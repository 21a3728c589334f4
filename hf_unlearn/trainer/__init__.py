"""Unlearning trainers: one config/trainer pair per method."""
