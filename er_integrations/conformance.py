"""Conformance kit: does an integration's rollout equal er_env's own backend, token for token?

Every integration that generates (OpenRLHF's executor, verl's agent loop, an OpenEnv client loop, the
verifiers harness, your own) must produce, for a prompt and a :class:`~er_env.budget.Budget`, exactly
what er_env's backends produce: the same completion ids (thinking, ``</think>`` sampled or forced,
solution), the same trained-token mask (0 on a forced ``</think>`` unless ``train_forced_token``), the
same thinking/solution counts and the same ``thinking_truncated`` flag. On a deterministic engine
(greedy decoding, float32) that is an equality, and this module checks it::

    from er_env.backends.hf import HFBackend
    from er_integrations.conformance import Rollout, check_conformance, standard_budgets

    reference = HFBackend("/tmp/tiny-r1", device="cpu")      # or any er_env backend on the same engine

    def my_integration(prompt_ids, budget):                  # drive YOUR stack on a real engine
        out = my_stack.rollout(prompt_ids, think=budget.think, solution=budget.solution)
        return Rollout(prompt_ids=out.prompt, completion_ids=out.response, env_mask=out.loss_mask,
                       thinking_tokens=out.n_think, solution_tokens=out.n_solution,
                       thinking_truncated=out.truncated)

    report = check_conformance(my_integration, reference, prompts, standard_budgets())
    print(report)                                            # one line per case, per-field diffs

An *adapter* is any callable ``adapter(prompt, budget) -> Rollout`` (or an awaitable of one): it runs
the integration on one prompt under one budget with greedy decoding. ``prompt`` is whatever the
caller passes in ``prompts`` (token ids, text or chat messages, as the stack takes them); the
:class:`Rollout` says which prompt ids the stack built, and the reference generates from exactly
those ids (``reference.generate([prompt_ids], budget, SamplingConfig(temperature=0))``), so a stack
that applies its own chat template is compared on its own prompt. When ``prompts`` are token ids,
the rollout's ``prompt_ids`` must equal them.

Budgets come by name. :func:`standard_budgets` gives the issue's pair: ``"binding"`` (``t`` so small
that thinking is cut on every prompt) and ``"non_binding"`` (``t`` large enough that the model closes
thinking itself). The kit checks on the reference that each binds as its name says, so a test cannot
silently exercise only one path (``require_binding=False`` turns that off for other names).

This module imports only the standard library and ``er_env.budget`` / ``er_env.backends.base``: no
stack, no torch.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence, Union

from er_env.backends.base import Backend, SamplingConfig
from er_env.budget import Budget, BudgetedCompletion

__all__ = [
    "FIELDS", "Adapter", "CaseResult", "ConformanceError", "ConformanceReport", "FieldDiff", "Rollout",
    "acheck_conformance", "check_conformance", "mask_from_spans", "rollout_from_completion", "standard_budgets",
]

#: the fields compared, in report order
FIELDS = ("prompt_ids", "completion_ids", "env_mask", "thinking_tokens", "solution_tokens", "thinking_truncated",
          "finish_reason")

GREEDY = SamplingConfig(temperature=0.0, logprobs=False)


@dataclass(frozen=True)
class Rollout:
    """One integration rollout in er_env's terms (what the kit compares).

    Attributes:
        prompt_ids: the prompt ids the stack generated from.
        completion_ids: thinking + ``</think>`` + solution ids, as the stack will train on them.
        env_mask: per completion token, 1 = trained (sampled by the policy), 0 = not (a forced
            ``</think>``); the stack's own mask (``response_mask``, ``action_ranges``,
            ``completion_mask``...) translated.
        thinking_tokens: sampled thinking tokens (a sampled ``</think>`` included).
        solution_tokens: sampled solution tokens.
        thinking_truncated: the stack's record that ``</think>`` was forced.
        finish_reason: ``"eos"`` / ``"budget"`` / ``"length"`` when the stack records it; ``None``: not
            compared.
    """

    prompt_ids: Sequence[int]
    completion_ids: Sequence[int]
    env_mask: Sequence[int]
    thinking_tokens: int
    solution_tokens: int
    thinking_truncated: bool
    finish_reason: str | None = None


#: ``adapter(prompt, budget)`` -> a :class:`Rollout` (or an awaitable of one)
Adapter = Callable[[Any, Budget], Union[Rollout, Awaitable[Rollout]]]


def rollout_from_completion(done: BudgetedCompletion) -> Rollout:
    """A :class:`Rollout` from er_env's own record (integrations that keep a ``BudgetedCompletion``)."""
    return Rollout(done.prompt_ids, done.completion_ids, done.env_mask, done.thinking_tokens, done.solution_tokens,
                   done.thinking_truncated, done.finish_reason)


def mask_from_spans(spans: Sequence[Sequence[int]], length: int, offset: int = 0) -> tuple[int, ...]:
    """A 0/1 mask of ``length`` completion tokens from ``[start, end)`` spans shifted by ``offset``.

    The inverse of :func:`er_integrations._phases.trained_spans` (OpenRLHF's ``action_ranges``
    count from the start of ``prompt + completion``: pass ``offset=len(prompt_ids)``).

    Raises:
        ValueError: a span falls outside the completion.

    """
    mask = [0] * length
    for start, end in spans:
        lo, hi = int(start) - offset, int(end) - offset
        if not 0 <= lo <= hi <= length:
            raise ValueError(f"Span [{start}, {end}) minus offset {offset} falls outside the {length} completion "
                             "tokens; the spans must index prompt + completion.")
        mask[lo:hi] = [1] * (hi - lo)
    return tuple(mask)


def standard_budgets(binding_think: int = 4, non_binding_think: int = 300, solution: int = 24
                     ) -> dict[str, Budget]:
    """The issue's pair of budgets: ``"binding"`` (``t`` cuts thinking) and ``"non_binding"``.

    Args:
        binding_think: a ``t`` below every prompt's natural thinking length.
        non_binding_think: a ``t`` above every prompt's natural thinking length.
        solution: ``s`` for both.

    Returns:
        ``{"binding": Budget(binding_think, solution), "non_binding": Budget(non_binding_think, solution)}``.

    """
    return {"binding": Budget(think=binding_think, solution=solution),
            "non_binding": Budget(think=non_binding_think, solution=solution)}


@dataclass(frozen=True)
class FieldDiff:
    """One field where the integration differs from the reference.

    Attributes:
        field: the :data:`FIELDS` name.
        got: the integration's value.
        expected: the reference backend's value.
    """

    field: str
    got: Any
    expected: Any

    def describe(self) -> str:
        """``field: got ... expected ...``, for sequences with the first differing position."""
        got, exp = self.got, self.expected
        if isinstance(got, (list, tuple)) and isinstance(exp, (list, tuple)):
            shared = min(len(got), len(exp))
            pos = next((i for i in range(shared) if got[i] != exp[i]), shared)
            lo = max(0, pos - 3)
            return (f"{self.field}: first difference at {pos} (lengths {len(got)} vs {len(exp)}): got "
                    f"...{list(got[lo:pos + 4])}, expected ...{list(exp[lo:pos + 4])}")
        return f"{self.field}: got {got!r}, expected {exp!r}"


@dataclass(frozen=True)
class CaseResult:
    """One (prompt, budget) case.

    Attributes:
        prompt_index: the prompt's position in ``prompts``.
        budget_name: the budget's name.
        budget: the budget.
        got: the integration's rollout.
        expected: the reference backend's completion.
        diffs: the fields that differ (empty: the case conforms).
        binding_problem: set when the budget did not bind as its name says (on the reference).
    """

    prompt_index: int
    budget_name: str
    budget: Budget
    got: Rollout
    expected: BudgetedCompletion
    diffs: tuple[FieldDiff, ...]
    binding_problem: str | None = None

    @property
    def ok(self) -> bool:
        """No field differs and the budget bound as named."""
        return not self.diffs and self.binding_problem is None


@dataclass
class ConformanceReport:
    """Every case of one :func:`check_conformance` run; ``str()`` is the per-field diff report.

    Attributes:
        integration: a name for the report.
        cases: one :class:`CaseResult` per (prompt, budget).
    """

    integration: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every case conforms."""
        return bool(self.cases) and all(c.ok for c in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        """The cases that do not conform."""
        return [c for c in self.cases if not c.ok]

    def __str__(self) -> str:
        """A header with the counts, then one block per failing case (a field per line)."""
        bad = self.failures
        lines = [f"{self.integration}: {len(self.cases) - len(bad)}/{len(self.cases)} cases equal the reference "
                 f"({', '.join(FIELDS)})"]
        for case in bad:
            lines.append(f"  prompt {case.prompt_index}, budget {case.budget_name} "
                         f"(t={case.budget.think}, s={case.budget.solution}):")
            if case.binding_problem:
                lines.append(f"    budget: {case.binding_problem}")
            lines.extend(f"    {d.describe()}" for d in case.diffs)
        return "\n".join(lines)

    def raise_for_diff(self) -> None:
        """Raise :class:`ConformanceError` (carrying this report) unless every case conforms."""
        if not self.ok:
            raise ConformanceError(self)


class ConformanceError(AssertionError):
    """An integration's rollouts differ from er_env's backend; ``.report`` has the cases."""

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(str(report) if report.cases else f"{report.integration}: no cases were run")
        self.report = report


def _compare(got: Rollout, expected: BudgetedCompletion) -> tuple[FieldDiff, ...]:
    diffs = []
    for name in FIELDS:
        value = getattr(got, name)
        if name == "finish_reason" and value is None:
            continue  # the stack does not record it
        want = getattr(expected, name)
        if isinstance(want, tuple):
            value = tuple(int(v) for v in value)
        elif isinstance(want, bool):
            value = bool(value)
        elif isinstance(want, int):
            value = int(value)
        if value != want:
            diffs.append(FieldDiff(name, value, want))
    return tuple(diffs)


def _binding_problem(name: str, expected: BudgetedCompletion) -> str | None:
    cut = expected.think_finish_reason == "budget"
    if name == "binding" and not cut:
        return (f"named 'binding' but the reference closed thinking itself ({expected.think_finish_reason!r}, "
                f"{expected.thinking_tokens} tokens); lower t")
    if name == "non_binding" and cut:
        return f"named 'non_binding' but the reference was cut at t={expected.thinking_tokens}; raise t"
    return None


async def _reference(reference: Backend, prompt_ids: Sequence[int], budget: Budget, sampling: SamplingConfig
                     ) -> BudgetedCompletion:
    agenerate = getattr(reference, "agenerate", None)
    if agenerate is not None:
        [done] = await agenerate([list(prompt_ids)], budget, sampling)
    else:
        [done] = await asyncio.to_thread(reference.generate, [list(prompt_ids)], budget, sampling)
    return done


def _check_prompt(prompt: Any, got: Rollout, index: int) -> None:
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(t, int) for t in prompt):
        if [int(t) for t in got.prompt_ids] != list(prompt):
            raise ValueError(f"prompts[{index}] are token ids but the adapter's Rollout.prompt_ids differ "
                             f"({list(got.prompt_ids)[:8]}... vs {list(prompt)[:8]}...): return the ids the stack "
                             "generated from.")


async def acheck_conformance(adapter: Adapter, reference: Backend, prompts: Sequence[Any],
                             budgets: Mapping[str, Budget] | None = None, *, sampling: SamplingConfig | None = None,
                             name: str | None = None, require_binding: bool = True,
                             raise_on_diff: bool = True) -> ConformanceReport:
    """Run ``adapter`` on every (prompt, budget) and compare it with ``reference`` on the same prompt ids.

    Args:
        adapter: the integration, see :data:`Adapter` (sync or async).
        reference: an er_env backend on the same engine (``HFBackend``, ``VLLMBackend``, ``OpenAIBackend``).
        prompts: a batch of prompts in the form ``adapter`` takes.
        budgets: named budgets (default :func:`standard_budgets`).
        sampling: the reference's sampling (default greedy); the adapter must decode the same way.
        name: the integration's name in the report (default the adapter's ``__name__``).
        require_binding: check that ``"binding"`` / ``"non_binding"`` budgets bind as named, on the
            reference, for every prompt.
        raise_on_diff: raise :class:`ConformanceError` when a case differs (else return the report).

    Returns:
        The :class:`ConformanceReport` (every case conforms when ``raise_on_diff``).

    Raises:
        ConformanceError: a field differs, or a budget did not bind as named (``raise_on_diff``).
        ValueError: no prompts, no budgets, or the adapter returned other prompt ids than given.
        TypeError: the adapter returned something other than a :class:`Rollout`.

    """
    budgets = dict(standard_budgets() if budgets is None else budgets)
    if not prompts or not budgets:
        raise ValueError(f"check_conformance needs prompts and budgets; got {len(prompts)} prompt(s) and "
                         f"{len(budgets)} budget(s).")
    sampling = sampling or GREEDY
    report = ConformanceReport(name or str(getattr(adapter, "__name__", type(adapter).__name__)))
    for budget_name, budget in budgets.items():
        for index, prompt in enumerate(prompts):
            got = adapter(prompt, budget)
            if inspect.isawaitable(got):
                got = await got
            if not isinstance(got, Rollout):
                raise TypeError(f"The adapter returned {type(got).__name__}, not a Rollout; build one (e.g. "
                                "rollout_from_completion(...) or Rollout(prompt_ids=..., ...)).")
            _check_prompt(prompt, got, index)
            expected = await _reference(reference, got.prompt_ids, budget, sampling)
            problem = _binding_problem(budget_name, expected) if require_binding else None
            report.cases.append(CaseResult(index, budget_name, budget, got, expected, _compare(got, expected),
                                           problem))
    if raise_on_diff:
        report.raise_for_diff()
    return report


def check_conformance(adapter: Adapter, reference: Backend, prompts: Sequence[Any],
                      budgets: Mapping[str, Budget] | None = None, *, sampling: SamplingConfig | None = None,
                      name: str | None = None, require_binding: bool = True,
                      raise_on_diff: bool = True) -> ConformanceReport:
    """Blocking form of :func:`acheck_conformance` (same arguments; safe inside a running event loop)."""
    coro = acheck_conformance(adapter, reference, prompts, budgets, sampling=sampling, name=name,
                              require_binding=require_binding, raise_on_diff=raise_on_diff)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from er_env.aio import run_sync  # a running loop (notebook, async test): the project's background loop

    return run_sync(coro)
