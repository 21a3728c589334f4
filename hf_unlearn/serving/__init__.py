"""Serving a guarded model: vLLM / transformers engines, the OpenAI-compatible server, the load test."""
