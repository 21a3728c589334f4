"""ECO (Liu et al. 2024, "LLM Unlearning via Embedding-Corrupted Prompts"): prompt classifier, embedding corruption, zeroth-order strength search, guard."""
