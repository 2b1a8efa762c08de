"""Quiet model loading: transformers' per-tensor progress bars off while weights load or save.

``from_pretrained`` draws a "Loading weights" bar (and ``save_pretrained`` a "Writing model shards"
bar) even for a model that loads in milliseconds, once per process: with several training ranks
that is one bar per rank per load. Loading is not where the time goes in this project's commands
(generation and training are, and they report their own progress), so loads run without them.
Downloads from the hub keep huggingface_hub's own progress bars.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

__all__ = ["quiet_model_loading"]

_lock = threading.Lock()
_depth = 0  # blocks currently inside quiet_model_loading
_restore = False  # whether the bars were on when the outermost block started


@contextlib.contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Turn transformers' progress bars off inside the block (re-entrant; restored on exit).

    Without transformers installed this does nothing.
    """
    global _depth, _restore
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    with _lock:
        if _depth == 0:
            _restore = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                hf_logging.enable_progress_bar()
