"""The documentation site builds strictly and offline, and asks browsers for nothing outside the site."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.docs.snippets import REPO


def _config() -> dict:
    # mkdocs.yml has no custom YAML tags; plain safe_load reads it
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def test_config_fetches_nothing_at_build_or_view_time():
    cfg = _config()
    assert cfg["theme"]["name"] == "material" and cfg["theme"]["font"] is False  # no Google Fonts
    assert cfg.get("strict") is True
    assert "analytics" not in (cfg.get("extra") or {})


def _site(tmp_path: Path) -> Path:
    """The site `make docs` built (make test builds it before the tests), else a strict build here."""
    built = REPO / _config()["site_dir"]
    sources = [REPO / "mkdocs.yml", *(REPO / "docs").rglob("*.md")]
    if (built / "index.html").is_file() and (built / "index.html").stat().st_mtime > max(
            p.stat().st_mtime for p in sources):
        return built
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                           str(REPO / "mkdocs.yml"), "-d", str(site)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return site


def test_site_builds_strictly_without_external_assets(tmp_path):
    site = _site(tmp_path)
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10
    external = re.compile(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.IGNORECASE)
    for page in pages:
        text = page.read_text()
        hits = external.findall(text)
        assert not hits, f"{page.relative_to(site)} loads an external asset: {hits[:3]}"
    reference = (site / "reference" / "budget.html").read_text()
    assert "BudgetTracker" in reference and "BudgetedCompletion" in reference


def test_make_docs_fails_on_a_broken_link(tmp_path):
    """`make docs`'s own mkdocs flags turn a broken link into a failure (``--quiet`` once hid every warning)."""
    import shutil

    recipe = (REPO / "Makefile").read_text().split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    flags = re.search(r"mkdocs build ([^;\"$)]*)", recipe).group(1).split()
    assert "--strict" in flags and "--quiet" not in flags and "-q" not in flags
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    (docs / "security.md").write_text((docs / "security.md").read_text() + "\n[gone](no-such-page.md)\n")
    cfg = _config()
    cfg.update(docs_dir=str(docs), site_dir=str(tmp_path / "site"),
               hooks=[str(REPO / h) for h in cfg.get("hooks", [])])
    for plugin in cfg["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(REPO)]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", *flags, "-f", str(tmp_path / "mkdocs.yml")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert proc.returncode != 0 and "no-such-page.md" in proc.stderr, proc.stderr[-3000:]
