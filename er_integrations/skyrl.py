"""SkyRL: Elastic Reasoning's graders as a ``skyrl_gym`` text environment.

:class:`ElasticReasoningTextEnv` is a ``skyrl_gym.envs.base_text_env.BaseTextEnv`` registered as
``elastic_reasoning``. One step per episode: the action is the whole completion text (thinking,
``</think>``, solution), scored by this project's reward client (in-process, or a reward cluster URL
given as ``env_config.reward_endpoint``), exactly as the Gymnasium environment scores it.

A dataset row's ``extras`` carry what the grader needs, either this project's problem form
(``extras["problem"] = Problem.to_dict()``) or SkyRL's usual ``extras["reward_spec"]["ground_truth"]``
(math: a gold answer or a list of them). Budgets ``t``/``s`` given in ``env_config`` are checked by
:class:`er_env.budget.Budget` when the env is made (they are what the generator used; the env reports
them in the step metadata).

>>> import skyrl_gym
>>> from er_integrations.skyrl import register_env
>>> register_env()                                                          # doctest: +SKIP
>>> env = skyrl_gym.make("elastic_reasoning", env_config={}, extras={"reward_spec": {"ground_truth": "5"}})
... # doctest: +SKIP

The two-call generator (an ``agent_loop`` with ``loss_mask`` 0 on the forced ``</think>``) needs the
``skyrl`` package, whose releases that carry the generator require Python >= 3.12; see the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from er_env.budget import Budget
from er_env.data.schema import Problem, ProblemError
from er_env.data.templates import build_messages
from er_env.rollout import RewardRouter

__all__ = ["ENV_ID", "SkyRLEnvConfig", "ElasticReasoningTextEnv", "register_env", "problem_from_extras",
           "dataset_rows"]

#: the id ``skyrl_gym.make`` knows this environment by
ENV_ID = "elastic_reasoning"
ENTRY_POINT = "er_integrations.skyrl:ElasticReasoningTextEnv"
INSTALL_FIX = "Install the tested version: pip install -e '.[skyrl]' (skyrl-gym==0.4.0)."


def _skyrl_gym() -> Any:
    """Import ``skyrl_gym`` and check the interface this module uses is there."""
    try:
        import skyrl_gym
        from skyrl_gym.envs import base_text_env
    except ImportError as exc:
        raise ImportError(f"er_integrations.skyrl needs skyrl-gym ({exc}). {INSTALL_FIX}") from exc
    missing = [name for name in ("register", "make") if not hasattr(skyrl_gym, name)]
    missing += [f"BaseTextEnv.{m}" for m in ("init", "step", "close")
                if not hasattr(getattr(base_text_env, "BaseTextEnv", None), m)]
    if missing or not hasattr(base_text_env, "BaseTextEnvStepOutput"):
        raise ImportError(f"The installed skyrl-gym lacks {missing or ['BaseTextEnvStepOutput']}: its interface "
                          f"moved. {INSTALL_FIX}")
    return skyrl_gym


_BaseTextEnv: Any = _skyrl_gym().envs.base_text_env.BaseTextEnv


@dataclass
class SkyRLEnvConfig:
    """``env_config`` of :class:`ElasticReasoningTextEnv` (a dict or an OmegaConf node with these keys)."""

    task: str = field(default="math", metadata={"help": "'math' or 'code': the grader of rows without extras.problem"})
    reward_endpoint: str | None = field(default=None, metadata={
        "help": "reward cluster URL (er sandbox serve / docker compose gateway); None grades in-process"})
    on_reward_error: str = field(default="record", metadata={
        "help": "'record' (reward nan, metadata is_error) or 'raise' on a grader failure"})
    think_budget_tokens: int | None = field(default=None, metadata={"help": "thinking budget t the generator used"})
    solution_budget_tokens: int | None = field(default=None, metadata={
        "help": "solution budget s the generator used"})

    @classmethod
    def from_any(cls, env_config: Any) -> "SkyRLEnvConfig":
        """Read a dict / OmegaConf node / None; unknown keys raise naming the known ones."""
        if env_config is None:
            return cls()
        if isinstance(env_config, cls):
            return env_config
        items = dict(env_config.items()) if hasattr(env_config, "items") else None
        if items is None:
            raise TypeError(f"env_config must be a mapping, got {type(env_config).__name__}: {env_config!r:.80}.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(items) - known)
        if unknown:
            raise ValueError(f"Unknown env_config key(s) {unknown} for {ENV_ID!r}; known: {sorted(known)}.")
        return cls(**items)


def problem_from_extras(extras: Mapping[str, Any] | None, task: str = "math") -> Problem:
    """The :class:`Problem` a SkyRL row's ``extras`` describe.

    Args:
        extras: ``{"problem": Problem.to_dict()}`` or ``{"reward_spec": {"ground_truth": ...}}``.
        task: the task of a ``reward_spec`` row.

    Returns:
        The problem to grade against.

    Raises:
        ProblemError: the row has neither form, or its problem is invalid (no gold answer, no tests).

    """
    extras = dict(extras or {})
    if "problem" in extras:
        return Problem.from_dict(extras["problem"])
    spec = extras.get("reward_spec")
    if not isinstance(spec, Mapping) or spec.get("ground_truth") in (None, "", []):
        raise ProblemError(
            f"A SkyRL row for {ENV_ID!r} needs extras['problem'] (Problem.to_dict()) or "
            f"extras['reward_spec']['ground_truth']; got extras keys {sorted(extras)}. Add the gold answer to "
            "the row's reward_spec, or build the rows with er_integrations.skyrl.dataset_rows(load_problems(...))."
        )
    truth = spec["ground_truth"]
    answers = tuple(str(a) for a in truth) if isinstance(truth, (list, tuple)) else (str(truth),)
    if task == "code":
        raise ProblemError("A code row needs extras['problem'] with its test spec; ground_truth alone cannot be "
                           "judged.")
    return Problem(id=str(extras.get("id", "skyrl")), task="math", question=str(extras.get("question", "?")),
                   answers=answers, source="skyrl")


class ElasticReasoningTextEnv(_BaseTextEnv):  # type: ignore[misc, valid-type]
    """One-step SkyRL text env: the completion text in, this project's grader's reward out.

    Args:
        env_config: :class:`SkyRLEnvConfig` keys (dict or OmegaConf).
        extras: the dataset row's extras, see :func:`problem_from_extras`.

    Raises:
        ProblemError: the row lacks what the grader needs.
        BudgetError: bad ``t``/``s`` in ``env_config``.
    """

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.config = SkyRLEnvConfig.from_any(env_config)
        if self.config.think_budget_tokens is not None or self.config.solution_budget_tokens is not None:
            self.budget: Budget | None = Budget(think=self.config.think_budget_tokens,
                                                solution=self.config.solution_budget_tokens)
        else:
            self.budget = None
        self.problem = problem_from_extras(extras, self.config.task)
        self._rewards = RewardRouter(endpoint=self.config.reward_endpoint,
                                     on_reward_error=self.config.on_reward_error)
        self.max_turns = 1
        self._metrics: dict[str, Any] = {}

    def step(self, action: str) -> Any:
        """Grade ``action`` (the full completion text); the episode ends here."""
        if not isinstance(action, str):
            raise TypeError(f"{ENV_ID!r} takes the completion text as its action, got {type(action).__name__}.")
        self.turns += 1
        [result] = self._rewards.for_task(self.problem.task)([self.problem], [action])
        self._metrics = {"reward": result.reward, "is_error": float(result.is_error),
                         "correct": float(result.reward == 1.0)}
        metadata = {"verdict": result.verdict, "is_error": bool(result.is_error), "problem_id": self.problem.id,
                    "think_budget_tokens": None if self.budget is None else self.budget.think,
                    "solution_budget_tokens": None if self.budget is None else self.budget.solution}
        return {"observations": [], "reward": float(result.reward), "done": True, "metadata": metadata,
                "postprocessed_action": None}

    def get_metrics(self) -> dict[str, Any]:
        """The last step's reward, grader-error flag and correctness."""
        return dict(self._metrics)


def register_env(env_id: str = ENV_ID) -> None:
    """Register :class:`ElasticReasoningTextEnv` with ``skyrl_gym`` (again registering is a no-op)."""
    skyrl_gym = _skyrl_gym()
    if env_id in skyrl_gym.registry:
        return
    skyrl_gym.register(id=env_id, entry_point=ENTRY_POINT)


def dataset_rows(problems: Any, template: str | None = None) -> list[dict[str, Any]]:
    """SkyRL dataset rows (``prompt`` messages, ``env_class``, ``extras``) for this project's problems.

    Args:
        problems: :class:`Problem` objects, e.g. ``er_env.data.load_problems("aime2024")``.
        template: prompt template (None: the task's default, as in the Gymnasium env).

    Returns:
        One row per problem, graded by :class:`ElasticReasoningTextEnv` from ``extras["problem"]``.

    """
    return [{"prompt": build_messages(p, template), "env_class": ENV_ID, "extras": {"problem": p.to_dict()}}
            for p in problems]
