"""TensorFlow's start-up noise kept off the terminal of `lodbrok` and `make local`, its real errors kept on it.

TensorFlow and LiteRT print about twenty lines that read like a failure: absl's "All log messages before
absl::InitializeLog()" preamble, oneDNN and CPU-feature notes, the XNNPACK delegate note, tf.function retracing
warnings, and one spurious `use_unbounded_threadpool` error from tf.data. TF_CPP_MIN_LOG_LEVEL=2 hides the C++
INFO and WARNING lines logged after absl starts, and the "tensorflow" logger at ERROR hides the retracing
warnings. The lines logged before absl starts ignore both, so what C++ code writes to file descriptor 2 goes
through a filter that drops exactly those known lines (`NOISE`); Python's own stderr (progress bars, warnings,
tracebacks) bypasses it and reaches the terminal unchanged. The root logger gets a handler at WARNING, so absl's
first message no longer gives it one at INFO that repeats the functions' INFO lines on stderr. Only programs
call `quiet_tensorflow()`, before TensorFlow is imported: a test process keeps its stderr as pytest captures it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading

NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} \d\d:\d\d:\d+\.\d+ .*"  # an absl INFO line: I<mmdd> <time> <thread> <file:line>] ...
    rb"|To enable the following instructions: .* with the appropriate compiler flags\."
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    rb"|E\d{4} \d\d:\d\d:\d+\.\d+ .*use_unbounded_threadpool.*)\r?\n$"
)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up noise for the rest of this process (once; a no-op when already done)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING off, ERROR on
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if not getattr(quiet_tensorflow, "filtering", False):
        quiet_tensorflow.filtering = True  # type: ignore[attr-defined]
        _filter_stderr()
    if not logging.root.handlers:
        # absl's first message gives a root logger without handlers one at INFO (logging.basicConfig), which then
        # repeats every INFO line of the functions' own loggers on stderr; one at WARNING keeps what matters.
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        logging.root.addHandler(handler)


def _filter_stderr() -> None:
    """Point file descriptor 2 at a pipe whose reader drops NOISE lines; Python's stderr writes past it."""
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not NOISE.match(line):
                    os.write(terminal, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        # At exit: close the pipe's last writer so the reader passes on what is left, and ends.
        os.dup2(terminal, 2)
        thread.join(timeout=5)

    atexit.register(restore)
