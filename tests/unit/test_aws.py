"""The AWS client factory and the error-code reader."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from lodbrok import aws


def _client_error(code: str | None) -> ClientError:
    error = {"Code": code, "Message": "m"} if code is not None else {"Message": "m"}
    return ClientError({"Error": error}, "GetObject")


def test_error_code_names_the_aws_code_of_a_client_error() -> None:
    assert aws.error_code(_client_error("NoSuchKey")) == "NoSuchKey"


def test_error_code_names_the_class_of_other_errors_and_of_a_client_error_without_code() -> None:
    assert aws.error_code(EndpointConnectionError(endpoint_url="http://x")) == "EndpointConnectionError"
    assert aws.error_code(_client_error(None)) == "ClientError"


def test_client_is_created_once_per_service_and_config(aws_credentials: None) -> None:
    # Given one client asked for twice, and the same service with another config
    s3 = aws.client("s3")
    # Then a warm invocation reuses it, and each config gets its own
    assert aws.client("s3") is s3
    assert aws.client("s3", aws.PREDICT_CONFIG) is not s3
    assert aws.client("s3", aws.PREDICT_CONFIG).meta.config.read_timeout == 10


@pytest.mark.parametrize(
    ("config", "connect", "read", "attempts"),
    [(aws.PREDICT_CONFIG, 2, 10, 3), (aws.PREDICT_BEST_EFFORT_CONFIG, 1, 2, 2), (aws.RETRAIN_CONFIG, 5, 30, 5)],
)
def test_every_side_sets_timeouts_and_retries(
    aws_credentials: None, config: Config, connect: int, read: int, attempts: int
) -> None:
    effective = aws.client("sqs", config).meta.config
    assert (effective.connect_timeout, effective.read_timeout) == (connect, read)
    # botocore counts the first call too: `max_attempts` retries follow it
    assert effective.retries == {"mode": "standard", "total_max_attempts": attempts + 1}


def test_client_never_outlives_the_endpoint_it_was_made_with(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an S3 client made before the process points at an emulation (an earlier bench section)
    real = aws.client("s3")
    # When the emulation's endpoint is set and S3 is asked for again
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    emulated = aws.client("s3")
    # Then the new client talks to the emulation, and is kept for as long as the endpoint stays
    assert real.meta.endpoint_url == "https://s3.amazonaws.com"
    assert emulated.meta.endpoint_url == "http://127.0.0.1:4566"
    assert aws.client("s3") is emulated
    # And when the endpoint is unset again the client talks to AWS again
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert aws.client("s3").meta.endpoint_url == "https://s3.amazonaws.com"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4566"), ("AWS_DEFAULT_REGION", "eu-west-1")],
)
def test_client_follows_a_service_endpoint_or_region_set_later(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Given an SQS client made under one configuration
    before = aws.client("sqs")
    # When a variable boto3 configures clients from changes
    monkeypatch.setenv(variable, value)
    monkeypatch.delenv("AWS_REGION")
    after = aws.client("sqs")
    # Then the client is a new one made with it
    assert after is not before
    assert value in (after.meta.endpoint_url, after.meta.region_name)


def test_client_follows_credentials_set_later(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a client whose session resolved the first credentials
    before = aws.client("kms")
    # When the process switches to other credentials (the local stack's dummy ones)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    after = aws.client("kms")
    # Then the new client signs with them, and the old one kept its own
    assert after._request_signer._credentials.access_key == "local"
    assert before._request_signer._credentials.access_key == "testing"


def test_backoff_sleeps_full_jitter_up_to_a_doubling_cap_and_never_after_the_last_attempt() -> None:
    # Given a call allowed three attempts, failing each one, many times over
    waits: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for _ in range(200):
        for attempt in range(3):
            aws.backoff(attempt, max_attempts=3, base_delay=0.1, sleep=waits[attempt].append)
    # Then each wait is drawn from 0 up to base_delay x 2^attempt, and the last attempt is followed by none
    assert len(waits[0]) == len(waits[1]) == 200 and waits[2] == []
    assert min(waits[0]) >= 0 and max(waits[0]) <= 0.1
    assert 0.1 < max(waits[1]) <= 0.2
