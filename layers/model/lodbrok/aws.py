"""AWS clients: one factory with timeouts and retries, and one reader of error codes.

Each side has its own botocore `Config`. The predict function answers an HTTP caller behind API
Gateway's 29 s limit, so its clients fail fast, and those of its best-effort DynamoDB tables (cache, call
log, verdict memory) faster still: answering from the model beats waiting for a cache. The retrain function
and the CLI have no caller waiting, so they wait longer and retry more (botocore's defaults would wait
60 s per read). Clients are created on first use and kept for warm invocations, never at import; classes
take a client as a keyword and default to `client(...)`, so tests pass moto-backed clients or fakes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

PREDICT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})
PREDICT_BEST_EFFORT_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 2})
RETRAIN_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})


@cache
def client(name: str, config: Config = RETRAIN_CONFIG) -> Any:
    """The boto3 client for service `name` with `config`, one per process."""
    return boto3.client(name, config=config)


def error_code(error: BaseException) -> str:
    """What went wrong, for comparisons and logs: the AWS error code of a `ClientError` (`NoSuchKey`,
    `ConditionalCheckFailedException`, ...), else the exception's class name (`EndpointConnectionError`)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or type(error).__name__)
    return type(error).__name__
