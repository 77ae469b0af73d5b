"""Timing helpers shared by the benchmark modules: repeated calls, reported as p50/p99 in milliseconds."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
    }


def time_calls(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    """p50/p99 of `repeats` calls after one warm-up call."""
    call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def write_results(path: Path, data: Any) -> None:
    """One benchmark section's raw numbers as JSON, in bench-results/ beside the others."""
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"\nwrote {path}")
