"""The append-only sample log of an evaluation directory (stdlib only).

``DIR/samples.jsonl`` gets one JSON line per graded sample, written and flushed
chunk by chunk, so a crash loses at most the chunk in flight. Each line carries
its settings key (:func:`er_env.eval.config.settings_key`), the settings
themselves, ``problem_id`` and ``sample_index``; the last line of a
``(key, problem_id, sample_index)`` wins (a re-graded sample supersedes its
grader error).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from er_env.eval.config import EvalError

__all__ = ["SAMPLES_FILE", "SampleStore", "plain"]

SAMPLES_FILE = "samples.jsonl"


def plain(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (non-finite floats -> ``None``, tuples -> lists, others -> ``str``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


class SampleStore:
    """Samples of one output directory, keyed by ``(key, problem_id, sample_index)``.

    Args:
        directory: the output directory (created).

    Raises:
        EvalError: ``samples.jsonl`` holds a line that is not a sample record.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / SAMPLES_FILE
        self._rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as fh:
            lines = fh.readlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                unit = (str(row["key"]), str(row["problem_id"]), int(row["sample_index"]))
            except (ValueError, KeyError, TypeError) as exc:
                if n == len(lines) and not line.endswith("\n"):
                    break  # a line cut by a crash mid-write: dropped, regenerated on resume
                raise EvalError(f"{self.path}:{n} is not a sample record ({exc}); fix or remove that line.") from None
            self._rows[unit] = row

    def has(self, key: str, problem_id: str, sample_index: int) -> bool:
        """Whether a sample with these keys is stored."""
        return (key, problem_id, sample_index) in self._rows

    def get(self, key: str, problem_id: str, sample_index: int) -> dict[str, Any] | None:
        """The stored sample with these keys, or ``None``."""
        return self._rows.get((key, problem_id, sample_index))

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write rows and flush them to disk."""
        rows = list(rows)
        if not rows:
            return
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb") as fh:  # a crash may have left a partial last line
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    with self.path.open("a", encoding="utf-8") as fa:
                        fa.write("\n")
        with self.path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                self._rows[(str(row["key"]), str(row["problem_id"]), int(row["sample_index"]))] = row
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Current rows (optionally only those of ``keys``), in insertion order."""
        wanted = None if keys is None else set(keys)
        for (key, _, _), row in self._rows.items():
            if wanted is None or key in wanted:
                yield row

    def __len__(self) -> int:
        return len(self._rows)
