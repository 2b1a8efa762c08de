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

**The two-phase path is a harness.** verifiers 0.4.0 (the release) ships only the v1 API (the v0
``vf.SingleTurnEnv`` / ``get_model_response`` hook is gone); in v1 the model call belongs to the seat's
``Harness``. :class:`ElasticHarness` is one that runs in-process: its ``launch`` renders the task's
messages with the model's chat template, makes the two ``/v1/completions`` calls with token-id prompts
on the run's OpenAI-compatible endpoint (``ctx.client.base_url``, ``ctx.model``) through
:class:`er_env.backends.openai.OpenAIBackend` (the budget rules of :mod:`er_env.budget`, nothing
re-implemented), and commits the completion to the trace as one sampled assistant turn whose token
``mask`` is ``False`` on a forced ``</think>`` (``True`` with ``train_forced_token``), so
``trace.branches[0].token_ids`` / ``sampled_mask`` / ``logprobs`` are the training sample. The
record carries ``trace.info["thinking_truncated"]`` and the counts, the harness's ``@vf.metric``s log
them, and the taskset's ``@vf.reward correct`` grades the completion text with this project's graders.
The harness bypasses verifiers' interception server for the model call (the chat dialects it speaks
cannot send token prompts to ``/v1/completions`` or continue an assistant turn after a forced
``</think>``); it appends one ``ModelCall`` record per sample itself.

:func:`load_environment` builds the env (``vf.load_environment`` over this project's plugin id
``elastic-reasoning-gym``, whose package :mod:`elastic_reasoning_gym` exports the taskset and the
harness); verifiers' own eval runner (``verifiers.v1.cli.eval.runner.run_eval``, what ``vf-eval`` runs)
takes the same ids.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget, BudgetedCompletion
from er_env.data.loaders import load_problems
from er_env.data.schema import Problem
from er_env.data.templates import build_messages
from er_env.rollout import RewardRouter
from er_env.tokens import load_tokenizer, special_tokens
from er_integrations._phases import check_protocol

INSTALL_FIX = "Install the tested version: make venv-verifiers (pip install -e '.[verifiers]', verifiers==0.4.0)."

try:  # the v1 names this module builds on; a moved name is named in the error
    from pydantic import Field
    from verifiers.v1 import (
        AssistantMessage,
        EnvConfig,
        Harness,
        HarnessConfig,
        ModelCall,
        ProgramResult,
        Response,
        Task,
        TaskConfig,
        TaskData,
        Taskset,
        TasksetConfig,
        TimeSpan,
        Trace,
        TurnTokens,
        Usage,
    )
    from verifiers.v1 import load_environment as _vf_load_environment
    from verifiers.v1.configs.client import resolve_api_key
    from verifiers.v1.graph import prepare_turn
    from verifiers.v1.types import content_text
    from verifiers.v1.utils.decorators import metric, reward
except ImportError as exc:
    raise ImportError(f"er_integrations.verifiers needs verifiers' v1 API ({exc}). {INSTALL_FIX}") from exc

#: the plugin id of this project's taskset + harness (the package ``elastic_reasoning_gym``)
PLUGIN_ID = "elastic-reasoning-gym"

# verifiers' plugin loader wants exactly one Taskset and one Harness exported
__all__ = ["ElasticTaskset", "ElasticHarness"]


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


# ----------------------------------------------------------------------------- the two-phase harness
class ElasticHarnessConfig(HarnessConfig):  # type: ignore[misc]
    """The seat's budgets and the served model's tokenizer (``--env.agent.harness.*``)."""

    id: str = PLUGIN_ID
    think_budget_tokens: int = 1024
    """Thinking budget ``t``."""
    solution_budget_tokens: int = 1024
    """Solution budget ``s``."""
    train_forced_token: bool = False
    """Mask ``True`` on a forced ``</think>`` (the official E1 code trained on it)."""
    tokenizer: str = "tiny"
    """The served model's tokenizer: a local dir or hub name (``</think>``/EOS ids, the chat template)."""
    context_length: int | None = None
    """The model context; None: the server's ``max_model_len`` from ``GET /v1/models``."""
    max_concurrency: int = 16
    """Most ``/v1/completions`` requests in flight per harness."""

    def budget(self) -> Budget:
        """The :class:`~er_env.budget.Budget` of these settings (bad values raise ``BudgetError``)."""
        return Budget(think=self.think_budget_tokens, solution=self.solution_budget_tokens,
                      train_forced_token=self.train_forced_token)


def _sampling(ctx_sampling: Any) -> SamplingConfig:
    """Map verifiers' ``SamplingConfig`` (temperature, top_p, extra seed/top_k) to er_env's (``max_tokens`` unused)."""
    extra = dict(getattr(ctx_sampling, "model_extra", None) or {})
    temperature = ctx_sampling.temperature
    return SamplingConfig(temperature=1.0 if temperature is None else float(temperature),
                          top_p=1.0 if ctx_sampling.top_p is None else float(ctx_sampling.top_p),
                          top_k=int(extra.get("top_k", -1)), seed=extra.get("seed"), logprobs=True)


class ElasticHarness(Harness[ElasticHarnessConfig]):  # type: ignore[misc]
    """In-process harness: the two-phase model call over the run's OpenAI-compatible endpoint.

    One ``launch`` per rollout: thinking call (at most ``t`` tokens, stop at ``</think>``/EOS), the
    forced ``</think>`` when needed, solution call (at most ``s``), all through
    :class:`~er_env.backends.openai.OpenAIBackend`; the result is committed as one assistant turn
    (see the module doc). Refuses, before any model call, a multi-token ``</think>`` and budgets that
    do not fit the model context. Sampling comes from the run's (``temperature``, ``top_p``, extra
    ``top_k``/``seed``; a seed is sent unchanged with every rollout, so a group of rollouts of one task
    samples alike: leave it unset for GRPO groups).
    """

    APPENDS_SYSTEM_PROMPT = True
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    def __init__(self, config: ElasticHarnessConfig) -> None:
        super().__init__(config)
        self.budget = config.budget()
        self.tokenizer = load_tokenizer(config.tokenizer)
        self.special = special_tokens(self.tokenizer)
        check_protocol(self.special, self.budget, config.context_length, "--env.agent.harness.context-length")
        self._backends: dict[tuple[str, str], Any] = {}

    def backend(self, base_url: str, model: str, api_key: str | None) -> Any:
        """The :class:`OpenAIBackend` for one endpoint and model (built once)."""
        key = (base_url, model)
        if key not in self._backends:
            from er_env.backends.openai import OpenAIBackend

            self._backends[key] = OpenAIBackend(base_url, model, tokenizer=self.tokenizer, api_key=api_key,
                                                max_concurrency=self.config.max_concurrency,
                                                context_length=self.config.context_length)
        return self._backends[key]

    def prompt_ids(self, data: Any) -> tuple[list[Any], list[int]]:
        """The task's messages (typed) and their chat-templated ids (generation prompt included)."""
        from verifiers.v1 import SystemMessage, UserMessage

        system, prompt = self.resolve_prompt(data)
        messages: list[Any] = [UserMessage(content=prompt)] if isinstance(prompt, str) else list(prompt or [])
        if system is not None:
            messages.insert(0, SystemMessage(content=system))
        plain = [{"role": m.role, "content": content_text(m.content)} for m in messages]
        text = self.tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        return messages, list(self.tokenizer.encode(text, add_special_tokens=False))

    async def launch(self, ctx: Any, trace: Any, runtime: Any, endpoint: str, secret: str,
                     mcp_urls: dict[str, str], data: Any, tool_interception_url: str | None = None) -> Any:
        """Run the two phases for ``data`` and commit the completion to ``trace`` (see the class doc)."""
        messages, prompt_ids = self.prompt_ids(data)
        backend = self.backend(ctx.client.base_url, ctx.model, resolve_api_key(ctx.client))
        context = await backend.fetch_context_length()  # GET /v1/models: no model call yet
        check_protocol(self.special, self.budget, context, "the server's max_model_len")
        started = time.time()
        [done] = await backend.agenerate([prompt_ids], self.budget, _sampling(ctx.sampling))
        node = commit_completion(trace, messages, done, ctx.model)
        finish = "stop" if done.finish_reason == "eos" else "length"
        trace.calls.append(ModelCall(node=node, model=ctx.model, endpoint="/v1/completions (two-phase)",
                                     finish_reason=finish, usage=_usage(done),
                                     time=TimeSpan(start=started, end=time.time())))
        return ProgramResult(exit_code=0, stdout="", stderr="")

    @metric
    async def thinking_truncated(self, trace: Any) -> float:
        """1.0 when ``</think>`` was forced."""
        return float(trace.info.get("thinking_truncated", math.nan))

    @metric
    async def thinking_tokens(self, trace: Any) -> float:
        """Sampled thinking tokens."""
        return float(trace.info.get("thinking_tokens", math.nan))

    @metric
    async def solution_tokens(self, trace: Any) -> float:
        """Sampled solution tokens."""
        return float(trace.info.get("solution_tokens", math.nan))


def _usage(done: BudgetedCompletion) -> Any:
    return Usage(prompt_tokens=len(done.prompt_ids), completion_tokens=len(done.completion_ids))


def commit_completion(trace: Any, messages: list[Any], done: BudgetedCompletion, model: str) -> int:
    """Commit one budgeted completion to ``trace`` as a sampled assistant turn; return its node index.

    The node's ``token_ids`` end with ``done.completion_ids``; its ``mask`` is ``done.env_mask``
    there (``False`` on a forced ``</think>``) and its ``logprobs`` are those of the masked-in tokens,
    as verifiers lays them out. ``trace.info`` gets ``thinking_truncated``, the counts (``prompt_tokens``
    included) and the finish reasons.
    """
    from er_env.budget import FORCED_LOGPROB

    ids, mask = list(done.completion_ids), [bool(m) for m in done.env_mask]
    logprobs = list(done.logprobs) or [FORCED_LOGPROB] * len(ids)
    trace_text = done.text if done.text is not None else ""
    response = Response(
        id=f"er-{uuid.uuid4().hex}", created=int(time.time()), model=model,
        message=AssistantMessage(content=trace_text),
        finish_reason="stop" if done.finish_reason == "eos" else "length", usage=_usage(done),
        tokens=TurnTokens(prompt_ids=list(done.prompt_ids), completion_ids=ids,
                          completion_logprobs=[lp for lp, m in zip(logprobs, mask, strict=True) if m]))
    node_id = int(prepare_turn(trace, messages).commit(response))
    node = trace.nodes[node_id]
    head = len(node.token_ids) - len(ids)
    if head < 0 or node.token_ids[head:] != ids:
        raise RuntimeError("verifiers committed other token ids than the completion's; its graph layout moved. "
                           f"{INSTALL_FIX}")
    node.mask = [False] * head + mask
    trace.info.update(prompt_tokens=len(done.prompt_ids), thinking_truncated=done.thinking_truncated,
                      thinking_tokens=done.thinking_tokens,
                      solution_tokens=done.solution_tokens, think_finish_reason=done.think_finish_reason,
                      finish_reason=done.finish_reason)
    return node_id


def load_environment(dataset: str = "embedded:math", *, think_budget_tokens: int = 1024,
                     solution_budget_tokens: int = 1024, tokenizer: str = "tiny", limit: int | None = None,
                     train_forced_token: bool = False, context_length: int | None = None,
                     reward_endpoint: str | None = None, **agent: Any) -> Any:
    """A verifiers v1 env: this project's problems, the two-phase harness, the graders' reward.

    Args:
        dataset: ``load_problems`` name or path.
        think_budget_tokens: ``t``.
        solution_budget_tokens: ``s``.
        tokenizer: the served model's tokenizer (local dir or hub name).
        limit: keep the first N problems.
        train_forced_token: mask ``True`` on a forced ``</think>``.
        context_length: the model context (None: from the server).
        reward_endpoint: reward cluster URL (None: in-process graders).
        **agent: other ``AgentConfig`` fields (default ``runtime={"type": "subprocess"}``: the
            harness runs no program).

    Returns:
        ``vf.load_environment(EnvConfig)`` for plugin id ``elastic-reasoning-gym`` (a ``SingleAgentEnv``);
        ``env.config`` is the config to hand verifiers' runners.

    Raises:
        BudgetError / TokenizerError: see :class:`ElasticHarness` (before any model call).

    """
    return _vf_load_environment(env_config(dataset, think_budget_tokens=think_budget_tokens,
                                           solution_budget_tokens=solution_budget_tokens, tokenizer=tokenizer,
                                           limit=limit, train_forced_token=train_forced_token,
                                           context_length=context_length, reward_endpoint=reward_endpoint,
                                           **agent))


def env_config(dataset: str = "embedded:math", *, think_budget_tokens: int = 1024, solution_budget_tokens: int = 1024,
               tokenizer: str = "tiny", limit: int | None = None, train_forced_token: bool = False,
               context_length: int | None = None, reward_endpoint: str | None = None, **agent: Any) -> Any:
    """The ``EnvConfig`` :func:`load_environment` builds from (for ``EvalConfig(env=...)``); same arguments."""
    from verifiers.v1.utils.loaders import resolve_env_config

    harness = {"id": PLUGIN_ID, "think_budget_tokens": think_budget_tokens,
               "solution_budget_tokens": solution_budget_tokens, "tokenizer": str(tokenizer),
               "train_forced_token": train_forced_token, "context_length": context_length}
    taskset = {"id": PLUGIN_ID, "dataset": dataset, "limit": limit, "task": {"reward_endpoint": reward_endpoint}}
    config: EnvConfig = resolve_env_config({"taskset": taskset,
                                            "agent": {"runtime": {"type": "subprocess"}, **agent,
                                                      "harness": harness}})
    return config


def trace_rollout(trace: Any) -> Any:
    """The conformance kit's :class:`~er_integrations.conformance.Rollout` of a trace this harness wrote.

    Raises:
        ValueError: the trace has no completion from :class:`ElasticHarness` (``trace.info`` lacks
            ``prompt_tokens``: another harness ran, or the rollout failed before the model call).

    """
    from er_integrations.conformance import Rollout

    if "prompt_tokens" not in trace.info or not trace.branches:
        raise ValueError(f"Trace {trace.id} holds no ElasticHarness completion (errors: {trace.errors}).")
    branch, n = trace.branches[0], int(trace.info["prompt_tokens"])
    ids, mask = list(branch.token_ids), [int(m) for m in branch.sampled_mask]
    info = trace.info
    return Rollout(prompt_ids=ids[:n], completion_ids=ids[n:], env_mask=mask[n:],
                   thinking_tokens=int(info["thinking_tokens"]), solution_tokens=int(info["solution_tokens"]),
                   thinking_truncated=bool(info["thinking_truncated"]), finish_reason=info["finish_reason"])
