"""Load problem sets by name or path into the one :class:`Problem` schema.

Names (see :data:`LOCAL_SETS`, :data:`HUB_SETS`):

- ``"embedded:math"`` / ``"embedded:code"``: the project's own small problem set,
  shipped in the package (the demo's default).
- The paper's benchmark files, read from the shared data directory
  (``$ER_SHARED_DATA``, else ``../shared/data`` next to the repository):
  ``aime2024``, ``amc``, ``math500``, ``minerva``, ``olympiad_bench``,
  ``math_train``, ``codeforces``, ``code_contests``, ``leetcode``.
- Hub datasets, through ``datasets.load_dataset``:
  ``agentica-org/DeepScaleR-Preview-Dataset`` (math train set),
  ``agentica-org/DeepCoder-Preview-Dataset`` (config ``primeintellect``, ``taco``,
  ``lcbv5`` or ``codeforces``, given as ``name:config`` or ``config=``),
  ``livecodebench/code_generation_lite``. With ``data_files=`` the same adapters
  read local JSON/JSONL/parquet copies of those datasets (no hub needed).
- A path to a ``.json``/``.jsonl``/``.parquet`` file: rows in the Problem schema or
  any known shape (the official repository's files load unconverted), detected from
  the rows (:func:`er_env.data.formats.detect_format`) or named with ``format=``
  (``"math"``, ``"leetcode"``, ``"deepcoder"``, ``"lcb"``, ...; see
  :data:`er_env.data.formats.ADAPTERS`).

Malformed rows raise :class:`ProblemError` (``on_bad_row="raise"``) or are skipped
with one warning that counts them and quotes the first reasons
(``on_bad_row="warn"``, the default for the paper's files, two MATH-train rows of
which have no answer).
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from er_env.data.formats import ADAPTERS, detect_format
from er_env.data.schema import Problem, ProblemError

__all__ = [
    "DatasetNotFound",
    "HUB_SETS",
    "LOCAL_SETS",
    "DatasetSpec",
    "available_datasets",
    "load_problems",
    "shared_data_dir",
]


class DatasetNotFound(LookupError):
    """An unknown dataset name or split, or a missing data file."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named problem set lives and how its rows look.

    Attributes:
        task: ``"math"`` or ``"code"``.
        format: row adapter name in :data:`~er_env.data.formats.ADAPTERS`.
        splits: the splits that exist; the first is the default.
        path: file under the shared data directory (local sets only).
        configs: hub configurations (subsets), the first being the default.
    """

    task: str
    format: str
    splits: tuple[str, ...]
    path: str | None = None
    configs: tuple[str, ...] = ()


#: the paper's benchmark files under the shared data directory
LOCAL_SETS: dict[str, DatasetSpec] = {
    "aime2024": DatasetSpec("math", "math", ("test",), "math/aime2024.json"),
    "amc": DatasetSpec("math", "math", ("test",), "math/amc.json"),
    "math500": DatasetSpec("math", "math", ("test",), "math/math500.json"),
    "minerva": DatasetSpec("math", "math", ("test",), "math/minerva.json"),
    "olympiad_bench": DatasetSpec("math", "olympiad_bench", ("test",), "math/olympiad_bench.json"),
    "math_train": DatasetSpec("math", "math", ("train",), "math/math_train.json"),
    "codeforces": DatasetSpec("code", "codeforces", ("test",), "code/codeforces_test.json"),
    "code_contests": DatasetSpec("code", "code_contests", ("test",), "code/code_contests_test.json"),
    "leetcode": DatasetSpec("code", "leetcode", ("train",), "code/leetcode_train.json"),
}

#: hub datasets loaded with ``datasets.load_dataset``
HUB_SETS: dict[str, DatasetSpec] = {
    "agentica-org/DeepScaleR-Preview-Dataset": DatasetSpec("math", "math", ("train",)),
    "agentica-org/DeepCoder-Preview-Dataset": DatasetSpec(
        "code", "deepcoder", ("train", "test"), configs=("primeintellect", "taco", "lcbv5", "codeforces")
    ),
    "livecodebench/code_generation_lite": DatasetSpec("code", "lcb", ("test",)),
}

EMBEDDED = {"embedded:math": "math", "embedded:code": "code"}


def shared_data_dir() -> Path:
    """The shared benchmark data directory: ``$ER_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("ER_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def available_datasets() -> list[str]:
    """Every known dataset name."""
    return sorted(EMBEDDED) + sorted(LOCAL_SETS) + sorted(HUB_SETS)


def _unknown(name: str) -> DatasetNotFound:
    close = difflib.get_close_matches(name, available_datasets(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return DatasetNotFound(
        f"Unknown dataset {name!r}.{hint} Known names: {', '.join(available_datasets())}; "
        "or pass a path to a .json/.jsonl/.parquet file."
    )


def _check_split(name: str, spec: DatasetSpec, split: str | None) -> str:
    if split is None:
        return spec.splits[0]
    if split not in spec.splits:
        raise DatasetNotFound(
            f"Dataset {name!r} has no split {split!r}; it has {list(spec.splits)} (pass split=None for the default)."
        )
    return split


def _read_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetNotFound(f"Data file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, Mapping):
            data = next((v for v in data.values() if isinstance(v, list)), None)  # {"data": [...]} wrappers
        if not isinstance(data, list):
            raise ProblemError(f"{path}: expected a JSON list of rows, got {type(data).__name__}.")
        return data
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if suffix == ".parquet":
        return _via_datasets("parquet", data_files=str(path), split="train")
    raise DatasetNotFound(f"Unsupported file type {suffix!r} for {str(path)!r}: use .json, .jsonl or .parquet.")


def _via_datasets(path: str, **kwargs: Any) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("Loading hub or parquet data needs `datasets`: pip install datasets") from exc
    ds = datasets.load_dataset(path, **kwargs)
    return [dict(row) for row in ds]


def _hub_rows(name: str, spec: DatasetSpec, split: str, config: str | None,
              data_files: Any, hub_kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    if config is not None and spec.configs and config not in spec.configs:
        raise DatasetNotFound(f"Dataset {name!r} has no config {config!r}; choose one of {list(spec.configs)}.")
    if data_files is not None:
        files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
        builder = "parquet" if all(str(f).endswith(".parquet") for f in files) else "json"
        return _via_datasets(builder, data_files=[str(f) for f in files], split="train")
    config = config or (spec.configs[0] if spec.configs else None)
    kwargs = dict(hub_kwargs)
    if config is not None:
        kwargs.setdefault("name", config)
    try:
        return _via_datasets(name, split=split, **kwargs)
    except (ConnectionError, OSError) as exc:
        raise DatasetNotFound(
            f"Could not load {name!r} (split {split!r}) from the hub: {exc}. Without network access, download "
            "the files elsewhere and pass data_files=[...] (JSON/JSONL/parquet)."
        ) from exc


def _adapt(rows: Iterable[Mapping[str, Any]], fmt: str, source: str, task: str | None,
           on_bad_row: str, limit: int | None = None) -> list[Problem]:
    if fmt not in ADAPTERS:
        raise ValueError(f"Unknown row format {fmt!r}; choose one of {sorted(ADAPTERS)}.")
    if on_bad_row not in ("raise", "warn"):
        raise ValueError(f"on_bad_row must be 'raise' or 'warn', got {on_bad_row!r}.")
    adapter = ADAPTERS[fmt]
    problems, bad = [], []
    for index, row in enumerate(rows):
        if limit is not None and len(problems) >= limit:
            break
        try:
            if not isinstance(row, Mapping):
                raise ProblemError(f"{source} row {index}: expected a dict, got {type(row).__name__}")
            problem = adapter(row, index, source)
        except ProblemError as exc:
            if on_bad_row == "raise":
                raise
            bad.append(str(exc))
            continue
        if task is not None and problem.task != task:
            raise ProblemError(f"{source}: row {index} is a {problem.task} problem but task={task!r} was requested.")
        problems.append(problem)
    if bad:
        warnings.warn(
            f"Skipped {len(bad)} malformed row(s) of {source}: "
            + "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""),
            stacklevel=3,
        )
    return problems


def _file_source(path: Path) -> str:
    """A file's source name: the set's name for the very file behind it (same problem ids), else the stem."""
    for name, spec in LOCAL_SETS.items():
        behind = shared_data_dir() / spec.path  # type: ignore[operator]
        if behind.is_file() and behind.resolve() == path.resolve():
            return name
    return path.stem


def _embedded(task: str) -> list[dict[str, Any]]:
    text = resources.files("er_env.data").joinpath("embedded", f"{task}.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_problems(
    name_or_path: str | os.PathLike,
    *,
    task: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    config: str | None = None,
    format: str | None = None,  # noqa: A002 - mirrors datasets' vocabulary
    data_files: Any = None,
    on_bad_row: str | None = None,
    **hub_kwargs: Any,
) -> list[Problem]:
    """Load a problem set.

    Args:
        name_or_path: a known name (:func:`available_datasets`), ``"<hub name>:<config>"``,
            or a local ``.json``/``.jsonl``/``.parquet`` path.
        task: expected task (``"math"``/``"code"``); a mismatch raises.
        split: split to load; ``None`` takes the dataset's default (its first).
        limit: keep the first ``limit`` problems.
        config: hub configuration (subset).
        format: row adapter for files and hub data (default: the dataset's own;
            for files, detected from the rows).
        data_files: local files holding a hub dataset's rows (offline use).
        on_bad_row: ``"raise"`` or ``"warn"`` (skip and warn). Default: ``"warn"``
            for named sets and files whose shape was detected, ``"raise"`` for Problem-schema
            files and with ``format=``.
        **hub_kwargs: passed to ``datasets.load_dataset`` (``revision``, ``version_tag``...).

    Returns:
        The problems, in file order.

    Raises:
        DatasetNotFound: unknown name/split/config, or a missing file.
        ProblemError: a malformed row with ``on_bad_row="raise"``, a task mismatch, or a file whose
            rows fit no known shape.
        ValueError: a bad argument (``limit``, ``format``, ``on_bad_row``).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}.")
    if task is not None and task not in ("math", "code"):
        raise ValueError(f"task must be 'math', 'code' or None, got {task!r}.")
    name = os.fspath(name_or_path)
    base, _, name_config = name.partition(":")
    if name in EMBEDDED:
        _check_split(name, DatasetSpec(EMBEDDED[name], "problem", ("test",)), split)
        rows, fmt, source, policy = _embedded(EMBEDDED[name]), "problem", "embedded", "raise"
    elif name in LOCAL_SETS:
        spec = LOCAL_SETS[name]
        _check_split(name, spec, split)
        root = shared_data_dir()
        path = root / spec.path  # type: ignore[operator]
        if not path.is_file():
            raise DatasetNotFound(
                f"Dataset {name!r} reads {str(path)!r}, which does not exist. Set ER_SHARED_DATA to the directory "
                "holding math/ and code/ (the paper's benchmark files)."
            )
        rows, fmt, source, policy = _read_file(path), format or spec.format, name, "warn"
    elif base in HUB_SETS:
        spec = HUB_SETS[base]
        chosen = _check_split(base, spec, split)
        rows = _hub_rows(base, spec, chosen, config or name_config or None, data_files, hub_kwargs)
        fmt, source, policy = format or spec.format, base.split("/")[-1], "warn"
    elif Path(name).suffix.lower() in (".json", ".jsonl", ".parquet") or Path(name).is_file():
        rows, source = _read_file(Path(name)), _file_source(Path(name))
        fmt = format or detect_format(rows, str(name))
        # strict for a shape you name and for the project's schema; a detected shape of the paper's files
        # skips bad rows with a warning, as the names of those files do
        policy = "raise" if format or fmt == "problem" else "warn"
    else:
        raise _unknown(name)
    return _adapt(rows, fmt, source, task, on_bad_row or policy, limit)
