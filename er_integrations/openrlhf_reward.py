"""OpenRLHF's remote-reward contract over this project's graders (``--reward.remote_url``).

``POST /openrlhf/reward`` with ``{"query": [...], "prompts": [...], "labels": [...]}`` answers
``{"rewards": [...], "scores": [...], "extra_logs": {"correct": [...]}}``, as OpenRLHF's
``SingleTurnAgentExecutor`` expects. ``query[i]`` is the decoded prompt + response; the response is
what follows ``prompts[i]`` (the whole query when it does not start with the prompt); ``labels[i]`` is
read by :func:`problem_from_label`.

Layering: grading a label needs :mod:`er_env` (the problem schema, the reward clients), which the
sandbox never imports, so the route lives here and the reward service mounts it through its generic
hook: ``ER_EXTRA_ROUTES=er_integrations.openrlhf_reward:routes er sandbox serve`` (or
``sandbox.service.server.create_app(routes=[routes])``); it then grades with the server's own
:class:`~sandbox.service.service.SandboxService`. :func:`create_app` is the same route as a separate
app in front of a reward cluster URL.

Status codes: 422 a label the grader cannot use or lists of different lengths (OpenRLHF's client
raises, naming the fix); 503 a grader failure (the client retries, then fails: a failure is never
a silent 0 reward).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from pydantic import BaseModel

from er_env.data.schema import Problem, ProblemError
from er_env.rewards import CodeReward, MathReward, RewardResult

__all__ = ["PATH", "problem_from_label", "routes", "create_app", "grade"]

#: the route's path: ``--reward.remote_url http://host:port/openrlhf/reward``
PATH = "/openrlhf/reward"


def problem_from_label(label: Any, task: str = "math") -> Problem:
    """The :class:`Problem` an OpenRLHF label describes.

    Args:
        label: ``Problem.to_dict()`` (a mapping or its JSON text), or a math gold answer as text.
        task: the task of a plain-text label (only ``"math"`` can be graded from a bare answer).

    Returns:
        The problem to grade against.

    Raises:
        ProblemError: the label is empty, does not parse, or a code label lacks its tests.

    """
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            label = json.loads(label)
        except json.JSONDecodeError as exc:
            raise ProblemError(f"Label {label[:80]!r} looks like JSON but does not parse ({exc}).") from exc
    if isinstance(label, Mapping):
        return Problem.from_dict(dict(label))
    if label is None or (isinstance(label, str) and not label.strip()):
        raise ProblemError(f"An OpenRLHF row needs a label (the gold answer, or json.dumps(Problem.to_dict())), got "
                           f"{label!r}. Set --data.label_key to the column holding it, or build the rows with "
                           "er_integrations.openrlhf.dataset_rows(load_problems(...)).")
    if task != "math":
        raise ProblemError(f"A {task!r} label must be json.dumps(Problem.to_dict()) with its tests; got the text "
                           f"{str(label)[:80]!r}. Build the rows with er_integrations.openrlhf.dataset_rows.")
    return Problem(id="openrlhf", task="math", question="?", answers=(str(label),), source="openrlhf")


class OpenRLHFRewardRequest(BaseModel):
    """OpenRLHF's request body: decoded prompt + response, the prompts, the labels (aligned lists)."""

    query: list[str]
    prompts: list[str]
    labels: list[Any]


def _response(query: str, prompt: str) -> str:
    return query[len(prompt):] if prompt and query.startswith(prompt) else query


async def grade(graders: Mapping[str, Any], queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any],
                task: str = "math") -> list[RewardResult]:
    """Grade OpenRLHF's lists with ``graders`` (``{task: MathReward/CodeReward}``), one batch per task.

    Raises:
        ProblemError: a label the grader cannot use, or lists of different lengths.

    """
    if not len(queries) == len(prompts) == len(labels):
        raise ProblemError(f"query/prompts/labels have {len(queries)}/{len(prompts)}/{len(labels)} items; send one "
                           "prompt and one label per query.")
    problems = [problem_from_label(label, task) for label in labels]
    texts = [_response(q, p) for q, p in zip(queries, prompts, strict=True)]
    out: list[RewardResult | None] = [None] * len(problems)
    for kind in sorted({p.task for p in problems}):
        idx = [i for i, p in enumerate(problems) if p.task == kind]
        got = await graders[kind].acall([problems[i] for i in idx], [texts[i] for i in idx])
        for i, result in zip(idx, got, strict=True):
            out[i] = result
    return [r for r in out if r is not None]


def _router(graders: Mapping[str, Any], task: str) -> Any:
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse
    router = APIRouter()

    @router.post(PATH, summary="OpenRLHF remote reward: {query, prompts, labels} -> {rewards, scores, extra_logs}")
    async def openrlhf_reward(req: OpenRLHFRewardRequest) -> Any:
        try:
            results = await grade(graders, req.query, req.prompts, req.labels, task)
        except ProblemError as exc:
            return JSONResponse({"error": "invalid_request", "detail": str(exc)}, status_code=422)
        failed = [(i, r) for i, r in enumerate(results) if r.is_error]
        if failed:
            i, bad = failed[0]
            why = bad.details.get("error", bad.verdict)
            detail = f"query {i}: {why} ({len(failed)} of {len(results)} failed); check the reward service's /health"
            return JSONResponse({"error": "grader_error", "detail": detail}, status_code=503)
        rewards = [float(r.reward) for r in results]
        return {"rewards": rewards, "scores": rewards,
                "extra_logs": {"correct": [float(r.reward == 1.0) for r in results]}}

    return router


def routes(service: Any = None, *, endpoint: str | None = None, task: str = "math") -> Any:
    """The route as an ``APIRouter``, grading with ``service`` (in-process) or the cluster at ``endpoint``.

    Args:
        service: a :class:`~sandbox.service.service.SandboxService` (what the reward service passes).
        endpoint: a reward cluster URL instead (``None`` with no service: a fresh in-process sandbox).
        task: the grader of plain-text labels.

    Returns:
        A FastAPI ``APIRouter`` with ``POST /openrlhf/reward``.

    """
    options = {"service": service} if service is not None else None
    graders = {"math": MathReward(endpoint, client_options=options),
               "code": CodeReward(endpoint, client_options=options)}
    return _router(graders, task)


def create_app(endpoint: str | None = None, task: str = "math") -> Any:
    """A FastAPI app with only this route (in front of a reward cluster at ``endpoint``, or in-process)."""
    from fastapi import FastAPI

    app = FastAPI(title="Elastic Reasoning reward, OpenRLHF contract")
    app.include_router(routes(endpoint=endpoint, task=task))
    return app
