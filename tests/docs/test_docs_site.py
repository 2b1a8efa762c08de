"""The documentation site builds strictly and offline, and asks browsers for nothing outside the site."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
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
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f",
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
