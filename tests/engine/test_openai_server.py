"""The OpenAI-compatible server (er_serving.server) in-process, and the `er serve` CLI."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget

NAME = "tiny"


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    from er_serving.server.openai_server import load_generator

    return load_generator(str(tiny_model_dir))


@pytest.fixture(scope="module")
def client(generator):
    from er_serving.server.openai_server import create_app

    return TestClient(create_app(generator, model_name=NAME))


def _complete(client, **body):
    body.setdefault("model", NAME)
    body.setdefault("temperature", 0)
    body.setdefault("return_token_ids", True)
    resp = client.post("/v1/completions", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]


def test_health_and_models(client, generator):
    assert client.get("/health").status_code == 200
    cards = client.get("/v1/models").json()["data"]
    assert [(c["id"], c["max_model_len"]) for c in cards] == [(NAME, generator.max_model_len)]


def test_greedy_token_ids_match_hf_and_eos_is_included(client, backend, prompts):
    ref = backend.generate(prompts[:2], Budget.unconstrained(), SamplingConfig(temperature=0))
    for prompt, want in zip(prompts[:2], ref, strict=True):
        choice = _complete(client, prompt=prompt, max_tokens=200, logprobs=1)
        assert tuple(choice["token_ids"]) == want.completion_ids
        assert choice["token_ids"][-1] in backend.special.eos
        assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", None)  # EOS: no stop_reason
        assert choice["prompt_token_ids"] == list(prompt)
        assert choice["logprobs"]["token_logprobs"] == pytest.approx(list(want.logprobs), abs=1e-4)


def test_stop_token_id_is_kept_in_ids_not_in_text(client, backend, prompts):
    end = backend.special.think_end[0]
    choice = _complete(client, prompt=prompts[0], max_tokens=200, stop_token_ids=[end], skip_special_tokens=False)
    assert choice["token_ids"][-1] == end and end not in choice["token_ids"][:-1]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", end)
    assert "</think>" not in choice["text"]
    kept = _complete(client, prompt=prompts[0], max_tokens=200, stop_token_ids=[end], skip_special_tokens=False,
                     include_stop_str_in_output=True)
    assert kept["text"].endswith("</think>")


def test_length_finish_and_token_id_strings(client, prompts):
    choice = _complete(client, prompt=prompts[1], max_tokens=3, logprobs=1, return_tokens_as_token_ids=True)
    assert len(choice["token_ids"]) == 3 and choice["finish_reason"] == "length"
    assert choice["logprobs"]["tokens"] == [f"token_id:{t}" for t in choice["token_ids"]]


def test_text_prompt_and_stop_string(client, generator):
    text = "<｜User｜>What is 2 + 3?<｜Assistant｜><think>\n"
    by_text = _complete(client, prompt=text, max_tokens=40)
    by_ids = _complete(client, prompt=generator.tokenizer.encode(text), max_tokens=40)
    assert by_text["token_ids"] == by_ids["token_ids"]
    word = by_ids["text"].split()[1]
    cut = _complete(client, prompt=text, max_tokens=40, stop=[word])
    assert cut["stop_reason"] == word and word not in cut["text"]
    assert cut["token_ids"] == by_ids["token_ids"][: len(cut["token_ids"])]
    assert word in generator.tokenizer.decode(cut["token_ids"])  # ids keep the token that completed it


def test_thinking_token_budget_forces_think_end(client, backend, prompts):
    end = backend.special.think_end[0]
    choice = _complete(client, prompt=prompts[0], max_tokens=12, thinking_token_budget=4)
    # the prompt ends with "<think>\n": the "\n" counts, so 3 sampled tokens, then </think>
    assert choice["token_ids"][3] == end and end not in choice["token_ids"][:3]


def test_seeded_sampling_reproducible(client, prompts):
    a = _complete(client, prompt=prompts[0], max_tokens=10, temperature=1.0, seed=5)
    b = _complete(client, prompt=prompts[0], max_tokens=10, temperature=1.0, seed=5)
    c = _complete(client, prompt=prompts[0], max_tokens=10, temperature=1.0, seed=6)
    assert a["token_ids"] == b["token_ids"] != c["token_ids"]
    greedy = _complete(client, prompt=prompts[0], max_tokens=10)
    assert _complete(client, prompt=prompts[0], max_tokens=10, temperature=1.0, top_k=1, seed=5)["token_ids"] == \
        greedy["token_ids"]


def test_logprobs_at_temperature_match_teacher_forcing(client, generator, prompts):
    choice = _complete(client, prompt=prompts[2], max_tokens=6, temperature=0.5, seed=1, logprobs=1)
    ids = list(prompts[2]) + choice["token_ids"]
    with torch.no_grad():
        logits = generator.model(torch.tensor([ids])).logits[0].float() / 0.5
    logp = torch.log_softmax(logits, dim=-1)
    n = len(prompts[2])
    want = [float(logp[n - 1 + i, t]) for i, t in enumerate(choice["token_ids"])]
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(want, abs=1e-4)


def test_batch_prompt_gives_one_choice_each(client, prompts):
    resp = client.post("/v1/completions", json={"prompt": [list(prompts[0]), list(prompts[1])], "max_tokens": 2,
                                                "temperature": 0})
    assert [c["index"] for c in resp.json()["choices"]] == [0, 1]
    assert resp.json()["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize("body,status,needle", [
    ({"prompt": [1] * 600, "max_tokens": 4}, 400, "maximum context length is 512"),
    ({"prompt": [1, 2], "max_tokens": 4, "n": 2}, 400, "n=2"),
    ({"prompt": [1, 2], "max_tokens": 4, "model": "gpt-4"}, 404, "gpt-4"),
    ({"prompt": [1, 10**9], "max_tokens": 4}, 400, "outside the vocabulary"),
    ({"prompt": [1, 2], "max_tokens": "many"}, 400, "max_tokens"),
    ({"prompt": [], "max_tokens": 4}, 400, "empty"),
])
def test_bad_requests_are_4xx_with_reason(client, body, status, needle):
    resp = client.post("/v1/completions", json=body)
    assert resp.status_code == status
    assert needle in resp.json()["error"]["message"]


def test_generation_failure_is_500(generator, monkeypatch):
    from er_serving.server.openai_server import create_app

    app_client = TestClient(create_app(generator, model_name=NAME))
    monkeypatch.setattr(generator, "_decode", lambda *a: (_ for _ in ()).throw(RuntimeError("kernel died")))
    resp = app_client.post("/v1/completions", json={"prompt": [1, 2], "max_tokens": 2})
    assert resp.status_code == 500 and "kernel died" in resp.json()["error"]["message"]


# ---------------------------------------------------------------------- CLI
def test_cli_flags_defaults_and_env(monkeypatch):
    from er_cli import build_parser, dataclass_from_args
    from er_cli.serve import ServeConfig

    ns = build_parser().parse_args(["serve", "--model", "/m"])
    cfg = dataclass_from_args(ServeConfig, ns)
    assert (cfg.host, cfg.port, cfg.model) == ("127.0.0.1", 8000, "/m")
    monkeypatch.setenv("ER_SERVE_PORT", "9123")
    monkeypatch.setenv("ER_SERVE_MODEL", "/env-model")
    ns = build_parser().parse_args(["serve"])
    assert (ns.port, ns.model) == (9123, "/env-model")
    assert build_parser().parse_args(["serve", "--port", "7"]).port == 7
    with pytest.raises(ValueError, match="--model"):
        ServeConfig()
    with pytest.raises(ValueError, match="--port"):
        ServeConfig(model="/m", port=70000)


def test_stream_sends_each_choice_whole_then_done(client, prompts):
    body = {"prompt": list(prompts[0]), "max_tokens": 5, "temperature": 0, "return_token_ids": True}
    whole = _complete(client, **body)
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and len(events) == 2
    [choice] = json.loads(events[0])["choices"]
    assert choice["token_ids"] == whole["token_ids"] and choice["finish_reason"] == whole["finish_reason"]
