"""The committed example cards (``model_cards/``, written by ``hf-unlearn demo --model_cards_dir model_cards``)."""

from pathlib import Path

from huggingface_hub import ModelCard
from test_privacy import name_words, names_in

from hf_unlearn.data.synthetic import synthetic_splits
from hf_unlearn.demo.methods import DEMO_METHODS
from hf_unlearn.hub.card import validate_card_offline

CARDS = Path(__file__).resolve().parents[1] / "model_cards"
RUN = {"n_people": 40, "n_holdout": 20, "forget_pct": 10, "seed": 0}  # the run model_cards/README.md names


def test_every_demo_method_that_saves_a_model_has_a_committed_card():
    cards = {p.stem for p in CARDS.glob("*.md") if p.name != "README.md"}
    assert cards == set(DEMO_METHODS) - {"eco"}  # ECO changes no weights and saves a guard, not a model
    assert "--model_cards_dir model_cards" in (CARDS / "README.md").read_text()


def test_committed_cards_load_and_hold_no_forgotten_name():
    forgotten = name_words(synthetic_splits(**RUN))
    assert len(forgotten) >= 8  # 4 forgotten people: their full names and name parts
    for path in sorted(CARDS.glob("*.md")):
        if path.name == "README.md":
            continue
        card = ModelCard.load(path)
        assert any(tag.startswith(f"unlearning-{path.stem}") for tag in card.data.tags), (
            path,
            card.data.tags,
        )
        validate_card_offline(path)
        assert not names_in(path.read_text(), forgotten), path
