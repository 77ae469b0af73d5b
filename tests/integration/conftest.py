"""Fixtures for the predict API: moto-backed bucket, tables and queue, a published model, and an API driver;
and for the retrain function: its bucket, tables and environment, and a driver of its handler.

The bucket's versioning and the tables' keys and TTL attributes are read from template.yaml, so the tests
run against the resource shapes `sam deploy` creates.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from devstack.resources import create_queues, create_table
from devstack.template import Template
from lodbrok import aws as aws_clients
from lodbrok.access.roles import ClientRoles, Role
from lodbrok.model.bundle import Bundle
from lodbrok.registry.signing import BundleSigner
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.serving.service import PredictService
from lodbrok.settings import get_settings
from predict import app as predict_app
from retrain import app as retrain_app
from support import (
    CACHE_TABLE,
    CALL_LOG_TABLE,
    CLIENTS_TABLE,
    EVENT_KEY_ID,
    MEMORY_TABLE,
    RETRAIN_BUCKET,
    REVIEW_QUEUE_TABLE,
    emitted_metric_values,
    fresh_container,
)

BUCKET = "lodbrok-models-test"


@dataclass
class FakeClock:
    """A clock that only moves when told to; used both as monotonic clock and as wall clock."""

    now: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, Any]

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


_UNCHANGED: Any = object()


@dataclass
class Api:
    """Drives `predict.app.lambda_handler` with events and decodes its answers."""

    lambda_context: Any
    clock: FakeClock
    monkeypatch: pytest.MonkeyPatch

    def rebuild(self, **overrides: Any) -> None:
        """Re-read the environment and start a fresh service (as a new Lambda container would)."""
        get_settings.cache_clear()
        aws_clients.clear_clients()
        self.use_service(
            PredictService(get_settings(), clock=self.clock, now=self.clock, sleep=lambda _: None, **overrides)
        )

    def use_service(self, service: Any) -> None:
        """Serve every following call with `service` (one on the test's clock, or a failing stand-in)."""
        self.monkeypatch.setattr(predict_app, "get_service", lambda: service)

    def call(
        self,
        event: dict[str, Any],
        *,
        body: Any = _UNCHANGED,
        query: dict[str, str] | None = None,
        identity: dict[str, Any] | None = None,
        request_id: str | None = None,
        path: str | None = None,
        content_type: str | None = None,
    ) -> ApiResponse:
        """Invoke the handler with `event`, or with a copy of it changed as the keywords say."""
        response = predict_app.lambda_handler(
            variant(
                event,
                body=body,
                query=query,
                identity=identity,
                request_id=request_id,
                path=path,
                content_type=content_type,
            ),
            self.lambda_context,
        )
        content = _header(response, "Content-Type")
        decoded = json.loads(response["body"]) if content.startswith("application/json") else response["body"]
        return ApiResponse(int(response["statusCode"]), decoded, response.get("multiValueHeaders") or {})


def variant(
    event: dict[str, Any],
    *,
    body: Any = _UNCHANGED,
    query: dict[str, str] | None = None,
    identity: dict[str, Any] | None = None,
    request_id: str | None = None,
    path: str | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """A deep copy of a loaded event with the given parts replaced (a body that is not a str is JSON-encoded)."""
    changed = copy.deepcopy(event)
    if body is not _UNCHANGED:
        changed["body"] = body if isinstance(body, str) else json.dumps(body)
    if query is not None:
        changed["queryStringParameters"] = dict(query) or None
        changed["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()} or None
    if identity is not None:
        changed["requestContext"]["identity"].update(identity)
    if request_id is not None:
        changed["requestContext"]["requestId"] = request_id
    if path is not None:
        changed["path"] = path
    if content_type is not None:
        changed["headers"]["Content-Type"] = content_type
        changed["multiValueHeaders"]["Content-Type"] = [content_type]
    return changed


def _header(response: dict[str, Any], name: str) -> str:
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return values[0]
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    return ""


def _emitted_metrics(stdout: str) -> dict[str, float]:
    """Sum of every EMF metric value printed by Powertools Metrics in `stdout`."""
    totals: dict[str, float] = {}
    for name, _, value in emitted_metric_values(stdout):
        totals[name] = totals.get(name, 0.0) + value
    return totals


# --- AWS resources (moto) ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def template_resources() -> dict[str, Any]:
    """The Resources of template.yaml, as plain JSON values."""
    return Template().resources


@pytest.fixture
def model_bucket(aws: None, template_resources: dict[str, Any]) -> str:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    versioning = template_resources["ModelBucket"]["Properties"]["VersioningConfiguration"]
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": versioning["Status"]})
    return BUCKET


@pytest.fixture
def cache_table(aws: None) -> str:
    return create_table(Template(), "CacheTable", CACHE_TABLE)


@pytest.fixture
def verdict_memory_table(aws: None) -> str:
    return create_table(Template(), "VerdictMemoryTable", MEMORY_TABLE)


@pytest.fixture
def review_queue_table(aws: None) -> str:
    return create_table(Template(), "ReviewQueueTable", REVIEW_QUEUE_TABLE)


@pytest.fixture
def call_log_table(aws: None) -> str:
    return create_table(Template(), "CallLogTable", CALL_LOG_TABLE)


@pytest.fixture
def clients_table(aws: None) -> str:
    """The clients table, where the key of the events/ files is an admin's."""
    name = create_table(Template(), "ClientsTable", CLIENTS_TABLE)
    ClientRoles(name, client=boto3.client("dynamodb")).put(EVENT_KEY_ID, "events", Role.ADMIN)
    return name


@pytest.fixture
def verdict_queue(aws: None) -> str:
    """The verdict queue and its dead-letter queue, as template.yaml declares them; the queue's URL."""
    name = create_queues(Template())["VerdictQueue"]
    return boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


@pytest.fixture
def model_store(model_bucket: str, signer: BundleSigner) -> ModelStore:
    return ModelStore(model_bucket, signer=signer)


@pytest.fixture
def published_model(model_store: ModelStore, tiny_bundle: Bundle) -> ModelRef:
    return model_store.publish(tiny_bundle, expected=None)


# --- the API under test ---------------------------------------------------------------------------------------


@pytest.fixture
def predict_env(
    monkeypatch: pytest.MonkeyPatch,
    model_bucket: str,
    signing_key: str,
    cache_table: str,
    call_log_table: str,
    verdict_memory_table: str,
    verdict_queue: str,
    clients_table: str,
    attestation_key: str,
    review_queue_table: str,
) -> Iterator[None]:
    """The environment template.yaml gives the predict function, pointing at the moto resources."""
    for name, value in {
        "MODEL_BUCKET": model_bucket,
        "MODEL_SIGNING_KEY": signing_key,
        "CACHE_TABLE": cache_table,
        "VERDICT_MEMORY_TABLE": verdict_memory_table,
        "CALL_LOG_ENABLED": "true",
        "CALL_LOG_TABLE": call_log_table,
        "VERDICT_QUEUE_URL": verdict_queue,
        "CLIENTS_TABLE": clients_table,
        "VERDICT_ATTESTATION_KEY": attestation_key,
        "MODEL_REFRESH_SECONDS": "60",
        "REVIEW_QUEUE_TABLE": review_queue_table,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("MODEL_VERSION", "MAX_ITEMS", "MAX_TEXT_CHARS", "MAX_BODY_BYTES", "POWERTOOLS_DEV"):
        monkeypatch.delenv(name, raising=False)
    built_service = predict_app.get_service  # tests may patch the name; the cached original is cleared
    get_settings.cache_clear()
    built_service.cache_clear()
    yield
    get_settings.cache_clear()
    built_service.cache_clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(predict_env: None, lambda_context: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Api:
    driver = Api(lambda_context, clock, monkeypatch)
    driver.rebuild()
    return driver


@pytest.fixture
def read_metrics(capsys: pytest.CaptureFixture[str]) -> Callable[[], dict[str, float]]:
    """Metrics (EMF) printed since the last read, summed by name."""
    return lambda: _emitted_metrics(capsys.readouterr().out)


@pytest.fixture
def queued_messages(verdict_queue: str) -> Callable[[], list[str]]:
    """Receive (and delete) every message now on the verdict queue; returns their bodies."""

    def receive() -> list[str]:
        sqs = boto3.client("sqs")
        bodies: list[str] = []
        while True:
            response = sqs.receive_message(QueueUrl=verdict_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = response.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=verdict_queue, ReceiptHandle=message["ReceiptHandle"])

    return receive


# --- the retrain function -----------------------------------------------------------------------------------

IDEMPOTENCY_TABLE = "lodbrok-idempotency-test"


@pytest.fixture
def retrain_env(
    signing_key: str, attestation_key: str, verdict_queue: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Versioned model bucket, the template's idempotency table, and the function's environment."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=RETRAIN_BUCKET)
    s3.put_bucket_versioning(Bucket=RETRAIN_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    create_table(Template(), "IdempotencyTable", IDEMPOTENCY_TABLE)
    create_table(Template(), "VerdictMemoryTable", MEMORY_TABLE)
    for name, value in {
        "MODEL_BUCKET": RETRAIN_BUCKET,
        "MODEL_NAME": "default",
        "MODEL_SIGNING_KEY": signing_key,
        "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
        "VERDICT_MEMORY_TABLE": MEMORY_TABLE,
        "VERDICT_QUEUE_URL": verdict_queue,
        "VERDICT_ATTESTATION_KEY": attestation_key,
        "MIN_VERDICTS_TO_TRAIN": "1",
        "GATE_TOLERANCE": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("VERDICT_ARCHIVE_PREFIX", "MODEL_VERSION", "POWERTOOLS_IDEMPOTENCY_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    fresh_container()
    yield
    fresh_container()


@pytest.fixture
def store(retrain_env: None, signer: BundleSigner) -> ModelStore:
    """The retrain function's model store, in its environment."""
    return ModelStore(RETRAIN_BUCKET, "default", signer=signer, s3=boto3.client("s3"))


@pytest.fixture
def base_ref(store: ModelStore, tiny_bundle: Bundle) -> ModelRef:
    """The tiny model, published as the active model `v1`."""
    return store.publish(tiny_bundle, expected=None)


@pytest.fixture
def invoke(lambda_context: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: retrain_app.lambda_handler(event, lambda_context)


@pytest.fixture
def send(verdict_queue: str) -> Callable[..., dict[str, Any]]:
    """Send message bodies to the queue, receive them, and return the SQS event Lambda would deliver."""

    def send_batch(*bodies: Any) -> dict[str, Any]:
        sqs = boto3.client("sqs")
        for body in bodies:
            sqs.send_message(QueueUrl=verdict_queue, MessageBody=body if isinstance(body, str) else json.dumps(body))
        messages: list[dict[str, Any]] = []
        while len(messages) < len(bodies):
            received = sqs.receive_message(QueueUrl=verdict_queue, MaxNumberOfMessages=10, AttributeNames=["All"])
            messages.extend(received.get("Messages", []))
        return {"Records": [_lambda_record(message, verdict_queue) for message in messages]}

    return send_batch


def _lambda_record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    name = queue_url.rsplit("/", 1)[-1]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{name}",
        "awsRegion": "us-east-1",
    }
