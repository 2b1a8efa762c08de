r"""TRL reward functions over the Elastic Reasoning reward clients (:mod:`er_env.rewards`).

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=...,
**kwargs)``, where ``kwargs`` holds the dataset columns and the extra fields of the
rollout function, one value per completion, and expects one ``float`` per completion
(``None``: "no reward for this one"). :func:`make_reward_func` builds such a function
for one task; :func:`math_reward` and :func:`code_reward` are the in-process defaults.

What each function reads:

- the problem from the ``er_problem`` column (JSON, see
  :func:`trainers.rollout.problems_to_dataset`);
- the completion text from ``er_completion_text`` (set by
  :class:`trainers.rollout.ElasticRolloutFunc`; ``</think>`` kept). Without it, the
  ``completion_ids`` are decoded with the ``tokenizer`` given to the factory. TRL's
  own ``completions`` are never used: TRL decodes with ``skip_special_tokens=True``,
  which drops a special ``</think>``, and the graders need it to find the solution.

Grader failures are never a silent 0. A result with ``is_error`` (sandbox down,
checker crash) becomes ``None``, TRL's spelling of the ``nan`` that
``er_env.rewards`` uses everywhere (TRL then gives that completion no advantage and
excludes it from its group's baseline) and is logged as a warning and as the
``er/<task>_reward_errors`` metric; with ``on_reward_error="raise"`` it raises
:class:`~er_env.rewards.base.RewardError` instead. Problems of another task also get
``None`` (TRL's "not applicable"), so ``[math_reward, code_reward]`` can train on a
mixed dataset.

Example:
    >>> import json
    >>> from er_env.data.schema import Problem
    >>> p = Problem(id="demo/0", task="math", question="What is 1 + 1?", answers=("2",))
    >>> reward = make_reward_func("math")
    >>> import asyncio
    >>> asyncio.run(reward(prompts=["demo/0"] * 2, completions=["", ""], completion_ids=[[], []],
    ...         er_problem=[json.dumps(p.to_dict())] * 2,
    ...         er_completion_text=["1 + 1 = 2.</think>The answer is \\boxed{2}.", "Hmm.</think>\\boxed{3}"]))
    [1.0, 0.0]

"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Mapping, Sequence

from er_env.data.schema import Problem
from er_env.rewards.base import RewardError, RewardResult, check_on_reward_error

__all__ = ["TRLRewardFunc", "code_reward", "make_reward_func", "math_reward", "problem_from_column"]

logger = logging.getLogger(__name__)

#: what a grader failure becomes: ``None`` (no reward, logged) or an exception

#: an async TRL reward function: ``await f(prompts=..., completions=..., **columns)``
TRLRewardFunc = Callable[..., Awaitable[list[float | None]]]


#: failures of the way to the grader (``details["kind"]`` of an error result): retried, never a reward
OUTAGE_KINDS = ("SandboxUnavailable", "SandboxServerError")


def _is_outage(res: RewardResult) -> bool:
    """The service was not reached (or failed as a whole), as opposed to a grader verdict on this completion."""
    return res.is_error and dict(res.details).get("kind") in OUTAGE_KINDS


def problem_from_column(value: Any) -> Problem:
    """Parse one ``er_problem`` value (JSON text, a dict, or a :class:`Problem`).

    Raises:
        ValueError: the value is not a problem.

    """
    if isinstance(value, Problem):
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"er_problem is not valid JSON ({exc}): {value[:80]!r}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"er_problem must be Problem JSON or a dict, got {type(value).__name__}: {value!r:.80}")
    return Problem.from_dict(value)


class _RewardFunc:
    """The callable :func:`make_reward_func` returns (a class so it pickles and names itself)."""

    def __init__(self, task: str, reward: Any, on_reward_error: str, tokenizer: Any, name: str,
                 retry_s: float = 0.0) -> None:
        self.task, self.reward, self.on_reward_error, self.tokenizer = task, reward, on_reward_error, tokenizer
        self.retry_s = retry_s
        self.stop_retrying: Callable[[], bool] = lambda: False  # e.g. SIGTERM arrived: give up the retries now
        self.__name__ = name
        self._problems: dict[str, Problem] = {}
        self.reset_call()

    def reset_call(self) -> None:
        """Forget the last call's grader errors, outage and retries (read by ``trainers.resilience``)."""
        self.last_errors: list[int] = []  # completions whose grader failed (a verdict, not the transport)
        self.last_outage: list[int] = []  # completions left unscored: the service stayed unreachable
        self.last_outage_reasons: list[str] = []
        self.last_retries = 0

    def _problem(self, value: Any) -> Problem:
        key = value if isinstance(value, str) else None
        if key is not None and key in self._problems:
            return self._problems[key]
        problem = problem_from_column(value)
        if key is not None:
            self._problems[key] = problem
        return problem

    def _texts(self, n: int, completion_ids: Sequence[Sequence[int]] | None, kwargs: Mapping[str, Any]) -> list[str]:
        from trainers.rollout import TEXT_FIELD

        if TEXT_FIELD in kwargs:
            return list(kwargs[TEXT_FIELD])
        if self.tokenizer is None or completion_ids is None:
            raise ValueError(
                f"{self.__name__} needs the '{TEXT_FIELD}' field (returned by trainers.rollout.ElasticRolloutFunc) "
                "or a tokenizer (make_reward_func(..., tokenizer=tok)) to decode completion_ids with </think> kept; "
                "TRL's `completions` drop special tokens and cannot be graded."
            )
        from er_env.rollout import decode_completion

        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        return [decode_completion(self.tokenizer, ids, eos) for ids in completion_ids[:n]]

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                       **kwargs: Any) -> list[float | None]:
        """Score this task's completions; ``None`` for other tasks and grader failures.

        A coroutine: TRL runs async reward functions on its event loop, all of them
        concurrently (``asyncio.gather``), and the whole generation batch goes to the
        grader in one call, which the client splits into ``batch_size`` requests with at
        most ``max_concurrency`` in flight.

        Raises:
            ValueError: the ``er_problem`` column is missing, or no completion text.
            RewardError: a grader failed and ``on_reward_error="raise"``.

        """
        from trainers.rollout import PROBLEM_COLUMN

        if PROBLEM_COLUMN not in kwargs:
            raise ValueError(f"{self.__name__} needs the '{PROBLEM_COLUMN}' dataset column; build the train dataset "
                             f"with trainers.rollout.problems_to_dataset(problems). Got columns {sorted(kwargs)}.")
        n = len(prompts)
        problems = [self._problem(v) for v in kwargs[PROBLEM_COLUMN]]
        texts = self._texts(n, completion_ids, kwargs)
        mine = [i for i in range(n) if problems[i].task == self.task]
        out: list[float | None] = [None] * n
        if mine:
            batch = ([problems[i] for i in mine], [texts[i] for i in mine])
            results = await self._score_with_retries(*batch)
            for i, res in zip(mine, results, strict=True):
                if _is_outage(res):  # never a reward: the service was not reached
                    self.last_outage.append(i)
                    self.last_outage_reasons.append(str(dict(res.details).get("error", res.verdict)))
                    continue
                out[i] = self._value(problems[i], res)
                if out[i] is None:
                    self.last_errors.append(i)
            timeouts = sum(res.verdict == "timeout" for res in results)
        else:
            timeouts = 0
        self._log(kwargs, mine, out, timeouts)
        return out

    async def _score(self, problems: list[Problem], texts: list[str]) -> list[RewardResult]:
        acall = getattr(self.reward, "acall", None)
        if acall is not None:
            results = list(await acall(problems, texts))
        else:
            results = list(await asyncio.to_thread(self.reward, problems, texts))
        if len(results) != len(problems):
            raise RewardError(f"{self.__name__}: the grader returned {len(results)} results for {len(problems)}.")
        return results

    async def _score_with_retries(self, problems: list[Problem], texts: list[str]) -> list[RewardResult]:
        """Score; completions the service could not be reached for are sent again for ``retry_s`` seconds.

        Only those completions are re-sent (exponential backoff, tenacity); a grader
        verdict (even ``internal_error`` for one submission) is never retried here.
        """
        from tenacity import AsyncRetrying, RetryError, retry_if_result, stop_after_delay, wait_exponential

        results = await self._score(problems, texts)
        todo = [i for i, r in enumerate(results) if _is_outage(r)]
        if not todo or self.retry_s <= 0:
            return results
        logger.warning("%s: the reward service is unreachable for %d completions (%s); retrying for up to %g s",
                       self.__name__, len(todo), dict(results[todo[0]].details).get("error"), self.retry_s)
        retrying = AsyncRetrying(stop=stop_after_delay(self.retry_s) | (lambda state: self.stop_retrying()),
                                 wait=wait_exponential(multiplier=1, max=30), retry=retry_if_result(bool),
                                 reraise=False)
        try:
            async for attempt in retrying:
                with attempt:
                    self.last_retries += 1
                    again = await self._score([problems[i] for i in todo], [texts[i] for i in todo])
                    for i, res in zip(todo, again, strict=True):
                        results[i] = res
                    todo = [i for i in todo if _is_outage(results[i])]
                if not attempt.retry_state.outcome.failed:  # type: ignore[union-attr]
                    attempt.retry_state.set_result(todo)
        except RetryError:
            pass
        if not todo:
            logger.warning("%s: the reward service answered again after %d retries", self.__name__,
                           self.last_retries)
        return results

    def _value(self, problem: Problem, res: RewardResult) -> float | None:
        if not res.is_error:
            return float(res.reward)
        msg = (f"{self.__name__}: grader failed on {problem.id!r} (verdict {res.verdict!r}, "
               f"{dict(res.details).get('error', dict(res.details))!r:.300}); no reward for this completion")
        if self.on_reward_error == "raise":
            raise RewardError(msg)
        logger.warning(msg)
        return None

    def _log(self, kwargs: Mapping[str, Any], mine: list[int], out: list[float | None], timeouts: int = 0) -> None:
        """Budget metrics of this task's completions, into TRL's metrics (every ``report_to`` gets them).

        ``er/<task>_reward_errors`` (grader failures), ``_checker_timeouts`` (math checks
        killed at the checker's limit: scored 0 like a wrong answer, as math-verify does,
        but counted here so a checker limit set too low shows up), ``_cut_share`` (thinking cut at
        ``t``: ``think_finish_reason == "budget"``), ``_thinking_tokens_mean``,
        ``_solution_tokens_mean``, ``_thinking_truncated_mean`` (any forced ``</think>``,
        EOS-in-thinking included) and ``_reward_cut_mean`` / ``_reward_not_cut_mean``
        (graded completions only; logged for batches that have such completions).
        TRL averages each over a logging step.
        """
        log_metric = kwargs.get("log_metric")
        if log_metric is None or not mine:
            return
        prefix = f"er/{self.task}_"
        log_metric(prefix + "reward_errors", float(len(self.last_errors)))
        log_metric(prefix + "checker_timeouts", float(timeouts))
        for name in ("thinking_tokens", "solution_tokens", "thinking_truncated"):
            if name in kwargs:
                values = [float(kwargs[name][i]) for i in mine]
                log_metric(f"{prefix}{name}_mean", sum(values) / len(values))
        if "think_finish_reason" not in kwargs:
            return
        cut = {i for i in mine if kwargs["think_finish_reason"][i] == "budget"}
        log_metric(prefix + "cut_share", len(cut) / len(mine))
        for label, group in (("cut", [i for i in mine if i in cut]), ("not_cut", [i for i in mine if i not in cut])):
            graded = [out[i] for i in group if out[i] is not None]
            if graded:
                log_metric(f"{prefix}reward_{label}_mean", sum(graded) / len(graded))  # type: ignore[arg-type]


def make_reward_func(task: str, endpoint: str | None = None, *, on_reward_error: str = "record",
                     tokenizer: Any = None, reward: Any = None, name: str | None = None, retry_s: float = 0.0,
                     **reward_kwargs: Any) -> TRLRewardFunc:
    """A TRL reward function for ``task``, backed by ``er_env.rewards.default_reward``.

    Args:
        task: ``"math"`` or ``"code"``.
        endpoint: reward server URL (``er sandbox serve``); ``None`` grades in-process.
        on_reward_error: ``"record"`` (a grader failure gives ``None``, TRL's "no reward", a warning
            and the ``er/<task>_reward_errors`` metric) or ``"raise"`` (:class:`~er_env.rewards.base.RewardError`).
        tokenizer: decodes ``completion_ids`` when the rollout gave no completion text.
        reward: an ``er_env`` reward function to wrap instead of the default one.
        name: the function's ``__name__`` (TRL's metric key); default ``"<task>_reward"``. Give
            each of several reward functions of one task its own name, or their metrics merge.
        retry_s: how long completions whose service could not be reached are sent again (exponential
            backoff); still unscored after that, they are reported as an outage (``last_outage``, read by
            :mod:`trainers.resilience`), never as a reward.
        **reward_kwargs: passed to ``default_reward`` (checker or judge settings).

    Returns:
        ``f(prompts, completions, completion_ids, **kwargs) -> list[float | None]``,
        named ``"<task>_reward"`` (TRL logs it as ``rewards/<task>_reward/mean``).

    Raises:
        ValueError: an unknown task or ``on_reward_error``.

    """
    if task not in ("math", "code"):
        raise ValueError(f"task must be 'math' or 'code', got {task!r}.")
    check_on_reward_error(on_reward_error, "make_reward_func")
    if reward is None:
        from er_env.rewards import default_reward

        reward = default_reward(task, endpoint=endpoint, **reward_kwargs)
    return _RewardFunc(task, reward, on_reward_error, tokenizer, name or f"{task}_reward", retry_s)


async def math_reward(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                      **kwargs: Any) -> list[float | None]:
    r"""In-process math reward (``\boxed{}`` answer after ``</think>`` vs the gold answers).

    See :func:`make_reward_func`; the grader is built on first use and reused.
    """
    return await _default("math")(prompts, completions, completion_ids, **kwargs)


async def code_reward(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                      **kwargs: Any) -> list[float | None]:
    """In-process code reward (the solution's program against the problem's tests).

    See :func:`make_reward_func`; the grader is built on first use and reused.
    """
    return await _default("code")(prompts, completions, completion_ids, **kwargs)


_DEFAULTS: dict[str, TRLRewardFunc] = {}


def _default(task: str) -> TRLRewardFunc:
    if task not in _DEFAULTS:
        _DEFAULTS[task] = make_reward_func(task)
    return _DEFAULTS[task]
