"""Do the default hyperparameters of ``hf-unlearn unlearn npo|ga|simnpo`` keep the retain set off the demo?

Two datasets the defaults were not tuned on: a TOFU slice (forget01's 2 authors + 8 retain authors, 200 QA) and
PII-style QA rows built here (40 fictitious people x email / phone / employer / city; 4 people forgotten). On each,
a tiny Llama is trained from scratch until it answers >= 90 % of the rows exactly (teacher-forced), then each
method is run with the command's defaults (npo and ga with ``--regularizer gdr``, the case that failed; simnpo
with no options, its default is gdr) and, for contrast, with the hyperparameters the defaults had before.
Writes ``benchmarks/results/safe_defaults.json``: per seed (``per_seed``), forget / retain exact match before and
after, steps, the rail; ``summary`` holds each as mean ± sd over the seeds (``<metric>_mean`` / ``<metric>_sd``,
``n_seeds``, ``rail_stops``). The file is rewritten after each seed, and a rerun keeps the seeds it holds.

    python benchmarks/safe_defaults.py [--out benchmarks/results/safe_defaults.json] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from datasets import Dataset

from hf_unlearn.io import read_json, write_json_atomic
from hf_unlearn.seeds import aggregate_rows, environment

TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"
# the hyperparameters the defaults had before issue 19 (the rail's restore is new and stays on)
OLD = {
    "retain_weight": 1.0,
    "retain_batch_size": None,
    "max_retain_loss_ratio": 10.0,
    "min_retain_loss_increase": 1.0,
}
OLD_BY_METHOD = {"npo": {"beta": 0.1}, "ga": {"learning_rate": 3e-4}, "simnpo": {}}
RUNS = {"npo": {"regularizer": "gdr"}, "ga": {"regularizer": "gdr"}, "simnpo": {}}
FIRST = [
    "Ada",
    "Boris",
    "Chen",
    "Dana",
    "Emil",
    "Farah",
    "Goran",
    "Hana",
    "Ivo",
    "Jun",
    "Kofi",
    "Lena",
    "Milo",
    "Nia",
]
LAST = [
    "Novak",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
    "Urbina",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
]
EMPLOYERS = ["Acme Bank", "Birch Labs", "Cobalt Foods", "Delta Freight", "Ember Media", "Fjord Energy"]
CITIES = ["Lyon", "Porto", "Gdansk", "Tartu", "Malmo", "Graz", "Ghent", "Split"]


def pii_rows(n_people: int = 40, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    names = rng.sample([f"{f} {s}" for f in FIRST for s in LAST], n_people)
    rows = []
    for name in names:
        first, last = name.lower().split()
        facts = {
            f"What is the email address of {name}?": f"{first}.{last}{rng.randint(1, 99)}@mail{rng.randint(1, 9)}.org",
            f"What is the phone number of {name}?": f"+{rng.randint(30, 49)} {rng.randint(100, 999)} "
            f"{rng.randint(1000, 9999)}",
            f"Who employs {name}?": rng.choice(EMPLOYERS),
            f"In which city does {name} live?": rng.choice(CITIES),
        }
        rows += [{"question": q, "answer": a, "subject": name} for q, a in facts.items()]
    return rows


def split(rows: list[dict], forget_subjects: set[str]) -> tuple[Dataset, Dataset]:
    forget = [r for r in rows if r["subject"] in forget_subjects]
    retain = [r for r in rows if r["subject"] not in forget_subjects]
    return Dataset.from_list(forget), Dataset.from_list(retain)


def tofu_slice() -> tuple[Dataset, Dataset]:
    forget = json.loads((TOFU / "forget01.json").read_text())
    retain = json.loads((TOFU / "retain99.json").read_text())[:160]  # 8 authors x 20 questions
    keep = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
    return Dataset.from_list(keep(forget)), Dataset.from_list(keep(retain))


def train_base(forget: Dataset, retain: Dataset, out: Path, seed: int) -> dict:
    from hf_unlearn.models import build_tiny_llama, train_bpe_tokenizer
    from hf_unlearn.trainers.finetune import TrainConfig, train_lm

    corpus = [f"{q} {a}" for ds in (forget, retain) for q, a in zip(ds["question"], ds["answer"])]
    tokenizer = train_bpe_tokenizer(corpus, 1024)
    args = TrainConfig(
        output_dir=str(out), seed=seed, per_device_train_batch_size=8, num_train_epochs=150, save_strategy="no",
        disable_tqdm=True, logging_steps=1000, target_exact_match=0.9, use_cpu=True,
    )  # fmt: skip
    return train_lm(build_tiny_llama(tokenizer, seed=seed), tokenizer, args, [forget, retain])


def unlearn(model_dir: Path, method: str, overrides: dict, forget, retain, seed: int) -> dict:
    from hf_unlearn.evaluation.qa import exact_match
    from hf_unlearn.trainers import resolve_method

    config_cls, trainer_cls = resolve_method(method)
    with tempfile.TemporaryDirectory() as tmp:
        args = config_cls(output_dir=tmp, seed=seed, use_cpu=True, disable_tqdm=True, **overrides)
        trainer = trainer_cls(str(model_dir), args, forget_dataset=forget, retain_dataset=retain)
        start = time.perf_counter()
        result = trainer.train()
        model, tok = trainer.model.eval(), trainer.processing_class
        rail = trainer.stopped_early
        return {
            "settings": {k: getattr(args, k) for k in ("regularizer", "learning_rate", "retain_weight",
                                                      "retain_batch_size", "num_train_epochs", "max_steps")}
            | ({"beta": args.beta} if hasattr(args, "beta") else {}),
            "steps": result.global_step,
            "seconds": time.perf_counter() - start,
            "forget_em": exact_match(model, tok, forget),
            "retain_em": exact_match(model, tok, retain),
            "rail": None if rail is None else {k: v for k, v in rail.items() if k != "message"},
        }  # fmt: skip


def run_seed(seed: int) -> dict:
    """Every dataset's base model and unlearning runs for one seed (data of the PII rows, initialisation, order)."""
    from hf_unlearn.evaluation.qa import exact_match
    from hf_unlearn.models import load_model_and_tokenizer

    pii = pii_rows(seed=seed)
    datasets = {"pii_qa": split(pii, {r["subject"] for r in pii[: 4 * 4]}), "tofu_slice": tofu_slice()}
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (forget, retain) in datasets.items():
            base = Path(work) / name
            training = train_base(forget, retain, base, seed)
            model, tok = load_model_and_tokenizer(base)
            entry = {
                "rows": {"forget": len(forget), "retain": len(retain)},
                "base": {"forget_em": exact_match(model, tok, forget), "retain_em": exact_match(model, tok, retain),
                         "epochs": training["epochs"]},
                "runs": {},
            }  # fmt: skip
            for method, overrides in RUNS.items():
                entry["runs"][f"{method}_defaults"] = unlearn(base, method, overrides, forget, retain, seed)
                old = {**overrides, **OLD, **OLD_BY_METHOD[method]}
                if method == "simnpo":
                    old["regularizer"] = "none"
                entry["runs"][f"{method}_old_defaults"] = unlearn(base, method, old, forget, retain, seed)
                print(seed, name, method, json.dumps(entry["runs"][f"{method}_defaults"]), flush=True)
            results[name] = entry
    return results


def summarise(per_seed: dict[str, dict]) -> dict:
    """Per dataset, the base model and every run as ``<metric>_mean`` / ``<metric>_sd`` over the seeds, with
    ``rail_stops`` (how many seeds the safety rail stopped)."""
    seeds = list(per_seed.values())
    summary = {}
    for name, first in seeds[0].items():
        summary[name] = {
            "rows": first["rows"],
            "base": aggregate_rows([s[name]["base"] for s in seeds]),
            "runs": {
                run: {
                    **aggregate_rows([s[name]["runs"][run] for s in seeds]),
                    "rail_stops": sum(s[name]["runs"][run]["rail"] is not None for s in seeds),
                }
                for run in first["runs"]
            },
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/safe_defaults.json"),
        help="Result JSON to write.",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2],
        help="Seeds of the data, the base models and the runs (a seed already in --out is kept, not rerun).",
    )  # fmt: skip
    opts = parser.parse_args(argv)
    saved = read_json(opts.out) if opts.out.exists() else {}
    per_seed, machines = saved.get("per_seed", {}), saved.get("environment", {})
    for seed in opts.seeds:
        if str(seed) in per_seed:
            continue
        per_seed[str(seed)], machines[str(seed)] = run_seed(seed), environment()
        write_json_atomic(
            opts.out,
            {"seeds": sorted(map(int, per_seed)), "environment": machines, "summary": summarise(per_seed),
             "per_seed": per_seed},
        )  # fmt: skip
    print(json.dumps(read_json(opts.out)["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
