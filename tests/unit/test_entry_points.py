"""Every program of the project answers `--help` with its usage and runs nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = [
    ["-m", "lodbrok_cli"],
    ["-m", "lodbrok_cli", "rollback"],
    ["-m", "devstack"],
    ["-m", "devstack.demo"],
    ["-m", "scripts.samlocal"],
    *[[f"scripts/{path.name}"] for path in sorted((ROOT / "scripts").glob("*.py")) if "__main__" in path.read_text()],
]


@pytest.mark.parametrize("program", PROGRAMS, ids=" ".join)
def test_entry_point_help_prints_usage_and_runs_nothing(program: list[str]) -> None:
    # Given a program as the Makefile or the docs run it; When it is asked for --help
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "model"), str(ROOT)])}
    completed = subprocess.run(
        [sys.executable, *program, "--help"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    # Then it prints its usage and exits 0, having started nothing (the demo no local stack)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("usage:")
    assert "starting the local stack" not in completed.stdout
