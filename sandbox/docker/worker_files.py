"""The files of the ``sandbox`` package the worker image needs, and nothing else (stdlib only).

The worker image runs only the in-boundary runner (``sandbox.runner.job``, ``sandbox.runner.socket_server``).
This script follows their ``sandbox.*`` imports (every ``import`` statement in the module,
including function-level ones) and fails if any other import is not part of the standard
library, so a runner that grows a third-party dependency breaks the image build loudly
instead of failing inside a sandbox at run time.

Usage (the worker Dockerfile runs it at build time)::

    python3 worker_files.py SRC_ROOT DEST_ROOT   # copy the closure of SRC_ROOT/sandbox to DEST_ROOT/sandbox
    python3 worker_files.py SRC_ROOT             # list the files and print their combined sha256
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import sys

ENTRY_MODULES = ("sandbox.runner.job", "sandbox.runner.socket_server")
PACKAGE = "sandbox"


class NonStdlibImport(RuntimeError):
    """A module the worker needs imports something outside the standard library."""


def _module_path(root: str, name: str) -> str | None:
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _imports(path: str) -> list[str]:
    """Absolute module names imported anywhere in the file (``from pkg import mod`` gives both)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise NonStdlibImport(f"{path}: relative import at line {node.lineno}; use 'from sandbox import ...'")
    return names


def closure(root: str, entries: tuple[str, ...] = ENTRY_MODULES) -> list[str]:
    """Paths (relative to ``root``) of every ``sandbox`` module the entry modules need.

    Args:
        root: the directory that contains the ``sandbox`` package.
        entries: dotted module names to start from.

    Returns:
        Sorted relative paths, package ``__init__.py`` files included.

    Raises:
        NonStdlibImport: a needed module imports a non-stdlib, non-``sandbox`` module.
        FileNotFoundError: an entry module does not exist under ``root``.

    """
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    seen: set[str] = set()
    todo = list(entries)
    files: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_path(root, name)
        if path is None:
            if name in entries:
                raise FileNotFoundError(f"entry module {name!r} not found under {root}")
            # "from sandbox.runner import harness" also lists "sandbox.runner.harness"; non-modules end here
            continue
        parts = name.split(".")
        for i in range(1, len(parts)):  # parent packages run their __init__ on import
            init = _module_path(root, ".".join(parts[:i]))
            if init:
                files.add(os.path.relpath(init, root))
        files.add(os.path.relpath(path, root))
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top == PACKAGE:
                todo.append(imported)
            elif top not in stdlib:
                raise NonStdlibImport(
                    f"{os.path.relpath(path, root)} imports {imported!r}, which is not in the standard library; "
                    "the sandbox runner must stay stdlib-only (move that import out of the runner's modules)")
    return sorted(files)


def digest(root: str, files: list[str]) -> str:
    """sha256 over the relative paths and contents of ``files``."""
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            h.update(f.read() + b"\0")
    return h.hexdigest()


def main(argv: list[str]) -> int:
    """CLI entry point (see the module docstring)."""
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[0]
    files = closure(root)
    if len(argv) == 1:
        print("\n".join(files))
        print(f"sha256 {digest(root, files)}")
        return 0
    for rel in files:
        dest = os.path.join(argv[1], rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(os.path.join(root, rel), dest)
    with open(os.path.join(argv[1], PACKAGE, "WORKER_SOURCE_SHA256"), "w") as f:
        f.write(digest(root, files) + "\n")
    print(f"worker files: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
