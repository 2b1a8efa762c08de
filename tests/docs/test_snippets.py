"""Every python and bash block of README.md and docs/ runs as written (issue 26).

The blocks of one page run in page order: python blocks in one namespace in this process, bash blocks with
``bash -euo pipefail`` and this interpreter's venv first on PATH; all pages share one working directory, so
the tiny model that the pages build with ``er tiny-model --out tiny-r1`` is built once (a rerun with the
same settings reuses it). Background servers a page starts (``... &``) are stopped after the page.
A block marked ``<!-- not-run: reason -->`` is skipped (GPU, hub model, several hosts, root).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.snippets import REPO, MarkerError, blocks, pages, runnable

BASH_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The pages' shared working directory (``$ER_SNIPPETS_DIR`` keeps it for inspection and reruns)."""
    if os.environ.get("ER_SNIPPETS_DIR"):
        path = Path(os.environ["ER_SNIPPETS_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("snippets")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(REPO)
    env["HF_HUB_OFFLINE"] = "1"  # nothing in the docs' runnable blocks may need the hub
    return env


def test_not_run_markers_have_reasons_and_precede_a_fence():
    for page in pages():
        blocks(page)  # raises MarkerError naming the page and line


def test_marker_parsing_rejects_markers_without_reason(tmp_path, monkeypatch):
    import tests.docs.snippets as snippets

    monkeypatch.setattr(snippets, "REPO", tmp_path)
    page = tmp_path / "p.md"
    page.write_text("<!-- not-run: -->\n```bash\nfalse\n```\n")
    with pytest.raises(MarkerError, match="needs a reason"):
        snippets.blocks(page)
    page.write_text("<!-- not-run: GPU -->\n\n```bash\nfalse\n```\n")
    with pytest.raises(MarkerError, match="right before a code fence"):
        snippets.blocks(page)
    page.write_text("<!-- not-run: GPU -->\n```bash\nfalse\n```\n\n```python\nx = 1\n```\n")
    assert [(b.language, b.not_run) for b in snippets.blocks(page)] == [("bash", "GPU"), ("python", None)]
    assert [b.code for b in snippets.runnable(page)] == ["x = 1\n"]


def _run_bash(code: str, where: str, cwd: Path, log: Path, groups: list[int]) -> None:
    with log.open("w") as out:  # a file, not a pipe: a background server would hold a pipe open
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        groups.append(proc.pid)
        try:
            rc = proc.wait(timeout=BASH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = -1
    text = log.read_text()
    print(f"--- {where} (bash, exit {rc})\n{text[-3000:]}")
    assert rc == 0, f"{where}: the bash block failed (exit {rc}):\n{code}\n--- output ---\n{text[-4000:]}"


def _stop(groups: list[int]) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in pages() if runnable(p)], ids=lambda p: str(p.relative_to(REPO)))
def test_page_snippets_run(page: Path, workdir: Path, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {"__name__": "__main__"}
    groups: list[int] = []
    try:
        for block in runnable(page):
            if block.language == "bash":
                _run_bash(block.code, block.where, workdir, workdir / "bash.log", groups)
            else:
                exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - the page's own code
    finally:
        _stop(groups)
