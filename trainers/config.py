"""``ERTrainConfig``: one GRPO + Elastic Reasoning training run, loadable from a YAML recipe.

A recipe (``trainers/recipes/*.yaml``) is a flat mapping of :class:`ERTrainConfig`
fields; TRL ``GRPOConfig`` settings go under ``grpo:``. Unknown keys are rejected
(with the closest valid name), and so are ``grpo`` keys that this config owns
(``num_generations`` is ``group_size``, ``temperature`` is ``temperature``...), so
one setting never has two homes.

Example:
    >>> cfg = ERTrainConfig(model="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", dataset="embedded:math")
    >>> cfg.think_budget_tokens, cfg.solution_budget_tokens, cfg.group_size
    (1024, 1024, 8)

"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from er_env.rewards.base import ON_REWARD_ERROR

__all__ = ["BACKENDS", "RECIPES_DIR", "RESERVED_GRPO_KEYS", "ConfigError", "ERTrainConfig", "load_recipe",
           "resolve_recipe_path"]

#: the recipes shipped with the package
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
#: training generation backends: ``hf`` (the live policy, CPU fallback) or ``vllm`` (TRL's own vLLM)
BACKENDS = ("hf", "vllm")
VLLM_MODES = ("colocate", "server")
#: what a reward outage past ``reward_retry_s`` does: stop the run with a checkpoint, or drop the groups
ON_REWARD_OUTAGE = ("fail", "drop")

#: GRPOConfig fields set from ERTrainConfig fields (``grpo`` key -> the field to use instead)
RESERVED_GRPO_KEYS = {
    "num_generations": "group_size",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_completion_length": "think_budget_tokens / solution_budget_tokens",
    "use_vllm": "backend",
    "vllm_mode": "vllm_mode",
    "output_dir": "output_dir",
    "remove_unused_columns": "(nothing: the reward functions need the er_problem column)",
    "ddp_timeout": "rendezvous_timeout_s",
}


class ConfigError(ValueError):
    """A training config or recipe is invalid; the message quotes the value and names the fix."""


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


@dataclass
class ERTrainConfig:
    """Settings of one Elastic Reasoning GRPO run (``er train``).

    > Parameters that control the model and data

    Attributes:
        model: hub name or local path of the policy; ``"tiny"`` builds er_env's tiny
            test model under ``<output_dir>/tiny-model``.
        dataset: a name from ``er_env.data.available_datasets()`` or a local
            ``.json``/``.jsonl``/``.parquet`` path.
        dataset_split: split to load (``None``: the dataset's default).
        dataset_config: hub configuration (subset), e.g. ``lcbv5``.
        dataset_limit: keep only the first N problems.
        dataset_format: row format of a dataset file (``None``: detected from the rows;
            see ``er_env.data.formats.ADAPTERS``).
        template: prompt template name (``None``: the task's default).
        max_prompt_tokens: the longest prompt the resource plan budgets for
            (``er train --plan``: activations, KV cache, context checks); ``None``: 1024,
            or what the model's context leaves after the budgets when that is less.
        on_bad_problem: a problem that cannot be trained on (no gold answer, malformed
            tests, a prompt that cannot be rendered or does not fit the context with the
            budgets): ``refuse`` (the run does not start; ids and reasons listed) or
            ``skip`` (it leaves the training set, reported with its id and reason).

    > Parameters that control the budgets and rollouts

    Attributes:
        think_budget_tokens: thinking budget ``t``: an integer, or a prior drawn once per
            GRPO group: ``[256, 512, 1024]``, ``{budgets: [...], weights: [...]}``,
            ``{uniform: [lo, hi]}`` or ``{log_uniform: [lo, hi]}`` (see :mod:`trainers.budgets`).
        anytime_cuts: ``K`` > 0 turns on anytime rollouts: one thinking pass cut at ``K``
            budgets drawn from the prior, ``anytime_solutions`` solutions per cut, all in
            the prompt's group (``group_size`` = passes x ``K`` x ``n``). 0: off.
        anytime_solutions: ``n``, solutions sampled at each cut (anytime rollouts only).
        budget_subgroups: ``m`` > 1 splits each GRPO group into ``m`` sub-groups of
            consecutive samples under ``m`` distinct budgets drawn from the prior (HBPO's
            layout); 1: one budget per group.
        advantage_baseline: ``group`` (TRL's: one mean per group) or ``budget`` (the mean
            of the group's completions under the same thinking budget: per cut for anytime
            rollouts, per sub-group; see :mod:`trainers.advantages`).
        solution_budget_tokens: solution budget ``s``.
        train_forced_token: train on forced ``</think>`` tokens (``env_mask`` 1).
        group_size: completions per problem (GRPO ``num_generations``).
        temperature: sampling temperature (> 0: GRPO needs distinct samples).
        top_p: nucleus mass. top_k: top-k cutoff (-1: off).
        seed: sampling seed (``None``: torch's global RNG, seeded by the trainer).
        backend: ``vllm`` (TRL's own vLLM engine, ``use_vllm=True``; weights synced by
            TRL) or ``hf`` (generation with the live policy; the CPU fallback).
        vllm_mode: ``colocate`` (a vLLM engine in each training process) or ``server``
            (``trl vllm-serve`` on other GPUs; host/port via ``grpo.vllm_server_*``).
        hf_batch_size: rows the HF backend decodes together.

    > Parameters that control the reward

    Attributes:
        reward_endpoint: ``er sandbox serve`` URL; ``None`` grades in-process.
        extra_rewards: more ``er_env`` reward functions, as ``"module:attr"`` import paths
            (``f(problems, completions) -> list[RewardResult]``), added to the task's grader
            (TRL sums the rewards; each is logged as ``rewards/<attr>/mean``).
        on_reward_error: ``record`` (a grader failure gives no reward, logged and counted) or ``raise``.
        reward_concurrency: reward requests in flight at once per process (the async
            client splits a generation batch into ``batch_size`` requests).
        reward_retry_s: how long completions whose reward service cannot be reached are
            sent again (exponential backoff) before ``on_reward_outage`` applies.
        on_reward_outage: ``fail`` (write a checkpoint of the last finished step and exit
            75, naming the endpoint) or ``drop`` (leave the groups with unscored
            completions out of the step, counted as ``er/dropped_groups``).

    > Parameters that control the launch

    Attributes:
        output_dir: checkpoints and logs.
        num_processes: processes (GPUs) to train on; > 1 needs ``accelerate launch``.
        accelerate_config: accelerate YAML (relative paths: to the recipe's directory).
        num_machines: nodes; ``num_processes`` counts processes on all of them.
        machine_rank: this node's rank (0 is the main node); each node runs the printed
            command with its own ``--machine-rank``.
        main_process_ip: address of the rank-0 node (required with several machines).
        main_process_port: rendezvous port on the rank-0 node.
        rendezvous_timeout_s: how long a node waits for the main node's port, and the
            process group's collective timeout (``GRPOConfig.ddp_timeout``): a dead or
            unreachable peer fails the job after at most this long.
        record_ranks: write per-rank JSON lines (rollouts, rewards, weight digests) to
            ``<output_dir>/ranks/`` (see :mod:`trainers.distributed`).
        grpo: extra ``trl.GRPOConfig`` fields (learning_rate, beta, max_steps...).

    """

    model: str = field(default="", metadata={"help": "Hub name or local path of the policy ('tiny': test model)."})
    dataset: str = field(default="", metadata={"help": "Dataset name (er_env.data.available_datasets()) or a file."})
    dataset_split: str | None = field(default=None, metadata={"help": "Dataset split (default: the dataset's first)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration (subset)."})
    dataset_limit: int | None = field(default=None, metadata={"help": "Keep only the first N problems."})
    dataset_format: str | None = field(default=None, metadata={
        "help": "Row format of a dataset file (math, codeforces, leetcode, deepcoder, lcb, problem, ...; "
                "default: detected)."})
    template: str | None = field(default=None, metadata={"help": "Prompt template name (default: per task)."})
    max_prompt_tokens: int | None = field(default=None, metadata={
        "help": "Longest prompt in tokens that the resource plan (er train --plan) budgets for (default: 1024, or "
                "what the model's context leaves after the budgets when that is less)."})
    on_bad_problem: str = field(default="refuse", metadata={
        "help": "A problem that cannot be trained on (no answer, malformed tests, prompt too long): refuse or skip."})
    think_budget_tokens: int | list[int] | dict[str, Any] = field(default=1024, metadata={
        "help": "Thinking budget t in tokens (paper: 1024), or a prior drawn per GRPO group: a list of budgets, "
                "{budgets: [...], weights: [...]}, {uniform: [lo, hi]} or {log_uniform: [lo, hi]}."})
    anytime_cuts: int = field(default=0, metadata={
        "help": "Anytime rollouts: cut each thinking pass at K budgets from the prior (0: off)."})
    anytime_solutions: int = field(default=1, metadata={
        "help": "Anytime rollouts: solutions sampled at each cut (n); group_size = passes x K x n."})
    budget_subgroups: int = field(default=1, metadata={
        "help": "Split each GRPO group into m sub-groups under m distinct budgets from the prior (1: off)."})
    advantage_baseline: str = field(default="group", metadata={
        "help": "GRPO baseline: group (TRL's group mean) or budget (the mean under the same thinking budget)."})
    solution_budget_tokens: int = field(default=1024, metadata={"help": "Solution budget s in tokens (paper: 1024)."})
    train_forced_token: bool = field(default=False, metadata={"help": "Train on forced </think> tokens (env_mask 1)."})
    group_size: int = field(default=8, metadata={"help": "Completions per problem (GRPO num_generations)."})
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature (> 0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass in (0, 1]."})
    top_k: int = field(default=-1, metadata={"help": "Top-k cutoff; -1 disables it."})
    seed: int | None = field(default=None, metadata={"help": "Sampling seed (None: the trainer's seeded global RNG)."})
    backend: str = field(default="hf", metadata={"help": "Rollout backend: vllm (TRL's engine) or hf (CPU fallback)."})
    vllm_mode: str = field(default="colocate", metadata={"help": "TRL vLLM mode: colocate or server (trl vllm-serve)."})
    hf_batch_size: int = field(default=16, metadata={"help": "Rows the HF backend decodes together."})
    reward_endpoint: str | None = field(default=None, metadata={"help": "Reward server URL; None grades in-process."})
    extra_rewards: list[str] = field(default_factory=list, metadata={
        "help": "More er_env reward functions as 'module:attr' import paths (summed with the grader's reward)."})
    on_reward_error: str = field(default="record", metadata={
        "help": "On grader failure: record (no reward for it, logged and counted) or raise."})
    reward_concurrency: int = field(default=16, metadata={"help": "Reward requests in flight at once (per process)."})
    reward_retry_s: float = field(default=300.0, metadata={
        "help": "Seconds to keep re-sending completions whose reward service is unreachable (then on_reward_outage)."})
    on_reward_outage: str = field(default="fail", metadata={
        "help": "Reward service still unreachable after reward_retry_s: fail (checkpoint, exit 75) or drop (the "
                "affected groups leave the step)."})
    output_dir: str = field(default="runs/er-grpo", metadata={"help": "Checkpoints and logs directory."})
    num_processes: int = field(default=1, metadata={"help": "Processes (GPUs); > 1 needs accelerate launch."})
    accelerate_config: str | None = field(default=None, metadata={"help": "Accelerate YAML for multi-GPU runs."})
    num_machines: int = field(default=1, metadata={"help": "Nodes (num_processes counts all of them)."})
    machine_rank: int = field(default=0, metadata={"help": "This node's rank (0: the main node)."})
    main_process_ip: str | None = field(default=None, metadata={"help": "Address of the rank-0 node (multi-node)."})
    main_process_port: int = field(default=29500, metadata={"help": "Rendezvous port on the rank-0 node."})
    rendezvous_timeout_s: int = field(default=300, metadata={
        "help": "Seconds to wait for the main node and for any collective (a dead peer fails the job after this)."})
    record_ranks: bool = field(default=False, metadata={
        "help": "Write per-rank rollouts, rewards and weight digests to <output_dir>/ranks/ (tests, debugging)."})
    grpo: dict[str, Any] = field(default_factory=dict, metadata={"help": "Extra trl.GRPOConfig fields (YAML mapping)."})

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model is required (a hub name, a local path or 'tiny'), got {self.model!r}.")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset is required (e.g. 'embedded:math' or a .jsonl path), got {self.dataset!r}.")
        self._check_budgets()
        if self.max_prompt_tokens is not None:
            _positive_int("max_prompt_tokens", self.max_prompt_tokens)
        for name in ("solution_budget_tokens", "group_size", "hf_batch_size", "num_processes",
                     "num_machines", "main_process_port", "reward_concurrency", "rendezvous_timeout_s"):
            _positive_int(name, getattr(self, name))
        if self.dataset_limit is not None:
            _positive_int("dataset_limit", self.dataset_limit)
        if self.dataset_format is not None:
            from er_env.data.formats import ADAPTERS

            if self.dataset_format not in ADAPTERS:
                raise ConfigError(f"dataset_format {self.dataset_format!r} is not a known row format; choose one of "
                                  f"{sorted(ADAPTERS)} or leave it unset to detect it.")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 for GRPO (advantages are relative to the group), got "
                              f"{self.group_size}.")
        temp = self.temperature
        if isinstance(temp, bool) or not isinstance(temp, (int, float)) or temp <= 0:
            raise ConfigError(f"temperature must be > 0 (greedy groups are identical and give zero advantage), got "
                              f"{self.temperature!r}.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}.")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}.")
        if self.vllm_mode not in VLLM_MODES:
            raise ConfigError(f"vllm_mode must be one of {VLLM_MODES}, got {self.vllm_mode!r}.")
        self._check_machines()
        if self.on_reward_error not in ON_REWARD_ERROR:
            raise ConfigError(f"on_reward_error must be one of {ON_REWARD_ERROR}, got {self.on_reward_error!r} "
                              "(the same values as er_env.rewards, rollouts and environments).")
        retry = self.reward_retry_s
        if isinstance(retry, bool) or not isinstance(retry, (int, float)) or not 0 <= retry < math.inf:
            raise ConfigError(f"reward_retry_s must be a number of seconds >= 0, got {retry!r}.")
        if self.on_bad_problem not in ("refuse", "skip"):
            raise ConfigError(f"on_bad_problem must be 'refuse' or 'skip', got {self.on_bad_problem!r}.")
        if self.on_reward_outage not in ON_REWARD_OUTAGE:
            raise ConfigError(f"on_reward_outage must be one of {ON_REWARD_OUTAGE}, got {self.on_reward_outage!r}.")
        if self.reward_endpoint is not None and not str(self.reward_endpoint).startswith(("http://", "https://")):
            raise ConfigError(f"reward_endpoint must be an http(s) URL or null, got {self.reward_endpoint!r}.")
        if isinstance(self.extra_rewards, str):
            self.extra_rewards = [x.strip() for x in self.extra_rewards.split(",") if x.strip()]
        for spec in self.extra_rewards:
            if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
                raise ConfigError(f"extra_rewards entries must be 'module:attr' import paths, got {spec!r}.")
        if not isinstance(self.grpo, Mapping):
            raise ConfigError(f"grpo must be a mapping of trl.GRPOConfig fields, got {self.grpo!r}.")
        self.grpo = dict(self.grpo)
        for key in self.grpo:
            if key in RESERVED_GRPO_KEYS:
                raise ConfigError(f"grpo.{key} is set by this config; use {RESERVED_GRPO_KEYS[key]} instead "
                                  f"(got grpo.{key}={self.grpo[key]!r}).")
        self._check_grpo_keys()
        self._check_whole_groups()
        self._check_save_steps()

    def _check_save_steps(self) -> None:
        """Checkpoints only between generation batches: TRL regenerates after a resume, so exact resume needs it."""
        g = self.grpo
        if g.get("save_strategy") != "steps" or not isinstance(g.get("save_steps"), int):
            return
        accumulation = g.get("gradient_accumulation_steps", 1)
        per_generation = (g.get("steps_per_generation") or accumulation) * g.get("num_iterations", 1)
        if not all(isinstance(v, int) and v > 0 for v in (accumulation, per_generation)):
            return
        if (g["save_steps"] * accumulation) % per_generation:
            every = per_generation // math.gcd(per_generation, accumulation)
            raise ConfigError(f"grpo.save_steps={g['save_steps']} saves in the middle of a generation batch (one per "
                              f"{every} optimizer steps: steps_per_generation x num_iterations / "
                              "gradient_accumulation_steps); a resume from there would generate anew. Set "
                              f"grpo.save_steps to a multiple of {every}.")

    def _check_budgets(self) -> None:
        """The thinking prior and the anytime layout (before anything loads)."""
        from trainers.budgets import BudgetPrior, PriorError

        try:
            prior = BudgetPrior.parse(self.think_budget_tokens, "think_budget_tokens")
        except PriorError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(self.solution_budget_tokens, int) or isinstance(self.solution_budget_tokens, bool):
            raise ConfigError(f"solution_budget_tokens must be a positive integer (priors apply to "
                              f"think_budget_tokens only), got {self.solution_budget_tokens!r}.")
        k, n, m = self.anytime_cuts, self.anytime_solutions, self.budget_subgroups
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"anytime_cuts must be an integer >= 0 (0: no anytime rollouts), got {k!r}.")
        _positive_int("anytime_solutions", n)
        _positive_int("budget_subgroups", m)
        self._check_baseline(m == 1 and not k)
        if m > 1:
            if k:
                raise ConfigError(f"budget_subgroups={m} and anytime_cuts={k} are two layouts of a group; use one "
                                  "(anytime rollouts already put K budgets in every group).")
            if m > len(prior.support):
                raise ConfigError(f"budget_subgroups={m} needs {m} distinct budgets, but think_budget_tokens "
                                  f"({prior.describe()}) has {len(prior.support)}; lower budget_subgroups or widen "
                                  "the prior.")
            if self.group_size % m or self.group_size // m < 2:
                raise ConfigError(f"group_size={self.group_size} must split into budget_subgroups={m} sub-groups of "
                                  f"at least 2 samples each; set group_size to a multiple of {m} that is >= {2 * m}.")
        if not k:
            if n != 1:
                raise ConfigError(f"anytime_solutions={n} needs anytime rollouts; set anytime_cuts >= 1 (or "
                                  "anytime_solutions: 1).")
            return
        if k > len(prior.support):
            raise ConfigError(f"anytime_cuts={k} needs {k} distinct budgets, but think_budget_tokens "
                              f"({prior.describe()}) has {len(prior.support)}; lower anytime_cuts or widen the prior.")
        per = k * n
        if self.group_size % per:
            raise ConfigError(f"group_size={self.group_size} must be thinking passes x anytime_cuts ({k}) x "
                              f"anytime_solutions ({n}) = a multiple of {per}; set group_size to e.g. "
                              f"{max(2, -(-self.group_size // per)) * per}.")
        if self.advantage_baseline == "budget" and self.group_size // k < 2:
            raise ConfigError(f"advantage_baseline: budget compares the completions of a group at the same cut, but "
                              f"group_size={self.group_size} = anytime_cuts ({k}) x anytime_solutions ({n}) x 1 pass "
                              "leaves one completion per cut (its own baseline: every advantage 0); set group_size "
                              f"to {2 * per} (2 passes) or anytime_solutions >= 2.")
        per_device = self.grpo.get("per_device_train_batch_size", 8)
        steps = self.grpo.get("steps_per_generation") or self.grpo.get("gradient_accumulation_steps", 1)
        if isinstance(per_device, int) and isinstance(steps, int) and (per_device * steps) % per:
            raise ConfigError(f"grpo.per_device_train_batch_size={per_device} x steps_per_generation={steps} = "
                              f"{per_device * steps} completions per process, which would split a thinking pass's "
                              f"anytime_cuts x anytime_solutions = {per} completions between processes; set "
                              f"grpo.per_device_train_batch_size to a multiple of {per}.")

    def _check_baseline(self, one_budget_per_group: bool) -> None:
        from trainers.advantages import BASELINES

        b = self.advantage_baseline
        if b not in BASELINES:
            raise ConfigError(f"advantage_baseline must be one of {list(BASELINES)}, got {b!r}.")
        if b == "budget" and one_budget_per_group:
            raise ConfigError("advantage_baseline: budget compares completions under the same thinking budget, but "
                              "every group here has one budget, so it would be TRL's group baseline; set "
                              "anytime_cuts or budget_subgroups (with a prior), or advantage_baseline: group.")
        aggregation = self.grpo.get("multi_objective_aggregation", "sum_then_normalize")
        if b == "budget" and aggregation != "sum_then_normalize":
            raise ConfigError(f"advantage_baseline: budget works on summed rewards; grpo.multi_objective_aggregation="
                              f"{aggregation!r} normalises each reward first. Set it to sum_then_normalize or use "
                              "advantage_baseline: group.")

    @property
    def think_prior(self) -> Any:
        """The thinking budget as a :class:`trainers.budgets.BudgetPrior` (fixed: one budget)."""
        from trainers.budgets import BudgetPrior

        return BudgetPrior.parse(self.think_budget_tokens, "think_budget_tokens")

    @property
    def think_budget_max(self) -> int:
        """The largest thinking budget the prior can draw (the fixed budget when there is no prior)."""
        return int(self.think_prior.max)

    def _check_whole_groups(self) -> None:
        """The generation batch of all processes must hold whole GRPO groups (TRL checks it only at launch)."""
        per_device = self.grpo.get("per_device_train_batch_size", 8)  # TrainingArguments' default
        steps = self.grpo.get("steps_per_generation") or self.grpo.get("gradient_accumulation_steps", 1)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (per_device, steps)):
            return  # GRPOConfig reports bad types itself
        batch = per_device * self.num_processes * steps
        if batch % self.group_size:
            unit = self.group_size // math.gcd(self.group_size, self.num_processes * steps)
            fix = -(-per_device // unit) * unit
            raise ConfigError(
                f"grpo.per_device_train_batch_size={per_device} x num_processes={self.num_processes} x "
                f"steps_per_generation={steps} = {batch} completions per generation batch, which is not a whole "
                f"number of GRPO groups (group_size={self.group_size}); set grpo.per_device_train_batch_size to a "
                f"multiple of {unit} (e.g. {fix}) or change group_size.")

    def _check_machines(self) -> None:
        n, rank = self.num_machines, self.machine_rank
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < n:
            raise ConfigError(f"machine_rank must be an int in [0, num_machines={n}), got {rank!r}.")
        if n > 1:
            if not self.main_process_ip:
                raise ConfigError(f"num_machines={n} needs main_process_ip (the rank-0 node's address, reachable "
                                  "from every node).")
            if self.num_processes % n:
                raise ConfigError(f"num_processes={self.num_processes} (all nodes) is not divisible by "
                                  f"num_machines={n}; use the same number of GPUs on every node.")
        if not 0 < self.main_process_port < 65536:
            raise ConfigError(f"main_process_port must be in 1..65535, got {self.main_process_port!r}.")

    def _check_grpo_keys(self) -> None:
        if not self.grpo:
            return
        try:
            from trl import GRPOConfig
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(f"grpo settings need TRL ({exc}); pip install 'elastic-reasoning-gym[train]'") from None
        types = {f.name: f.type for f in dataclasses.fields(GRPOConfig) if f.init}
        for key, value in list(self.grpo.items()):
            if key not in types:
                close = difflib.get_close_matches(key, sorted(types), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"grpo.{key} is not a trl.GRPOConfig field.{hint}")
            self.grpo[key] = _number_from_text(key, value, types[key])

    @property
    def max_completion_tokens(self) -> int:
        """Longest possible completion: ``t + s`` plus a forced ``</think>`` (a few tokens at most)."""
        return self.think_budget_max + self.solution_budget_tokens + 8

    def to_dict(self) -> dict[str, Any]:
        """Plain form (for logging and the dry-run plan)."""
        return dataclasses.asdict(self)


def _number_from_text(key: str, value: Any, annotation: Any) -> Any:
    """A number that YAML read as text, for a numeric ``GRPOConfig`` field; other values unchanged.

    PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a string, not a float; TRL would
    then fail deep inside with ``'<=' not supported between 'float' and 'str'``.

    Raises:
        ConfigError: the text is not a number of the field's type.

    """
    kind = next((t for t in (typing.get_args(annotation) or (annotation,)) if t in (float, int)), None)
    if not isinstance(value, str) or kind is None:
        return value
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"grpo.{key} must be {'a number' if kind is float else 'an integer'} "
                          f"(trl.GRPOConfig.{key}: {getattr(annotation, '__name__', annotation)}), "
                          f"got the text {value!r}.") from None


def resolve_recipe_path(recipe: str | Path) -> Path:
    """A recipe file: an existing path, or a shipped recipe name (``tiny_cpu``).

    Raises:
        ConfigError: no such file or recipe.

    """
    path = Path(recipe)
    if path.is_file():
        return path.resolve()
    shipped = RECIPES_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise ConfigError(f"Recipe {str(recipe)!r} not found: not a file, and not a shipped recipe ({', '.join(names)}).")


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if key == "grpo" and isinstance(value, Mapping):
            out["grpo"] = {**dict(out.get("grpo") or {}), **dict(value)}
        else:
            out[key] = value
    return out


def load_recipe(recipe: str | Path, overrides: Mapping[str, Any] | None = None) -> ERTrainConfig:
    """Load a YAML recipe into :class:`ERTrainConfig`.

    Args:
        recipe: a path or a shipped recipe name.
        overrides: fields replacing the recipe's (``grpo`` is merged key by key).

    Returns:
        The validated config; a relative ``accelerate_config`` is resolved against the
        recipe's directory.

    Raises:
        ConfigError: unreadable YAML, not a mapping, unknown keys, or invalid values.

    """
    import yaml

    path = resolve_recipe_path(recipe)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Recipe {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Recipe {str(path)!r} must be a YAML mapping of ERTrainConfig fields, got "
                          f"{type(data).__name__}.")
    data = _merge(data, overrides or {})
    valid = [f.name for f in dataclasses.fields(ERTrainConfig) if f.init]
    unknown = [k for k in data if k not in valid]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Recipe {str(path)!r}: unknown key {unknown[0]!r}.{hint} Valid keys: {', '.join(valid)} "
                          "(TRL settings go under 'grpo:').")
    acc = data.get("accelerate_config")
    if acc and not Path(acc).is_absolute():
        data["accelerate_config"] = str((path.parent / acc).resolve())
    try:
        return ERTrainConfig(**data)
    except ConfigError as exc:
        raise ConfigError(f"Recipe {str(path)!r}: {exc}") from None
