r"""Code reward: the completion's last code block, judged against the problem's tests.

Uses ``problem.tests`` (the sandbox test-spec dict, see :mod:`sandbox.core.spec`) and
optionally ``problem.metadata["limits"]`` (``cpu_time_limit_s``, ``wall_time_limit_s``,
``memory_limit_bytes``, ``output_limit_bytes``). The judge (:mod:`sandbox.core.judge`)
extracts the program from the solution phase (after ``</think>``), runs it in the
isolation backend and compares outputs, in-process or behind ``er sandbox serve``.

Reward: 1.0 iff every test passes (``AC``), else 0.0. Verdicts
(``RewardResult.verdict``): ``AC``, ``WA``, ``TLE``, ``MLE``, ``RE``, ``CE``, ``OLE``,
``no_code`` (no ``</think>`` or no code block after it), and ``internal_error``
(``is_error=True``, ``reward=nan``: the sandbox, the server or the problem's test spec is broken; never
trained on). ``details``: ``passed``, ``total``, ``pass_fraction``, ``tests`` (per-test
``index``/``verdict``/``wall_time_s``/``message``), ``compile_output``, ``error``.

Example:
    >>> from er_env.data.schema import Problem
    >>> reward = CodeReward()                                              # doctest: +SKIP
    >>> p = Problem(id="demo/0", task="code", question="double it",
    ...             tests={"kind": "stdio", "cases": [{"input": "2", "output": "4"}]})
    >>> reward([p], ["...</think>\n```python\nprint(2 * int(input()))\n```"])[0].verdict  # doctest: +SKIP
    'AC'

"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from er_env.data.schema import Problem
from er_env.rewards.base import RewardResult, error_result
from er_env.rewards.http import RequestGroup, SandboxReward

__all__ = ["CodeReward", "PER_REQUEST_OPTIONS"]

#: judge settings a client may set per request (the rest are the server's)
PER_REQUEST_OPTIONS = ("cpu_time_limit_s", "wall_time_limit_s", "memory_limit_bytes", "output_limit_bytes",
                       "compare_mode", "stop_on_first_failure")
_LIMITS = PER_REQUEST_OPTIONS[:4]
_SERVICE_KEYS = ("isolation", "isolation_options", "judge_workers")


def _verdict_name(verdict: Any) -> str:
    return {"NO_CODE": "no_code", "INTERNAL_ERROR": "internal_error"}.get(verdict.name, verdict.name)


def _result(res: Any) -> RewardResult:
    """JudgeResult -> RewardResult (INTERNAL_ERROR -> is_error, never a wrong answer)."""
    details = {
        "passed": res.passed, "total": res.total, "pass_fraction": res.pass_fraction,
        "tests": [{"index": t.index, "verdict": t.verdict.name, "wall_time_s": t.wall_time_s,
                   "message": t.message[:300]} for t in res.tests],
        "compile_output": res.compile_output[:2000], "error": res.error,
    }
    if res.is_error:
        return error_result(res.error or f"judge verdict {res.verdict.name}",
                            **{k: v for k, v in details.items() if k != "error"})
    return RewardResult(reward=float(res.reward), verdict=_verdict_name(res.verdict), details=details)


class CodeReward(SandboxReward):
    """Judges code completions against each problem's tests.

    Args:
        endpoint: reward server URL, or ``None`` to judge in-process.
        on_reward_error: ``"record"`` (grader failures become ``is_error`` results, ``reward=nan``)
            or ``"raise"``.
        client_options: :class:`sandbox.service.client.SandboxClient` keyword arguments.
        **judge_kwargs: :class:`sandbox.core.judge.JudgeConfig` fields. The limits
            (``cpu_time_limit_s``, ``wall_time_limit_s``, ``memory_limit_bytes``,
            ``output_limit_bytes``), ``compare_mode`` and ``stop_on_first_failure`` are sent with
            every request and work in both modes; other fields, and in-process ``isolation``
            (``"process"``/``"docker"``), ``isolation_options`` and ``judge_workers``, configure the
            in-process sandbox and are rejected with an endpoint (set them on the server).

    Raises:
        ValueError: server-side settings given together with an endpoint.

    """

    task = "code"
    abatch_method = "ajudge_batch"

    def __init__(self, endpoint: str | None = None, *, on_reward_error: str = "record",
                 client_options: Mapping[str, Any] | None = None, **judge_kwargs: Any) -> None:
        self.options = {k: judge_kwargs.pop(k) for k in PER_REQUEST_OPTIONS if k in judge_kwargs}
        service = {k: judge_kwargs.pop(k) for k in _SERVICE_KEYS if k in judge_kwargs}
        if endpoint is not None and (judge_kwargs or service):
            raise ValueError(f"CodeReward: settings {sorted({**judge_kwargs, **service})} apply to the server at "
                             f"{endpoint!r}; set them there (er sandbox serve --judge-options/--isolation) or use "
                             f"endpoint=None. Per-request settings: {PER_REQUEST_OPTIONS}")
        if judge_kwargs:
            service["judge_options"] = judge_kwargs
        super().__init__(endpoint, on_reward_error=on_reward_error, client_options=client_options,
                         service_options=service)

    def _request_options(self, problem: Problem) -> dict[str, Any]:
        """Request options for ``problem``: the reward's own, then the problem's ``metadata["limits"]``."""
        limits = {k: self.options[k] for k in _LIMITS if k in self.options}
        limits.update({k: v for k, v in dict(problem.metadata.get("limits") or {}).items() if v is not None})
        out: dict[str, Any] = {k: self.options[k] for k in ("compare_mode", "stop_on_first_failure")
                               if k in self.options}
        if limits:
            out["limits"] = limits
        return out

    def _plan(self, problems: Sequence[Problem], completions: Sequence[str]
              ) -> tuple[list[RequestGroup], dict[int, RewardResult]]:
        """Submissions grouped by request options; broken test specs answered at once."""
        from sandbox.core.errors import SpecError
        from sandbox.core.spec import TestSpec

        groups: dict[str, RequestGroup] = {}
        broken: dict[int, RewardResult] = {}
        for i, problem in enumerate(problems):
            try:
                TestSpec.from_dict(dict(problem.tests or {}))
            except SpecError as exc:  # SpecError is the documented ValueError of a malformed spec
                broken[i] = error_result(f"problem {problem.id!r} has a broken test spec: {exc}", kind="SpecError")
                continue
            options = self._request_options(problem)
            group = groups.setdefault(json.dumps(options, sort_keys=True), RequestGroup(options=options))
            group.indices.append(i)
            group.items.append({"completion": completions[i], "tests": dict(problem.tests or {})})
        return list(groups.values()), broken

    def _result(self, reply: Any) -> RewardResult:
        return _result(reply)
