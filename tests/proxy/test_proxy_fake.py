"""`er proxy` against fake upstreams on real sockets, driven by the official `openai` client.

The fake model (tests/proxy/fake_upstream.py) thinks 12 tokens, closes `</think>`,
answers 6 tokens and ends with EOS. What the proxy returns must equal what
`OpenAIBackend` makes of the same upstream; faults: an upstream down at start, one
answering 503, one dying mid-stream, a client leaving mid-stream, bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import openai
import pytest

from er_env.backends.base import SamplingConfig
from er_env.backends.openai import OpenAIBackend
from er_env.budget import Budget
from er_env.tokens import TINY_TOKENIZER_DIR, load_tokenizer, special_tokens
from er_serving.proxy.app import create_app
from er_serving.proxy.config import ProxyConfig
from tests.proxy.fake_upstream import FakeUpstream, free_port, serve_in_thread

MODEL = "fake"
TOK = load_tokenizer(str(TINY_TOKENIZER_DIR))
SP = special_tokens(TOK)
END, EOS = SP.think_end[0], min(SP.eos)
MSG = [{"role": "user", "content": "What is 2 + 3?"}]


def _fake(**kw) -> FakeUpstream:
    return FakeUpstream(think_end=END, eos=EOS, model=MODEL, **kw)


@contextlib.contextmanager
def _proxy(urls, authenticate=None, **cfg):
    config = ProxyConfig(upstream=",".join(urls), model=MODEL, tokenizer=str(TINY_TOKENIZER_DIR),
                         health_interval_s=cfg.pop("health_interval_s", 0.2), **cfg)
    with serve_in_thread(create_app(config, authenticate=authenticate)) as url:
        yield url


@pytest.fixture(scope="module")
def upstream():
    fake = _fake()
    with serve_in_thread(fake) as url:
        yield fake, url


@pytest.fixture(scope="module")
def proxy_url(upstream):
    with _proxy([upstream[1]], effort_budgets="none:1,minimal:4,low:8,medium:16,high:64") as url:
        yield url


@pytest.fixture(scope="module")
def client(proxy_url):
    return openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="none", max_retries=0)


def _direct(upstream_url, prompt, budget, n=1, seed=None):
    backend = OpenAIBackend(upstream_url, MODEL, tokenizer=TOK, max_retries=0)
    return backend.generate([prompt] * n, budget, SamplingConfig(temperature=0, seed=seed, logprobs=False))


def _chat_prompt():
    return TOK.encode(TOK.apply_chat_template(MSG, tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False)


@pytest.mark.parametrize("think,solution,truncated", [(5, 3, True), (40, 40, False)])
def test_chat_equals_openai_backend(client, upstream, think, solution, truncated):
    resp = client.chat.completions.create(model=MODEL, messages=MSG, temperature=0, extra_body={
        "thinking_token_budget": think, "solution_token_budget": solution, "return_token_ids": True})
    [want] = _direct(upstream[1], _chat_prompt(), Budget(think=think, solution=solution))
    [choice] = resp.choices
    extra = choice.model_extra
    assert extra["token_ids"] == list(want.completion_ids)
    assert extra["thinking_truncated"] is want.thinking_truncated is truncated
    thinking = want.completion_ids[: want.completion_ids.index(END)]
    assert choice.message.content == TOK.decode(want.completion_ids[len(thinking) + 1:], skip_special_tokens=True)
    assert choice.message.model_extra["reasoning"] == TOK.decode(thinking, skip_special_tokens=True)
    assert choice.message.model_extra["reasoning_content"] == choice.message.model_extra["reasoning"]
    assert choice.finish_reason == ("length" if truncated else "stop")
    usage = resp.usage
    assert usage.completion_tokens == len(want.completion_ids)
    assert usage.completion_tokens_details.reasoning_tokens == len(thinking) + 1
    assert usage.prompt_tokens == len(_chat_prompt())


def test_streamed_chat_rebuilds_the_whole_answer(client):
    body = {"thinking_token_budget": 5, "solution_token_budget": 3, "return_token_ids": True}
    whole = client.chat.completions.create(model=MODEL, messages=MSG, temperature=0, extra_body=body)
    stream = client.chat.completions.create(model=MODEL, messages=MSG, temperature=0, stream=True,
                                            stream_options={"include_usage": True}, extra_body=body)
    reasoning, content, ids, ends, finals, usage = "", "", [], [], [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            extra, delta = choice.model_extra, choice.delta
            assert not (delta.content and (delta.model_extra or {}).get("reasoning"))
            if (delta.model_extra or {}).get("reasoning"):
                assert not content, "reasoning after content"
                reasoning += delta.model_extra["reasoning"]
            content += delta.content or ""
            ids += extra.get("token_ids") or []
            if extra.get("thinking_end"):
                ends.append(extra["thinking_end"])
            if choice.finish_reason:
                finals.append((choice.finish_reason, extra["thinking_truncated"]))
    [want] = whole.choices
    assert ids == want.model_extra["token_ids"]
    assert (reasoning, content) == (want.message.model_extra["reasoning"], want.message.content)
    assert ends == [{"forced": True}] and finals == [("length", True)]
    assert usage.model_dump() == whole.usage.model_dump()


def test_completions_endpoint_and_natural_think_end(client, upstream):
    prompt = [3, 5, 7, 8]
    resp = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=100,
                                     extra_body={"thinking_token_budget": 30, "return_token_ids": True})
    [want] = _direct(upstream[1], prompt, Budget(think=30, solution=None, max_tokens=100))
    [choice] = resp.choices
    assert choice.model_extra["token_ids"] == list(want.completion_ids) and not choice.model_extra["thinking_truncated"]
    assert "</think>" in choice.text and choice.finish_reason == "stop"
    events = list(client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=100, stream=True,
                                            extra_body={"thinking_token_budget": 30}))
    text = "".join(c.choices[0].text for c in events if c.choices)
    assert text == choice.text
    assert [c.choices[0].model_extra["thinking_end"] for c in events
            if c.choices and c.choices[0].model_extra.get("thinking_end")] == [{"forced": False}]


def test_unconstrained_is_one_pass_and_effort_maps_to_a_budget(client, upstream):
    fake = upstream[0]
    before = fake.stats["requests"]
    resp = client.chat.completions.create(model=MODEL, messages=MSG, temperature=0, max_tokens=50)
    assert fake.stats["requests"] - before == 1  # no budget: the upstream's single pass
    assert not resp.choices[0].model_extra["thinking_truncated"] and resp.choices[0].finish_reason == "stop"
    low = client.chat.completions.create(model=MODEL, messages=MSG, temperature=0, reasoning_effort="minimal",
                                         extra_body={"return_token_ids": True})
    [want] = _direct(upstream[1], _chat_prompt(), Budget(think=4, solution=None))
    assert low.choices[0].model_extra["token_ids"] == list(want.completion_ids)


def test_n_choices_async_client(proxy_url, upstream):
    async def go():
        async with openai.AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="none", max_retries=0) as aclient:
            return await asyncio.gather(*(aclient.chat.completions.create(
                model=MODEL, messages=MSG, n=3, temperature=0, extra_body={"thinking_token_budget": 4,
                                                                           "solution_token_budget": 2})
                for _ in range(4)))

    for resp in asyncio.run(go()):
        assert [c.index for c in resp.choices] == [0, 1, 2]
        assert all(c.model_extra["thinking_truncated"] for c in resp.choices)
        assert resp.usage.completion_tokens == 3 * (4 + 1 + 2)


@pytest.mark.parametrize("body,status,param,needle", [
    ({"thinking_token_budget": -3}, 400, "thinking_token_budget", "1.."),
    ({"thinking_token_budget": 2.5}, 400, "thinking_token_budget", "integer"),
    ({"thinking_token_budget": "many"}, 400, "thinking_token_budget", "integer"),
    ({"thinking_token_budget": 10**6}, 400, "thinking_token_budget", "context"),
    ({"solution_token_budget": 0, "thinking_token_budget": 4}, 400, "solution_token_budget", "1.."),
    ({"solution_token_budget": 8}, 400, "solution_token_budget", "thinking"),
    ({"thinking_token_budget": 8, "solution_token_budget": 8, "max_tokens": 10}, 400, "max_tokens", "8 + 8"),
    ({"reasoning_effort": "extreme"}, 400, "reasoning_effort", "minimal"),
    ({"model": "gpt-9"}, 404, "model", "gpt-9"),
    ({"messages": []}, 400, "messages", "at least 1"),
    ({"temperature": "hot"}, 400, "temperature", "number"),
    ({"n": 0}, 400, "n", "greater than or equal to 1"),
])
def test_bad_input_is_an_openai_error_naming_the_field(proxy_url, body, status, param, needle):
    payload = {"model": MODEL, "messages": MSG, **body}
    resp = httpx.post(f"{proxy_url}/v1/chat/completions", json=payload)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and needle in err["message"]


def test_malformed_json_body_is_400(proxy_url):
    resp = httpx.post(f"{proxy_url}/v1/chat/completions", content=b"{not json", headers={"content-type":
                                                                                        "application/json"})
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]["message"]


def test_tokenizer_without_think_end_is_422(tmp_path, upstream):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1, "</s>": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", eos_token="</s>")
    config = ProxyConfig(upstream=upstream[1], model=MODEL, tokenizer="unused")
    with serve_in_thread(create_app(config, tokenizer=tok)) as url:
        resp = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": [1], "thinking_token_budget": 4})
        assert resp.status_code == 422 and "</think>" in resp.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/models").status_code == 200


def test_upstream_down_at_start_and_failover_on_503(upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    failing = _fake(fail_status=503)
    with serve_in_thread(failing) as bad, _proxy([dead, bad, upstream[1]]) as url:
        health = httpx.get(f"{url}/health").json()
        assert [u["healthy"] for u in health["upstreams"]] == [False, True, True]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        for stream in (False, True):
            out = client.chat.completions.create(model=MODEL, messages=MSG, temperature=0, stream=stream,
                                                 extra_body={"thinking_token_budget": 4, "solution_token_budget": 2})
            if stream:
                list(out)
        assert failing.stats["requests"] >= 1  # it was tried first (least loaded), then skipped
        metrics = httpx.get(f"{url}/metrics").text
        assert "er_proxy_upstream_failovers_total 1.0" in metrics or "er_proxy_upstream_failovers_total 2.0" in metrics
    with _proxy([dead]) as url:
        resp = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": MSG})
        assert resp.status_code == 503 and dead in resp.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 503


def test_upstream_dying_mid_stream_reaches_the_client():
    dying = _fake(die_after=3)
    with serve_in_thread(dying) as up, _proxy([up]) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        got = []
        with pytest.raises(openai.APIError, match="mid-stream"):
            for chunk in client.chat.completions.create(model=MODEL, messages=MSG, stream=True, temperature=0,
                                                        extra_body={"thinking_token_budget": 8}):
                got.append(chunk)
        assert any((c.choices and (c.choices[0].delta.model_extra or {}).get("reasoning")) for c in got)
        assert dying.stats["requests"] == 1  # no silent restart elsewhere or here


def test_client_disconnect_cancels_the_upstream_call():
    slow = _fake(delay_s=0.05, think_len=200)
    with serve_in_thread(slow) as up, _proxy([up]) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={
                "model": MODEL, "messages": MSG, "stream": True, "thinking_token_budget": 150}) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data:")
            next(lines)
        deadline = time.monotonic() + 5
        while slow.stats["streams_closed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.stats["streams_closed"] == 1 and slow.stats["streams_done"] == 0
        health = httpx.get(f"{url}/health").json()
        assert health["upstreams"][0]["in_flight"] == 0


def test_least_loaded_spreads_requests_and_keeps_phases_together():
    a, b = _fake(delay_s=0.002), _fake(delay_s=0.002)
    with serve_in_thread(a) as ua, serve_in_thread(b) as ub, _proxy([ua, ub]) as url:
        async def one(aclient):
            stream = await aclient.chat.completions.create(model=MODEL, messages=MSG, stream=True, extra_body={
                "thinking_token_budget": 4, "solution_token_budget": 2})
            return [chunk async for chunk in stream]

        async def go():
            async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as aclient:
                await asyncio.gather(*(one(aclient) for _ in range(8)))

        asyncio.run(go())
    assert a.stats["requests"] + b.stats["requests"] == 16
    assert a.stats["requests"] % 2 == 0 and b.stats["requests"] % 2 == 0 and min(a.stats["requests"],
                                                                                  b.stats["requests"]) >= 4


def test_authenticator_hook_answers_401(upstream):
    with _proxy([upstream[1]], authenticate=lambda header: "me" if header == "Bearer k1" else None) as url:
        denied = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": MSG})
        assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k1", max_retries=0)
        assert client.models.list().data[0].id == MODEL
        assert httpx.get(f"{url}/health").status_code == 200


def test_api_key_file_through_the_shared_key_ring(upstream, tmp_path):
    """`er proxy --api-key-file`: the reward service's KeyRing; 401 + WWW-Authenticate, rotation by file."""
    import os
    import secrets

    from sandbox.service.auth import KeyRing

    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = tmp_path / "keys"
    path.write_text(f"old:{old}\n")
    os.chmod(path, 0o600)
    ring = KeyRing(path, reload_interval_s=0.1)
    with _proxy([upstream[1]], authenticate=ring.authenticate) as url:
        for headers in ({}, {"Authorization": "Bearer " + "z" * 43}):
            denied = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": MSG}, headers=headers)
            assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer realm=")
            assert denied.json()["error"]["code"] == "invalid_api_key"
        assert openai.OpenAI(base_url=f"{url}/v1", api_key=old, max_retries=0).models.list().data[0].id == MODEL
        path.write_text(f"new:{new}\n")  # rotate: the old key is revoked, the new one accepted
        os.utime(path, (time.time() + 5, time.time() + 5))
        time.sleep(0.3)
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {old}"}).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {new}"}).status_code == 200
