"""Tokenizer resolution for the environments: a path, an object, or the default tiny one.

The default (``tokenizer=None``) is the tokenizer of the project's tiny R1-style model
(``er_tools.tiny_model``), built once into ``$ER_CACHE_DIR/tiny-model`` (default
``~/.cache/er_env/tiny-model``) and reused afterwards. Loaded tokenizers are cached per
path, so ``gym.make_vec`` and ``check_env`` (which re-make the environment) load each
one once per process. ``transformers`` is imported only here, lazily.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

__all__ = ["default_cache_dir", "default_tiny_model_dir", "load_tokenizer"]


def default_cache_dir() -> Path:
    """``$ER_CACHE_DIR`` or ``~/.cache/er_env``."""
    return Path(os.environ.get("ER_CACHE_DIR") or Path.home() / ".cache" / "er_env")


def default_tiny_model_dir(build: bool = True) -> Path:
    """The cached tiny model directory, built on first use when ``build`` is True.

    Raises:
        FileNotFoundError: the model is not built and ``build`` is False.
    """
    path = default_cache_dir() / "tiny-model"
    if not (path / "tokenizer_config.json").is_file() or not (path / "config.json").is_file():
        if not build:
            raise FileNotFoundError(f"No tiny model at {path}; run `er tiny-model --out {path}`.")
        from er_tools.tiny_model import build_tiny_model

        build_tiny_model(path)
    return path


@functools.lru_cache(maxsize=8)
def _from_path(path: str) -> Any:
    if not Path(path).exists():
        raise FileNotFoundError(
            f"Tokenizer path {path!r} does not exist; pass a local model directory or a tokenizer object "
            "(no model hub is contacted)."
        )
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("Loading a tokenizer by path needs transformers: pip install transformers") from exc
    return AutoTokenizer.from_pretrained(path)


def load_tokenizer(spec: Any = None) -> Any:
    """Resolve the environment's ``tokenizer`` argument.

    Args:
        spec: ``None`` (the default tiny model's tokenizer), a path to a local
            model/tokenizer directory, or a tokenizer object (returned as is).

    Returns:
        A tokenizer with ``encode``, ``decode`` and a chat template.

    Raises:
        FileNotFoundError: a path that does not exist.
        TypeError: ``spec`` is neither None, a path nor a tokenizer-like object.
    """
    if spec is None:
        return _from_path(str(default_tiny_model_dir()))
    if isinstance(spec, (str, os.PathLike)):
        return _from_path(str(Path(spec).expanduser().resolve()))
    if callable(getattr(spec, "encode", None)) and callable(getattr(spec, "decode", None)):
        return spec
    raise TypeError(
        f"tokenizer must be None, a path or a tokenizer object with encode/decode, got {type(spec).__name__}."
    )
