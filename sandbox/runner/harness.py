r"""In-process harness: runs one user Python program the way ``python3 main.py`` would.

Stdlib only and importable on its own: :mod:`sandbox.runner.job` calls :func:`run_harness`
inside the forked, privilege-dropped test child (the fast "fork" path) or execs
``python3 -I harness.py`` (the "exec" path), which reads its configuration from an
inherited pipe fd and then closes it.

Three kinds of program (``cfg["kind"]``):

- ``stdio``: the source runs as ``__main__`` with the real fds 0/1/2 (``sys.stdin.buffer``,
  ``sys.stdin.readline`` and ``global`` at top level behave as in a script). No record.
- ``call`` (LiveCodeBench call-based): LCB's import prelude, then the source as module
  ``solution``; ``Solution()`` is instantiated when the source contains ``class Solution``
  (as LCB does), the method ``fn_name`` is called with one JSON value per input line, a
  returned tuple becomes a list, and the JSON-encoded return value is the record.
- ``assert`` (LeetCode/HumanEval): :data:`LEETCODE_PRELUDE` (typing, collections, ...,
  ``ListNode``/``TreeNode`` with ``list_node``/``tree_node``/``is_same_list``/``is_same_tree``),
  the optional extra prelude, the source, then ``test_code``, all in one ``__main__``
  namespace. The record says whether the test code ran to the end.

Result record: for ``call``/``assert`` the harness writes ``<nonce>\n<json>`` to the record
fd (truncating it first) as its very last act, then ``os._exit``. A program that prints
"passed" or exits early never produces a record with the nonce, so it cannot fake a pass.
The nonce reaches the harness through memory/a pipe the program does not own; a program
that deliberately introspects the interpreter (``gc``, frames) could still find it, which
is inherent to any in-process harness (as is an ``__eq__`` that always returns True in
assert-style tests) — document, do not rely on it as a security boundary.

Record JSON: ``{"ok": true, "return_json": "<json text>"|null, "return_repr": "..."}`` for
call, ``{"ok": true}`` for assert, or ``{"ok": false, "error_type": "AssertionError",
"error": "<message>"}`` when the test raised.

Integers: ``sys.set_int_max_str_digits(0)`` is applied in every kind, so programs printing
integers over 4300 digits work (LCB's known false negative).
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import traceback
import types

__all__ = ["run_harness", "LCB_IMPORT_PRELUDE", "LEETCODE_PRELUDE", "preload"]

# LiveCodeBench's call-based import prelude (same names, same order, same recursion limit).
LCB_IMPORT_PRELUDE = "\n".join(
    [f"from {m} import *" for m in (
        "string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
        "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")]
    + [f"import {m}" for m in (
        "string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
        "statistics", "itertools", "functools", "operator", "io", "sys", "json")]
    + ["sys.setrecursionlimit(50000)", ""]
)

# What LeetCode's Python judge provides without imports, plus the helpers the
# LeetCode-style `check(candidate)` tests call.
LEETCODE_PRELUDE = '''\
from typing import *
from collections import *
from heapq import *
from bisect import *
from itertools import *
from functools import *
from math import *
from operator import *
from string import *
from re import *
import typing, collections, heapq, bisect, itertools, functools, math, operator, string, re
import random, copy, sys, json
from math import inf
sys.setrecursionlimit(50000)


class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right


def list_node(values):
    head = ListNode()
    cur = head
    for v in values:
        cur.next = ListNode(v)
        cur = cur.next
    return head.next


def tree_node(values):
    if not values:
        return None
    root = TreeNode(values[0])
    queue = deque([root])
    i = 1
    while queue and i < len(values):
        node = queue.popleft()
        if i < len(values) and values[i] is not None:
            node.left = TreeNode(values[i])
            queue.append(node.left)
        i += 1
        if i < len(values) and values[i] is not None:
            node.right = TreeNode(values[i])
            queue.append(node.right)
        i += 1
    return root


def is_same_list(p1, p2):
    while p1 is not None and p2 is not None:
        if p1.val != p2.val:
            return False
        p1, p2 = p1.next, p2.next
    return p1 is None and p2 is None


def is_same_tree(p, q):
    if p is None and q is None:
        return True
    if p is None or q is None or p.val != q.val:
        return False
    return is_same_tree(p.left, q.left) and is_same_tree(p.right, q.right)
'''


# Imported once by the zygote so forked programs start warm (and so they import even where
# the interpreter's own files are not readable by the sandbox uid). Optional third-party
# modules LeetCode provides (sortedcontainers) are preloaded when installed.
PRELOAD_MODULES = (
    "abc", "array", "ast", "atexit", "base64", "binascii", "bisect", "calendar", "cmath", "collections",
    "collections.abc", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "enum", "fractions",
    "functools", "graphlib", "hashlib", "heapq", "io", "itertools", "json", "math", "numbers", "operator",
    "pprint", "queue", "random", "re", "secrets", "statistics", "string", "struct", "textwrap", "threading",
    "time", "types", "typing", "unicodedata", "uuid", "weakref", "zlib", "socket", "select", "selectors",
    "subprocess", "signal", "tempfile", "pathlib", "shutil", "glob", "fnmatch", "platform", "locale", "gc",
    "resource", "traceback", "inspect", "keyword", "encodings.idna", "mmap", "ctypes", "sortedcontainers",
)


# Compiled preludes, filled by preload() in the zygote so forked children do not recompile
# them per test (compiling LEETCODE_PRELUDE alone costs ~0.6 ms plus copy-on-write faults).
_PRELUDE_CODE: dict[str, types.CodeType] = {}
# The globals each prelude leaves (executed once in the zygote as ``__main__``): a forked child
# copies them into its fresh namespace instead of re-running ~40 import statements.
_PRELUDE_GLOBALS: dict[str, dict] = {}
_PRELUDE_RECURSION_LIMIT = 50000
_DEFAULT_RECURSION_LIMIT = sys.getrecursionlimit()


def _prelude_code(text: str):
    code = _PRELUDE_CODE.get(text)
    return code if code is not None else compile(text, "<prelude>", "exec")


def preload() -> None:
    """Import the preload modules and everything the preludes import (zygote, once)."""
    import importlib

    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for prelude in (LCB_IMPORT_PRELUDE, LEETCODE_PRELUDE):
        limit = sys.getrecursionlimit()
        _PRELUDE_CODE[prelude] = compile(prelude, "<prelude>", "exec")
        ns = {"__name__": "__main__", "__builtins__": builtins}
        exec(_PRELUDE_CODE[prelude], ns)
        if sys.getrecursionlimit() != _PRELUDE_RECURSION_LIMIT:
            raise RuntimeError("a prelude's recursion limit changed; update _PRELUDE_RECURSION_LIMIT")
        _PRELUDE_GLOBALS[prelude] = {k: v for k, v in ns.items() if not k.startswith("__")}
        sys.setrecursionlimit(limit)


def _fresh_stdio() -> None:
    """Give the program the standard streams a fresh interpreter would have on fds 0/1/2."""
    # the __std*__ names are Final in typeshed; a fresh interpreter has them on these fds, so set them too
    sys.stdin = sys.__stdin__ = open(0, "r", encoding="utf-8", closefd=False)  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace",  # type: ignore[misc]
                                       closefd=False, buffering=1)


def _script_like(filename: str, reseed: bool) -> None:
    """Undo what a forked interpreter inherited and a fresh ``python3 main.py`` would not have."""
    import signal

    sys.argv = [filename]
    if sys.path and sys.path[0] != os.path.dirname(filename):
        sys.path[0] = os.path.dirname(filename)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    random = sys.modules.get("random")
    if random is not None and reseed:
        # A fresh interpreter seeds from os.urandom. After a fork, random's own at-fork hook has
        # already reseeded; only a later test of a shared-process session needs it here.
        random.seed()


def _new_main(name: str, filename: str) -> dict:
    import types

    module = types.ModuleType(name)
    module.__file__ = filename
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules[name] = module
    return module.__dict__


def _exit_code(exc: BaseException) -> int:
    """The interpreter's exit status for an uncaught exception (SystemExit rules)."""
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        print(code, file=sys.stderr)
        return 1
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # hide harness frames: the traceback reads like a plain script's
    traceback.print_exception(type(exc), exc, tb)
    return 1


def _write_record(fd: int, nonce: str, record: dict) -> None:
    try:
        data = json.dumps(record)
    except (TypeError, ValueError):
        data = json.dumps({"ok": False, "error_type": "HarnessError", "error": "unencodable record"})
    payload = (nonce + "\n" + data).encode("utf-8", "backslashreplace")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def _encode_return(value) -> dict:
    if isinstance(value, tuple):
        value = list(value)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = None
    try:
        shown = repr(value)[:1000]
    except Exception:  # noqa: BLE001 - a user __repr__ may raise anything
        shown = "<unrepresentable>"
    return {"ok": True, "return_json": text, "return_repr": shown}


def _run_prelude(text: str, ns: dict) -> None:
    """Execute a standard prelude in ``ns`` (or copy what it left, when the zygote ran it)."""
    names = _PRELUDE_GLOBALS.get(text)
    if names is None:
        exec(_prelude_code(text), ns)
        return
    ns.update(names)
    sys.setrecursionlimit(_PRELUDE_RECURSION_LIMIT)


def _run_call(cfg: dict, ns: dict) -> dict:
    _run_prelude(LCB_IMPORT_PRELUDE, ns)
    exec(compile(cfg["source"], cfg["filename"], "exec"), ns)
    target = ns["Solution"]() if "class Solution" in cfg["source"] and "Solution" in ns else None
    fn_name = cfg["fn_name"]
    method = getattr(target, fn_name, None) if target is not None else ns.get(fn_name)
    if method is None:
        raise AttributeError(f"the program defines no function or Solution method {fn_name!r}")
    args = [json.loads(line) for line in cfg["input"].split("\n")]
    return _encode_return(method(*args))


def _run_assert(cfg: dict, ns: dict) -> dict:
    _run_prelude(LEETCODE_PRELUDE, ns)
    if cfg.get("prelude"):
        exec(compile(cfg["prelude"], "<extra-prelude>", "exec"), ns)
    exec(compile(cfg["source"], cfg["filename"], "exec"), ns)
    exec(compile(cfg["test_code"], "<tests>", "exec"), ns)
    return {"ok": True}


def _shutdown(session: bool = False) -> None:
    """What the interpreter does at exit: join non-daemon threads, run atexit, flush.

    Args:
        session: the process goes on to the next test of a shared-process session, so
            threads are joined without marking the interpreter's main thread as finished.

    """
    threading = sys.modules.get("threading")
    if threading is not None and not session:
        try:
            threading._shutdown()  # noqa: SLF001 - same call the interpreter makes at exit
        except Exception:  # noqa: BLE001
            pass
    elif threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                try:
                    thread.join()
                except Exception:  # noqa: BLE001
                    pass
    import atexit

    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - e.g. output file over its size limit
            pass


def run_harness(cfg: dict, record_fd: int | None, session: bool = False) -> int:
    """Run the program described by ``cfg``; returns the process exit status.

    Args:
        cfg: ``kind`` ("stdio"|"call"|"assert"), ``source``, ``filename``, ``nonce`` and,
            per kind, ``fn_name``/``input`` (call) or ``test_code``/``prelude`` (assert).
        record_fd: fd for the result record (call/assert); ``None`` for stdio.
        session: one test of a shared-process session (see :mod:`sandbox.runner.session`): the
            interpreter state a script sees is reset first and the process lives on.

    Returns:
        The exit status the interpreter would have used (0 on success).

    """
    if session:
        sys.setrecursionlimit(_DEFAULT_RECURSION_LIMIT)
    _fresh_stdio()
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    kind = cfg["kind"]
    nonce = cfg.pop("nonce", "")
    _script_like(cfg["filename"], reseed=session)
    ns = _new_main("__main__" if kind != "call" else "solution", cfg["filename"])
    record = None
    code = 0
    try:
        if kind == "stdio":
            exec(compile(cfg["source"], cfg["filename"], "exec"), ns)
        elif kind == "call":
            record = _run_call(cfg, ns)
        else:
            record = _run_assert(cfg, ns)
    except BaseException as exc:  # noqa: BLE001 - mirror the interpreter's top level
        if kind != "stdio" and not isinstance(exc, SystemExit):
            record = {"ok": False, "error_type": type(exc).__name__, "error": _safe_str(exc)}
        elif kind != "stdio":
            record = {"ok": False, "error_type": "SystemExit", "error": _safe_str(exc)}
        code = _exit_code(exc)
        if kind != "stdio" and code == 0:
            code = 1
    _shutdown(session)
    if record_fd is not None and record is not None:
        _write_record(record_fd, nonce, record)
    return code


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)[:1000]
    except Exception:  # noqa: BLE001
        return "<unprintable>"


def _main() -> None:
    """Exec path: ``python3 -I harness.py CFG_FD RECORD_FD``."""
    cfg_fd, record_fd = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(cfg_fd, "rb") as f:
        cfg = json.loads(f.read())
    code = run_harness(cfg, record_fd if cfg["kind"] != "stdio" else None)
    os._exit(code)


if __name__ == "__main__":
    _main()
