"""One Logger, Metrics and Tracer for the package; handlers decorate with these same objects.

Powertools shares state between instances of the same service/namespace, so domain modules add
metrics here and the handler's `log_metrics` flushes them as CloudWatch EMF at the end of the call.

Logs never carry user-controlled strings (ids, labels, texts, field names, unknown keys, sources): they say
counts, lengths, `digest`s and error types. An exception's message may quote its input, so a log names
an error by `error_fields` (its type and where it was raised) instead of `logger.exception`'s message.
"""

from __future__ import annotations

import hashlib
import traceback
from pathlib import PurePath
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "lodbrok"
METRICS_NAMESPACE = "Lodbrok"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

__all__ = ["MetricUnit", "digest", "error_fields", "logger", "metrics", "tracer"]


def digest(value: str) -> str:
    """A short stable stand-in for a user-controlled string: logs can tell values apart without holding them."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def error_fields(error: BaseException) -> dict[str, Any]:
    """What a log says of an exception: its type and the frames it passed (file:line function), no message."""
    frames = traceback.extract_tb(error.__traceback__)
    return {
        "error_type": type(error).__name__,
        "stack": [f"{PurePath(frame.filename).name}:{frame.lineno} {frame.name}" for frame in frames],
    }
