"""The one place that resolves a model's tokenizer and protocol tokens (``</think>``, EOS ids).

Engines stop on the tokenizer's ``eos_token_id`` *and* on every id of the model's
``generation_config.eos_token_id``. Every backend (HF, vLLM, OpenAI) and the
Gymnasium environments build their :class:`~er_env.budget.SpecialTokens` through
:func:`special_tokens`, so an environment episode and a backend rollout of the same
tokens always agree on where a completion ends. :func:`load_tokenizer` resolves the
``tokenizer`` argument users pass (``"tiny"``, a directory, a hub name or an object).
``transformers`` is imported lazily.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from er_env.budget import SpecialTokens

__all__ = ["merge_eos_ids", "model_eos_ids", "special_tokens", "load_tokenizer", "TINY_TOKENIZER",
           "TINY_TOKENIZER_DIR", "DefaultTokenizerWarning", "TokenizerNotFound"]


def merge_eos_ids(*values: Any) -> list[int]:
    """Distinct sorted ids from EOS settings that are an int, a list of ints or ``None``."""
    ids: set[int] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return sorted(ids)


def model_eos_ids(tokenizer: Any, model_path: str | None = None, generation_config: Any = None) -> list[int]:
    """EOS ids of a model: the tokenizer's plus its generation config's.

    Args:
        tokenizer: a HF tokenizer (``eos_token_id``, ``name_or_path``).
        model_path: where ``generation_config.json`` lives (default: the tokenizer's
            ``name_or_path``); a missing file adds nothing.
        generation_config: a loaded ``GenerationConfig`` (e.g. ``model.generation_config``);
            when given, no file is read.

    Returns:
        Sorted distinct ids (empty if none is known).

    """
    extra: Any = None
    if generation_config is not None:
        extra = getattr(generation_config, "eos_token_id", None)
    else:
        path = model_path or getattr(tokenizer, "name_or_path", None)
        if path:
            from transformers import GenerationConfig

            try:
                extra = GenerationConfig.from_pretrained(path).eos_token_id
            except OSError:  # no generation_config.json there (tokenizer-only dir, or offline hub name)
                extra = None
    return merge_eos_ids(getattr(tokenizer, "eos_token_id", None), extra)


def special_tokens(
    tokenizer: Any,
    *,
    think_end: str = "</think>",
    think_start: str = "<think>",
    eos_ids: Sequence[int] | None = None,
    model_path: str | None = None,
    generation_config: Any = None,
) -> SpecialTokens:
    """The protocol tokens of a model.

    Args:
        tokenizer: a HF tokenizer.
        think_end: the thinking delimiter text.
        think_start: the opening delimiter text.
        eos_ids: explicit EOS ids (default: :func:`model_eos_ids`).
        model_path: see :func:`model_eos_ids`.
        generation_config: see :func:`model_eos_ids`.

    Returns:
        The resolved :class:`~er_env.budget.SpecialTokens`.

    Raises:
        TokenizerError: the tokenizer cannot represent ``think_end`` or no EOS id is known.

    """
    if eos_ids is None:
        eos_ids = model_eos_ids(tokenizer, model_path, generation_config) or None
    return SpecialTokens.from_tokenizer(tokenizer, think_end=think_end, think_start=think_start, eos_ids=eos_ids)


# --------------------------------------------------------------------------- tokenizers
#: the ``tokenizer`` value that names the bundled tiny test tokenizer
TINY_TOKENIZER = "tiny"
#: where the bundled tiny tokenizer lives (package data, built by ``er_tools.tiny_model.build_tiny_tokenizer``)
TINY_TOKENIZER_DIR = Path(__file__).resolve().parent / "data" / "tiny_tokenizer"


class DefaultTokenizerWarning(UserWarning):
    """The bundled tiny test tokenizer is in use (``tokenizer="tiny"``, the environments' default)."""


@functools.lru_cache(maxsize=16)
def _pretrained(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except OSError as exc:  # not on disk and not reachable on (or not cached from) the hub
        raise TokenizerNotFound(
            f"Cannot load tokenizer {name_or_path!r}: it is not a local directory and could not be loaded "
            f"from the Hugging Face hub ({exc.__class__.__name__}: {str(exc)[:300]}). Pass a local model "
            "directory, a hub name that is cached (offline: set HF_HUB_OFFLINE=1 after downloading it once), "
            f"a tokenizer object, or {TINY_TOKENIZER!r} for the bundled tiny test tokenizer."
        ) from exc


class TokenizerNotFound(FileNotFoundError):
    """A ``tokenizer`` spec that names neither a loadable directory nor a reachable/cached hub model."""


def load_tokenizer(spec: Any = TINY_TOKENIZER) -> Any:
    """Resolve a ``tokenizer`` argument (environments, ``er generate``, the OpenAI backend).

    Args:
        spec: ``"tiny"`` (the bundled tiny R1-style test tokenizer: no download, no build;
            announced once with a :class:`DefaultTokenizerWarning`), a local model/tokenizer
            directory, a hub name (``"deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"``, loaded by
            ``AutoTokenizer.from_pretrained``, so ``HF_HUB_OFFLINE``/the HF cache apply), or a
            tokenizer object (returned as is). Loaded tokenizers are cached per name, so
            ``gym.make_vec`` and ``check_env`` load each one once per process.

    Returns:
        A tokenizer with ``encode``, ``decode`` and a chat template.

    Raises:
        TokenizerNotFound: a name that is neither a local directory nor loadable from the hub.
        TypeError: ``spec`` is neither a string, a path nor a tokenizer-like object.

    """
    if spec is None or spec == TINY_TOKENIZER:
        warnings.warn(
            "Using the bundled tiny test tokenizer (tokenizer='tiny'): fine for tests and demos, meaningless for "
            "a real model. Pass tokenizer=<local dir | hub name | tokenizer object> to match your policy.",
            DefaultTokenizerWarning, stacklevel=2,
        )
        return _pretrained(str(TINY_TOKENIZER_DIR))
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and Path(spec).expanduser().exists()):
        path = Path(spec).expanduser().resolve()
        if not path.is_dir():
            raise TokenizerNotFound(f"Tokenizer path {str(path)!r} is a file; pass the model/tokenizer directory.")
        return _pretrained(str(path))
    if isinstance(spec, str):
        if not spec.strip() or spec.startswith((".", "/", "~")):
            raise TokenizerNotFound(f"Tokenizer path {spec!r} does not exist; pass an existing model directory, "
                                    f"a hub name, or {TINY_TOKENIZER!r}.")
        return _pretrained(spec)
    if callable(getattr(spec, "encode", None)) and callable(getattr(spec, "decode", None)):
        return spec
    raise TypeError(f"tokenizer must be {TINY_TOKENIZER!r}, a path, a hub name or a tokenizer object with "
                    f"encode/decode, got {type(spec).__name__}.")
