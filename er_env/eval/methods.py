r"""Ways of capping a reasoning model's output, compared under the same budget ``(t, s)``.

Each method is one small class with a ``name`` (the ``--methods`` value), a
``source`` and a :meth:`Method.generate` that turns prompts and budgets into
:class:`~er_env.eval.nested.Generation` records. Adding a method is one class plus
one :data:`METHODS` entry.

=============== ===================================================================
``elastic``     Elastic Reasoning (arXiv 2505.05315): thinking capped at ``t``,
                ``</think>`` forced, solution capped at ``s`` (``er_env.budget``).
``truncation``  One plain pass capped at ``t + s`` tokens, no forcing: what a
                ``max_tokens`` limit does.
``s1``          s1 budget forcing (Muennighoff et al. 2025, arXiv 2501.19393): cut
                the thinking at ``t``, append ``</think>`` and a final-answer cue
                (s1's "Final Answer:"), answer within ``s``.
``qwen3``       The Qwen3 thinking budget (Qwen3 technical report, arXiv
                2505.09388, sec. 4.3): at ``t`` insert "Considering the limited
                time by the user, I have to give the solution based on the thinking
                directly now.\n</think>.\n\n", answer within ``s``.
``l1``          An L1-style length prompt (Aggarwal & Welleck 2025, arXiv
                2503.04697): the user turn ends with "Think for N tokens." with
                ``N = t + s`` (L1 budgets the whole output), one pass capped at
                ``t + s``.
``vllm_native`` vLLM's own ``SamplingParams.thinking_token_budget``: the engine
                forces ``</think>`` at ``t`` (``er_env.backends.vllm``,
                ``use_native_thinking_budget``); vLLM backend only.
=============== ===================================================================

``elastic``, ``s1``, ``qwen3`` and ``truncation`` support nested sweeps
(:mod:`er_env.eval.nested`). A cue/transition is forced only when the budget cut
the thinking (or an EOS ended it); a model that closes its thinking itself keeps
its own ``</think>``. An unconstrained budget (``none``) is one plain pass for
every method, so it is run once, as method ``full``.
"""

from __future__ import annotations

import abc
import contextlib
import difflib
from typing import Any, ClassVar, Iterator, Sequence

from er_env.budget import Budget
from er_env.eval.nested import Generation, NestedStats, from_completion, nested_phased, nested_truncation

__all__ = ["METHODS", "Method", "MethodError", "get_method"]


class MethodError(ValueError):
    """An unknown method, or a method the chosen backend cannot run."""


@contextlib.contextmanager
def _native_budget(backend: Any, on: bool) -> Iterator[None]:
    """Switch a vLLM backend's native thinking budget for one call (other backends: no-op)."""
    if not hasattr(backend, "use_native_thinking_budget"):
        yield
        return
    before = backend.use_native_thinking_budget
    backend.use_native_thinking_budget = on
    try:
        yield
    finally:
        backend.use_native_thinking_budget = before


class Method(abc.ABC):
    """A way of capping generation under ``(t, s)``.

    Attributes:
        name: the ``--methods`` value.
        source: where the method comes from.
        nestable: whether :meth:`generate` shares work across budgets when ``nested``.
    """

    name: ClassVar[str]
    source: ClassVar[str]
    nestable: ClassVar[bool] = False

    def user_suffix(self, budget: Budget) -> str:
        """Text appended to the user turn for ``budget`` (default: none)."""
        return ""

    def check_backend(self, backend: Any) -> None:  # noqa: B027 - optional hook
        """Raise :class:`MethodError` if ``backend`` cannot run this method."""

    @abc.abstractmethod
    def generate(self, backend: Any, prompts: Sequence[Sequence[Sequence[int]]], budgets: Sequence[Budget],
                 sampling: Any, *, nested: bool = True, stats: NestedStats | None = None) -> list[list[Generation]]:
        """Generate every prompt under every budget.

        Args:
            backend: the backend.
            prompts: ``prompts[b][j]``: token ids of sample ``j`` for ``budgets[b]``
                (identical across budgets unless :meth:`user_suffix` depends on the budget).
            budgets: constrained budgets.
            sampling: sampling settings.
            nested: share the thinking across budgets where the method allows it.
            stats: engine-call counters.

        Returns:
            ``out[b][j]``.
        """

    def _each(self, backend: Any, prompts: Any, budgets: Sequence[Budget], sampling: Any,
              stats: NestedStats | None, fn: Any) -> list[list[Generation]]:
        out = []
        for p, b in zip(prompts, budgets, strict=True):
            out.append(fn(p, b))
            if stats is not None:
                stats.engine_calls += 1
        return out


class _Phased(Method):
    """Two phases with a forced transition text (``None``: the tracker's ``</think>``)."""

    nestable = True
    transition: ClassVar[str | None] = None

    def transition_ids(self, backend: Any) -> list[int] | None:
        return None if self.transition is None else backend.encode(self.transition)

    def generate(self, backend, prompts, budgets, sampling, *, nested=True, stats=None):
        ids = self.transition_ids(backend)
        with _native_budget(backend, False):
            if nested:
                return nested_phased(backend, prompts[0], budgets, sampling, ids, stats)
            return [nested_phased(backend, p, [b], sampling, ids, stats)[0]
                    for p, b in zip(prompts, budgets, strict=True)]


class Elastic(_Phased):
    name = "elastic"
    source = "Elastic Reasoning, arXiv 2505.05315 (this project's er_env.budget protocol)"

    def generate(self, backend, prompts, budgets, sampling, *, nested=True, stats=None):
        if nested:
            return super().generate(backend, prompts, budgets, sampling, nested=True, stats=stats)
        with _native_budget(backend, False):
            return self._each(backend, prompts, budgets, sampling, stats,
                              lambda p, b: [from_completion(c) for c in backend.generate(p, b, sampling)])


class S1(_Phased):
    name = "s1"
    source = "s1 budget forcing, Muennighoff et al. 2025, arXiv 2501.19393"
    transition = "</think>\n\nFinal Answer: "


class Qwen3(_Phased):
    name = "qwen3"
    source = "Qwen3 thinking budget, Qwen3 technical report, arXiv 2505.09388"
    transition = ("Considering the limited time by the user, I have to give the solution based on the thinking "
                  "directly now.\n</think>.\n\n")


class Truncation(Method):
    name = "truncation"
    source = "plain max_tokens truncation at t + s"
    nestable = True

    def generate(self, backend, prompts, budgets, sampling, *, nested=True, stats=None):
        caps = [b.think + b.solution for b in budgets]
        with _native_budget(backend, False):
            if nested:
                return nested_truncation(backend, prompts[0], caps, sampling, stats)
            return [nested_truncation(backend, p, [c], sampling, stats)[0] for p, c in zip(prompts, caps, strict=True)]


class L1(Method):
    name = "l1"
    source = "L1 length prompt, Aggarwal & Welleck 2025, arXiv 2503.04697"

    def user_suffix(self, budget: Budget) -> str:
        return f"\n\nThink for {budget.think + budget.solution} tokens."

    def generate(self, backend, prompts, budgets, sampling, *, nested=True, stats=None):
        with _native_budget(backend, False):
            return [nested_truncation(backend, p, [b.think + b.solution], sampling, stats)[0]
                    for p, b in zip(prompts, budgets, strict=True)]


class VLLMNative(Method):
    name = "vllm_native"
    source = "vLLM SamplingParams.thinking_token_budget (er_env.backends.vllm use_native_thinking_budget)"

    def check_backend(self, backend: Any) -> None:  # noqa: B027 - optional hook
        if not hasattr(backend, "use_native_thinking_budget"):
            raise MethodError(
                f"Method 'vllm_native' needs the vllm backend (got {type(backend).__name__}); use --backend vllm "
                "with a vLLM that has SamplingParams.thinking_token_budget, or drop it from --methods."
            )

    def generate(self, backend, prompts, budgets, sampling, *, nested=True, stats=None):
        self.check_backend(backend)
        with _native_budget(backend, True):
            return self._each(backend, prompts, budgets, sampling, stats,
                              lambda p, b: [from_completion(c) for c in backend.generate(p, b, sampling)])


#: method name -> class
METHODS: dict[str, type[Method]] = {m.name: m for m in (Elastic, Truncation, S1, Qwen3, L1, VLLMNative)}


def get_method(name: str) -> Method:
    """The method called ``name``.

    Raises:
        MethodError: unknown name (the message lists the valid ones).
    """
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise MethodError(f"Unknown method {name!r}.{hint} Valid methods: {', '.join(METHODS)}.")
    return METHODS[name]()
