"""AWS clients: one factory with timeouts and retries, and one reader of error codes.

Each side has its own botocore `Config`. The predict function answers an HTTP caller behind API
Gateway's 29 s limit, so its clients fail fast, and those of its best-effort DynamoDB tables (cache, call
log, verdict memory) faster still: answering from the model beats waiting for a cache. The retrain function
and the CLI have no caller waiting, so they wait longer and retry more (botocore's defaults would wait
60 s per read). Clients are created on first use and kept for warm invocations, never at import; classes
take a client as a keyword and default to `client(...)`, so tests pass moto-backed clients or fakes.

A kept client never outlives the configuration it was made with: boto3 reads its endpoint, region and
credentials from the environment once, when the client (and its session) is made, so the cache is keyed on
those variables too. A process that points at an emulation after its first call (the bench, the local stack)
gets new clients for it instead of one still talking to AWS. In Lambda the environment never changes, so
there is one session and one client per service and config, as before.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

PREDICT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})
PREDICT_BEST_EFFORT_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 2})
RETRAIN_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})


# What of the environment a client is made with, besides AWS_ENDPOINT_URL_<SERVICE>: checked on every call, so
# only what a process may change (credentials are told apart by their key id).
_CONFIGURING = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID")


@dataclass(frozen=True)
class _Kept:
    client: Any
    configuration: tuple[str | None, ...]
    endpoint_variable: str  # AWS_ENDPOINT_URL_<service id>, as botocore names it
    endpoint: str | None

    def still_configured(self, configuration: tuple[str | None, ...]) -> bool:
        return configuration == self.configuration and os.environ.get(self.endpoint_variable) == self.endpoint


_kept: dict[tuple[str, Config], _Kept] = {}


def client(name: str, config: Config = RETRAIN_CONFIG) -> Any:
    """The boto3 client for service `name` with `config`, one per process and AWS configuration."""
    configuration = _configuration()
    kept = _kept.get((name, config))
    if kept is None or not kept.still_configured(configuration):
        made = _session(configuration).client(name, config=config)
        variable = "AWS_ENDPOINT_URL_" + made.meta.service_model.service_id.replace(" ", "_").upper()
        kept = _kept[(name, config)] = _Kept(made, configuration, variable, os.environ.get(variable))
    return kept.client


def session() -> boto3.session.Session:
    """The session clients are made from under the environment's current AWS configuration."""
    return _session(_configuration())


def clear_clients() -> None:
    """Forget every kept client (a test starting a fresh container); a session makes them anew."""
    _kept.clear()


def _configuration() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in _CONFIGURING)


@cache
def _session(configuration: tuple[str | None, ...]) -> boto3.session.Session:
    """One session per configuration: a session keeps the credentials it resolved first."""
    return boto3.session.Session()


def backoff(attempt: int, *, max_attempts: int, base_delay: float, sleep: Callable[[float], None]) -> None:
    """Full-jitter exponential backoff after failed attempt `attempt` (from 0) of a call the code retries itself
    (partial batch failures botocore cannot see); none after the last one."""
    if attempt + 1 < max_attempts:
        sleep(random.uniform(0, base_delay * 2**attempt))


def error_code(error: BaseException) -> str:
    """What went wrong, for comparisons and logs: the AWS error code of a `ClientError` (`NoSuchKey`,
    `ConditionalCheckFailedException`, ...), else the exception's class name (`EndpointConnectionError`)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or type(error).__name__)
    return type(error).__name__
