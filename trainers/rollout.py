"""Elastic Reasoning rollouts for TRL's ``GRPOTrainer`` (its ``rollout_func`` hook).

Elastic Reasoning (arXiv 2505.05315) trains with *budget-constrained rollouts*: the
thinking phase is cut at ``t`` tokens, ``</think>`` is forced, and the solution gets at
most ``s`` more tokens. :class:`ElasticRolloutFunc` plugs that protocol into TRL: TRL
calls it with the prompts of one generation batch and gets back ``prompt_ids``,
``completion_ids``, ``logprobs`` and ``env_mask`` (TRL's tool mask: 1 = sampled by the
policy and trained on, 0 = forced by the environment and left out of the loss).

How TRL 1.x calls it (``GRPOTrainer._generate``): ``rollout_func(prompts, trainer)``
receives this process's slice of the generation batch. The ``RepeatSampler`` has
already repeated each dataset row ``num_generations`` times, so the function returns
exactly ONE completion per prompt it receives, in order (a GRPO group may span
processes; TRL gathers rewards before normalising them per group).

Dataset contract (:func:`problems_to_dataset`): the ``prompt`` column holds the
:attr:`~er_env.data.schema.Problem.id` (the rollout function only sees prompts, so the
id is its key into the problem set it was built with), and ``er_problem`` holds the
problem as JSON for the reward functions (:mod:`trainers.rewards`). Chat templating
happens here, per task, with :func:`er_env.data.templates.render_prompt`.

Policy weights: with the default backend (``hf``) every call generates with the
trainer's *current* policy: ``trainer.model_wrapped`` unwrapped for generation (DDP;
DeepSpeed ZeRO-3 parameters gathered; FSDP full parameters summoned), in eval mode under
``torch.no_grad()``, then put back in train mode. Nothing is copied, so a rollout can
never use stale weights. ZeRO-3 with ``ds3_gather_for_generation=False`` is refused (the
HF backend needs whole weights). These multi-GPU paths follow TRL's own generation code
but have not been run by this project's tests (CPU only).

vLLM (``backend="vllm"``, the E1 recipes' default): with ``GRPOConfig(use_vllm=True)``
(``vllm_mode`` ``"colocate"`` or ``"server"``) the two phases run as two batched calls on
TRL's own vLLM engine, whose weights TRL syncs from the policy before each rollout; see
:mod:`trainers.vllm_rollout`. ``backend="hf"`` on a vLLM trainer (and the reverse) is
refused: the rollout would ignore the engine TRL keeps in sync.

Logprobs: sampled tokens carry the backend's sampling logprob; forced ``</think>``
tokens carry ``nan``, which TRL reads as "no sampling logprob" (no importance-sampling
correction, excluded from the off-policy statistics) rather than a made-up value.

Extra fields returned for reward functions and logging (one value per completion):
``er_completion_text`` (the decoded completion with ``</think>`` kept: TRL's own
``completions`` are decoded with ``skip_special_tokens=True`` and can lose it),
``er_problem_id``, ``thinking_tokens``, ``solution_tokens``, ``thinking_truncated``,
``think_finish_reason``, ``finish_reason``, and ``er_think_budget`` (the thinking budget
the completion was generated under: the drawn one with a prior, the cut with anytime
rollouts; budget-aware rewards read it).

Example:
    >>> from trl import GRPOConfig, GRPOTrainer  # doctest: +SKIP
    >>> problems = load_problems("embedded:math")  # doctest: +SKIP
    >>> trainer = GRPOTrainer(  # doctest: +SKIP
    ...     model=path, reward_funcs=[make_reward_func("math")], train_dataset=problems_to_dataset(problems),
    ...     args=GRPOConfig(num_generations=4, ...),
    ...     rollout_func=ElasticRolloutFunc(problems, Budget(think=1024, solution=1024)))

"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from typing import Any, Callable, Iterator, Mapping, Sequence

from er_env.backends.base import Backend, BackendError, SamplingConfig
from er_env.budget import Budget, BudgetedCompletion
from er_env.data.schema import Problem
from er_env.data.templates import render_prompt
from er_env.rollout import decode_completion
from trainers.budgets import BudgetStrategy, FixedBudget, RolloutLayout

__all__ = [
    "PROBLEM_COLUMN",
    "TEXT_FIELD",
    "BackendFactory",
    "ElasticRolloutFunc",
    "completions_to_trl",
    "current_policy",
    "hf_policy_backend",
    "make_rollout_func",
    "problems_to_dataset",
]

#: dataset column carrying the problem as JSON (read by :mod:`trainers.rewards`)
PROBLEM_COLUMN = "er_problem"
#: extra rollout field carrying the decoded completion, ``</think>`` kept
TEXT_FIELD = "er_completion_text"
#: extra rollout field carrying each completion's thinking budget (0: none)
BUDGET_FIELD = "er_think_budget"

#: builds a backend bound to the given (current) policy model and tokenizer
BackendFactory = Callable[[Any, Any], Backend]

#: training generation backends: the live HF policy, or TRL's own vLLM
ROLLOUT_BACKENDS = ("hf", "vllm")


def problems_to_dataset(problems: Sequence[Problem]) -> Any:
    """A ``datasets.Dataset`` GRPOTrainer can train on with :class:`ElasticRolloutFunc`.

    Args:
        problems: the training problems (ids must be unique).

    Returns:
        A dataset with columns ``prompt`` (the problem id), ``er_problem`` (the
        problem as JSON) and ``task``.

    Raises:
        ValueError: no problems, or duplicate ids.

    """
    import datasets

    if not problems:
        raise ValueError("problems_to_dataset got no problems; check the dataset name, split and limit.")
    ids = [p.id for p in problems]
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dupes:
        raise ValueError(f"Problem ids must be unique (they key the rollout); duplicated: {dupes[:5]}.")
    return datasets.Dataset.from_dict({
        "prompt": ids,
        PROBLEM_COLUMN: [json.dumps(p.to_dict(), ensure_ascii=False) for p in problems],
        "task": [p.task for p in problems],
    })


def hf_policy_backend(batch_size: int = 16) -> BackendFactory:
    """The default factory: an :class:`~er_env.backends.hf.HFBackend` around the live policy.

    Args:
        batch_size: rows decoded together (longer prompt lists are split).

    Returns:
        ``factory(model, tokenizer) -> HFBackend`` (no weights are copied or moved).

    """

    def factory(model: Any, tokenizer: Any) -> Backend:
        from er_env.backends.hf import HFBackend

        return HFBackend(model, tokenizer, device=None, batch_size=batch_size)

    return factory


@contextlib.contextmanager
def current_policy(trainer: Any) -> Iterator[Any]:
    """The trainer's current policy, ready for generation, restored afterwards.

    Mirrors TRL's own generation path: ``unwrap_model_for_generation`` (DeepSpeed
    ZeRO-3 gather, gradient checkpointing off), FSDP full parameters, ``no_grad`` and
    eval mode; the previous train/eval mode is restored on exit.

    Args:
        trainer: a ``trl.GRPOTrainer``.

    Yields:
        The unwrapped model.

    Raises:
        NotImplementedError: DeepSpeed ZeRO-3 without ``ds3_gather_for_generation``.

    """
    import torch
    from trl.models.utils import unwrap_model_for_generation

    args = trainer.args
    plugin = getattr(getattr(trainer.accelerator, "state", None), "deepspeed_plugin", None)
    if getattr(plugin, "zero_stage", None) == 3 and not getattr(args, "ds3_gather_for_generation", True):
        raise NotImplementedError("Elastic Reasoning rollouts under DeepSpeed ZeRO-3 need whole weights: set "
                                  "ds3_gather_for_generation: true (the default) in the grpo settings.")
    dist = getattr(trainer, "_dist", None)  # TRL's FSDP/DeepSpeed helper (private; absent in older TRL)
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(unwrap_model_for_generation(
            trainer.model_wrapped, trainer.accelerator,
            gather_deepspeed3_params=getattr(args, "ds3_gather_for_generation", True),
            gradient_checkpointing_kwargs=getattr(args, "activation_checkpointing_kwargs",
                                                  getattr(args, "gradient_checkpointing_kwargs", None)),
        ))
        stack.enter_context(torch.no_grad())
        if dist is not None and hasattr(dist, "summon_full_params"):
            stack.enter_context(dist.summon_full_params(trainer.model_wrapped, recurse=False))
        was_training = model.training
        model.eval()
        try:
            yield model
        finally:
            model.train(was_training)


def _trl_logprobs(c: BudgetedCompletion) -> list[float]:
    """Sampling logprobs with forced positions as ``nan`` (TRL: no correction there)."""
    return [math.nan if forced else float(lp) for lp, forced in zip(c.logprobs, c.forced_mask, strict=True)]


def completions_to_trl(
    completions: Sequence[BudgetedCompletion], problems: Sequence[Problem], texts: Sequence[str]
) -> dict[str, list[Any]]:
    """Turn budgeted completions into the dict TRL's ``rollout_func`` returns.

    Args:
        completions: one finished record per prompt.
        problems: the problem of each completion.
        texts: decoded completions (``</think>`` kept).

    Returns:
        ``prompt_ids``, ``completion_ids``, ``logprobs`` (``None`` when the backend
        returned none), ``env_mask`` and the extra fields listed in the module docstring.

    Raises:
        BackendError: an empty completion (TRL cannot train on it).

    """
    for i, c in enumerate(completions):
        if not c.completion_ids:
            raise BackendError(f"Completion {i} for problem {problems[i].id!r} is empty; the prompt likely fills "
                               "the model context. Shorten the prompt or raise the context length.")
    have_logprobs = all(len(c.logprobs) == len(c.completion_ids) for c in completions)
    return {
        "prompt_ids": [list(c.prompt_ids) for c in completions],
        "completion_ids": [list(c.completion_ids) for c in completions],
        "logprobs": [_trl_logprobs(c) for c in completions] if have_logprobs else None,
        "env_mask": [list(c.env_mask) for c in completions],
        TEXT_FIELD: list(texts),
        "er_problem_id": [p.id for p in problems],
        "thinking_tokens": [c.thinking_tokens for c in completions],
        "solution_tokens": [c.solution_tokens for c in completions],
        "thinking_truncated": [c.thinking_truncated for c in completions],
        "think_finish_reason": [c.think_finish_reason for c in completions],
        "finish_reason": [c.finish_reason for c in completions],
    }


class ElasticRolloutFunc:
    """A TRL ``rollout_func`` that generates under an Elastic Reasoning budget.

    Args:
        problems: the training problems; prompts are looked up by id.
        budget: the thinking/solution budgets (``train_forced_token`` decides
            whether forced ``</think>`` tokens get ``env_mask`` 1).
        sampling: sampling settings. With a ``seed``, call ``k`` on process ``r`` of
            ``n`` samples with seed ``seed + k * n + r`` (reproducible, never repeated).
        backend_factory: ``factory(policy_model, tokenizer) -> Backend``, called on
            every rollout with the current policy (default: :func:`hf_policy_backend`);
            only for ``backend="hf"``.
        template: prompt template name (default: per task).
        backend: ``"hf"`` (the live policy, through ``backend_factory``) or ``"vllm"``
            (TRL's own vLLM engine; the trainer needs ``use_vllm=True``).
        strategy: how budgets are chosen (:mod:`trainers.budgets`; default: ``budget``
            for every completion, one engine call). Priors and anytime rollouts log
            ``er/think_budget/{mean,min,max}`` over the whole generation batch; every
            rollout logs ``er/generated_tokens``, the tokens the engine sampled per
            process (anytime rollouts count a shared thinking pass once).

    Raises:
        ValueError: no problems, duplicate ids, a bad ``budget``/``sampling`` type, or
            an unknown backend.

    """

    def __init__(
        self,
        problems: Sequence[Problem],
        budget: Budget,
        sampling: SamplingConfig | None = None,
        *,
        backend_factory: BackendFactory | None = None,
        template: str | None = None,
        backend: str = "hf",
        strategy: BudgetStrategy | None = None,
    ) -> None:
        if backend not in ROLLOUT_BACKENDS:
            raise ValueError(f"Unknown rollout backend {backend!r}; use one of {ROLLOUT_BACKENDS}.")
        if backend == "vllm" and backend_factory is not None:
            raise ValueError("backend_factory builds HF-style backends around the policy; backend 'vllm' uses TRL's "
                             "own engine. Pass one or the other.")
        if not isinstance(budget, Budget):
            raise ValueError(f"budget must be an er_env.budget.Budget, got {budget!r}.")
        if sampling is not None and not isinstance(sampling, SamplingConfig):
            raise ValueError(f"sampling must be an er_env.backends.base.SamplingConfig, got {sampling!r}.")
        self.problems_by_id: dict[str, Problem] = {}
        for p in problems:
            if p.id in self.problems_by_id:
                raise ValueError(f"Duplicate problem id {p.id!r}; ids key the rollout and must be unique.")
            self.problems_by_id[p.id] = p
        if not self.problems_by_id:
            raise ValueError("ElasticRolloutFunc got no problems.")
        self.budget = budget
        self.strategy = strategy or FixedBudget(budget)
        self.sampling = sampling or SamplingConfig()
        self.backend_name = backend
        self.backend_factory = backend_factory or hf_policy_backend()
        self.template = template
        self._vllm_backend: tuple[Any, Backend] | None = None
        self.calls = 0
        #: the thinking budget of every row of the last generation batch (all processes; see
        #: BudgetStrategy.row_budgets): what per-budget baselines group rewards by
        self.last_row_budgets: list[int] = []
        self._prompt_cache: dict[str, list[int]] = {}
        self.__name__ = "elastic_rollout"

    def lookup(self, prompt: Any) -> Problem:
        """The problem a TRL prompt refers to (its id, or a Problem JSON/dict).

        Raises:
            KeyError: an unknown id, naming the dataset contract.

        """
        if isinstance(prompt, Problem):
            return prompt
        if isinstance(prompt, Mapping):
            return Problem.from_dict(prompt)
        if isinstance(prompt, str) and prompt in self.problems_by_id:
            return self.problems_by_id[prompt]
        raise KeyError(
            f"Prompt {str(prompt)[:80]!r} is not a problem id of this rollout function. Build the train dataset "
            "with trainers.rollout.problems_to_dataset(problems) and pass the same problems here."
        )

    def _prompt_ids(self, problem: Problem, tokenizer: Any) -> list[int]:
        if problem.id not in self._prompt_cache:
            self._prompt_cache[problem.id] = render_prompt(problem, tokenizer, self.template)[1]
        return self._prompt_cache[problem.id]

    def _sampling_for_call(self, trainer: Any) -> SamplingConfig:
        if self.sampling.seed is None:
            return self.sampling
        acc = getattr(trainer, "accelerator", None)
        n, r = getattr(acc, "num_processes", 1), getattr(acc, "process_index", 0)
        return dataclasses.replace(self.sampling, seed=self.sampling.seed + self.calls * n + r)

    def _check_temperature(self, trainer: Any) -> None:
        """TRL scores tokens at ``args.temperature``; sampling at another one would train a different policy."""
        trl_temperature = getattr(getattr(trainer, "args", None), "temperature", None)
        if trl_temperature is not None and not math.isclose(float(trl_temperature), self.sampling.temperature):
            raise ValueError(
                f"The rollout samples at temperature {self.sampling.temperature} but GRPOConfig.temperature is "
                f"{trl_temperature}; TRL computes the policy's logprobs at its own temperature. Set both to the "
                "same value (ERTrainConfig.temperature does)."
            )

    def _check_backend(self, trainer: Any) -> None:
        uses_vllm = bool(getattr(trainer, "use_vllm", False))
        if uses_vllm and self.backend_name != "vllm":
            raise ValueError("The trainer runs TRL's vLLM (use_vllm=True) but this rollout uses backend 'hf', which "
                             "would ignore it; use backend 'vllm' (ERTrainConfig backend: vllm), or use_vllm=False.")
        if not uses_vllm and self.backend_name == "vllm":
            raise ValueError("backend 'vllm' generates on TRL's vLLM engine, but the trainer has use_vllm=False; "
                             "build it with use_vllm=True (ERTrainConfig backend: vllm does), or use backend 'hf'.")

    def _trl_vllm(self, trainer: Any, tokenizer: Any) -> Backend:
        """The backend on ``trainer.vllm_generation`` (built once per trainer)."""
        if self._vllm_backend is None or self._vllm_backend[0] is not trainer:
            from trainers.vllm_rollout import trl_vllm_backend

            self._vllm_backend = (trainer, trl_vllm_backend(trainer, tokenizer))
        return self._vllm_backend[1]

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, list[Any]]:
        """Generate one budgeted completion per prompt with the trainer's current policy.

        Args:
            prompts: this process's prompts (problem ids), already repeated per group.
            trainer: the ``GRPOTrainer``.

        Returns:
            See :func:`completions_to_trl`.

        Raises:
            ValueError: the sampling temperature differs from ``GRPOConfig.temperature``,
                or the backend does not match ``use_vllm``.
            KeyError: a prompt is not a known problem id.
            BackendError: generation failed or returned the wrong number of completions.

        """
        self._check_backend(trainer)
        self._check_temperature(trainer)
        problems = [self.lookup(p) for p in prompts]
        pc = trainer.processing_class
        tokenizer = getattr(pc, "tokenizer", pc)  # a processor wraps its tokenizer
        prompt_ids = [self._prompt_ids(p, tokenizer) for p in problems]
        sampling = self._sampling_for_call(trainer)
        layout = RolloutLayout.from_trainer(trainer, self.sampling.seed, self.calls)
        if self.backend_name == "vllm":  # TRL synced its engine's weights before calling us
            backend = self._trl_vllm(trainer, tokenizer)
            completions = self.strategy.generate(backend, prompt_ids, sampling, layout)
        else:
            with current_policy(trainer) as model:
                backend = self.backend_factory(model, tokenizer)
                completions = self.strategy.generate(backend, prompt_ids, sampling, layout)
        self.calls += 1
        self.last_row_budgets = self.strategy.row_budgets(layout, len(prompts))  # the same on every process
        log = getattr(trainer, "_log_metric", None)
        if callable(log):
            log("er/generated_tokens", float(self.strategy.generated_tokens))
        if not isinstance(self.strategy, FixedBudget) and callable(log):
            drawn = self.strategy.batch_budgets(layout, len(prompts))  # the same on every process
            for name, value in (("mean", sum(drawn) / len(drawn)), ("min", min(drawn)), ("max", max(drawn))):
                log(f"er/think_budget/{name}", float(value))
        if len(completions) != len(prompts):
            raise BackendError(f"Backend returned {len(completions)} completions for {len(prompts)} prompts.")
        texts = [decode_completion(tokenizer, c.completion_ids, backend.special.eos) for c in completions]
        out = completions_to_trl(completions, problems, texts)
        start = layout.process_index * len(prompts)
        out[BUDGET_FIELD] = self.last_row_budgets[start:start + len(prompts)]
        return out


def make_rollout_func(
    problems: Sequence[Problem],
    budget: Budget,
    sampling: SamplingConfig | None = None,
    *,
    backend: str = "hf",
    backend_factory: BackendFactory | None = None,
    hf_batch_size: int = 16,
    template: str | None = None,
    strategy: BudgetStrategy | None = None,
) -> ElasticRolloutFunc:
    """Build the ``rollout_func`` for ``GRPOTrainer``.

    Args:
        problems: the training problems (the dataset from :func:`problems_to_dataset`).
        budget: thinking/solution budgets.
        sampling: sampling settings (temperature, top-p, seed...).
        backend: ``"hf"`` (generate with the trainer's live policy) or ``"vllm"``
            (TRL's own vLLM engine, ``use_vllm=True``; see :mod:`trainers.vllm_rollout`).
        backend_factory: overrides ``backend="hf"``: ``factory(policy_model, tokenizer)``.
        hf_batch_size: rows decoded together by the HF backend.
        template: prompt template name (default: per task).
        strategy: how budgets are chosen (default: ``budget`` for everything; see
            :func:`trainers.budgets.make_strategy`).

    Returns:
        The rollout function.

    Raises:
        ValueError: an unknown backend, or see :class:`ElasticRolloutFunc`.

    """
    if backend not in ROLLOUT_BACKENDS:
        raise ValueError(f"Unknown training backend {backend!r}; use one of {ROLLOUT_BACKENDS} (or pass "
                         "backend_factory=...).")
    if backend == "hf" and backend_factory is None:
        backend_factory = hf_policy_backend(hf_batch_size)
    return ElasticRolloutFunc(problems, budget, sampling, backend_factory=backend_factory, template=template,
                              backend=backend, strategy=strategy)
