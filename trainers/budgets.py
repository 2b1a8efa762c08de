"""How ``er train`` chooses thinking budgets: one small strategy beside the rollout.

Three strategies share one interface (:meth:`BudgetStrategy.generate`) and differ
only in which budgets a generation batch gets and how many engine passes it takes:

* :class:`FixedBudget`: every completion under the same ``Budget(t, s)``: Elastic
  Reasoning as in the paper (arXiv 2505.05315). One engine call, exactly as before
  priors existed.
* :class:`PriorPerGroup`: one thinking budget ``t`` drawn per GRPO group from a
  :class:`BudgetPrior` (every sample of a group shares its ``t``, so advantages compare
  like with like). With ``subgroups = m > 1`` each group is split into ``m`` equal
  sub-groups of consecutive samples under ``m`` distinct budgets drawn together, as
  HBPO (arXiv 2507.15844) trains sub-groups under different budgets. One engine call
  per distinct ``t`` in the batch.
* :class:`AnytimeCuts`: AnytimeReasoner's layout (arXiv 2505.13438): each GRPO group
  of ``G x K x n`` completions is ``G`` thinking passes, each cut at the group's ``K``
  budgets (drawn from the prior without replacement), with ``n`` solutions sampled at
  every cut. All ``K x n`` completions of a pass are returned to TRL as completions of
  the prompt's group and share the pass's thinking tokens, so a thinking token's
  gradient adds up the advantages of every cut at or after it. The thinking is
  generated once per pass (not ``K`` times), through
  :func:`er_env.eval.nested.cut_and_continue`, the mechanics ``er eval``'s nested
  sweeps use.

Draws are a pure function of ``(seed, rollout call, global group index)``
(:func:`group_rng`), so every process computes the same budget for a group, even a
group split between processes, and every process can compute the budgets of the whole
generation batch (which is what is logged as ``er/think_budget/{mean,min,max}``).

Layout contract (TRL 1.x): the ``RepeatSampler`` repeats each prompt
``num_generations`` times consecutively, and process ``r`` of ``P`` receives the
contiguous slice ``[r * B, (r + 1) * B)`` of the generation batch (``B`` prompts per
process). The global index of local prompt ``i`` is therefore ``r * B + i`` and its
group is that index ``// num_generations``. :meth:`BudgetStrategy.row_budgets` gives the
thinking budget of every row of the generation batch from the same draws (what
:mod:`trainers.advantages` groups rewards by for per-budget baselines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from er_env.budget import Budget, BudgetedCompletion

__all__ = ["AnytimeCuts", "BudgetPrior", "BudgetStrategy", "FixedBudget", "PriorError", "PriorPerGroup",
           "RolloutLayout", "group_rng", "make_strategy"]

#: the forms a prior takes in a recipe (besides a plain integer: a fixed budget)
PRIOR_KINDS = ("budgets", "uniform", "log_uniform")


class PriorError(ValueError):
    """A budget prior is invalid; the message names the field and the fix."""


def _int_budget(name: str, value: Any, scalar: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        what = f"{name} must be a positive integer" if scalar else f"{name}: every budget must be a positive integer"
        raise PriorError(f"{what} (tokens), got {value!r}." if not scalar else f"{what}, got {value!r}.")
    return value


@dataclass(frozen=True)
class BudgetPrior:
    """A distribution over integer token budgets.

    Attributes:
        support: the possible budgets, ascending.
        weights: their probabilities (sum 1).
        kind: ``"fixed"``, ``"budgets"`` (a list with weights), ``"uniform"`` or
            ``"log_uniform"`` (integers of a range; log-uniform gives ``b`` the mass
            ``log((b + 1) / b) / log((hi + 1) / lo)`` of a continuous log-uniform
            law on ``[lo, hi + 1)``, floored).
    """

    support: tuple[int, ...]
    weights: tuple[float, ...]
    kind: str = "budgets"

    @property
    def fixed(self) -> bool:
        """One budget only."""
        return len(self.support) == 1

    @property
    def max(self) -> int:
        """The largest budget (what sizes the context and ``max_completion_length``)."""
        return self.support[-1]

    def describe(self) -> str:
        """Short text for the dry-run plan."""
        if self.fixed:
            return str(self.support[0])
        if self.kind in ("uniform", "log_uniform"):
            return f"{self.kind}[{self.support[0]}, {self.support[-1]}]"
        return "{" + ", ".join(f"{b}: {w:.3g}" for b, w in zip(self.support, self.weights, strict=True)) + "}"

    @classmethod
    def parse(cls, value: Any, name: str = "think_budget_tokens") -> "BudgetPrior":
        """A prior from a recipe value.

        Accepted forms: ``1024`` (fixed); ``[256, 512, 1024]`` (equal weights);
        ``{budgets: [256, 1024], weights: [3, 1]}``; ``{uniform: [256, 1024]}``;
        ``{log_uniform: [256, 4096]}``.

        Raises:
            PriorError: a non-positive budget, weights that do not match the budgets or
                do not sum to a positive number, a range with ``lo > hi``, an unknown form.
        """
        if isinstance(value, BudgetPrior):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls((_int_budget(name, value, scalar=True),), (1.0,), "fixed")
        if isinstance(value, (list, tuple)):
            value = {"budgets": list(value)}
        if not isinstance(value, Mapping):
            raise PriorError(f"{name} must be a positive integer or a prior ({{budgets: [...], weights: [...]}}, "
                             f"{{uniform: [lo, hi]}} or {{log_uniform: [lo, hi]}}), got {value!r}.")
        keys = set(value)
        kinds = [k for k in PRIOR_KINDS if k in keys]
        extra = keys - set(PRIOR_KINDS) - {"weights"}
        if len(kinds) != 1 or extra or ("weights" in keys and kinds != ["budgets"]):
            raise PriorError(f"{name}: a prior has exactly one of {list(PRIOR_KINDS)} (weights only with budgets); "
                             f"got the keys {sorted(map(str, keys))}.")
        kind = kinds[0]
        if kind == "budgets":
            budgets = value["budgets"]
            if not isinstance(budgets, (list, tuple)) or not budgets:
                raise PriorError(f"{name}.budgets must be a non-empty list of positive integers, got {budgets!r}.")
            bs = [_int_budget(f"{name}.budgets", b) for b in budgets]
            weights = value.get("weights", [1.0] * len(bs))
            if not isinstance(weights, (list, tuple)) or len(weights) != len(bs):
                raise PriorError(f"{name}.weights must be a list with one weight per budget ({len(bs)}), got "
                                 f"{weights!r}.")
            ws = []
            for w in weights:
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                    raise PriorError(f"{name}.weights must be finite numbers >= 0, got {w!r} in {list(weights)}.")
                ws.append(float(w))
            if len(set(bs)) != len(bs):
                raise PriorError(f"{name}.budgets lists a budget twice ({bs}); merge them and add their weights.")
            total = sum(ws)
            if not total > 0:
                raise PriorError(f"{name}.weights must sum to a positive number, got {list(weights)} (sum {total}); "
                                 "give at least one budget a positive weight.")
            pairs = sorted((b, w / total) for b, w in zip(bs, ws, strict=True) if w > 0)
            return cls(tuple(b for b, _ in pairs), tuple(w for _, w in pairs), "budgets")
        rng = value[kind]
        if not isinstance(rng, (list, tuple)) or len(rng) != 2:
            raise PriorError(f"{name}.{kind} must be [lo, hi] (two positive integers), got {rng!r}.")
        lo, hi = (_int_budget(f"{name}.{kind}", x) for x in rng)
        if lo > hi:
            raise PriorError(f"{name}.{kind}: lo={lo} > hi={hi}; write [{hi}, {lo}].")
        support = tuple(range(lo, hi + 1))
        if kind == "uniform":
            raw = [1.0] * len(support)
        else:
            raw = [math.log1p(1 / b) for b in support]
        total = sum(raw)
        return cls(support, tuple(w / total for w in raw), kind)

    def draw(self, rng: Any, k: int = 1) -> list[int]:
        """``k`` distinct budgets, ascending (weighted sampling without replacement).

        Raises:
            PriorError: ``k`` exceeds the number of budgets with positive weight.
        """
        if k > len(self.support):
            raise PriorError(f"Cannot draw {k} distinct budgets from a prior with {len(self.support)}.")
        if self.fixed:
            return [self.support[0]]
        idx = rng.choice(len(self.support), size=k, replace=False, p=list(self.weights))
        return sorted(self.support[i] for i in idx)


def group_rng(seed: int, call: int, group: int) -> Any:
    """The generator that draws group ``group``'s budgets at rollout call ``call``.

    A pure function of its arguments, so every process gets the same draws without
    communicating.
    """
    import numpy as np

    return np.random.default_rng([int(seed) % 2**63, int(call), int(group)])


@dataclass(frozen=True)
class RolloutLayout:
    """Where a process's prompts sit in the generation batch.

    Attributes:
        process_index: this process's rank.
        num_processes: processes in the job.
        num_generations: TRL's group size (completions per prompt).
        seed: the seed of the budget draws.
        call: the rollout call number (the same on every process).
    """

    process_index: int
    num_processes: int
    num_generations: int
    seed: int
    call: int

    @classmethod
    def from_trainer(cls, trainer: Any, seed: int | None, call: int) -> "RolloutLayout":
        """The layout of a ``GRPOTrainer`` (seed: the sampling seed, else ``args.seed``)."""
        acc = getattr(trainer, "accelerator", None)
        args = getattr(trainer, "args", None)
        return cls(getattr(acc, "process_index", 0), getattr(acc, "num_processes", 1),
                   int(getattr(args, "num_generations", 1) or 1),
                   seed if seed is not None else int(getattr(args, "seed", 0) or 0), call)

    def groups(self, n_local: int) -> list[int]:
        """Global group index of each local prompt."""
        start = self.process_index * n_local
        return [(start + i) // self.num_generations for i in range(n_local)]

    def all_groups(self, n_local: int) -> range:
        """Every group of the generation batch (all processes)."""
        return range(-(-self.num_processes * n_local // self.num_generations))


class BudgetStrategy:
    """Chooses budgets for a generation batch and generates under them.

    Attributes:
        base: the budget whose ``solution``, ``eos_in_thinking`` and
            ``train_forced_token`` every drawn budget keeps.
    """

    base: Budget
    #: tokens the engine sampled in the last :meth:`generate` (this process; the forced
    #: ``</think>`` not counted; anytime rollouts count each shared thinking pass once)
    generated_tokens: int = 0

    def cuts(self, layout: RolloutLayout, group: int) -> list[int]:
        """The thinking budgets of ``group`` (ascending)."""
        raise NotImplementedError

    def row_budget(self, cuts: Sequence[int], position: int, group_size: int) -> int:
        """The thinking budget of the sample at ``position`` of a group whose budgets are ``cuts``."""
        return cuts[0]

    def row_budgets(self, layout: RolloutLayout, n_local: int) -> list[int]:
        """The thinking budget of every row of the generation batch (all processes, in order).

        The same list on every process (a pure function of the layout). Rows without a
        thinking budget (``think=None``) get 0.
        """
        size = layout.num_generations
        rows = layout.num_processes * n_local
        out = []
        for g in layout.all_groups(n_local):
            cuts = self.cuts(layout, g) or [0]
            out += [self.row_budget(cuts, q, size) for q in range(size)]
        return out[:rows]

    def generate(self, backend: Any, prompt_ids: Sequence[Sequence[int]], sampling: Any,
                 layout: RolloutLayout) -> list[BudgetedCompletion]:
        """One completion per prompt, in order."""
        raise NotImplementedError

    def batch_budgets(self, layout: RolloutLayout, n_local: int) -> list[int]:
        """Every thinking budget of the generation batch (all processes; for logging)."""
        return [t for g in layout.all_groups(n_local) for t in self.cuts(layout, g)]

    def _budget(self, think: int) -> Budget:
        b = self.base
        return Budget(think=think, solution=b.solution, eos_in_thinking=b.eos_in_thinking,
                      train_forced_token=b.train_forced_token)


@dataclass
class FixedBudget(BudgetStrategy):
    """The paper's rollout: one ``Budget`` for everything, one engine call."""

    base: Budget

    def cuts(self, layout: RolloutLayout, group: int) -> list[int]:  # noqa: D102 - see BudgetStrategy
        return [self.base.think] if self.base.think is not None else []

    def generate(self, backend: Any, prompt_ids: Sequence[Sequence[int]], sampling: Any,
                 layout: RolloutLayout) -> list[BudgetedCompletion]:
        """One engine call under the fixed budget (the rollout as it was before priors)."""
        out = list(backend.generate(prompt_ids, self.base, sampling))
        self.generated_tokens = sum(c.thinking_tokens + c.solution_tokens for c in out)
        return out


@dataclass
class PriorPerGroup(BudgetStrategy):
    """Thinking budgets per GRPO group, drawn from ``prior``.

    With ``subgroups = 1`` (the default) one budget per group. With ``m > 1``, ``m``
    distinct budgets are drawn per group (ascending) and the group's ``G / m`` consecutive
    samples of sub-group ``j`` get the ``j``-th (HBPO's layout).
    """

    base: Budget
    prior: BudgetPrior
    subgroups: int = 1

    def cuts(self, layout: RolloutLayout, group: int) -> list[int]:  # noqa: D102 - see BudgetStrategy
        return self.prior.draw(group_rng(layout.seed, layout.call, group), self.subgroups)

    def row_budget(self, cuts: Sequence[int], position: int, group_size: int) -> int:  # noqa: D102
        return cuts[position // (group_size // len(cuts))] if len(cuts) > 1 else cuts[0]

    def generate(self, backend: Any, prompt_ids: Sequence[Sequence[int]], sampling: Any,
                 layout: RolloutLayout) -> list[BudgetedCompletion]:
        """One engine call per distinct drawn budget (the first keeps the call's seed, the others are reseeded)."""
        from er_env.eval.nested import reseeded

        start = layout.process_index * len(prompt_ids)
        rows = self.row_budgets(layout, len(prompt_ids))
        think = rows[start:start + len(prompt_ids)]
        out: list[BudgetedCompletion | None] = [None] * len(prompt_ids)
        for k, t in enumerate(sorted(set(think))):  # one engine call per distinct budget, each its own seed
            idx = [i for i, x in enumerate(think) if x == t]
            call_sampling = reseeded(sampling, k) if k else sampling
            res = backend.generate([prompt_ids[i] for i in idx], self._budget(t), call_sampling)
            for i, c in zip(idx, res, strict=True):
                out[i] = c
        self.generated_tokens = sum(c.thinking_tokens + c.solution_tokens for c in out if c is not None)
        return out  # type: ignore[return-value]


@dataclass
class AnytimeCuts(BudgetStrategy):
    """``K`` cuts of one thinking pass, ``n`` solutions per cut (AnytimeReasoner's layout).

    Each run of ``K * n`` consecutive prompts of a process is one thinking pass (the
    config checks that a process's slice holds whole passes); completion ``b * n + m``
    of a pass is solution ``m`` at the ``b``-th smallest cut.
    """

    base: Budget
    prior: BudgetPrior
    k: int
    n: int = 1
    stats: Any = field(default=None)

    def cuts(self, layout: RolloutLayout, group: int) -> list[int]:  # noqa: D102 - see BudgetStrategy
        return self.prior.draw(group_rng(layout.seed, layout.call, group), self.k)

    def row_budget(self, cuts: Sequence[int], position: int, group_size: int) -> int:  # noqa: D102
        return cuts[(position % (self.k * self.n)) // self.n]

    def generate(self, backend: Any, prompt_ids: Sequence[Sequence[int]], sampling: Any,
                 layout: RolloutLayout) -> list[BudgetedCompletion]:
        """One thinking pass per ``K x n`` prompts, through :func:`er_env.eval.nested.cut_and_continue`."""
        from er_env.eval.nested import NestedStats, cut_and_continue

        per = self.k * self.n
        if len(prompt_ids) % per:
            raise ValueError(f"Anytime rollouts got {len(prompt_ids)} prompts, not a whole number of thinking passes "
                             f"of anytime_cuts x anytime_solutions = {per} completions; the per-process batch must be "
                             "a multiple of it.")
        groups = layout.groups(len(prompt_ids))
        passes = range(0, len(prompt_ids), per)
        for s in passes:
            if len({tuple(prompt_ids[i]) for i in range(s, s + per)}) != 1:
                raise ValueError(f"Anytime rollouts: prompts {s}..{s + per - 1} of this process are not copies of "
                                 "one prompt; the group layout does not hold whole thinking passes.")
        cuts = [[self._budget(t) for t in self.cuts(layout, groups[s])] for s in passes]
        self.stats = NestedStats()
        out = cut_and_continue(backend, [prompt_ids[s] for s in passes], cuts, sampling, self.n, None, self.stats)
        flat = [c for per_pass in out for per_cut in per_pass for c in per_cut]
        self.generated_tokens = sum(c.generated_tokens for c in flat)
        return [c.completion for c in flat]


def make_strategy(base: Budget, prior: BudgetPrior | None = None, anytime_cuts: int = 0,
                  anytime_solutions: int = 1, subgroups: int = 1) -> BudgetStrategy:
    """The strategy a config asks for.

    Args:
        base: the fixed budget (its ``think`` is replaced by the drawn budgets).
        prior: the thinking-budget prior (``None`` or fixed: :class:`FixedBudget`,
            unless anytime rollouts are on).
        anytime_cuts: ``K`` (0: no anytime rollouts).
        anytime_solutions: ``n``.
        subgroups: ``m`` budgets per group, one per sub-group (1: one per group).

    Raises:
        PriorError: ``K`` or ``m`` larger than the prior's distinct budgets.
    """
    if prior is None and base.think is not None:
        prior = BudgetPrior((base.think,), (1.0,), "fixed")
    if anytime_cuts or anytime_solutions > 1:
        assert prior is not None
        k = max(anytime_cuts, 1)
        if k > len(prior.support):
            raise PriorError(f"anytime_cuts={k} cuts need {k} distinct budgets, but think_budget_tokens has "
                             f"{len(prior.support)} ({prior.describe()}); lower anytime_cuts or widen the prior.")
        return AnytimeCuts(base, prior, k, anytime_solutions)
    if subgroups > 1:
        assert prior is not None
        if subgroups > len(prior.support):
            raise PriorError(f"budget_subgroups={subgroups} sub-groups need {subgroups} distinct budgets, but "
                             f"think_budget_tokens has {len(prior.support)} ({prior.describe()}); lower "
                             "budget_subgroups or widen the prior.")
        return PriorPerGroup(base, prior, subgroups)
    if prior is None or prior.fixed:
        return FixedBudget(base)
    return PriorPerGroup(base, prior)
