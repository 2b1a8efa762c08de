"""verifiers (v1) / prime-rl: this project's problems and graders as a ``verifiers`` ``Taskset``.

:class:`ElasticTaskset` loads any ``er_env.data.load_problems`` dataset (names, paths in any
official row shape) into v1 tasks whose ``@vf.reward`` method ``correct`` grades the trace's reply
with this project's reward client (in-process, or a reward cluster URL in
``task.reward_endpoint``), exactly as the Gymnasium env and the TRL rewards grade.

**The prime-rl path is a single call with the engine's native budget**, not the two-call protocol:
in prime-rl the model call belongs to the harness (verifiers' train client renders tokens and calls
vLLM's ``/inference/v1/generate``), and a taskset cannot make two calls. :func:`prime_rl_sampling`
gives the sampling settings (``max_tokens = t + len(</think>) + s`` and
``extra_body = {"thinking_token_budget": t}``; vLLM must run with a reasoning parser). The
difference from Elastic Reasoning's two phases: vLLM forces ``</think>`` with its logits processor
inside one request, so (a) the forced token comes back as if sampled — no flag, no mask; its
logprob is the processor's, so GRPO trains on it (the official E1 code also trained on it:
``train_forced_token=True``); (b) the solution budget is not separate: a policy that closes its
thinking early may spend the rest of ``t + s`` on the solution. ``er eval --methods vllm_native``
measures this variant.

verifiers 0.4.0 (the release) ships only the v1 API; the v0 ``vf.SingleTurnEnv`` /
``get_model_response`` hook that a two-call environment would override is no longer in the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from er_env.budget import Budget
from er_env.data.loaders import load_problems
from er_env.data.schema import Problem
from er_env.data.templates import build_messages
from er_env.rollout import RewardRouter
from er_env.tokens import load_tokenizer, special_tokens

INSTALL_FIX = "Install the tested version: make venv-verifiers (pip install -e '.[verifiers]', verifiers==0.4.0)."

try:  # the v1 names this module builds on; a moved name is named in the error
    from pydantic import Field
    from verifiers.v1 import Task, TaskConfig, TaskData, Taskset, TasksetConfig, Trace
    from verifiers.v1.utils.decorators import reward
except ImportError as exc:
    raise ImportError(f"er_integrations.verifiers needs verifiers' v1 API ({exc}). {INSTALL_FIX}") from exc

__all__ = ["ElasticTaskset"]  # verifiers' plugin loader wants exactly one Taskset exported


class ElasticTaskConfig(TaskConfig):  # type: ignore[misc]
    """Run-time knobs of :class:`ElasticTask`."""

    reward_endpoint: str | None = None
    """Reward cluster URL (``er sandbox serve`` / the compose gateway); None grades in-process."""


class ElasticTasksetConfig(TasksetConfig):  # type: ignore[misc]
    """Load-time settings of :class:`ElasticTaskset`."""

    dataset: str = "embedded:math"
    """``load_problems`` name or path (any official row shape is detected)."""
    limit: int | None = None
    """Keep the first N problems."""
    template: str | None = None
    """Prompt template (None: the task's default, as in the Gymnasium env)."""
    task: ElasticTaskConfig = Field(default_factory=ElasticTaskConfig)


class ElasticData(TaskData):  # type: ignore[misc]
    """One problem, in ``Problem.to_dict()`` form (what the grader needs)."""

    problem: dict[str, Any]


_ROUTERS: dict[str | None, RewardRouter] = {}  # one reward client per endpoint


def _router(endpoint: str | None) -> RewardRouter:
    if endpoint not in _ROUTERS:
        _ROUTERS[endpoint] = RewardRouter(endpoint=endpoint)
    return _ROUTERS[endpoint]


class ElasticTask(Task[ElasticData, Any, ElasticTaskConfig]):  # type: ignore[misc]
    """A math or code problem graded by this project's math checker / code judge."""

    @reward(weight=1.0)
    async def correct(self, trace: Trace) -> float:
        """1.0 / 0.0 from the grader on the trace's reply; a grader failure raises (never a silent 0)."""
        problem = Problem.from_dict(self.data.problem)
        grade = _router(self.config.reward_endpoint).for_task(problem.task)
        reply, acall = trace.last_reply, getattr(grade, "acall", None)
        [result] = await acall([problem], [reply]) if acall else grade([problem], [reply])
        trace.info["er_verdict"] = result.verdict
        if result.is_error or math.isnan(result.reward):
            raise RuntimeError(f"The grader failed on {problem.id!r}: {result.verdict} {dict(result.details)!r:.300}")
        return float(result.reward)


class ElasticTaskset(Taskset[ElasticTask, ElasticTasksetConfig]):  # type: ignore[misc]
    """``load_problems(config.dataset)`` as verifiers v1 tasks (prompt messages + the problem)."""

    def load(self) -> Iterator[ElasticTask]:
        """Yield one task per problem; a row without what the grader needs fails in ``load_problems``."""
        problems = load_problems(self.config.dataset)
        for p in problems[: self.config.limit]:
            data = ElasticData(id=p.id, name=p.id, prompt=build_messages(p, self.config.template),
                               problem=p.to_dict())
            yield ElasticTask(data, self.config.task)


def prime_rl_sampling(budget: Budget, tokenizer: Any) -> dict[str, Any]:
    """prime-rl's ``[orchestrator.train.sampling]`` for the single-call native budget (see the module doc).

    Args:
        budget: ``Budget(think=t, solution=s)``.
        tokenizer: the model's tokenizer (a name, dir or object): ``</think>``'s length comes from it.

    Returns:
        ``{"max_completion_tokens": t + len(</think>) + s, "extra_body": {"thinking_token_budget": t}}``.

    Raises:
        ValueError: an unconstrained budget (no ``t``/``s``: no native budget to ask for).

    """
    if budget.think is None or budget.solution is None:
        raise ValueError(f"prime_rl_sampling needs Budget(think=t, solution=s), got {budget!r}.")
    end = special_tokens(load_tokenizer(tokenizer)).think_end
    return {"max_completion_tokens": budget.think + len(end) + budget.solution,
            "extra_body": {"thinking_token_budget": budget.think}}
