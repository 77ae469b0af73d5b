"""Every benchmark section's results carry the run they come from (scripts/benchlib.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scripts import benchlib


def test_write_results_records_the_date_commit_and_machine_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a section's raw numbers
    monkeypatch.setattr(benchlib, "RESULTS", tmp_path / "bench-results")
    # When they are written
    path = benchlib.write_results("predict_api", {"single": {"p50_ms": 1.5}})
    # Then the file is named after the section and holds them beside the run's metadata
    written = json.loads(path.read_text())
    assert path == tmp_path / "bench-results" / "predict_api.json"
    assert written["results"] == {"single": {"p50_ms": 1.5}}
    run = written["run"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["date"])
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", run["commit"])
    assert run["machine"]["cpus"] >= 1 and run["machine"]["python"].count(".") == 2
