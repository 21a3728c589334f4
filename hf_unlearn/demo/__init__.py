"""``hf-unlearn demo``'s library side: the embedded default pipeline (``pipeline``) and its method rows (``methods``)."""
