"""Serving unlearned models: the ECO inference-time guard."""
