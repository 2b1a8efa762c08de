"""verl: the graders as ``compute_score``, and this project's problems as verl's parquet rows.

Reward (``reward.custom_reward_function.path=<this file>``, ``.name=compute_score``): an ``async``
:func:`compute_score` grading with the project's reward client, in-process or against a reward cluster
(``reward.custom_reward_function.reward_kwargs.reward_endpoint=http://...``, or ``ER_REWARD_ENDPOINT``).
It reads the problem from ``extra_info["problem"]`` (written by :func:`verl_rows`), else a math gold answer
from ``ground_truth``. The agent loop (:mod:`er_integrations.verl_agent`) puts ``thinking_truncated``,
the token counts and the completion text with its ``</think>`` into ``extra_fields``; verl merges them into
``extra_info``, and :func:`compute_score` grades that text (verl's reward manager decodes with
``skip_special_tokens=True``, which can drop ``</think>``) and logs ``thinking_truncated``.

Data: :func:`verl_rows` / :func:`write_parquet` give verl's layout (``prompt`` messages, ``data_source``,
``ability``, ``reward_model.ground_truth``, ``extra_info``, ``agent_name="elastic_reasoning"``).
Nothing here imports verl.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from er_env.data.schema import Problem, ProblemError
from er_env.data.templates import build_messages
from er_env.rewards import RewardError, default_reward

__all__ = ["AGENT_NAME", "DATA_SOURCE", "compute_score", "problem_for", "verl_rows", "write_parquet"]

#: the agent loop's registered name (the ``agent_name`` column)
AGENT_NAME = "elastic_reasoning"
#: ``data_source`` prefix of the rows :func:`verl_rows` writes
DATA_SOURCE = "elastic_reasoning"
#: the ``extra_info`` key holding the completion text with its ``</think>`` (set by the agent loop)
COMPLETION_KEY = "er_completion"

_graders: dict[tuple[str | None, str], Any] = {}


def problem_for(ground_truth: Any, extra_info: Mapping[str, Any] | None) -> Problem:
    """The problem a verl row describes: ``extra_info["problem"]``, else a math gold answer ``ground_truth``.

    Raises:
        ProblemError: neither is there (naming the fix).

    """
    raw = (extra_info or {}).get("problem")
    if raw is not None:
        return Problem.from_dict(json.loads(raw) if isinstance(raw, str) else dict(raw))
    if isinstance(ground_truth, str) and ground_truth.lstrip().startswith("["):
        try:
            ground_truth = json.loads(ground_truth)
        except json.JSONDecodeError:
            pass  # an answer that starts with "[" (an interval): taken as text
    if isinstance(ground_truth, (list, tuple)) and ground_truth:
        answers = tuple(str(a) for a in ground_truth)
    elif ground_truth is not None and str(ground_truth).strip():
        answers = (str(ground_truth),)
    else:
        raise ProblemError(
            f"A verl row needs reward_model.ground_truth (the gold answer) or extra_info['problem'] "
            f"(json.dumps(Problem.to_dict())); got ground_truth={ground_truth!r}, extra_info keys "
            f"{sorted(extra_info or {})}. Build the rows with er_integrations.verl.write_parquet(load_problems(...)).")
    return Problem(id="verl", task="math", question="?", answers=answers, source="verl")


def _grader(task: str, endpoint: str | None) -> Any:
    key = (endpoint, task)
    if key not in _graders:
        _graders[key] = default_reward(task, endpoint=endpoint, on_reward_error="raise")
    return _graders[key]


async def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None,
                        reward_endpoint: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """The custom reward of verl: the project's grader on one completion.

    Args:
        data_source: the row's ``data_source`` (reported, not used to pick a grader: the problem's task does).
        solution_str: the decoded response (used when the agent loop's ``er_completion`` is absent).
        ground_truth: ``reward_model.ground_truth``.
        extra_info: the row's ``extra_info`` plus the agent loop's ``extra_fields``.
        reward_endpoint: reward cluster URL (default ``ER_REWARD_ENDPOINT``; unset: in-process).
        **kwargs: other reward-manager arguments (ignored).

    Returns:
        ``{"score", "correct", "thinking_truncated", "thinking_tokens", "solution_tokens"}`` (counts -1 when
        the rollout did not come from the ``elastic_reasoning`` agent loop).

    Raises:
        ProblemError: the row lacks what the grader needs.
        RewardError: the grader failed (never a silent 0).

    """
    info = dict(extra_info or {})
    problem = problem_for(ground_truth, info)
    text = info.get(COMPLETION_KEY) or solution_str
    endpoint = reward_endpoint or os.environ.get("ER_REWARD_ENDPOINT") or None
    [result] = await _grader(problem.task, endpoint).acall([problem], [text])
    if result.is_error:  # pragma: no cover - on_reward_error="raise" raises first
        raise RewardError(f"grader failed on {data_source!r}: {result.details}")
    return {"score": float(result.reward), "correct": float(result.reward == 1.0),
            "thinking_truncated": float(bool(info.get("thinking_truncated", False))),
            "thinking_tokens": int(info.get("thinking_tokens", -1)),
            "solution_tokens": int(info.get("solution_tokens", -1))}


def verl_rows(problems: Sequence[Problem], template: str | None = None, agent_name: str = AGENT_NAME
              ) -> list[dict[str, Any]]:
    """The verl rows of this project's problems.

    Args:
        problems: e.g. ``er_env.data.load_problems("aime2024")``.
        template: prompt template (None: the task's default, as in the Gymnasium env).
        agent_name: the agent loop that rolls each row out.

    Returns:
        One row per problem: ``data_source`` (``elastic_reasoning/<source>``), ``prompt`` (chat messages),
        ``ability`` (the task), ``reward_model`` (``style="rule"``, ``ground_truth``: the gold answers as
        JSON text, empty for code), ``extra_info`` (``index``, ``id``, ``problem``: the problem as JSON
        text, one parquet type for every row) and ``agent_name``.

    """
    return [{"data_source": f"{DATA_SOURCE}/{p.source or p.task}", "prompt": build_messages(p, template),
             "ability": p.task,
             "reward_model": {"style": "rule", "ground_truth": json.dumps(list(p.answers)) if p.answers else ""},
             "extra_info": {"index": i, "id": p.id, "problem": json.dumps(p.to_dict())},
             "agent_name": agent_name} for i, p in enumerate(problems)]


def write_parquet(problems: Sequence[Problem], path: str | os.PathLike, template: str | None = None,
                  agent_name: str = AGENT_NAME) -> Path:
    """Write :func:`verl_rows` as a parquet file (``data.train_files``); returns the path.

    Raises:
        ImportError: pandas/pyarrow missing (verl installs both).

    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"write_parquet needs pandas and pyarrow ({exc}); pip install pandas pyarrow "
                          "(verl depends on both).") from exc
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(verl_rows(problems, template, agent_name)).to_parquet(out, index=False)
    return out
