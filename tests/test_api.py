"""The public API: ``from hf_unlearn import ...`` for every listed name, and ``import hf_unlearn`` stays cheap."""

import subprocess
import sys
from pathlib import Path

import pytest

import hf_unlearn

ROOT = Path(__file__).resolve().parents[1]


def test_import_hf_unlearn_loads_neither_torch_nor_transformers():
    code = "import sys, hf_unlearn; print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_the_trainer_pairs_import_from_the_top_level():
    from hf_unlearn import (
        GradientAscentConfig,
        GradientAscentTrainer,
        NPOConfig,
        NPOTrainer,
        SimNPOConfig,
        SimNPOTrainer,
        UnlearningTrainer,
        WHPConfig,
        WHPTrainer,
    )
    from hf_unlearn.trainers.npo_trainer import NPOTrainer as defined

    assert NPOTrainer is defined
    for trainer in (GradientAscentTrainer, NPOTrainer, SimNPOTrainer, WHPTrainer):
        assert issubclass(trainer, UnlearningTrainer)
    assert NPOConfig(output_dir="x").beta > 0 and SimNPOConfig and GradientAscentConfig and WHPConfig


def test_every_public_name_resolves_to_its_module():
    for name, module in hf_unlearn._API.items():
        value = getattr(hf_unlearn, name)
        assert value.__module__ == module, (name, value.__module__, module)
    assert set(hf_unlearn._API) <= set(dir(hf_unlearn))


def test_an_unknown_name_says_which_names_exist():
    with pytest.raises(AttributeError, match="no attribute 'NPOTrainr'.*'NPOTrainer'"):
        hf_unlearn.NPOTrainr  # noqa: B018
