"""MkDocs hook: the figures under ``benchmarks/`` are documentation files at ``benchmarks/<name>.png``.

``docs/benchmarks/index.md`` includes ``benchmarks/RESULTS.md`` as it is, and RESULTS.md names
its figures relative to itself (``er_cut.png``); the guides show the same figures. The benchmark
scripts write each figure once, under ``benchmarks/``; this hook serves those files at the
matching place in the site instead of keeping copies under ``docs/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files


def on_files(files: Files, config: Any) -> Files:
    """Add every ``benchmarks/*.png`` of the repository as ``benchmarks/<name>.png``."""
    repo = Path(__file__).resolve().parents[2]  # this file is <repo>/docs/_hooks/
    for png in sorted((repo / "benchmarks").glob("*.png")):
        uri = f"benchmarks/{png.name}"
        if files.get_file_from_path(uri) is None:
            files.append(File(uri, src_dir=str(repo), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files
