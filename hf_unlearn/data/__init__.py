"""Forget / retain / holdout data: the embedded default, loaders, formats and collators."""
