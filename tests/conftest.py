"""Fixtures shared by the whole suite: a tiny trained model and moto-backed AWS."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.gateway import LambdaContext
from lodbrok import aws as aws_clients
from lodbrok.model.bundle import Bundle
from lodbrok.observability import metrics
from lodbrok.registry.signing import BundleSigner
from lodbrok.training.trainer import TrainingConfig, train_bundle

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The shared helpers' asserts (support.assert_error) explain a failure as a test's own do; before any import of it.
pytest.register_assert_rewrite("support")


@pytest.fixture(scope="session")
def tiny_bundle() -> Bundle:
    """A real model trained in a few seconds on the synthetic dataset."""
    from support import TINY_FEATURIZER, make_tiny_dataset

    return train_bundle(make_tiny_dataset(), TrainingConfig(featurizer=TINY_FEATURIZER, epochs=8)).bundle


@pytest.fixture(scope="session")
def demo_bundle() -> Bundle:
    """The local stack's seed model: `train_bundle` on the demo data, trained once per version of its code, cached."""
    from devstack.seed import default_seed_model, ensure_seed_model

    return Bundle.read(str(ensure_seed_model(default_seed_model())))


@pytest.fixture(scope="session")
def tiny_bundle_bytes(tiny_bundle: Bundle) -> bytes:
    return tiny_bundle.to_bytes()


@pytest.fixture(autouse=True)
def fresh_aws_clients() -> Iterator[None]:
    """Each test starts like a fresh container: no client cached from another test's moto or environment."""
    aws_clients.clear_clients()
    yield
    aws_clients.clear_clients()


@pytest.fixture(autouse=True)
def no_metrics_from_another_test() -> Iterator[None]:
    """Metrics a test adds outside a handler (a direct `retrain()`) are not flushed by the next test's handler."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def signing_key(aws: None) -> str:
    """A KMS signing key like the template's ModelSigningKey, in moto."""
    import boto3

    key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    return str(key["KeyMetadata"]["Arn"])


@pytest.fixture
def attestation_key(aws: None) -> str:
    """A KMS HMAC key like the template's VerdictAttestationKey, in moto."""
    import boto3

    key = boto3.client("kms").create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    return str(key["KeyMetadata"]["Arn"])


@pytest.fixture
def signer(signing_key: str) -> BundleSigner:
    return BundleSigner(signing_key)


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext("lodbrok-test", timeout_seconds=900)
