"""The Elastic Reasoning budget protocol (stdlib only).

Elastic Reasoning (arXiv 2505.05315) splits a completion into a *thinking* phase
capped at ``t`` tokens and a *solution* phase capped at ``s`` tokens:

1. Thinking: the policy generates at most ``t`` tokens, stopping at ``</think>``
   (kept, sampled by the policy) or EOS.
2. If thinking did not end with ``</think>`` (budget exhausted, or EOS), exactly the
   ``</think>`` token id(s) are appended and marked *forced* (``env_mask`` 0). A
   sampled EOS in the thinking phase is dropped and replaced by the forced
   ``</think>``, so every constrained completion has the shape
   ``thinking + </think> + solution`` (``Budget(eos_in_thinking="end")`` instead
   keeps that EOS and ends the completion, as the official training code
   effectively does).
3. Solution: generation continues from ``prompt + thinking + </think>`` for at most
   ``s`` new tokens, stopping at EOS (kept).

This module holds those rules once. Every backend (``er_env.backends``) and the
Gymnasium environments drive a :class:`BudgetTracker` per sample, so the rules are
identical whether tokens come from one batched ``generate`` call per phase or from an
RL agent stepping the environment chunk by chunk. It imports nothing outside the
standard library: backends depend on it, never the reverse.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

__all__ = [
    "FORCED_LOGPROB",
    "Budget",
    "BudgetError",
    "BudgetTracker",
    "BudgetedCompletion",
    "Phase",
    "SpecialTokens",
    "TokenizerError",
]

#: Logprob placeholder stored for forced ``</think>`` tokens (they were not sampled).
FORCED_LOGPROB = 0.0


class BudgetError(ValueError):
    """A budget value is invalid (not a positive integer, or inconsistent)."""


class TokenizerError(ValueError):
    """The tokenizer cannot express the protocol (e.g. it has no ``</think>``)."""


def _check_budget_value(name: str, value: Any, fix: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise BudgetError(
            f"{name} must be a positive int or None (unconstrained), got {value!r} "
            f"of type {type(value).__name__}. {fix}"
        )
    if value <= 0:
        raise BudgetError(f"{name} must be > 0, got {value}. {fix}")


@dataclass(frozen=True)
class Budget:
    """Token budgets for one completion.

    > Parameters that control the two phases

    Attributes:
        think: ``t``, the most tokens the policy may sample in the thinking phase
            (``</think>`` included when the policy closes thinking itself). ``None``
            means unconstrained: one single pass, no forcing.
        solution: ``s``, the most tokens the policy may sample after ``</think>``.
            ``None`` means the solution is capped only by ``max_tokens`` / context.
        max_tokens: cap on the whole completion when a phase is unconstrained
            (``None``: up to the model's context length).
        eos_in_thinking: what an EOS sampled while thinking means. ``"force"``
            (default): the EOS is dropped, ``</think>`` is forced and the solution
            phase runs (what the official evaluation effectively scores).
            ``"end"``: the EOS is kept and the completion ends with no solution
            phase (what the official training effectively rewards: its EOS mask
            hides everything after the first EOS).
        train_forced_token: give forced ``</think>`` tokens ``env_mask`` 1, as the
            official E1 training code did. Default 0: the policy is not trained on
            tokens it did not sample.
    """

    think: int | None = field(default=1024, metadata={"help": "Thinking budget t in tokens (None: unconstrained)."})
    solution: int | None = field(default=1024, metadata={"help": "Solution budget s in tokens (None: unconstrained)."})
    max_tokens: int | None = field(
        default=None, metadata={"help": "Cap on the whole completion when a phase is unconstrained."}
    )
    eos_in_thinking: str = field(
        default="force", metadata={"help": "EOS sampled while thinking: 'force' </think> and continue, or 'end'."}
    )
    train_forced_token: bool = field(
        default=False, metadata={"help": "Mark forced </think> tokens trainable (env_mask 1), like the official code."}
    )

    def __post_init__(self) -> None:
        fix = "Pass a positive integer number of tokens, e.g. Budget(think=1024, solution=1024)."
        _check_budget_value("Budget.think", self.think, fix)
        _check_budget_value("Budget.solution", self.solution, fix)
        _check_budget_value("Budget.max_tokens", self.max_tokens, fix)
        if self.think is None and self.solution is not None:
            raise BudgetError(
                f"Budget(think=None, solution={self.solution}) is ambiguous: an unconstrained "
                "single pass has no solution phase to cap. Use Budget(think=None, solution=None, "
                "max_tokens=N) for an unconstrained run."
            )
        if self.eos_in_thinking not in ("force", "end"):
            raise BudgetError(f"Budget.eos_in_thinking must be 'force' or 'end', got {self.eos_in_thinking!r}.")
        if not isinstance(self.train_forced_token, bool):
            raise BudgetError(f"Budget.train_forced_token must be a bool, got {self.train_forced_token!r}.")

    @classmethod
    def unconstrained(cls, max_tokens: int | None = None) -> "Budget":
        """A single unconstrained pass of at most ``max_tokens`` tokens."""
        return cls(think=None, solution=None, max_tokens=max_tokens)

    @property
    def constrained(self) -> bool:
        """True when the two-phase protocol applies (``think`` is set)."""
        return self.think is not None

    def cap(self, context_left: int | None = None) -> int | None:
        """Upper bound on completion length (forced tokens excluded), or None if unbounded."""
        if self.think is not None and self.solution is not None:
            bound: int | None = self.think + self.solution
        else:
            bound = self.max_tokens
        if context_left is not None:
            bound = context_left if bound is None else min(bound, context_left)
        return bound


class _Tokenizer(Protocol):  # the duck-typed part of a HF tokenizer we use
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class SpecialTokens:
    """Token ids the protocol needs, resolved once from a tokenizer.

    Attributes:
        think_end: the id sequence of ``</think>`` (usually one token; several for
            tokenizers without a dedicated special token).
        eos: ids that end a completion.
        think_start: the id sequence of ``<think>`` if the tokenizer has one.
    """

    think_end: tuple[int, ...]
    eos: frozenset[int]
    think_start: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.think_end:
            raise TokenizerError("SpecialTokens.think_end is empty: the protocol needs a </think> id sequence.")
        if not self.eos:
            raise TokenizerError("SpecialTokens.eos is empty: the protocol needs at least one EOS id.")
        if set(self.think_end) & set(self.eos):
            raise TokenizerError(f"</think> ids {self.think_end} overlap the EOS ids {sorted(self.eos)}.")

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, think_end: str = "</think>", think_start: str = "<think>",
        eos_ids: Sequence[int] | None = None,
    ) -> "SpecialTokens":
        """Resolve ids from a Hugging Face-style tokenizer (duck-typed).

        Raises:
            TokenizerError: if ``think_end`` does not round-trip through the
                tokenizer (it cannot be represented), or no EOS id is known.
        """
        end_ids = tuple(tokenizer.encode(think_end, add_special_tokens=False))
        decode = getattr(tokenizer, "decode", None)
        if not end_ids or (decode is not None and decode(list(end_ids)).strip() != think_end):
            raise TokenizerError(
                f"The tokenizer cannot represent {think_end!r} (it encodes to {list(end_ids)}). Elastic "
                "Reasoning needs a thinking delimiter: use a reasoning model's tokenizer (e.g. an R1-distill "
                f"one) or add {think_end!r} with tokenizer.add_special_tokens(...)."
            )
        start_ids = tuple(tokenizer.encode(think_start, add_special_tokens=False))
        if decode is not None and start_ids and decode(list(start_ids)).strip() != think_start:
            start_ids = ()
        if eos_ids is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if not eos_ids:
            raise TokenizerError("The tokenizer has no eos_token_id; pass eos_ids=[...] explicitly.")
        return cls(think_end=end_ids, eos=frozenset(int(i) for i in eos_ids), think_start=start_ids)


class Phase(enum.Enum):
    """Where a completion is in the protocol."""

    THINKING = "thinking"
    SOLUTION = "solution"
    DONE = "done"


@dataclass(frozen=True)
class BudgetedCompletion:
    """The result of one budgeted generation, ready for a trainer.

    All per-token lists are aligned with ``completion_ids``.

    Attributes:
        prompt_ids: the prompt as given.
        completion_ids: thinking tokens + (forced) ``</think>`` + solution tokens.
        logprobs: sampling logprob per completion token; forced tokens carry
            :data:`FORCED_LOGPROB`. Empty when the backend returned none.
        env_mask: 1 = sampled by the policy (trainable), 0 = forced by the
            environment (1 if ``Budget.train_forced_token``).
        forced_mask: 1 exactly where a token was forced.
        thinking_tokens: policy-sampled tokens of the thinking phase (a natural
            ``</think>`` included).
        solution_tokens: policy-sampled tokens after ``</think>``.
        thinking_truncated: ``</think>`` was forced (budget hit or EOS in thinking).
        think_finish_reason: ``"think_end"`` (closed by the policy), ``"budget"``,
            ``"eos"`` (EOS sampled while thinking: replaced by ``</think>``, or
            kept and ending the completion with ``Budget.eos_in_thinking="end"``),
            ``"length"`` (context/max_tokens exhausted) or ``None`` (unconstrained
            run that never closed thinking).
        finish_reason: why the completion ended: ``"eos"``, ``"budget"`` (solution
            budget used up) or ``"length"``.
        text: decoded completion, when the backend decodes.
    """

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    env_mask: tuple[int, ...]
    forced_mask: tuple[int, ...]
    thinking_tokens: int
    solution_tokens: int
    thinking_truncated: bool
    think_finish_reason: str | None
    finish_reason: str
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (lists, not tuples)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


class BudgetTracker:
    """Per-sample state machine that enforces a :class:`Budget` on a token stream.

    Feed it the tokens a policy sampled (in one piece per phase, or in arbitrary
    chunks); it keeps what the protocol allows, forces ``</think>`` when needed and
    tells how many new tokens the current phase may still sample.

    Example:
        >>> sp = SpecialTokens(think_end=(9,), eos=frozenset({2}))
        >>> tr = BudgetTracker(Budget(think=3, solution=2), sp, prompt_ids=[5])
        >>> tr.feed([7, 7, 7, 7])  # 4th token is past t=3 and is dropped
        3
        >>> tr.phase, tr.completion_ids
        (<Phase.SOLUTION: 'solution'>, [7, 7, 7, 9])
        >>> tr.feed([4, 2]); tr.phase
        2
        <Phase.DONE: 'done'>
        >>> tr.result().env_mask
        (1, 1, 1, 0, 1, 1)
    """

    def __init__(
        self, budget: Budget, special: SpecialTokens, prompt_ids: Sequence[int], context_length: int | None = None
    ) -> None:
        self.budget = budget
        self.special = special
        self.prompt_ids = tuple(int(i) for i in prompt_ids)
        if context_length is not None and len(self.prompt_ids) >= context_length:
            raise BudgetError(
                f"The prompt has {len(self.prompt_ids)} tokens but the model context is {context_length}: "
                "no room to generate. Shorten the prompt or use a model with a longer context."
            )
        self._context_left = None if context_length is None else context_length - len(self.prompt_ids)
        self.phase = Phase.THINKING
        self.completion_ids: list[int] = []
        self._logprobs: list[float] = []
        self._forced: list[int] = []
        self._have_logprobs = True
        self.thinking_tokens = 0
        self.solution_tokens = 0
        self.think_finish_reason: str | None = None
        self.finish_reason: str | None = None

    # ----------------------------------------------------------------- queries
    @property
    def done(self) -> bool:
        """Whether the completion is finished."""
        return self.phase is Phase.DONE

    @property
    def thinking_truncated(self) -> bool:
        """Whether ``</think>`` was forced (thinking hit its budget or sampled EOS)."""
        return any(self._forced)

    def forced_since(self, start: int) -> list[int]:
        """The forced mask (1: forced) of ``completion_ids[start:]``, for readers that follow a stream."""
        return self._forced[start:]

    def remaining(self) -> int | None:
        """New tokens the current phase may still sample (``None``: unbounded).

        While a constrained completion is thinking, room for the ``</think>`` ids is
        kept free in the model context, so a forced delimiter never overflows it.
        """
        if self.phase is Phase.DONE:
            return 0
        limits: list[int] = []
        if self._context_left is not None:
            room = self._context_left - len(self.completion_ids)
            if self.phase is Phase.THINKING and self.budget.constrained:
                room -= len(self.special.think_end)  # keep room for a forced </think>
            limits.append(room)
        if self.budget.max_tokens is not None and not (self.budget.think and self.budget.solution):
            limits.append(self.budget.max_tokens - self._sampled())
        if self.budget.constrained:
            if self.phase is Phase.THINKING:
                limits.append(self.budget.think - self.thinking_tokens)  # type: ignore[operator]
            elif self.budget.solution is not None:
                limits.append(self.budget.solution - self.solution_tokens)
        return max(0, min(limits)) if limits else None

    def _sampled(self) -> int:
        return self.thinking_tokens + self.solution_tokens

    # ----------------------------------------------------------------- updates
    def feed(self, token_ids: Sequence[int], logprobs: Sequence[float] | None = None) -> int:
        """Consume policy-sampled tokens; return how many were kept.

        Tokens past a budget, after EOS, or sampled after a point where
        ``</think>`` had to be forced are dropped (they were conditioned on a
        prefix that no longer exists). Tokens that follow a *natural* ``</think>``
        in the same chunk are kept as solution tokens.
        """
        if logprobs is not None and len(logprobs) != len(token_ids):
            raise ValueError(f"Got {len(token_ids)} token ids but {len(logprobs)} logprobs; they must align.")
        if logprobs is None and token_ids:
            self._have_logprobs = False
        kept = 0
        for i, tok in enumerate(token_ids):
            if self.phase is Phase.DONE:
                break
            lp = float(logprobs[i]) if logprobs is not None else math.nan
            if self.remaining() == 0:  # budget/context already exhausted before this token
                self._exhaust()
                break
            if self.phase is Phase.THINKING and self.budget.constrained and int(tok) in self.special.eos:
                self.think_finish_reason = "eos"
                if self.budget.eos_in_thinking == "end":
                    self._append(int(tok), lp)
                    kept += 1
                    self.finish_reason = "eos"
                    self.phase = Phase.DONE
                    break
                self._force_think_end()
                break
            self._append(int(tok), lp)
            kept += 1
            self._after_token(int(tok))
            if self._forced_just_now:
                break
        return kept

    _forced_just_now = False

    def _append(self, tok: int, lp: float) -> None:
        self.completion_ids.append(tok)
        self._logprobs.append(lp)
        self._forced.append(0)
        if self.phase is Phase.THINKING:
            self.thinking_tokens += 1
        else:
            self.solution_tokens += 1

    def _after_token(self, tok: int) -> None:
        self._forced_just_now = False
        if self.phase is Phase.THINKING and self._ends_with_think_end():
            self.think_finish_reason = self.think_finish_reason or "think_end"
            self.phase = Phase.SOLUTION
            return
        if tok in self.special.eos and (self.phase is Phase.SOLUTION or not self.budget.constrained):
            self.finish_reason = "eos"
            self.phase = Phase.DONE
            return
        if self.remaining() == 0:
            self._exhaust()

    def _exhaust(self) -> None:
        """The current phase has no tokens left: force ``</think>`` or finish."""
        ctx_full = self._context_left is not None and len(self.completion_ids) >= self._context_left
        end_fits = self._context_left is None or (
            len(self.completion_ids) + len(self.special.think_end) <= self._context_left
        )
        if self.phase is Phase.THINKING and self.budget.constrained and end_fits:
            think_left = self.budget.think - self.thinking_tokens  # type: ignore[operator]
            self.think_finish_reason = "budget" if think_left <= 0 else "length"
            self._force_think_end()
            return
        if self.phase is Phase.THINKING and self.budget.constrained:  # no room left even for </think>
            self.think_finish_reason = "length"
        if self.phase is Phase.SOLUTION and self.budget.solution is not None and not ctx_full and (
            self.solution_tokens >= self.budget.solution
        ):
            self.finish_reason = "budget"
        else:
            self.finish_reason = "length"
        self.phase = Phase.DONE

    def _ends_with_think_end(self) -> bool:
        end = self.special.think_end
        return len(self.completion_ids) >= len(end) and tuple(self.completion_ids[-len(end):]) == end

    def _force_think_end(self) -> None:
        """Append the ``</think>`` id sequence as forced tokens and enter the solution phase.

        With a multi-token ``</think>``, a partial delimiter the policy already
        sampled at the cut is completed rather than repeated.
        """
        end = self.special.think_end
        have = 0
        for k in range(min(len(end) - 1, self.thinking_tokens), 0, -1):
            if tuple(self.completion_ids[-k:]) == end[:k]:
                have = k
                break
        for tok in end[have:]:
            self.completion_ids.append(tok)
            self._logprobs.append(FORCED_LOGPROB)
            self._forced.append(1)
        self._forced_just_now = True
        self.phase = Phase.SOLUTION
        if self.remaining() == 0:
            self._exhaust()

    def finish(self, reason: str = "length") -> None:
        """Mark the completion ended by the caller (e.g. the backend stopped early)."""
        if self.phase is not Phase.DONE:
            self.finish_reason = reason
            self.phase = Phase.DONE

    def solution_prefix(self) -> list[int]:
        """``prompt + completion so far``: the prefix the solution phase continues from."""
        return list(self.prompt_ids) + self.completion_ids

    def result(self, text: str | None = None) -> BudgetedCompletion:
        """The finished record. Raises if the completion is not done yet."""
        if self.phase is not Phase.DONE:
            raise RuntimeError(f"result() called in phase {self.phase.value!r}; feed tokens until done or call "
                               "finish().")
        env_mask = tuple(1 if (not f or self.budget.train_forced_token) else 0 for f in self._forced)
        return BudgetedCompletion(
            prompt_ids=self.prompt_ids,
            completion_ids=tuple(self.completion_ids),
            logprobs=tuple(self._logprobs) if self._have_logprobs else (),
            env_mask=env_mask,
            forced_mask=tuple(self._forced),
            thinking_tokens=self.thinking_tokens,
            solution_tokens=self.solution_tokens,
            thinking_truncated=self.thinking_truncated,
            think_finish_reason=self.think_finish_reason,
            finish_reason=self.finish_reason or "length",
            text=text,
        )
