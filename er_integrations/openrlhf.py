"""OpenRLHF: the two-phase rollout as an ``AgentExecutor`` and the graders as its remote reward.

Rollout: point ``--train.agent_func_path`` at a file holding ``from er_integrations.openrlhf import
AgentExecutor`` (or at this module's file). OpenRLHF builds ``AgentExecutor()`` with no arguments, so
its settings come from the environment (read once per executor):

=========================  =====================================================================
``ER_THINK_BUDGET``        thinking budget ``t`` (default 1024)
``ER_SOLUTION_BUDGET``     solution budget ``s`` (default 1024)
``ER_TRAIN_FORCED_TOKEN``  ``1``: keep a forced ``</think>`` inside ``action_ranges`` (the official code)
``ER_REWARD_ENDPOINT``     reward cluster URL (``er sandbox serve`` / docker compose); unset: in-process
``ER_TASK``                ``math`` or ``code``: the grader of a plain-text label (default ``math``)
=========================  =====================================================================

Each ``execute`` makes the thinking call (at most ``t`` tokens, stop at ``</think>`` or EOS) and the
solution call (``prompt + thinking + </think>``, at most ``s`` tokens) on ``llm_engine.generate``,
the budget rules coming from :mod:`er_env.budget` through :func:`er_integrations._phases.run_sample`.
A forced ``</think>`` lies outside ``action_ranges`` (OpenRLHF's trained spans); the reward is the
project's grader's, and ``extra_logs`` carries ``thinking_truncated`` and the token counts.

The label of a row is this project's problem (``json.dumps(Problem.to_dict())``, see
:func:`dataset_rows`) or, for math, the gold answer as text
(:func:`er_integrations.openrlhf_reward.problem_from_label`).

Reward service: :mod:`er_integrations.openrlhf_reward` answers OpenRLHF's ``--reward.remote_url``
contract (``POST {query, prompts, labels}``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from copy import deepcopy
from typing import Any, Sequence

from er_env.backends.two_phase import PhaseOutput, PhaseRequest
from er_env.budget import Budget, BudgetedCompletion, SpecialTokens
from er_env.data.schema import Problem
from er_env.data.templates import build_messages
from er_env.rollout import RewardRouter
from er_env.tokens import special_tokens
from er_integrations._phases import check_protocol, run_sample, trained_spans
from er_integrations.openrlhf_reward import problem_from_label

__all__ = ["AgentExecutor", "ElasticAgentExecutor", "problem_from_label", "dataset_rows", "INSTALL_FIX"]

INSTALL_FIX = "Install the tested version: pip install --no-deps openrlhf==0.11.2 && pip install -e '.[openrlhf]'."


def _agent_base() -> Any:
    """OpenRLHF's ``AgentExecutorBase``, checked for the ``execute`` signature this module implements."""
    try:
        from openrlhf.utils.agent import AgentExecutorBase
    except ImportError as exc:
        raise ImportError(f"er_integrations.openrlhf needs openrlhf ({exc}). {INSTALL_FIX}") from exc
    import inspect

    params = list(inspect.signature(AgentExecutorBase.execute).parameters)
    expected = ["self", "prompt", "label", "sampling_params", "max_length", "hf_tokenizer", "llm_engine"]
    if params[: len(expected)] != expected:
        raise ImportError(f"The installed openrlhf's AgentExecutorBase.execute takes {params}, not {expected}: its "
                          f"interface moved. {INSTALL_FIX}")
    return AgentExecutorBase


_Base: Any = _agent_base()


def dataset_rows(problems: Sequence[Problem], template: str | None = None) -> list[dict[str, Any]]:
    """OpenRLHF rows: ``prompt`` chat messages (``--data.apply_chat_template``) and a JSON ``label``.

    Args:
        problems: e.g. ``er_env.data.load_problems("aime2024")``.
        template: prompt template (None: the task's default).

    Returns:
        One ``{"prompt": [...], "label": json.dumps(problem.to_dict())}`` per problem
        (``--data.input_key prompt --data.label_key label``).

    """
    return [{"prompt": build_messages(p, template), "label": json.dumps(p.to_dict())} for p in problems]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer number of tokens; e.g. {name}=1024.") from None


def _with(sampling_params: Any, max_tokens: int | None, stop_token_ids: Sequence[int]) -> Any:
    """A copy of OpenRLHF's ``vllm.SamplingParams`` for one phase (the caller's object is shared)."""
    params = deepcopy(sampling_params)
    params.max_tokens = max_tokens
    params.stop_token_ids = list(stop_token_ids)
    if getattr(params, "n", 1) != 1:
        raise ValueError(f"sampling_params.n={params.n}: each execute call is one sample; OpenRLHF sets n=1 and "
                         "repeats prompts (--rollout.n_samples_per_prompt).")
    return params


def _phase_output(request_output: Any) -> PhaseOutput:
    """VLLM ``RequestOutput`` -> :class:`PhaseOutput` (the sampled tokens' own logprobs)."""
    out = request_output.outputs[0]
    ids = tuple(int(t) for t in out.token_ids)
    lps = None
    if getattr(out, "logprobs", None):
        lps = tuple(float(step[tok].logprob) for step, tok in zip(out.logprobs, ids, strict=True))
    return PhaseOutput(ids, lps, out.finish_reason)


class ElasticAgentExecutor(_Base):  # type: ignore[misc, valid-type]
    """``AgentExecutorBase`` running Elastic Reasoning's two phases and grading with the project's reward client.

    Args:
        budget: the budgets (default: ``ER_THINK_BUDGET`` / ``ER_SOLUTION_BUDGET`` /
            ``ER_TRAIN_FORCED_TOKEN``, else t=s=1024).
        reward_endpoint: reward cluster URL (default ``ER_REWARD_ENDPOINT``; unset: in-process).
        task: the grader of plain-text labels (default ``ER_TASK`` or ``"math"``).
        on_reward_error: ``"raise"`` (default: OpenRLHF has no way to drop one sample, and a nan reward
            would reach the advantages) or ``"record"``.
    """

    def __init__(self, budget: Budget | None = None, reward_endpoint: str | None = None, task: str | None = None,
                 on_reward_error: str = "raise") -> None:
        self.budget = budget or Budget(think=_env_int("ER_THINK_BUDGET", 1024),
                                       solution=_env_int("ER_SOLUTION_BUDGET", 1024),
                                       train_forced_token=os.environ.get("ER_TRAIN_FORCED_TOKEN", "0") == "1")
        if not self.budget.constrained:
            raise ValueError(f"{self.budget} is unconstrained; OpenRLHF's SingleTurnAgentExecutor already runs "
                             "one pass. Set ER_THINK_BUDGET / ER_SOLUTION_BUDGET.")
        self.task = task or os.environ.get("ER_TASK", "math")
        endpoint = reward_endpoint or os.environ.get("ER_REWARD_ENDPOINT") or None
        self.rewards = RewardRouter(endpoint=endpoint, on_reward_error=on_reward_error)
        self._special: dict[int, SpecialTokens] = {}

    def special_for(self, hf_tokenizer: Any) -> SpecialTokens:
        """The protocol tokens of ``hf_tokenizer`` (resolved once per tokenizer object)."""
        key = id(hf_tokenizer)
        if key not in self._special:
            self._special[key] = special_tokens(hf_tokenizer)
        return self._special[key]

    async def execute(self, prompt: Any, label: Any, sampling_params: Any, max_length: int, hf_tokenizer: Any,
                      llm_engine: Any, images: Any = None) -> dict[str, Any]:
        """One sample: thinking call, forced ``</think>`` if needed, solution call, reward.

        Args:
            prompt: the prompt text (chat template applied by OpenRLHF).
            label: see :func:`er_integrations.openrlhf_reward.problem_from_label`.
            sampling_params: OpenRLHF's ``vllm.SamplingParams`` (copied per call, never mutated).
            max_length: prompt + response cap (``--generate.max_len``).
            hf_tokenizer: the policy's tokenizer.
            llm_engine: OpenRLHF's engine actor (``await llm_engine.generate(ids, params)``).
            images: unsupported (text only).

        Returns:
            OpenRLHF's rollout dict (``observation_tokens``, ``action_ranges``, ``rollout_log_probs``,
            ``reward``, ``scores``, ``truncated``, ``extra_logs``...).

        Raises:
            ProblemError: the label lacks what the grader needs (before any model call).
            TokenizerError / BudgetError: see :func:`er_integrations._phases.check_protocol`.

        """
        if images:
            raise ValueError("er_integrations.openrlhf is text-only; drop --data.image_key for this executor.")
        problem = problem_from_label(label, self.task)
        special = self.special_for(hf_tokenizer)
        check_protocol(special, self.budget, max_length, "--generate.max_len")
        prompt_ids = [int(t) for t in hf_tokenizer(text=prompt, add_special_tokens=False)["input_ids"]]

        async def engine(req: PhaseRequest) -> PhaseOutput:
            params = _with(sampling_params, req.max_tokens, req.stop_token_ids)
            return _phase_output(await llm_engine.generate(list(req.prompt_ids), params))

        done = await run_sample(engine, prompt_ids, self.budget, special, context_length=max_length)
        text = hf_tokenizer.decode(list(done.completion_ids), skip_special_tokens=False)
        [result] = await asyncio.to_thread(self.rewards, [problem], [text])
        return self._output(prompt, label, done, result, sampling_params)

    def _output(self, prompt: Any, label: Any, done: BudgetedCompletion, result: Any, sampling_params: Any
                ) -> dict[str, Any]:
        n_prompt = len(done.prompt_ids)
        log_probs = None
        if getattr(sampling_params, "logprobs", None) is not None and done.logprobs:
            log_probs = [0.0] * n_prompt + list(done.logprobs)
        reward = float(result.reward)
        return {
            "prompt": prompt, "label": label, "images": None, "mm_train_inputs": None,
            "observation_tokens": list(done.prompt_ids) + list(done.completion_ids),
            "action_ranges": trained_spans(done.env_mask, offset=n_prompt),
            "rollout_log_probs": log_probs,
            "truncated": done.finish_reason != "eos",
            "reward": reward, "scores": reward,
            "extra_logs": {"thinking_truncated": float(done.thinking_truncated),
                           "thinking_tokens": float(done.thinking_tokens),
                           "solution_tokens": float(done.solution_tokens),
                           "reward_is_error": float(result.is_error or math.isnan(reward))},
        }


#: the module-level class OpenRLHF's ``--train.agent_func_path`` loader looks for
AgentExecutor = ElasticAgentExecutor
