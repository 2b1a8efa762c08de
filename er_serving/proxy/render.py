"""Budgeted completions -> OpenAI response bodies (whole, non-streamed).

A completion is ``thinking + </think> + solution``. Chat answers put the solution in
``message.content`` and the thinking in ``message.reasoning`` (vLLM's current name)
and ``message.reasoning_content`` (older clients); completions answers put the whole
text in ``text``. Each choice carries ``thinking_truncated`` (``</think>`` was forced)
and the solution phase's ``finish_reason``: ``"stop"`` (EOS) or ``"length"`` (solution
budget, ``max_tokens`` or the context). ``usage.completion_tokens_details.reasoning_tokens``
counts the thinking tokens with the ``</think>`` ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from er_env.budget import BudgetedCompletion, SpecialTokens
from er_serving.proxy.wire import new_id, now

__all__ = ["Split", "chat_response", "completion_response", "finish_reason", "split", "usage"]

_FINISH = {"eos": "stop", "budget": "length", "length": "length"}


def finish_reason(rec: BudgetedCompletion) -> str:
    """The OpenAI ``finish_reason`` of a record's solution phase."""
    return _FINISH.get(rec.finish_reason, "length")


@dataclass(frozen=True)
class Split:
    """The ids of one completion by part: thinking, the ``</think>`` ids (empty if never closed), solution."""

    thinking: tuple[int, ...]
    think_end: tuple[int, ...]
    solution: tuple[int, ...]


def split(rec: BudgetedCompletion, special: SpecialTokens) -> Split:
    """Cut a record at its ``</think>`` (sampled or forced); unclosed thinking is all thinking."""
    ids, end = rec.completion_ids, special.think_end
    boundary = rec.thinking_tokens + sum(rec.forced_mask)
    if boundary >= len(end) and tuple(ids[boundary - len(end) : boundary]) == end:
        return Split(ids[: boundary - len(end)], ids[boundary - len(end) : boundary], ids[boundary:])
    return Split(ids, (), ())


def usage(prompt_len: int, records: Sequence[BudgetedCompletion], special: SpecialTokens) -> dict[str, Any]:
    """The ``usage`` block: completion tokens split into reasoning (thinking + ``</think>``) and the rest."""
    completion = sum(len(r.completion_ids) for r in records)
    reasoning = sum(len(s.thinking) + len(s.think_end) for s in (split(r, special) for r in records))
    return {"prompt_tokens": prompt_len, "completion_tokens": completion, "total_tokens": prompt_len + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def _text(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True) if ids else ""


def chat_response(
    model: str, prompt_ids: Sequence[int], records: Sequence[BudgetedCompletion], tokenizer: Any,
    special: SpecialTokens, with_ids: bool,
) -> dict[str, Any]:
    """A ``chat.completion`` body for ``records`` (one choice each)."""
    choices = []
    for i, rec in enumerate(records):
        part = split(rec, special)
        reasoning = _text(tokenizer, part.thinking)
        message = {"role": "assistant", "content": _text(tokenizer, part.solution), "reasoning": reasoning,
                   "reasoning_content": reasoning}
        choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish_reason(rec),
                                  "thinking_truncated": rec.thinking_truncated, "logprobs": None}
        if with_ids:
            choice["token_ids"] = list(rec.completion_ids)
        choices.append(choice)
    body: dict[str, Any] = {"id": new_id("chatcmpl"), "object": "chat.completion", "created": now(), "model": model,
                            "choices": choices, "usage": usage(len(prompt_ids), records, special)}
    if with_ids:
        body["prompt_token_ids"] = list(prompt_ids)
    return body


def completion_text(tokenizer: Any, part: Split, think_end_text: str) -> str:
    """The whole completion as text: thinking, ``</think>`` when closed, solution."""
    return _text(tokenizer, part.thinking) + (think_end_text if part.think_end else "") + _text(tokenizer,
                                                                                                   part.solution)


def completion_response(
    model: str, prompt_ids: Sequence[int], records: Sequence[BudgetedCompletion], tokenizer: Any,
    special: SpecialTokens, with_ids: bool, think_end_text: str = "</think>",
) -> dict[str, Any]:
    """A ``text_completion`` body for ``records`` (one choice each)."""
    choices = []
    for i, rec in enumerate(records):
        choice: dict[str, Any] = {
            "index": i, "text": completion_text(tokenizer, split(rec, special), think_end_text),
            "finish_reason": finish_reason(rec), "thinking_truncated": rec.thinking_truncated, "logprobs": None,
        }
        if with_ids:
            choice["token_ids"] = list(rec.completion_ids)
            choice["prompt_token_ids"] = list(prompt_ids)
        choices.append(choice)
    return {"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": model,
            "choices": choices, "usage": usage(len(prompt_ids), records, special)}
