"""Child processes of the local tools (the local stack, the Docker engine, `sam local`)."""

from __future__ import annotations

import signal
import subprocess


def stop_gracefully(process: subprocess.Popen[bytes], stop_signal: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Send `stop_signal` so the process can clean up after itself; kill it if it has not exited in `timeout` s."""
    if process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
