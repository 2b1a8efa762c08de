"""One sample's two engine calls for stacks whose engine is an async token-in ``generate``.

OpenRLHF's ``llm_engine.generate`` and verl's ``server_manager.generate`` both take prompt ids and
return the generated ids. :func:`run_sample` drives :class:`er_env.backends.two_phase.PhaseDriver`
(one :class:`~er_env.budget.BudgetTracker`) through such an engine: the tracker alone decides what is
kept, when ``</think>`` is forced and when the sample is done, exactly as the project's own backends.
:func:`check_protocol` refuses, before any model call, what these single-request stacks cannot
express (a multi-token ``</think>``, budgets that cannot fit the context).
"""

from __future__ import annotations

from typing import Awaitable, Callable, Sequence

from er_env.backends.two_phase import PhaseDriver, PhaseOutput, PhaseRequest
from er_env.budget import Budget, BudgetedCompletion, BudgetError, BudgetTracker, SpecialTokens, TokenizerError

__all__ = ["Engine", "check_protocol", "run_sample", "trained_spans"]

#: ``await engine(request)``: one generation for one :class:`PhaseRequest`
Engine = Callable[[PhaseRequest], Awaitable[PhaseOutput]]


def check_protocol(special: SpecialTokens, budget: Budget, context_length: int | None, where: str) -> None:
    """Refuse settings the two-call rollout of a token-in stack cannot run.

    Args:
        special: the model's protocol tokens (``er_env.tokens.special_tokens``).
        budget: the budgets ``t``/``s``.
        context_length: the most prompt + response tokens the stack allows (``None``: unknown).
        where: the setting the user changes, quoted in the error (e.g. ``"--generate.max_len"``).

    Raises:
        TokenizerError: ``</think>`` is several tokens (these stacks stop on token ids only).
        BudgetError: ``t + len(</think>) + s`` does not fit in ``context_length``.

    """
    if len(special.think_end) != 1:
        raise TokenizerError(
            f"</think> encodes to {len(special.think_end)} tokens {list(special.think_end)}; the two-call rollout "
            "stops the thinking call on one stop token id. Add it as one token "
            "(tokenizer.add_special_tokens({'additional_special_tokens': ['</think>']}) and resize the embeddings) "
            "or use a reasoning model's tokenizer (e.g. DeepSeek-R1-Distill)."
        )
    cap = budget.cap()
    if context_length is not None and budget.constrained and cap is not None:
        need = cap + len(special.think_end)
        if need >= context_length:
            raise BudgetError(
                f"Budgets t={budget.think} + </think> + s={budget.solution} = {need} tokens leave no room for a "
                f"prompt in {where}={context_length}. Raise {where} above {need} plus the longest prompt, or lower "
                "the budgets."
            )


async def run_sample(engine: Engine, prompt_ids: Sequence[int], budget: Budget, special: SpecialTokens,
                     context_length: int | None = None) -> BudgetedCompletion:
    """Run the budget protocol for one prompt with ``engine`` (two calls when constrained).

    Args:
        engine: the stack's generation call, adapted to :data:`Engine`.
        prompt_ids: the prompt token ids.
        budget: thinking/solution budgets.
        special: the model's protocol tokens.
        context_length: prompt + completion cap (``None``: the engine's own limit).

    Returns:
        The finished completion (``text`` unset: the caller decodes with its tokenizer).

    Raises:
        BudgetError: the prompt leaves no room in ``context_length``.
        BackendError: the engine stopped for a reason the protocol does not know.

    """
    tracker = BudgetTracker(budget, special, prompt_ids, context_length)
    driver = PhaseDriver([tracker])
    while (request := driver.request(0)) is not None:
        driver.feed(0, await engine(request))
    return tracker.result()


def trained_spans(env_mask: Sequence[int], offset: int = 0) -> list[tuple[int, int]]:
    """``[start, end)`` spans of the 1s in ``env_mask``, shifted by ``offset`` (OpenRLHF's ``action_ranges``)."""
    spans: list[tuple[int, int]] = []
    start = None
    for i, bit in enumerate([*env_mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            spans.append((offset + start, offset + i))
            start = None
    return spans
