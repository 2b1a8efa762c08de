"""Request fields -> :class:`~er_env.budget.Budget` and sampling settings, with errors that name the field.

Precedence for the thinking budget t: ``thinking_token_budget`` (or its alias
``max_thinking_tokens``), else ``reasoning_effort`` through the effort table, else the
proxy's default. The solution budget s: ``solution_token_budget``, else the default
(it applies only with a thinking budget). ``max_tokens`` / ``max_completion_tokens``
keep their OpenAI meaning: the cap on all completion tokens. With no budget at all
the request is one unconstrained pass, as the upstream would run it.

The rules themselves are :class:`~er_env.budget.Budget`'s; this module only maps names
and checks ranges against the model context.
"""

from __future__ import annotations

from typing import Any

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget
from er_serving.proxy.config import EFFORTS
from er_serving.proxy.wire import ApiError

__all__ = ["resolve_budget", "resolve_sampling"]


def _int_field(name: str, value: Any, limit: int | None) -> int | None:
    """``value`` as a token count in ``1..limit``; ``None`` stays ``None``."""
    if value is None:
        return None
    span = f"1..{limit}" if limit is not None else ">= 1"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise ApiError(400, f"{name} must be an integer number of tokens in {span}, got {value!r}.", param=name)
    number = int(value)
    if number < 1 or (limit is not None and number > limit):
        where = f" (the model context is {limit} tokens after the prompt)" if limit is not None else ""
        raise ApiError(400, f"{name}={number} is out of range: valid is {span}{where}.", param=name)
    return number


def _thinking(req: Any, effort_table: dict[str, int], default: int | None, limit: int | None) -> int | None:
    t = _int_field("thinking_token_budget", req.thinking_token_budget, limit)
    alias = _int_field("max_thinking_tokens", req.max_thinking_tokens, limit)
    if t is not None and alias is not None and t != alias:
        raise ApiError(400, f"thinking_token_budget={t} and max_thinking_tokens={alias} disagree; send one of them.",
                       param="max_thinking_tokens")
    t = t if t is not None else alias
    if t is not None:
        return t
    effort = req.reasoning_effort
    if effort is not None:
        if effort not in effort_table:
            known = [e for e in EFFORTS if e in effort_table]
            raise ApiError(400, f"reasoning_effort={effort!r} is not one of {known}.", param="reasoning_effort")
        budget = effort_table[effort]
        return budget if limit is None else min(budget, limit)
    return default


def resolve_budget(
    req: Any, *, prompt_len: int, context_length: int | None, effort_table: dict[str, int],
    default_thinking: int | None, default_solution: int | None,
) -> Budget:
    """The :class:`Budget` a request asks for.

    Args:
        req: a :class:`~er_serving.proxy.wire.ChatRequest` or ``CompletionRequest``.
        prompt_len: prompt tokens (after the chat template).
        context_length: the model context, or ``None`` when unknown.
        effort_table: ``reasoning_effort`` -> thinking budget.
        default_thinking: the proxy's default t.
        default_solution: the proxy's default s.

    Returns:
        The budget; ``Budget.unconstrained(max_tokens)`` when no thinking budget applies.

    Raises:
        ApiError: 400 naming the field and its valid range.

    """
    limit = None if context_length is None else context_length - prompt_len
    if limit is not None and limit < 1:
        raise ApiError(400, f"The prompt has {prompt_len} tokens and the model context is {context_length}: no room "
                       "to generate. Shorten the messages.", param="messages")
    cap_name = "max_completion_tokens" if getattr(req, "max_completion_tokens", None) is not None else "max_tokens"
    cap = _int_field(cap_name, getattr(req, cap_name, None), limit)
    think = _thinking(req, effort_table, default_thinking, limit)
    solution = _int_field("solution_token_budget", req.solution_token_budget, limit)
    if think is None:
        if solution is not None:
            raise ApiError(400, f"solution_token_budget={solution} needs a thinking budget: send "
                           "thinking_token_budget (or reasoning_effort) as well.", param="solution_token_budget")
        return Budget.unconstrained(cap)
    solution = solution if solution is not None else default_solution
    if solution is not None and cap is not None and think + solution > cap:
        raise ApiError(400, f"{cap_name}={cap} is below thinking_token_budget + solution_token_budget = "
                       f"{think} + {solution}; raise {cap_name} or lower the budgets.", param=cap_name)
    return Budget(think=think, solution=solution, max_tokens=cap)


def resolve_sampling(req: Any) -> SamplingConfig:
    """Sampling settings of a request (OpenAI defaults: temperature 1, top-p 1).

    Raises:
        ApiError: 400 for settings the proxy does not support (``stop``, ``logprobs``).

    """
    if req.stop:
        raise ApiError(400, "stop is not supported by er proxy: the two phases stop at </think> and EOS. Drop it.",
                       param="stop")
    if req.logprobs not in (None, False):
        raise ApiError(400, "logprobs are not supported by er proxy yet; drop the field.", param="logprobs")
    return SamplingConfig(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k if req.top_k is not None else -1,
        seed=req.seed,
        logprobs=False,
    )
