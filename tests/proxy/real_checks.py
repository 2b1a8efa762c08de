"""The proxy-vs-OpenAIBackend checks shared by the real-server tests (`er serve`, vLLM).

Greedy on the tiny model: what the proxy returns through the official `openai` client
(sync, async, streamed) must equal `OpenAIBackend` on the same upstream: ids, the
thinking/solution split, flags, finish reasons, usage.
"""

from __future__ import annotations

import asyncio

import openai

from er_env.backends.base import SamplingConfig
from er_env.backends.openai import OpenAIBackend
from er_env.budget import Budget
from er_env.tokens import special_tokens

GREEDY = SamplingConfig(temperature=0, logprobs=False)
QUESTION = [{"role": "user", "content": "What is 2 + 3? Put the answer in \\boxed{}."}]


def _stream_chat(stream):
    ids, reasoning, content, ends, final = [], "", "", [], None
    for chunk in stream:
        for choice in chunk.choices:
            extra = choice.model_extra
            ids += extra.get("token_ids") or []
            reasoning += (choice.delta.model_extra or {}).get("reasoning") or ""
            content += choice.delta.content or ""
            if extra.get("thinking_end"):
                ends.append(extra["thinking_end"]["forced"])
            if choice.finish_reason:
                final = (choice.finish_reason, extra["thinking_truncated"])
    return ids, reasoning, content, ends, final


def check_proxy_equals_backend(proxy_url: str, upstream_url: str, model: str, tokenizer, budgets) -> int:
    """Run every comparison for each ``(think, solution)`` in ``budgets``; returns the number of requests made."""
    backend = OpenAIBackend(upstream_url, model, tokenizer=tokenizer)
    special = special_tokens(backend.tokenizer)
    prompt = backend.chat_prompt(QUESTION)
    client = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="none", max_retries=0)
    requests = 0
    for think, solution in budgets:
        [want] = backend.generate([prompt], Budget(think=think, solution=solution), GREEDY)
        body = {"thinking_token_budget": think, "solution_token_budget": solution, "return_token_ids": True}
        end = want.completion_ids.index(special.think_end[0])
        thinking = backend.tokenizer.decode(want.completion_ids[:end], skip_special_tokens=True)
        answer = backend.tokenizer.decode(want.completion_ids[end + 1:], skip_special_tokens=True)
        finish = "stop" if want.finish_reason == "eos" else "length"

        whole = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, extra_body=body)
        [c] = whole.choices
        assert c.model_extra["token_ids"] == list(want.completion_ids), (think, solution)
        assert c.model_extra["thinking_truncated"] is want.thinking_truncated
        assert (c.message.model_extra["reasoning"], c.message.content) == (thinking, answer)
        assert c.finish_reason == finish
        assert whole.usage.completion_tokens_details.reasoning_tokens == end + 1
        assert whole.usage.completion_tokens == len(want.completion_ids)

        got = _stream_chat(client.chat.completions.create(model=model, messages=QUESTION, temperature=0,
                                                          stream=True, extra_body=body))
        assert got == (list(want.completion_ids), thinking, answer, [want.thinking_truncated],
                       (finish, want.thinking_truncated))

        async def via_async(b=body):
            async with openai.AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="none", max_retries=0) as aclient:
                return await aclient.completions.create(model=model, prompt=prompt, temperature=0, extra_body=b)

        comp = asyncio.run(via_async())
        assert comp.choices[0].model_extra["token_ids"] == list(want.completion_ids)
        assert comp.choices[0].model_extra["thinking_truncated"] is want.thinking_truncated
        streamed = list(client.completions.create(model=model, prompt=prompt, temperature=0, stream=True,
                                                  extra_body=body))
        assert "".join(ch.choices[0].text for ch in streamed if ch.choices) == comp.choices[0].text
        requests += 4
    return requests
