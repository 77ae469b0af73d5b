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
