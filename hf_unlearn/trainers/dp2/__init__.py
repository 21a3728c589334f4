"""DP2Unlearning: a DP-SGD model trained once, deletion requests answered by retain fine-tuning of it."""
