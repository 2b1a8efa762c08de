"""verl: the two-phase rollout as an agent loop registered as ``elastic_reasoning``.

:class:`ElasticReasoningAgentLoop` subclasses verl's ``AgentLoopBase``. Per sample it makes the thinking
call and the solution call through ``server_manager.generate(request_id, prompt_ids=..., sampling_params=...)``
with one ``request_id`` (the sticky session: the second call lands on the replica that holds the prefix),
the budget rules coming from :mod:`er_env.budget` through :func:`er_integrations._phases.run_sample`.
``response_mask`` is 0 on a forced ``</think>`` (1 with ``train_forced_token``); ``extra_fields`` carries
``thinking_truncated``, ``thinking_tokens``, ``solution_tokens``, the budgets and the completion text
(for :func:`er_integrations.verl.compute_score`).

Select it with the dataset column ``agent_name="elastic_reasoning"`` (:func:`er_integrations.verl.verl_rows`)
or ``actor_rollout_ref.rollout.agent.default_agent_loop=elastic_reasoning``; the budgets come from the
``agent_loop_config_path`` YAML entry's keys (``think_budget_tokens``, ``solution_budget_tokens``,
``train_forced_token``), else ``ER_THINK_BUDGET`` / ``ER_SOLUTION_BUDGET`` / ``ER_TRAIN_FORCED_TOKEN``
(default t=s=1024). This module must be imported where verl builds agent loops (the YAML's ``_target_``
does it; see ``er_integrations/recipes/verl_e1_math_1.5b.yaml``).
"""

from __future__ import annotations

import os
from typing import Any
from uuid import uuid4

from er_env.backends.base import BackendError
from er_env.backends.two_phase import PhaseOutput, PhaseRequest
from er_env.budget import Budget, BudgetError
from er_env.tokens import special_tokens
from er_integrations._phases import check_protocol, run_sample
from er_integrations.verl import AGENT_NAME, COMPLETION_KEY

__all__ = ["ElasticReasoningAgentLoop", "AGENT_NAME"]

INSTALL_FIX = "Install the tested version in its own venv: make venv-verl (verl==0.9.1)."


def _verl() -> tuple[Any, Any, Any]:
    """The ``AgentLoopBase``, ``AgentLoopOutput`` and ``register``, checked for what this module uses."""
    try:
        from verl.experimental.agent_loop import agent_loop as loop
    except ImportError as exc:
        raise ImportError(f"er_integrations.verl_agent needs verl ({exc}). {INSTALL_FIX}") from exc
    missing = [n for n in ("AgentLoopBase", "AgentLoopOutput", "register") if not hasattr(loop, n)]
    if not missing:
        fields = getattr(loop.AgentLoopOutput, "model_fields", {})
        missing = [f"AgentLoopOutput.{f}" for f in ("response_mask", "extra_fields", "response_logprobs")
                   if f not in fields]
        missing += [f"AgentLoopBase.{m}" for m in ("ct_build_initial_tokens",) if not hasattr(loop.AgentLoopBase, m)]
    if missing:
        raise ImportError(f"The installed verl lacks {missing}: its agent-loop interface moved. {INSTALL_FIX}")
    return loop.AgentLoopBase, loop.AgentLoopOutput, loop.register


_AgentLoopBase, _AgentLoopOutput, _register = _verl()


def _env_budget(think: int | None, solution: int | None, train_forced_token: bool | None) -> Budget:
    def num(name: str, value: int | None) -> int:
        if value is not None:
            return int(value)
        raw = os.environ.get(name, "1024")
        try:
            return int(raw)
        except ValueError:
            raise BudgetError(f"{name}={raw!r} is not an integer number of tokens; e.g. {name}=1024.") from None

    forced = train_forced_token if train_forced_token is not None else os.environ.get("ER_TRAIN_FORCED_TOKEN") == "1"
    return Budget(think=num("ER_THINK_BUDGET", think), solution=num("ER_SOLUTION_BUDGET", solution),
                  train_forced_token=bool(forced))


@_register(AGENT_NAME)
class ElasticReasoningAgentLoop(_AgentLoopBase):  # type: ignore[misc, valid-type]
    """verl agent loop: thinking call, forced ``</think>`` if needed, solution call (same request id).

    Args:
        *args: ``AgentLoopBase`` arguments (trainer config, server manager, tokenizer...).
        think_budget_tokens: ``t`` (default ``ER_THINK_BUDGET`` or 1024).
        solution_budget_tokens: ``s`` (default ``ER_SOLUTION_BUDGET`` or 1024).
        train_forced_token: ``response_mask`` 1 on a forced ``</think>`` (the official code's choice).
        **kwargs: ``AgentLoopBase`` keyword arguments.

    Raises:
        TokenizerError: ``</think>`` is several tokens for this tokenizer.
        BudgetError: ``t + 1 + s`` exceeds ``actor_rollout_ref.rollout.response_length``.
    """

    def __init__(self, *args: Any, think_budget_tokens: int | None = None, solution_budget_tokens: int | None = None,
                 train_forced_token: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = _env_budget(think_budget_tokens, solution_budget_tokens, train_forced_token)
        self.special = special_tokens(self.tokenizer)
        self.response_length = int(self.rollout_config.response_length)
        check_protocol(self.special, self.budget, None, "actor_rollout_ref.rollout.response_length")
        need = (self.budget.cap() or 0) + len(self.special.think_end)
        if need > self.response_length:
            raise BudgetError(
                f"Budgets t={self.budget.think} + </think> + s={self.budget.solution} = {need} tokens exceed "
                f"actor_rollout_ref.rollout.response_length={self.response_length}: verl would cut the solution. "
                f"Set response_length >= {need} or lower the budgets.")

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        """Roll one row out (``kwargs``: the dataset row, ``raw_prompt`` the chat messages)."""
        if "raw_prompt" not in kwargs:
            raise ValueError(f"The {AGENT_NAME!r} agent loop needs the row's raw_prompt (chat messages); got fields "
                             f"{sorted(kwargs)}. Keep data.return_raw_chat=True.")
        prompt_ids = await self.ct_build_initial_tokens(list(kwargs["raw_prompt"]))
        request_id = uuid4().hex
        calls = 0

        async def engine(req: PhaseRequest) -> PhaseOutput:
            nonlocal calls
            calls += 1
            params = {**sampling_params, "max_tokens": req.max_tokens, "stop_token_ids": list(req.stop_token_ids)}
            out = await self.server_manager.generate(request_id, prompt_ids=list(req.prompt_ids),
                                                     sampling_params=params)
            if out.stop_reason == "aborted":
                raise BackendError(f"verl aborted request {request_id} mid-phase; the two-phase loop cannot resume a "
                                   "partial phase. Use the synchronous rollout (no partial rollouts).")
            return PhaseOutput(tuple(out.token_ids), tuple(out.log_probs) if out.log_probs else None, None)

        done = await run_sample(engine, prompt_ids, self.budget, self.special)
        text = self.tokenizer.decode(list(done.completion_ids), skip_special_tokens=False)
        extra = {"thinking_truncated": done.thinking_truncated, "thinking_tokens": done.thinking_tokens,
                 "solution_tokens": done.solution_tokens, "think_budget_tokens": self.budget.think,
                 "solution_budget_tokens": self.budget.solution, COMPLETION_KEY: text,
                 "turn_scores": [], "tool_rewards": []}
        return _AgentLoopOutput(
            prompt_ids=list(prompt_ids), response_ids=list(done.completion_ids), response_mask=list(done.env_mask),
            response_logprobs=list(done.logprobs) if done.logprobs else None, num_turns=2,
            metrics={"num_preempted": -1}, extra_fields=extra)
