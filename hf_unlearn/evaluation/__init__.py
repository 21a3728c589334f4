"""Evaluation against the retrained ("gold") model."""
