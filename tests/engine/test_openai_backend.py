"""OpenAIBackend against a real `er serve` subprocess (and fake transports for edge cases).

The server runs the tiny model in another process; greedy results must equal
HFBackend's token for token, budgets binding or not.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from er_env.backends.base import BackendError, SamplingConfig
from er_env.backends.openai import OpenAIBackend
from er_env.budget import Budget, BudgetError

GREEDY = SamplingConfig(temperature=0)
MODEL = "tiny-r1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"er serve exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"er serve did not become healthy at {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def server_url(tiny_model_dir):
    """`python -m er_cli serve` on a free localhost port, for the whole module."""
    port = _free_port()
    cmd = [sys.executable, "-m", "er_cli", "serve", "--model", str(tiny_model_dir), "--port", str(port),
           "--served-model-name", MODEL, "--log-level", "warning"]
    repo = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=repo)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def remote(server_url, tiny_model_dir):
    return OpenAIBackend(server_url, MODEL, tokenizer=str(tiny_model_dir), max_concurrency=4)


@pytest.fixture(scope="module")
def free_run(backend, prompts):
    return backend.generate(prompts, Budget.unconstrained(), GREEDY)


def _assert_same(got, want):
    for g, w in zip(got, want, strict=True):
        assert g.completion_ids == w.completion_ids
        assert g.forced_mask == w.forced_mask and g.env_mask == w.env_mask
        assert (g.thinking_tokens, g.solution_tokens) == (w.thinking_tokens, w.solution_tokens)
        assert (g.think_finish_reason, g.finish_reason) == (w.think_finish_reason, w.finish_reason)
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
        assert g.text == w.text


def test_context_length_comes_from_v1_models(remote, prompts, backend):
    remote.generate(prompts[:1], Budget(think=2, solution=2), GREEDY)
    assert remote.context_length == backend.context_length


@pytest.mark.parametrize("kind", ["binding", "non-binding", "unconstrained"])
def test_greedy_equals_hf_token_for_token(remote, backend, prompts, free_run, kind):
    if kind == "binding":
        budget = Budget(think=6, solution=4)
    elif kind == "non-binding":
        budget = Budget(think=max(r.thinking_tokens for r in free_run) + 2,
                        solution=max(r.solution_tokens for r in free_run) + 2)
    else:
        budget = Budget.unconstrained()
    want = backend.generate(prompts, budget, GREEDY)
    got = remote.generate(prompts, budget, GREEDY)
    _assert_same(got, want)
    if kind == "binding":
        assert all(r.thinking_truncated for r in got)
    if kind == "non-binding":
        assert not any(r.thinking_truncated for r in got)
        assert [r.completion_ids for r in got] == [r.completion_ids for r in free_run]


def test_generate_inside_running_event_loop(remote, backend, prompts):
    async def call():
        return remote.generate(prompts[:2], Budget(think=5, solution=3), GREEDY)

    _assert_same(asyncio.run(call()), backend.generate(prompts[:2], Budget(think=5, solution=3), GREEDY))


def test_seeded_sampling_is_reproducible_and_differs_per_sample(remote, prompts):
    sampling = SamplingConfig(temperature=1.0, seed=7)
    same = [prompts[0]] * 3
    a = remote.generate(same, Budget(think=8, solution=4), sampling)
    b = remote.generate(same, Budget(think=8, solution=4), sampling)
    assert [r.completion_ids for r in a] == [r.completion_ids for r in b]
    assert len({r.completion_ids for r in a}) > 1  # sample i is sent seed 7 + i


def test_prompt_longer_than_context_is_budget_error(remote):
    with pytest.raises(BudgetError, match="context"):
        remote.generate([[1] * (remote.context_length + 1)], Budget(think=4, solution=4), GREEDY)


def test_unknown_model_name_is_backend_error(server_url, tiny_model_dir):
    other = OpenAIBackend(server_url, "no-such-model", tokenizer=str(tiny_model_dir))
    with pytest.raises(BackendError, match="does not serve model 'no-such-model'"):
        other.generate([[1, 2]], Budget(think=2, solution=2), GREEDY)


def test_unreachable_server_fails_fast_naming_url(tiny_model_dir):
    port = _free_port()  # nothing listens there
    dead = OpenAIBackend(f"http://127.0.0.1:{port}", MODEL, tokenizer=str(tiny_model_dir), max_retries=2,
                         retry_backoff_s=0.05, timeout_s=5)
    start = time.monotonic()
    with pytest.raises(BackendError, match=rf"127\.0\.0\.1:{port}.*er serve"):
        dead.generate([[1, 2, 3]], Budget(think=4, solution=4), GREEDY)
    assert time.monotonic() - start < 10


# ------------------------------------------------ fake transports: protocol edges
def _completion(ids, lps=None, finish="length", as_logprob_tokens=False):
    choice = {"index": 0, "text": "", "finish_reason": finish}
    if not as_logprob_tokens:
        choice["token_ids"] = ids
    if lps is not None or as_logprob_tokens:
        lps = lps if lps is not None else [-0.5] * len(ids)
        choice["logprobs"] = {"tokens": [f"token_id:{t}" for t in ids], "token_logprobs": lps,
                              "top_logprobs": None, "text_offset": [0] * len(ids)}
    return {"id": "x", "object": "text_completion", "model": MODEL, "choices": [choice]}


def _fake(tiny_model_dir, handler, **kw) -> OpenAIBackend:
    kw.setdefault("context_length", 512)
    return OpenAIBackend("http://fake", MODEL, tokenizer=str(tiny_model_dir),
                         transport=httpx.MockTransport(handler), **kw)


def test_request_fields_and_two_phases(tiny_model_dir):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        n = body["max_tokens"]
        return httpx.Response(200, json=_completion([50] * n, [-0.25] * n))

    fake = _fake(tiny_model_dir, handler)
    out = fake.generate([[1, 2, 3]], Budget(think=3, solution=2), SamplingConfig(temperature=0.7, top_k=5, seed=3))
    sp = fake.special
    assert [b["max_tokens"] for b in seen] == [3, 2]
    assert seen[0]["prompt"] == [1, 2, 3]
    assert seen[1]["prompt"] == [1, 2, 3, 50, 50, 50, *sp.think_end]
    assert seen[0]["stop_token_ids"] == [*sp.think_end, *sorted(sp.eos)]
    assert seen[1]["stop_token_ids"] == sorted(sp.eos)
    for b in seen:
        assert (b["model"], b["temperature"], b["top_k"], b["seed"], b["logprobs"]) == (MODEL, 0.7, 5, 3, 1)
        assert b["return_token_ids"] and b["return_tokens_as_token_ids"] and b["skip_special_tokens"] is False
    res = out[0]
    assert res.completion_ids == (50, 50, 50, *sp.think_end, 50, 50)
    assert res.logprobs == (-0.25, -0.25, -0.25, 0.0, -0.25, -0.25)
    assert res.finish_reason == "budget" and res.thinking_truncated


def test_ids_parsed_from_token_id_logprob_strings(tiny_model_dir):
    def handler(request: httpx.Request) -> httpx.Response:
        n = json.loads(request.content)["max_tokens"]
        return httpx.Response(200, json=_completion([60] * n, as_logprob_tokens=True))

    out = _fake(tiny_model_dir, handler).generate([[1]], Budget(think=2, solution=2), GREEDY)
    assert out[0].completion_ids[:2] == (60, 60)


def test_concurrency_bound_respected(tiny_model_dir):
    state = {"now": 0, "peak": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        n = json.loads(request.content)["max_tokens"]
        return httpx.Response(200, json=_completion([50] * n, [-1.0] * n))

    fake = _fake(tiny_model_dir, handler, max_concurrency=3)
    out = fake.generate([[1, i] for i in range(10)], Budget(think=2, solution=2), GREEDY)
    assert len(out) == 10
    assert state["peak"] == 3


@pytest.mark.parametrize("body", [
    {"choices": []},
    {"nope": 1},
    {"choices": [{"text": "hi", "finish_reason": "stop"}]},  # no ids at all
    {"choices": [{"token_ids": [5, 6], "logprobs": {"token_logprobs": [-1.0]}}]},  # misaligned logprobs
    {"choices": [{"token_ids": ["a"], "logprobs": {"token_logprobs": [-1.0]}}]},
    {"choices": [{"token_ids": [5], "logprobs": {"token_logprobs": [-1.0]}, "finish_reason": "stop",
                  "matched_stop": 6}]},  # a server that trims the stop token from the ids
])
def test_malformed_response_is_backend_error(tiny_model_dir, body):
    fake = _fake(tiny_model_dir, lambda request: httpx.Response(200, json=body))
    with pytest.raises(BackendError, match="http://fake"):
        fake.generate([[1, 2]], Budget(think=2, solution=2), SamplingConfig(temperature=0))


def test_non_json_and_4xx_are_backend_errors_without_retry(tiny_model_dir):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(200, text="<html>oops</html>")
        return httpx.Response(400, json={"error": {"message": "max_tokens too large"}})

    fake = _fake(tiny_model_dir, handler)
    with pytest.raises(BackendError, match="non-JSON"):
        fake.generate([[1]], Budget(think=2, solution=2), GREEDY)
    with pytest.raises(BackendError, match="HTTP 400.*max_tokens too large"):
        fake.generate([[1]], Budget(think=2, solution=2), GREEDY)
    assert len(calls) == 2


def test_5xx_is_retried_then_succeeds(tiny_model_dir):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, text="busy")
        n = json.loads(request.content)["max_tokens"]
        return httpx.Response(200, json=_completion([50] * n, [-1.0] * n))

    fake = _fake(tiny_model_dir, handler, max_retries=3, retry_backoff_s=0.01)
    fake.generate([[1]], Budget.unconstrained(max_tokens=3), GREEDY)
    assert len(calls) == 3


def test_one_failure_fails_the_whole_batch(tiny_model_dir):
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["prompt"][-1] == 7:
            return httpx.Response(500, text="boom")
        return httpx.Response(200, json=_completion([50] * body["max_tokens"], [-1.0] * body["max_tokens"]))

    fake = _fake(tiny_model_dir, handler, max_retries=1, retry_backoff_s=0.01)
    with pytest.raises(BackendError, match="HTTP 500: boom"):
        fake.generate([[1, 2], [1, 7], [1, 3]], Budget(think=2, solution=2), GREEDY)


def test_constructor_validation(tiny_model_dir):
    with pytest.raises(ValueError, match="tokenizer"):
        OpenAIBackend("http://x", MODEL)
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAIBackend("http://x", MODEL, tokenizer=str(tiny_model_dir), max_concurrency=0)
    assert OpenAIBackend("http://x:1/v1/", MODEL, tokenizer=str(tiny_model_dir)).base_url == "http://x:1"


def test_multi_token_think_end_sends_stop_string(tiny_multi_dir):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        n = body["max_tokens"]
        return httpx.Response(200, json=_completion([50] * n, [-1.0] * n))

    fake = OpenAIBackend("http://fake", MODEL, tokenizer=str(tiny_multi_dir), context_length=512,
                         transport=httpx.MockTransport(handler))
    assert len(fake.special.think_end) > 1
    out = fake.generate([[1, 2]], Budget(think=3, solution=2), GREEDY)
    assert seen[0]["stop"] == ["</think>"] and seen[0]["include_stop_str_in_output"] is True
    assert seen[0]["stop_token_ids"] == sorted(fake.special.eos) and "stop" not in seen[1]
    assert out[0].completion_ids == (50, 50, 50, *fake.special.think_end, 50, 50)


def test_server_without_models_endpoint_leaves_context_unknown(tiny_model_dir):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(404, text="not found")
        n = json.loads(request.content)["max_tokens"]
        return httpx.Response(200, json=_completion([50] * n, [-1.0] * n))

    fake = OpenAIBackend("http://fake", MODEL, tokenizer=str(tiny_model_dir), transport=httpx.MockTransport(handler))
    fake.generate([[1]], Budget(think=2, solution=2), GREEDY)
    assert fake.context_length is None


def test_er_generate_openai_end_to_end(server_url, tiny_model_dir, backend):
    """`er generate --backend openai` against the real `er serve` process equals the HF backend."""
    repo = Path(__file__).resolve().parents[2]
    question = "What is 2 + 3?"
    cmd = [sys.executable, "-m", "er_cli", "generate", "--backend", "openai", "--base-url", f"{server_url}/v1",
           "--model", MODEL, "--tokenizer", str(tiny_model_dir), "--prompt", question,
           "--think", "6", "--solution", "8"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=repo)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    [want] = backend.generate([backend.chat_prompt(question)], Budget(think=6, solution=8), GREEDY)
    assert record["completion_ids"] == list(want.completion_ids)
    assert record["thinking_tokens"] == want.thinking_tokens and record["thinking_truncated"] == want.thinking_truncated
    # without --tokenizer, a server model id that is not a local dir is a clear error
    bad = subprocess.run(cmd[: cmd.index("--tokenizer")] + cmd[cmd.index("--prompt"):], capture_output=True,
                         text=True, timeout=60, cwd=repo)
    assert bad.returncode != 0 and "--tokenizer" in bad.stderr


# ------------------------------------------------ streamed phases (fake SSE server)
def _sse_handler(seen, token=50, per_event=1):
    """A server streaming `max_tokens` ids of `token`, `per_event` ids per event."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        n = body["max_tokens"]
        ids = [token] * n
        if not body.get("stream"):
            return httpx.Response(200, json=_completion(ids, [-0.5] * n))
        events = []
        for k in range(0, n, per_event):
            part = ids[k:k + per_event]
            last = k + per_event >= n
            choice = {"index": 0, "text": "", "token_ids": part, "finish_reason": "length" if last else None,
                      "logprobs": {"token_logprobs": [-0.5] * len(part), "tokens": [f"token_id:{t}" for t in part]}}
            events.append(f"data: {json.dumps({'choices': [choice]})}\n\n")
        events.append('data: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n')
        events.append("data: [DONE]\n\n")
        return httpx.Response(200, content="".join(events).encode(), headers={"content-type": "text/event-stream"})

    return handler


async def _collect(backend, prompts, budget, sampling=GREEDY):
    return [p async for p in backend.astream(prompts, budget, sampling)]


@pytest.mark.parametrize("per_event", [1, 3])
def test_astream_pieces_rebuild_the_agenerate_record(tiny_model_dir, per_event):
    seen = []
    fake = _fake(tiny_model_dir, _sse_handler(seen, per_event=per_event))
    budget = Budget(think=4, solution=3)
    pieces = asyncio.run(_collect(fake, [[1, 2], [1, 3]], budget))
    want = fake.generate([[1, 2], [1, 3]], budget, GREEDY)
    assert all(b["stream"] for b in seen[:4]) and not any(b["stream"] for b in seen[4:])
    for i, rec in enumerate(want):
        mine = [p for p in pieces if p.index == i]
        assert sum((p.token_ids for p in mine), ()) == rec.completion_ids
        runs = [k for k, _ in itertools.groupby((p.kind, p.forced) for p in mine if p.token_ids)]
        assert runs == [("thinking", False), ("think_end", True), ("solution", False)]
        assert len([p for p in mine if p.kind == "thinking"]) == (4 if per_event == 1 else 2)
        assert mine[-1].completion == rec and all(p.completion is None for p in mine[:-1])


def test_astream_natural_think_end_and_eos(tiny_model_dir):
    sp_holder = {}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sp = sp_holder["sp"]
        ids = [50, *sp.think_end] if len(body["prompt"]) == 1 else [51, min(sp.eos)]
        choice = {"index": 0, "token_ids": ids, "finish_reason": "stop", "stop_reason": ids[-1]}
        text = f"data: {json.dumps({'choices': [choice]})}\n\ndata: [DONE]\n\n"
        return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})

    fake = _fake(tiny_model_dir, handler)
    sp_holder["sp"] = fake.special
    pieces = asyncio.run(_collect(fake, [[1]], Budget(think=8, solution=8), SamplingConfig(temperature=0,
                                                                                           logprobs=False)))
    kinds = [(p.kind, p.token_ids, p.forced) for p in pieces if p.token_ids]
    assert kinds == [("thinking", (50,), False), ("think_end", fake.special.think_end, False),
                     ("solution", (51, min(fake.special.eos)), False)]
    rec = pieces[-1].completion
    assert rec.finish_reason == "eos" and not rec.thinking_truncated


def test_astream_5xx_is_backend_unavailable(tiny_model_dir):
    from er_env.backends.base import BackendUnavailable

    fake = _fake(tiny_model_dir, lambda request: httpx.Response(503, text="overloaded"))
    with pytest.raises(BackendUnavailable, match="503.*overloaded"):
        asyncio.run(_collect(fake, [[1]], Budget(think=2, solution=2)))
