r"""The math checker: extraction in the caller, equivalence in killable workers.

The workers are started by multiprocessing's ``forkserver``, which, like ``spawn``,
imports the starting script as ``__mp_main__`` in every worker: a script that grades
in-process (``MathChecker``, ``MathReward()``, ``er train`` code called from a script)
must keep its work under ``if __name__ == "__main__":``, or each worker runs it again.

>>> with MathChecker(timeout_s=2.0, workers=2) as checker:            # doctest: +SKIP
...     checker.check("\\frac12", "thinking...</think> so \\boxed{0.5}").status
<MathStatus.CORRECT: 1>
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence, Union

from sandbox.mathcheck.config import EquivalenceConfig, MathCheckerConfig
from sandbox.mathcheck.equivalence import judge
from sandbox.mathcheck.errors import GoldError
from sandbox.mathcheck.extract import Extraction, answer_from_prediction, extract_answer, split_top_level
from sandbox.mathcheck.gold import GoldAnswer, coerce_gold
from sandbox.mathcheck.pool import TaskResult, WorkerPool
from sandbox.mathcheck.verdict import MathStatus, MathVerdict

__all__ = ["MathCheckerConfig", "MathItem", "MathChecker"]

Gold = Union[str, Sequence[str], GoldAnswer]
_STATUS = {"correct": MathStatus.CORRECT, "wrong": MathStatus.WRONG, "internal_error": MathStatus.INTERNAL_ERROR,
           "no_answer": MathStatus.NO_ANSWER}


@dataclass(frozen=True)
class MathItem:
    """One check for :meth:`MathChecker.check_batch`.

    Attributes:
        gold: gold answer(s): a string, a list of alternatives, or a :class:`GoldAnswer`.
        completion: the full model completion (the answer is extracted after ``</think>``).
        require: ``"any"`` or ``"all"`` (multi-part answer); see :class:`GoldAnswer`.
        pred: instead of ``completion``, a bare predicted answer (no ``</think>`` needed).

    """

    gold: Gold
    completion: str | None = None
    require: str = "any"
    pred: str | None = None

    def __post_init__(self) -> None:
        if (self.completion is None) == (self.pred is None):
            raise ValueError("MathItem needs exactly one of completion= (model output) or pred= (a bare answer)")


_MAX_CHUNK = 8  # items sent to a worker in one message by check_batch


@dataclass(frozen=True)
class _Task:
    """Work for a worker: the extracted answer, the judge() arguments, and the time spent so far."""

    answer: str
    args: tuple
    prepare_s: float


def _answer_parts(extraction: Extraction, n_gold_parts: int) -> tuple[str, ...]:
    """Parts of a multi-part answer: the last box split at top-level commas, or every box."""
    assert extraction.answer is not None
    parts = split_top_level(extraction.answer)
    if len(parts) == 1 and n_gold_parts > 1 and len(extraction.boxed) > 1:
        parts = list(dict.fromkeys(extraction.boxed))
    return tuple(parts)


class MathChecker:
    """Checks completions against gold answers; never hangs, never raises for an answer.

    Args:
        timeout_s: hard wall-clock limit per check.
        workers: number of worker processes.
        fallback_to_thinking: see :class:`MathCheckerConfig`.
        config: a full :class:`MathCheckerConfig` (overrides the three arguments above).
        equivalence: comparison settings passed to the workers.

    """

    def __init__(self, timeout_s: float = 2.0, workers: int = 2, fallback_to_thinking: bool = False, *,
                 config: MathCheckerConfig | None = None, equivalence: EquivalenceConfig | None = None) -> None:
        self.config = config or MathCheckerConfig(timeout_s=timeout_s, workers=workers,
                                                  fallback_to_thinking=fallback_to_thinking)
        self.equivalence = equivalence or EquivalenceConfig()
        self._pool = WorkerPool(
            self.config.workers, memory_limit_bytes=self.config.memory_limit_bytes or None,
            preload=["sandbox.mathcheck._preload"], warm_up="sandbox.mathcheck.equivalence:warm_up")

    # -- public API ---------------------------------------------------------------------------------

    def check(self, gold: Gold, completion: str, *, require: str = "any") -> MathVerdict:
        """Check one full completion (thinking, ``</think>``, solution).

        Args:
            gold: gold answer(s); see :class:`MathItem`.
            completion: the model output.
            require: ``"any"`` or ``"all"``.

        Returns:
            The :class:`MathVerdict` (bad gold answers give ``INTERNAL_ERROR``).

        Raises:
            PoolClosedError: the checker was closed.

        """
        return self._run(MathItem(gold, completion, require))

    def check_answer(self, gold: Gold, pred: str, *, require: str = "any") -> MathVerdict:
        """Check a bare predicted answer (boxed or not), as ``er math check --pred`` does."""
        return self._run(MathItem(gold, require=require, pred=pred))

    def check_batch(self, items: Sequence[MathItem | tuple]) -> list[MathVerdict]:
        """Check many items in parallel over the worker pool; results keep the input order.

        Args:
            items: :class:`MathItem` values or ``(gold, completion[, require])`` tuples.

        Returns:
            One :class:`MathVerdict` per item.

        Raises:
            PoolClosedError: the checker was closed.

        """
        todo = [it if isinstance(it, MathItem) else MathItem(*it) for it in items]
        prepared = [self._prepare(it) for it in todo]
        verdicts: list[MathVerdict | None] = [p for p, _ in prepared]
        tasks = [(i, task) for i, (_, task) in enumerate(prepared) if task is not None]
        size = max(1, min(_MAX_CHUNK, len(tasks) // (4 * self.config.workers)))
        chunks = [tasks[k:k + size] for k in range(0, len(tasks), size)]

        def run_chunk(chunk: list[tuple[int, _Task]]) -> None:
            results = self._pool.run_many(judge, [t.args for _, t in chunk], timeout_s=self.config.timeout_s)
            for (i, task), result in zip(chunk, results, strict=True):
                verdicts[i] = self._verdict_from(result, task, result.elapsed_s)

        if len(chunks) <= 1:
            for chunk in chunks:
                run_chunk(chunk)
        else:
            with ThreadPoolExecutor(max_workers=min(self.config.workers, len(chunks))) as pool:
                list(pool.map(run_chunk, chunks))
        return [v for v in verdicts if v is not None]

    @property
    def workers_replaced(self) -> int:
        """How many workers were killed (timeouts) or died and were replaced."""
        return self._pool.replaced

    def wait_ready(self) -> None:
        """Block until all workers have started (before benchmarking)."""
        self._pool.wait_ready()

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.close()

    def __enter__(self) -> "MathChecker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------

    def _run(self, item: MathItem) -> MathVerdict:
        start = time.perf_counter()
        verdict, task = self._prepare(item)
        if task is None:
            assert verdict is not None
            return verdict
        result = self._pool.run(judge, task.args, timeout_s=self.config.timeout_s)
        return self._verdict_from(result, task, time.perf_counter() - start)

    def _prepare(self, item: MathItem) -> tuple[MathVerdict | None, _Task | None]:
        """Extract the answer in this process: a final verdict, or the task for a worker."""
        start = time.perf_counter()
        try:
            gold = coerce_gold(item.gold, item.require)
        except GoldError as exc:
            return MathVerdict.make(MathStatus.INTERNAL_ERROR, reason=f"bad gold answer: {exc}",
                                    elapsed_s=time.perf_counter() - start), None
        fallback: str | None = None
        if item.pred is not None:
            ext = answer_from_prediction(item.pred)
        else:
            ext = extract_answer(item.completion or "", fallback_to_thinking=self.config.fallback_to_thinking)
            if self.config.answer_fallback:
                fallback = ext.fallback_text(item.completion or "")
        if ext.answer is None and fallback is None:
            verdict = MathVerdict.make(MathStatus.NO_ANSWER, reason=ext.reason, elapsed_s=time.perf_counter() - start)
            return verdict, None
        answer = ext.answer or ""
        longest = max(len(answer), len(fallback or ""))
        if longest > self.config.max_answer_chars:
            return MathVerdict.make(MathStatus.WRONG, extracted=(answer or fallback or "")[:200] + "...",
                                    reason=f"answer has {longest} chars, over max_answer_chars="
                                           f"{self.config.max_answer_chars}",
                                    elapsed_s=time.perf_counter() - start), None
        parts = _answer_parts(ext, len(gold.values)) if gold.require == "all" and ext.answer else (answer,)
        args = (gold.values, gold.require, answer, parts, self.equivalence, fallback)
        return None, _Task(answer, args, time.perf_counter() - start)

    def _verdict_from(self, result: TaskResult, task: _Task, elapsed_s: float) -> MathVerdict:
        """Turn a worker's result into a verdict; ``elapsed_s`` is the time spent on this item."""
        common = {"extracted": task.answer or None, "elapsed_s": task.prepare_s + elapsed_s}
        if result.kind == "ok":
            value: dict[str, Any] = result.value
            common["extracted"] = value.get("extracted", common["extracted"])
            return MathVerdict.make(_STATUS.get(value["status"], MathStatus.INTERNAL_ERROR),
                                    matched_gold=value.get("matched_gold"), reason=value.get("reason", ""), **common)
        if result.kind == "timeout":
            return MathVerdict.make(MathStatus.TIMEOUT, **common,
                                    reason=f"equivalence check timed out after {self.config.timeout_s:g} s")
        return MathVerdict.make(MathStatus.INTERNAL_ERROR, reason=f"checker {result.kind}: {result.error}", **common)
