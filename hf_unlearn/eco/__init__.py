"""ECO (Liu et al. 2024, "LLM Unlearning via Embedding-Corrupted Prompts"), the method: prompt classifier, embedding
corruption, zeroth-order strength search, guard, fit."""
