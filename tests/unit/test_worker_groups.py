"""`make test` spreads the suite over workers with pytest-xdist; the tests of one `xdist_group` must share one.

The Docker tests share one engine and one `.aws-sam/build`, the browser tests one Chromium and one stack, the docs'
examples one stack in page order: run on two workers at once they would race. xdist groups them only together with a
pytest that reads its rewritten test ids, so the installed pair is checked here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GROUPED_TESTS = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("together")


@pytest.mark.parametrize("index", range(6))
def test_writes_its_worker(index):
    with open(os.path.join(os.environ["WORKERS_SEEN"], f"worker-{index}"), "w") as seen:
        seen.write(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("index", range(6))
def test_ungrouped(index):
    pass
"""


def test_worker_groups_keep_a_groups_tests_on_one_worker(tmp_path: Path) -> None:
    # Given six tests of one group, and six others that keep the second worker busy
    (tmp_path / "test_grouped.py").write_text(GROUPED_TESTS)
    seen = tmp_path / "seen"
    seen.mkdir()

    # When they run as `make test` runs the suite
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_grouped.py"),
        ],
        cwd=tmp_path,
        env={**os.environ, "WORKERS_SEEN": str(seen)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then all pass, and every test of the group ran on the same worker
    assert completed.returncode == 0, completed.stdout[-3000:]
    workers = [path.read_text() for path in seen.glob("worker-*")]
    assert len(workers) == 6
    assert len(set(workers)) == 1, workers
