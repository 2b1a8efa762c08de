"""The evaluation loop: datasets x methods x budgets x samples, graded, saved chunk by chunk.

:func:`run_eval` loads each dataset, renders the evaluation prompts
(:mod:`er_env.eval.prompts`), and for each method and chunk of problems asks the
method for every missing ``(problem, sample, budget)`` at once (nested budgets
share thinking, see :mod:`er_env.eval.nested`). Completions are graded with the
training graders (:class:`er_env.rollout.RewardRouter`: ``sandbox`` math checker
and code judge in-process, or the reward service with ``reward_endpoint``), and
appended to ``DIR/samples.jsonl`` before the next chunk starts. A re-run with the
same settings skips what is saved (and re-grades samples whose grader failed);
other settings get other keys (:func:`~er_env.eval.config.settings_key`). At the
end :func:`er_env.eval.report.write_report` writes ``results.json``,
``summary.md``, the plots and the Codeforces results files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any, Callable

from er_env.budget import Budget
from er_env.data.schema import Problem
from er_env.eval.config import EvalConfig, EvalError, budget_label, settings_key
from er_env.eval.methods import Method, get_method
from er_env.eval.nested import Generation, NestedStats, from_completion
from er_env.eval.prompts import eval_prompt
from er_env.eval.store import SampleStore, plain

__all__ = ["load_datasets", "make_backend", "run_eval"]

_FULL = "full"  # the method name of the unconstrained budget
LCB_DATASET = "agentica-org/DeepCoder-Preview-Dataset:lcbv5"


def make_backend(cfg: EvalConfig) -> Any:
    """Build the configured backend (``openai`` with several endpoints: an :class:`EndpointPool`)."""
    from er_env.backends.base import load_backend

    if cfg.backend == "hf":
        return load_backend("hf", model=cfg.model, device=cfg.device, batch_size=cfg.batch_size)
    if cfg.backend == "vllm":
        return load_backend("vllm", model=cfg.model, use_native_thinking_budget="vllm_native" in cfg.method_names)
    from er_env.eval.endpoints import EndpointPool

    members = [load_backend("openai", base_url=url, model=cfg.model, tokenizer=cfg.tokenizer or cfg.model,
                            max_concurrency=cfg.max_concurrency) for url in cfg.endpoints]
    return members[0] if len(members) == 1 else EndpointPool(members)


def load_datasets(cfg: EvalConfig) -> dict[str, list[Problem]]:
    """Load every ``--dataset``.

    ``lcb`` is the paper's LiveCodeBench set: the ``lcbv5`` test split of
    ``agentica-org/DeepCoder-Preview-Dataset`` (what the official ``test_livecodebench``
    holds); offline, pass its files with ``data_files``.

    Raises:
        EvalError: an unknown dataset, a file whose rows fit no known shape (or a malformed row of a
            Problem-schema file), or a dataset with no problems.
    """
    from er_env.data.loaders import DatasetNotFound, available_datasets, load_problems
    from er_env.data.schema import ProblemError

    known = set(available_datasets())
    out = {}
    files = [f.strip() for f in cfg.data_files.split(",")] if cfg.data_files else None
    for name in cfg.datasets:
        target, split = name, cfg.split
        if name == "lcb":
            target, split = LCB_DATASET, split or "test"
        fmt = None if name in known or name == "lcb" else cfg.format  # --format is for files; names know theirs
        try:
            problems = load_problems(target, limit=cfg.limit, data_files=files, split=split, format=fmt)
        except DatasetNotFound as exc:
            raise EvalError(f"{exc} (er eval also accepts 'lcb' for the paper's LiveCodeBench set.)") from None
        except ProblemError as exc:
            raise EvalError(f"Dataset {name!r}: {exc}") from None
        if not problems:
            raise EvalError(f"Dataset {name!r} has no problems (limit={cfg.limit!r}).")
        out[name] = problems
    return out


def _trim(details: Any) -> Any:
    if isinstance(details, dict) and isinstance(details.get("tests"), list) and len(details["tests"]) > 20:
        return {**details, "tests": details["tests"][:20], "tests_trimmed": len(details["tests"])}
    return details


def _row(cfg: EvalConfig, dataset: str, key: str, settings: dict, problem: Problem, k: int, prompt_ids: list[int],
         gen: Generation, text: str, result: Any, wall_s: float, group: int) -> dict[str, Any]:
    reward = None if result.is_error else float(result.reward)
    return plain({
        "key": key, "settings": settings, "dataset": dataset, "problem_id": problem.id, "sample_index": k,
        "task": problem.task, "method": settings["method"], "think_budget_tokens": settings["think_budget_tokens"],
        "solution_budget_tokens": settings["solution_budget_tokens"], "model": cfg.model, "backend": cfg.backend,
        "sampling": cfg.sampling_dict(), "prompt_tokens": len(prompt_ids), "completion_text": text,
        "thinking_tokens": gen.thinking_tokens, "solution_tokens": gen.solution_tokens,
        "forced_tokens": sum(gen.forced_mask), "total_tokens": gen.thinking_tokens + gen.solution_tokens,
        "thinking_truncated": gen.thinking_truncated,
        "cut": gen.thinking_truncated or (gen.think_finish_reason is None and gen.finish_reason != "eos"),
        "think_finish_reason": gen.think_finish_reason, "finish_reason": gen.finish_reason,
        "generated_tokens": gen.generated_tokens, "verdict": result.verdict, "reward": reward,
        "correct": None if result.is_error else reward >= 0.999, "is_error": bool(result.is_error),
        "reward_details": _trim(dict(result.details)), "group_wall_s": wall_s, "group_samples": group,
        "time": time.time(),
    })


class _Job:
    """One (dataset, method) pair: its cells and how to fill them."""

    def __init__(self, cfg: EvalConfig, dataset: str, problems: list[Problem], method: Method | None,
                 budgets: list[Budget], backend: Any, router: Any) -> None:
        self.cfg, self.dataset, self.problems, self.method, self.budgets = cfg, dataset, problems, method, budgets
        self.backend, self.router = backend, router
        name = method.name if method is not None else _FULL
        self.cells = [settings_key(cfg, dataset, name, b) for b in budgets]
        self._prompts: dict[tuple[str, str], tuple[str, list[int]]] = {}

    def prompt(self, problem: Problem, budget: Budget) -> list[int]:
        suffix = self.method.user_suffix(budget) if self.method is not None else ""
        cache_key = (problem.id, suffix)
        if cache_key not in self._prompts:
            text, ids = eval_prompt(problem, self.backend.tokenizer, self.cfg.prompt, suffix)
            ctx = getattr(self.backend, "context_length", None)
            if ctx is not None and len(ids) >= ctx:
                raise EvalError(
                    f"Problem {problem.id!r} of {self.dataset!r}: its prompt has {len(ids)} tokens but the model "
                    f"context is {ctx}; use a model with a longer context (a model from `er tiny-model`: rebuild it "
                    f"with --max-position-embeddings 4096, or at least {len(ids) + 1} plus the budgets) or leave the "
                    "problem out (--limit, or a filtered dataset file)."
                )
            self._prompts[cache_key] = (text, ids)
        return self._prompts[cache_key][1]

    def check_prompts(self) -> None:
        """Render every prompt once, so a prompt that does not fit fails before any generation."""
        for p in self.problems:
            for b in self.budgets:
                self.prompt(p, b)

    def generate(self, pairs: list[tuple[Problem, int]], b_idx: tuple[int, ...],
                 sampling: Any) -> list[list[Generation]]:
        budgets = [self.budgets[i] for i in b_idx]
        prompts = [[self.prompt(p, b) for p, _ in pairs] for b in budgets]
        if self.method is None:  # unconstrained: one plain pass
            return [[from_completion(c) for c in self.backend.generate(prompts[0], budgets[0], sampling)]]
        return self.method.generate(self.backend, prompts, budgets, sampling, nested=self.cfg.nested,
                                    stats=NestedStats())

    def run_chunk(self, store: SampleStore, chunk: list[Problem], sampling: Any, tick: Callable[[int], None]) -> None:
        groups: dict[tuple[int, ...], list[tuple[Problem, int]]] = {}
        for p in chunk:
            for k in range(self.cfg.samples):
                missing = tuple(i for i, (key, _) in enumerate(self.cells) if not store.has(key, p.id, k))
                if missing:
                    groups.setdefault(missing, []).append((p, k))
        from er_env.rollout import decode_completion

        for b_idx, pairs in groups.items():
            t0 = time.perf_counter()
            gens = self.generate(pairs, b_idx, sampling)
            wall = time.perf_counter() - t0
            flat = [(self.cells[i], pairs[j], g) for bi, i in enumerate(b_idx) for j, g in enumerate(gens[bi])]
            texts = [decode_completion(self.backend.tokenizer, g.completion_ids, self.backend.special.eos)
                     for _, _, g in flat]
            results = self.router([pk[0] for _, pk, _ in flat], texts)
            rows = [_row(self.cfg, self.dataset, key, settings, p, k, list(g.prompt_ids), g, text, res, wall, len(flat))
                    for ((key, settings), (p, k), g), text, res in zip(flat, texts, results, strict=True)]
            store.append(rows)
            tick(len(rows))

    def run(self, store: SampleStore, progress: bool) -> None:
        """Re-grade failed samples, then generate every missing sample chunk by chunk."""
        self.regrade(store)
        cfg, problems = self.cfg, self.problems
        total = sum(1 for key, _ in self.cells for p in problems for k in range(cfg.samples)
                    if not store.has(key, p.id, k))
        name = self.method.name if self.method else _FULL
        labels = ",".join(budget_label(b) for b in self.budgets)
        with _progress(total, f"{self.dataset} {name} [{labels}]", progress) as bar:
            for c, start in enumerate(range(0, len(problems), cfg.chunk_problems)):
                seed = None if cfg.seed is None else cfg.seed + 1_000_003 * c  # distinct streams per chunk
                self.run_chunk(store, problems[start : start + cfg.chunk_problems], _sampling(cfg, seed), bar.update)

    def regrade(self, store: SampleStore) -> int:
        """Re-grade saved samples whose grader failed; returns how many were retried."""
        by_id = {p.id: p for p in self.problems}
        todo = [r for r in store.rows([key for key, _ in self.cells]) if r.get("is_error") and r["problem_id"] in by_id]
        if not todo:
            return 0
        results = self.router([by_id[r["problem_id"]] for r in todo], [r["completion_text"] for r in todo])
        new = []
        for r, res in zip(todo, results, strict=True):
            reward = None if res.is_error else float(res.reward)
            new.append(plain({**r, "verdict": res.verdict, "reward": reward, "is_error": bool(res.is_error),
                                  "correct": None if res.is_error else reward >= 0.999,
                                  "reward_details": _trim(dict(res.details)), "regraded": True}))
        store.append(new)
        return len(todo)


class _Graders(Mapping):
    """The training graders per task, built on first use and closed after the run."""

    def __init__(self, endpoint: str | None) -> None:
        self.endpoint = endpoint
        self._built: dict[str, Any] = {}

    def __getitem__(self, task: str) -> Any:
        if task not in ("math", "code"):
            raise KeyError(task)
        if task not in self._built:
            from er_env.rewards import default_reward

            self._built[task] = default_reward(task, endpoint=self.endpoint)
        return self._built[task]

    def __iter__(self) -> Iterator[str]:
        return iter(("math", "code"))

    def __len__(self) -> int:
        return 2

    def close(self) -> None:
        for fn in self._built.values():
            getattr(fn, "close", lambda: None)()
        self._built.clear()


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, leave=False)


def run_eval(cfg: EvalConfig, backend: Any = None, *, progress: bool = True, reward_fn: Any = None) -> dict[str, Any]:
    """Run (or resume) an evaluation and write its report.

    Args:
        cfg: the settings.
        backend: a ready backend (default: :func:`make_backend`); not closed here
            when given.
        progress: show progress bars.
        reward_fn: a reward function or ``{task: fn}`` (default: the training graders).

    Returns:
        The results dict also written to ``DIR/results.json``.

    Raises:
        EvalError: bad input (datasets, methods for this backend...).
        BackendError: generation failed; every chunk finished before it is saved.
    """
    from er_env.eval.report import write_report
    from er_env.rollout import RewardRouter

    sets = load_datasets(cfg)
    own = backend is None
    backend = make_backend(cfg) if own else backend
    graders = None
    try:
        methods = [get_method(n) for n in cfg.method_names]
        for m in methods:
            m.check_backend(backend)
        budgets = cfg.budget_list()
        constrained = [b for b in budgets if b.constrained]
        graders = _Graders(cfg.reward_endpoint) if reward_fn is None else None
        router = RewardRouter(graders if graders is not None else reward_fn, None, "record")
        store = SampleStore(cfg.out)
        (store.dir / "run.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
        keys: list[str] = []
        jobs = []
        for ds, problems in sets.items():
            jobs += [_Job(cfg, ds, problems, m, constrained, backend, router) for m in methods if constrained]
            jobs += [_Job(cfg, ds, problems, None, [b], backend, router) for b in budgets if not b.constrained]
        for job in jobs:
            job.check_prompts()
        for job in jobs:
            keys += [key for key, _ in job.cells]
            job.run(store, progress)
        return write_report(store.dir, list(store.rows(keys)), cfg.ks, config=asdict(cfg))
    finally:
        if graders is not None:
            graders.close()
        if own:
            backend.close()


def _sampling(cfg: EvalConfig, seed: int | None) -> Any:
    from er_env.backends.base import SamplingConfig

    return SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, seed=seed, logprobs=False)

