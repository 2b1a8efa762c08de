"""The Elastic Reasoning environment: one problem per episode, budgeted token chunks per step."""

from __future__ import annotations

import string
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from er_env.budget import Budget, BudgetTracker, Phase
from er_env.data.loaders import load_problems
from er_env.data.schema import Problem
from er_env.data.templates import render_prompt
from er_env.envs.spaces import TokenChunk
from er_env.rewards.base import ERROR_REWARD
from er_env.rollout import RewardRouter, decode_completion
from er_env.tokens import TINY_TOKENIZER, load_tokenizer, special_tokens

__all__ = ["ACTION_MODES", "PHASES", "ElasticReasoningEnv"]

ACTION_MODES = ("tokens", "text")
#: observation ``phase`` value -> protocol phase
PHASES = (Phase.THINKING, Phase.SOLUTION, Phase.DONE)


def _positive_int(name: str, value: Any, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}. {fix}")
    return int(value)


class ElasticReasoningEnv(gym.Env):
    r"""Budget-constrained reasoning on math or code problems (Elastic Reasoning, arXiv 2505.05315).

    ## Description

    An episode is one problem. The agent (an LLM policy) writes its completion in
    chunks of tokens. The environment enforces the Elastic Reasoning budgets with
    :class:`er_env.budget.BudgetTracker` (the same rules every generation backend
    uses): at most ``t = think_budget_tokens`` thinking tokens, then ``</think>``,
    then at most ``s = solution_budget_tokens`` solution tokens. When the thinking
    budget runs out (or the policy samples EOS while thinking), the environment cuts
    the chunk there, appends the ``</think>`` token id(s) itself (*forced*,
    ``env_mask`` 0) and switches to the solution phase; tokens of that chunk after the
    cut are dropped, because they were conditioned on a prefix that no longer exists.
    A ``</think>`` the policy writes itself is kept and trainable. At the end, the
    completion text is scored by the task's reward function (math checker / code
    judge; pluggable).

    ## Action Space

    ``action_mode="tokens"`` (default): :class:`~er_env.envs.spaces.TokenChunk`, a
    1-D ``int64`` array (or list) of 0 to ``max_chunk_tokens`` token ids in
    ``[0, len(tokenizer))``. ``action_mode="text"``: a
    :class:`gymnasium.spaces.Text` of at most ``max_chunk_chars`` characters; the
    text is encoded with the tokenizer (no special tokens added, so ``"</think>"`` and
    the EOS string map to their ids). An empty chunk changes nothing.

    ## Observation Space

    A ``Dict``:

    | key | space | meaning |
    |---|---|---|
    | ``prompt_ids`` | ``Sequence(Discrete(V), stack=True)`` | chat-templated prompt |
    | ``completion_ids`` | ``Sequence(Discrete(V), stack=True)`` | completion so far (forced tokens included) |
    | ``phase`` | ``Discrete(3)`` | 0 thinking, 1 solution, 2 done |
    | ``remaining_tokens`` | ``Discrete(max(t, s) + 1)`` | tokens the current phase may still sample |

    ## Rewards

    0 on every step but the last. On the last step, the reward function's score for
    the decoded completion (1.0 / 0.0 for the default math and code rewards). If the
    grader fails (service down, internal error) the reward is ``nan`` and
    ``info["is_error"]`` is True with the verdict, never a silent 0; with
    ``on_reward_error="raise"`` the step raises :class:`~er_env.rewards.base.RewardError`.

    ## Starting State

    ``reset()`` draws a problem uniformly with the environment's seeded RNG (or takes
    ``options={"problem_index": i}`` / ``{"problem_id": "..."}``) and returns its
    prompt ids with an empty completion in the thinking phase.

    ## Episode End

    - Termination: the policy samples EOS in the solution phase, or the solution
      budget ``s`` is used up (``info["finish_reason"]`` ``"eos"`` / ``"budget"``).
    - Truncation: the model context (``context_length``) is full before either
      (``finish_reason == "length"``). The completion is still scored.

    Stepping a finished episode raises :class:`gymnasium.error.ResetNeeded`.

    ## Arguments

    | argument | type | default | meaning |
    |---|---|---|---|
    | ``task`` | str | ``"math"`` | ``"math"`` or ``"code"`` |
    | ``dataset`` | str or list[Problem] | ``"embedded:<task>"`` | a name/path for ``load_problems``, or problems |
    | ``split`` | str or None | None | dataset split (None: its default) |
    | ``dataset_limit`` | int or None | None | keep the first N problems |
    | ``think_budget_tokens`` | int | 64 | thinking budget ``t`` |
    | ``solution_budget_tokens`` | int | 64 | solution budget ``s`` |
    | ``tokenizer`` | str or object | ``"tiny"`` | ``"tiny"`` (bundled test tokenizer, announced with a warning), a local dir, a hub name, or a tokenizer |
    | ``reward_fn`` | callable or None | None | a :class:`~er_env.rewards.base.RewardFunction` |
    | ``reward_endpoint`` | str or None | None | reward service URL for the default reward (None: in-process) |
    | ``on_reward_error`` | str | ``"record"`` | ``"record"`` (nan + info) or ``"raise"`` |
    | ``action_mode`` | str | ``"tokens"`` | ``"tokens"`` or ``"text"`` |
    | ``max_chunk_tokens`` | int | 64 | longest token chunk per step |
    | ``max_chunk_chars`` | int | 1024 | longest text chunk per step (text mode) |
    | ``template`` | str or None | None | prompt template (None: per task) |
    | ``context_length`` | int or None | None | model context; prompt + completion never exceed it |
    | ``train_forced_token`` | bool | False | give forced ``</think>`` ``env_mask`` 1 |
    | ``eos_ids`` | list[int] or None | None | ids that end a completion (None: the tokenizer's EOS plus ``generation_config.json``'s, resolved by ``er_env.tokens.special_tokens`` as in every backend) |
    | ``render_mode`` | str or None | None | ``"ansi"`` returns the text so far |

    ## Info keys

    ``reset``: ``problem_id``, ``problem_index``, ``task``, ``source``,
    ``prompt_text``, ``think_budget_tokens``, ``solution_budget_tokens``.
    Every ``step``: ``phase`` (name), ``tokens_offered``, ``tokens_kept``,
    ``tokens_cut`` (dropped past a budget/after a cut), ``forced_think_end`` (this step
    forced ``</think>``), ``thinking_tokens``, ``solution_tokens``, ``remaining_tokens``.
    Last step, in addition: the :class:`~er_env.budget.BudgetedCompletion` fields
    (``completion_ids``, ``env_mask``, ``forced_mask``, ``logprobs``,
    ``thinking_truncated``, ``think_finish_reason``, ``finish_reason``...),
    ``completion_text``, ``reward``, ``verdict``, ``is_error``, ``reward_details``.

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: str = "math",
        dataset: str | Sequence[Problem] | None = None,
        split: str | None = None,
        dataset_limit: int | None = None,
        think_budget_tokens: int = 64,
        solution_budget_tokens: int = 64,
        tokenizer: Any = TINY_TOKENIZER,
        reward_fn: Any = None,
        reward_endpoint: str | None = None,
        on_reward_error: str = "record",
        action_mode: str = "tokens",
        max_chunk_tokens: int = 64,
        max_chunk_chars: int = 1024,
        template: str | None = None,
        context_length: int | None = None,
        train_forced_token: bool = False,
        eos_ids: Sequence[int] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if task not in ("math", "code"):
            raise ValueError(f"task must be 'math' or 'code', got {task!r}.")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise ValueError(f"render_mode must be None or one of {modes}, got {render_mode!r}.")
        fix = "Pass a positive number of tokens, e.g. think_budget_tokens=1024."
        self.budget = Budget(
            think=_positive_int("think_budget_tokens", think_budget_tokens, fix),
            solution=_positive_int("solution_budget_tokens", solution_budget_tokens, fix),
            train_forced_token=train_forced_token,
        )
        self.max_chunk_tokens = _positive_int("max_chunk_tokens", max_chunk_tokens, "e.g. max_chunk_tokens=64.")
        self.task, self.action_mode, self.render_mode, self.template = task, action_mode, render_mode, template
        self.context_length = context_length
        self.problems = self._load(dataset, split, dataset_limit)
        self.tokenizer = load_tokenizer(tokenizer)
        self.special = special_tokens(self.tokenizer, eos_ids=eos_ids)
        self.vocab_size = len(self.tokenizer)
        self.reward = RewardRouter(reward_fn, reward_endpoint, on_reward_error)
        self._prompts: dict[int, tuple[str, list[int]]] = {}
        self._tracker: BudgetTracker | None = None
        self._index = -1

        token = spaces.Discrete(self.vocab_size)
        self.observation_space = spaces.Dict({
            "prompt_ids": spaces.Sequence(token, stack=True),
            "completion_ids": spaces.Sequence(token, stack=True),
            "phase": spaces.Discrete(len(PHASES)),
            "remaining_tokens": spaces.Discrete(max(self.budget.think, self.budget.solution) + 1),  # type: ignore[type-var]
        })
        if action_mode == "tokens":
            self.action_space: spaces.Space = TokenChunk(self.vocab_size, self.max_chunk_tokens)
        else:
            chars = _positive_int("max_chunk_chars", max_chunk_chars, "e.g. max_chunk_chars=1024.")
            self.action_space = spaces.Text(max_length=chars, min_length=0, charset=string.printable)

    # ------------------------------------------------------------------ set-up
    def _load(self, dataset: Any, split: str | None, limit: int | None) -> list[Problem]:
        if dataset is None:
            dataset = f"embedded:{self.task}"
        if isinstance(dataset, (str, bytes)) or hasattr(dataset, "__fspath__"):
            problems = load_problems(dataset, task=self.task, split=split, limit=limit)
        else:
            problems = list(dataset)[:limit] if limit is not None else list(dataset)
            bad = [p for p in problems if not isinstance(p, Problem) or p.task != self.task]
            if bad:
                raise ValueError(
                    f"dataset must hold {self.task} Problem objects; got {bad[0]!r:.120} "
                    f"({len(bad)} bad of {len(problems)})."
                )
        if not problems:
            raise ValueError(f"Dataset {dataset!r:.80} (split {split!r}) holds no {self.task} problems.")
        return problems

    def _prompt(self, index: int) -> tuple[str, list[int]]:
        if index not in self._prompts:
            self._prompts[index] = render_prompt(self.problems[index], self.tokenizer, self.template)
        return self._prompts[index]

    def _pick(self, options: dict[str, Any] | None) -> int:
        options = options or {}
        if "problem_index" in options:
            idx = options["problem_index"]
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or not 0 <= idx < len(self.problems):
                raise ValueError(f"options['problem_index'] must be an int in [0, {len(self.problems)}), got {idx!r}.")
            return int(idx)
        if "problem_id" in options:
            for i, p in enumerate(self.problems):
                if p.id == options["problem_id"]:
                    return i
            raise ValueError(f"options['problem_id'] {options['problem_id']!r} is not in this environment's dataset.")
        return int(self.np_random.integers(len(self.problems)))

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Start an episode on a (seeded) random problem, or the one ``options`` names."""
        super().reset(seed=seed)
        self._index = self._pick(options)
        prompt_text, prompt_ids = self._prompt(self._index)
        self._tracker = BudgetTracker(self.budget, self.special, prompt_ids, self.context_length)
        problem = self.problems[self._index]
        info = {
            "problem_id": problem.id, "problem_index": self._index, "task": problem.task, "source": problem.source,
            "prompt_text": prompt_text, "think_budget_tokens": self.budget.think,
            "solution_budget_tokens": self.budget.solution,
        }
        return self._obs(), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        """Feed one chunk of policy tokens (or text) through the budget tracker."""
        tracker = self._tracker
        if tracker is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        if tracker.done:
            raise gym.error.ResetNeeded("The episode has finished (terminated or truncated); call reset() first.")
        tokens = self._tokens(action)
        forced_before = tracker.thinking_truncated
        kept = tracker.feed(tokens)
        info: dict[str, Any] = {
            "phase": tracker.phase.value, "tokens_offered": len(tokens), "tokens_kept": kept,
            "tokens_cut": len(tokens) - kept, "forced_think_end": tracker.thinking_truncated and not forced_before,
            "thinking_tokens": tracker.thinking_tokens, "solution_tokens": tracker.solution_tokens,
            "remaining_tokens": tracker.remaining() or 0,
        }
        if not tracker.done:
            return self._obs(), 0.0, False, False, info
        reward, final = self._finish(tracker)
        info.update(final)
        truncated = final["finish_reason"] == "length"
        return self._obs(), reward, not truncated, truncated, info

    def render(self) -> str | None:
        """``"ansi"``: the prompt and the completion so far, as text."""
        if self.render_mode != "ansi" or self._tracker is None:
            return None
        return self._prompt(self._index)[0] + self.tokenizer.decode(
            list(self._tracker.completion_ids), skip_special_tokens=False)

    # ------------------------------------------------------------------ helpers
    def _tokens(self, action: Any) -> list[int]:
        if self.action_mode == "text":
            if not isinstance(action, str):
                raise TypeError(f"action_mode='text' takes a str action, got {type(action).__name__}: {action!r:.80}.")
            return list(self.tokenizer.encode(action, add_special_tokens=False))
        if isinstance(action, (str, bytes)) or action is None or isinstance(action, dict):
            raise TypeError(
                f"action_mode='tokens' takes a 1-D sequence of token ids, got {type(action).__name__}: {action!r:.80}. "
                "Use action_mode='text' to send text."
            )
        arr = np.asarray(action)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(
                f"A token action must be a 1-D integer array or list, got shape {arr.shape} dtype {arr.dtype}."
            )
        if arr.size > self.max_chunk_tokens:
            raise ValueError(
                f"The action has {arr.size} tokens but max_chunk_tokens={self.max_chunk_tokens}; split it into "
                "smaller chunks or raise max_chunk_tokens."
            )
        bad = arr[(arr < 0) | (arr >= self.vocab_size)]
        if bad.size:
            raise ValueError(
                f"Invalid token id(s) {bad[:5].tolist()} in the action: ids must be in [0, {self.vocab_size}) "
                "for this tokenizer."
            )
        return [int(t) for t in arr]

    def _finish(self, tracker: BudgetTracker) -> tuple[float, dict[str, Any]]:
        completion = tracker.result()
        text = decode_completion(self.tokenizer, completion.completion_ids, self.special.eos)
        problem = self.problems[self._index]
        (result,) = self.reward([problem], [text])
        reward = ERROR_REWARD if result.is_error else float(result.reward)
        final = completion.to_dict()
        final.pop("prompt_ids")
        final.pop("text")
        final.update({
            "problem_id": problem.id, "completion_text": text, "reward": reward, "verdict": result.verdict,
            "is_error": bool(result.is_error), "reward_details": dict(result.details),
        })
        return reward, final

    def _obs(self) -> dict[str, Any]:
        tracker = self._tracker
        assert tracker is not None
        return {
            "prompt_ids": np.asarray(tracker.prompt_ids, dtype=np.int64),
            "completion_ids": np.asarray(tracker.completion_ids, dtype=np.int64),
            "phase": np.int64(PHASES.index(tracker.phase)),
            "remaining_tokens": np.int64(tracker.remaining() or 0),
        }
