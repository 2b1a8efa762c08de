"""OpenEnv: the Elastic Reasoning episode as an OpenEnv ``Environment`` server.

:class:`ElasticReasoningEnvironment` wraps the Gymnasium environment
(:class:`er_env.envs.elastic_env.ElasticReasoningEnv`) one session each: ``reset`` draws a problem and
returns its chat-templated prompt (text and ids) with the budgets ``t``/``s``; a *thinking action*
(the text or token ids the policy generated with ``max_tokens=t``, stopping at ``</think>``) goes
through the same :class:`er_env.budget.BudgetTracker` as every backend, which cuts it at ``t`` and
forces ``</think>`` (``env_mask`` 0) when needed; a *solution action* (generated from
``prompt_ids + completion_ids`` with ``max_tokens=remaining_tokens``) ends the episode with the
graders' reward (this project's reward client, in-process or a cluster URL). A thinking action that
neither closes ``</think>`` nor fills ``t`` leaves the episode thinking, as in the Gymnasium env.

Serve it with OpenEnv's own app factory (concurrent WebSocket sessions, one environment each)::

    python -m er_integrations.openenv --port 8000 --max-concurrent-envs 8 --think 1024 --solution 1024

and drive it with any OpenEnv client, e.g. ``GenericEnvClient(base_url="http://127.0.0.1:8000").sync()``:
``reset()`` then ``step({"text": thinking})`` then ``step({"text": solution})``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from er_env.budget import BudgetError
from er_env.envs.elastic_env import ElasticReasoningEnv
from er_env.tokens import TINY_TOKENIZER

__all__ = ["OpenEnvConfig", "ElasticAction", "ElasticObservation", "ElasticState", "ElasticReasoningEnvironment",
           "create_elastic_app", "main"]

INSTALL_FIX = "Install the tested version: pip install -e '.[openenv]' (openenv==0.10.0)."
PHASE_NAMES = ("thinking", "solution", "done")


try:  # the OpenEnv server interface this module builds on; a moved name is named in the error
    from openenv.core.env_server.http_server import create_app
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import Action, Observation, State
except ImportError as exc:
    raise ImportError(f"er_integrations.openenv needs OpenEnv's server interface ({exc}). {INSTALL_FIX}") from exc
from pydantic import Field  # noqa: E402  (pydantic comes with OpenEnv)


class ElasticAction(Action):  # type: ignore[misc]
    """One phase's output: ``text`` (encoded without special tokens) or ``token_ids``, not both."""

    text: Optional[str] = Field(default=None, description="generated text of this phase")
    token_ids: Optional[list[int]] = Field(default=None, description="generated token ids of this phase")


class ElasticObservation(Observation):  # type: ignore[misc]
    """Prompt, completion so far, phase and budgets; the graders' verdict once done."""

    problem_id: str = ""
    prompt_text: str = ""
    prompt_ids: list[int] = Field(default_factory=list)
    completion_ids: list[int] = Field(default_factory=list)
    phase: str = Field(default="thinking", description="'thinking', 'solution' or 'done'")
    remaining_tokens: int = Field(default=0, description="max_tokens for the next action")
    think_budget_tokens: int = 0
    solution_budget_tokens: int = 0
    forced_think_end: bool = Field(default=False, description="this step forced </think> (env_mask 0)")
    thinking_truncated: bool = False
    env_mask: list[int] = Field(default_factory=list, description="set when done: 0 on forced tokens")
    finish_reason: Optional[str] = None
    verdict: Optional[str] = None
    is_error: bool = Field(default=False, description="the grader failed: reward is None, not 0")
    completion_text: Optional[str] = None


class ElasticState(State):  # type: ignore[misc]
    """Episode id, step count, problem, phase and token counts."""

    problem_id: str = ""
    phase: str = "thinking"
    thinking_tokens: int = 0
    solution_tokens: int = 0


@dataclass
class OpenEnvConfig:
    """What every session's environment is built from."""

    task: str = field(default="math", metadata={"help": "'math' or 'code'"})
    dataset: Optional[str] = field(default=None, metadata={
        "help": "load_problems name or path (None: embedded:<task>); any official row shape is detected"})
    dataset_limit: Optional[int] = field(default=None, metadata={"help": "keep the first N problems"})
    think_budget_tokens: int = field(default=1024, metadata={"help": "thinking budget t"})
    solution_budget_tokens: int = field(default=1024, metadata={"help": "solution budget s"})
    tokenizer: str = field(default=TINY_TOKENIZER, metadata={"help": "'tiny', a local dir or a hub name"})
    context_length: Optional[int] = field(default=None, metadata={"help": "model context; t+s must fit in it"})
    reward_endpoint: Optional[str] = field(default=None, metadata={
        "help": "reward cluster URL; None grades in-process"})
    train_forced_token: bool = field(default=False, metadata={"help": "env_mask 1 on a forced </think>"})
    max_action_tokens: int = field(default=65536, metadata={"help": "longest action accepted, in tokens"})

    def __post_init__(self) -> None:
        if self.context_length is not None and (
            self.think_budget_tokens + self.solution_budget_tokens >= self.context_length
        ):
            raise BudgetError(
                f"think_budget_tokens + solution_budget_tokens = "
                f"{self.think_budget_tokens + self.solution_budget_tokens} does not fit the model context "
                f"context_length={self.context_length} with a prompt; lower the budgets or raise context_length."
            )


class ElasticReasoningEnvironment(Environment):  # type: ignore[misc]
    """OpenEnv ``Environment`` whose episode is :class:`ElasticReasoningEnv`'s (one per session).

    Args:
        config: the environment settings (None: :class:`OpenEnvConfig` defaults).
    """

    SUPPORTS_CONCURRENT_SESSIONS = True  # every session owns its Gymnasium env; graders are stateless clients

    def __init__(self, config: OpenEnvConfig | None = None) -> None:
        super().__init__()
        self.config = config or OpenEnvConfig()
        self._envs: dict[tuple[int, int], ElasticReasoningEnv] = {}
        self.env = self._env_for(self.config.think_budget_tokens, self.config.solution_budget_tokens)
        self._state = ElasticState()
        self._reset_info: dict[str, Any] = {}
        self._forced = False  # this episode's </think> was forced (thinking_truncated)

    def _env_for(self, think: int, solution: int) -> ElasticReasoningEnv:
        """The session's Gymnasium env for budgets ``(t, s)`` (built once; tokenizer and problems shared)."""
        if (think, solution) in self._envs:
            return self._envs[(think, solution)]
        c, first = self.config, next(iter(self._envs.values()), None)
        self._envs[(think, solution)] = env = ElasticReasoningEnv(
            task=c.task, dataset=c.dataset if first is None else first.problems, dataset_limit=c.dataset_limit,
            think_budget_tokens=think, solution_budget_tokens=solution,
            tokenizer=c.tokenizer if first is None else first.tokenizer, reward_endpoint=c.reward_endpoint,
            action_mode="tokens", max_chunk_tokens=c.max_action_tokens, context_length=c.context_length,
            train_forced_token=c.train_forced_token,
        )
        return env

    def reset(self, seed: Optional[int] = None, episode_id: Optional[str] = None, **kwargs: Any) -> Any:
        """Start an episode.

        Args:
            seed: seeds the problem draw.
            episode_id: kept in the state (None: a new uuid).
            **kwargs: ``problem_id`` / ``problem_index`` pick the problem; ``think_budget_tokens`` /
                ``solution_budget_tokens`` set this episode's ``t`` / ``s`` (None: the server's).

        Returns:
            The first :class:`ElasticObservation` (prompt, budgets, phase ``"thinking"``).

        Raises:
            ValueError: an unknown argument.
            BudgetError: a bad budget, or one that does not fit ``context_length``.

        """
        known = {"problem_id", "problem_index", "think_budget_tokens", "solution_budget_tokens"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"Unknown reset argument(s) {unknown}; use seed, episode_id and {sorted(known)}.")
        think = kwargs.pop("think_budget_tokens", None) or self.config.think_budget_tokens
        solution = kwargs.pop("solution_budget_tokens", None) or self.config.solution_budget_tokens
        dataclasses.replace(self.config, think_budget_tokens=think, solution_budget_tokens=solution)  # checks fit
        self.env = self._env_for(think, solution)
        options = {k: v for k, v in kwargs.items() if v is not None}
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._reset_info, self._forced = info, False
        self._state = ElasticState(episode_id=episode_id or str(uuid.uuid4()), step_count=0,
                                   problem_id=info["problem_id"])
        return self._observation(obs, {})

    def step(self, action: Any, timeout_s: Optional[float] = None, **kwargs: Any) -> Any:
        """Feed one phase's text or token ids; the last one returns the graders' reward."""
        if not self._reset_info:
            raise RuntimeError("Call reset() before step().")
        tokens = self._tokens(action)
        obs, reward, terminated, truncated, info = self.env.step(tokens)
        self._state.step_count += 1
        return self._observation(obs, info, reward if (terminated or truncated) else None)

    @property
    def state(self) -> Any:
        """The current episode's :class:`ElasticState`."""
        return self._state

    def _tokens(self, action: Any) -> list[int]:
        if isinstance(action, dict):
            action = ElasticAction(**action)
        if (action.text is None) == (action.token_ids is None):
            raise ValueError("An action sets exactly one of text or token_ids, e.g. {'text': '... </think>'}.")
        if action.text is not None:
            return list(self.env.tokenizer.encode(action.text, add_special_tokens=False))
        return [int(t) for t in action.token_ids]

    def _observation(self, obs: dict[str, Any], info: dict[str, Any], reward: float | None = None) -> Any:
        phase = PHASE_NAMES[int(obs["phase"])]
        done = phase == "done"
        is_error = bool(info.get("is_error", False))
        self._forced = self._forced or bool(info.get("forced_think_end", False))
        self._state.phase = phase
        self._state.thinking_tokens = int(info.get("thinking_tokens", self._state.thinking_tokens))
        self._state.solution_tokens = int(info.get("solution_tokens", self._state.solution_tokens))
        if reward is not None and (is_error or math.isnan(reward)):
            reward = None  # a failed grader is no verdict (JSON has no nan)
        return ElasticObservation(
            done=done, reward=reward, problem_id=self._state.problem_id,
            prompt_text=self._reset_info["prompt_text"], prompt_ids=[int(i) for i in obs["prompt_ids"]],
            completion_ids=[int(i) for i in obs["completion_ids"]], phase=phase,
            remaining_tokens=int(obs["remaining_tokens"]),
            think_budget_tokens=self.env.budget.think, solution_budget_tokens=self.env.budget.solution,
            forced_think_end=bool(info.get("forced_think_end", False)),
            thinking_truncated=self._forced,
            env_mask=list(info.get("env_mask", ())), finish_reason=info.get("finish_reason"),
            verdict=info.get("verdict"), is_error=is_error, completion_text=info.get("completion_text"),
        )


def create_elastic_app(config: OpenEnvConfig | None = None, max_concurrent_envs: int = 8) -> Any:
    """OpenEnv's FastAPI app (``create_app``) serving one :class:`ElasticReasoningEnvironment` per session."""
    config = config or OpenEnvConfig()
    ElasticReasoningEnvironment(config).close()  # bad settings fail here, not in the first session

    def factory() -> ElasticReasoningEnvironment:
        return ElasticReasoningEnvironment(config)

    return create_app(factory, ElasticAction, ElasticObservation, env_name="elastic_reasoning",
                            max_concurrent_envs=max_concurrent_envs, state_cls=ElasticState)


def main(argv: list[str] | None = None) -> None:
    """``python -m er_integrations.openenv``: serve the environment with uvicorn."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-concurrent-envs", type=int, default=8)
    parser.add_argument("--think", type=int, default=1024, help="thinking budget t")
    parser.add_argument("--solution", type=int, default=1024, help="solution budget s")
    for f in dataclasses.fields(OpenEnvConfig):
        if f.name not in ("think_budget_tokens", "solution_budget_tokens", "train_forced_token", "max_action_tokens"):
            kind = int if f.name in ("dataset_limit", "context_length") else str
            parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, help=f.metadata["help"])
    args = vars(parser.parse_args(argv))
    host, port, n = args.pop("host"), args.pop("port"), args.pop("max_concurrent_envs")
    config = OpenEnvConfig(think_budget_tokens=args.pop("think"), solution_budget_tokens=args.pop("solution"), **args)
    import uvicorn

    uvicorn.run(create_elastic_app(config, n), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
