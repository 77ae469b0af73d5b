"""The docs site builds with `mkdocs build --strict`: a broken link or anchor, a page missing from the nav, or a
benchmark figure without its source fails here, in `make test`, instead of on a reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_site_builds_strict_with_every_page_in_the_nav(tmp_path: Path) -> None:
    # Given the docs as committed (mkdocs.yml sets strict and validates links and anchors)
    # When the site is built into a temporary directory
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    # Then it builds without a warning, and every page of docs/ became a page of the site
    assert result.returncode == 0, result.stderr[-3000:]
    pages = {path.stem for path in (ROOT / "docs").glob("*.md")}
    built = {path.parent.name for path in (tmp_path / "site").glob("*/index.html")} | {"index"}
    assert pages <= built, f"pages not built: {sorted(pages - built)}"
