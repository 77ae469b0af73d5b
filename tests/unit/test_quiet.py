"""TensorFlow's start-up noise (lodbrok_cli.quiet): off the terminal of the programs, real errors still on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lodbrok_cli.quiet import NOISE

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[bytes]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")} | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "model"), str(ROOT)])
    }
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, timeout=300)


@pytest.mark.parametrize(
    "line",
    [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"I0000 00:00:1796546480.665391   20361 port.cc:153] oneDNN custom operations are on.\n",
        b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
        b"E0000 00:00:1796546621.956263   22743 node_def_util.cc:682] NodeDef mentions attribute "
        b"use_unbounded_threadpool which is not in the op definition\n",
    ],
)
def test_noise_matches_the_known_start_up_lines(line: bytes) -> None:
    assert NOISE.match(line)


@pytest.mark.parametrize(
    "line",
    [
        b"E0000 00:00:1796546621.956263   22743 kernel.cc:1] OOM when allocating tensor\n",
        b"Traceback (most recent call last):\n",
        b"error: no model bucket\n",
    ],
)
def test_noise_leaves_real_errors(line: bytes) -> None:
    assert not NOISE.match(line)


def test_quiet_tensorflow_keeps_info_lines_of_other_loggers_off_stderr_after_absl_logs() -> None:
    # Given a program that silences TensorFlow, then absl logs (as Keras does) and a logger logs INFO and ERROR
    completed = _run(
        "import logging\n"
        "from lodbrok_cli.quiet import quiet_tensorflow\n"
        "quiet_tensorflow()\n"
        "from absl import logging as absl_logging\n"
        "absl_logging.warning('absl warns')\n"
        "logging.getLogger('lodbrok').setLevel(logging.INFO)\n"  # as Powertools sets it from LOG_LEVEL
        "logging.getLogger('lodbrok').info('an info line')\n"
        "logging.getLogger('lodbrok').error('a real error')\n"
    )
    # Then the warning and the error reach stderr, the info line does not
    assert completed.returncode == 0
    assert completed.stderr.splitlines() == [b"absl warns", b"a real error"]


def test_quiet_tensorflow_drops_the_noise_of_importing_tensorflow_and_keeps_errors() -> None:
    # Given a program that silences TensorFlow, imports it, then writes a real C++ error and fails
    completed = _run(
        "import os, sys\n"
        "from lodbrok_cli.quiet import quiet_tensorflow\n"
        "quiet_tensorflow()\n"
        "import tensorflow\n"
        "os.write(2, b'E0000 00:00:1.5 1 kernel.cc:1] a real error\\n')\n"
        "print('progress', end='\\r', file=sys.stderr)\n"
        "raise SystemExit('the command failed')\n"
    )
    # Then none of TensorFlow's start-up lines reach stderr, and the error, the progress and the failure do
    # (C++ lines pass through the filter's thread, so they may interleave with Python's own in any order)
    assert completed.returncode == 1
    rest = completed.stderr
    for piece in (b"E0000 00:00:1.5 1 kernel.cc:1] a real error\n", b"progress\r", b"the command failed\n"):
        assert piece in rest
        rest = rest.replace(piece, b"", 1)
    assert rest == b""
