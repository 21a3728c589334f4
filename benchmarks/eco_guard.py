"""Score a fitted ECO guard on the embedded default: guarded vs unguarded full model vs the gold model.

    hf-unlearn eco-fit --model DEMO/full --forget DEMO/data/forget.jsonl --retain DEMO/data/retain.jsonl \\
        --target_model DEMO/gold --out GUARD
    python benchmarks/eco_guard.py --demo DEMO --guard GUARD --out benchmarks/results/eco_guard.json

Writes forget / retain / holdout exact match and ROUGE-L (the demo's scorers) of the unguarded full model, the
guarded full model and the gold model, the guard's settings, and the two checks of the ECO issue: guarded forget
EM within 0.10 of the gold model's, guarded retain EM >= 0.98 x unguarded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data.loading import load_rows
from hf_unlearn.demo.pipeline import EVAL_SPLITS
from hf_unlearn.eco.guard import ECOGuard, GuardedModel
from hf_unlearn.evaluation.qa import qa_split_metrics
from hf_unlearn.io import read_json, write_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", type=Path, required=True, help="A demo directory (full/, gold/, data/).")
    parser.add_argument("--guard", type=Path, required=True, help="The guard directory from eco-fit.")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write.")
    args = parser.parse_args()
    data = {s: load_rows(args.demo / "data" / f"{s}.jsonl") for s in EVAL_SPLITS}
    tokenizer = AutoTokenizer.from_pretrained(args.demo / "full")
    full = AutoModelForCausalLM.from_pretrained(args.demo / "full")
    models = {
        "full": full,
        "guarded": GuardedModel(full, ECOGuard.from_pretrained(args.guard, tokenizer)),
        "gold": AutoModelForCausalLM.from_pretrained(args.demo / "gold"),
    }
    results = {
        name: {f"{s}_{k}": v for s in EVAL_SPLITS for k, v in qa_split_metrics(m, tokenizer, data[s]).items()}
        for name, m in models.items()
    }
    results["guard"] = {
        k: v for k, v in read_json(args.guard / "guard_config.json").items() if k != "subjects"
    }
    results["fit"] = {k: v for k, v in read_json(args.guard / "fit_report.json").items() if k != "history"}
    results["checks"] = {
        "forget_em_gap_to_gold": abs(results["guarded"]["forget_em"] - results["gold"]["forget_em"]),
        "retain_em_ratio": results["guarded"]["retain_em"] / results["full"]["retain_em"],
    }
    write_json_atomic(args.out, results)
    print({name: {k: round(v, 4) for k, v in results[name].items()} for name in ("full", "guarded", "gold")})
    print(results["checks"])


if __name__ == "__main__":
    main()
