"""The verdict queue (lodbrok.serving.verdict_queue): verdicts packed in attested messages that fit SQS, sent in
batches, failed entries retried, the ones that still fail named, and a verdict too large for a message refused.

Driven through the predict handler with the events of `events/`, against moto, like test_predict_api.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from lodbrok.registry.store import ModelRef
from lodbrok.serving.verdict_queue import MAX_MESSAGE_BYTES
from lodbrok.verdicts.verdict import parse_message_body
from support import assert_error, load_event, verdicts_event

if TYPE_CHECKING:
    from conftest import Api

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def test_verdicts_too_many_for_one_message_are_sent_as_messages_that_fit(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given an SQS client that records each batch's message sizes
    sizes: list[list[int]] = []
    sqs = boto3.client("sqs")
    original = sqs.send_message_batch

    def recording(**arguments: Any) -> Any:
        sizes.append([len(entry["MessageBody"].encode()) for entry in arguments["Entries"]])
        return original(**arguments)

    sqs.send_message_batch = recording
    api.rebuild(sqs=sqs)

    # When 30 verdicts of 5,000 two-byte characters (10 KB each as UTF-8) are sent
    texts = [f"{i} " + "\u00e9" * 4_990 for i in range(30)]
    response = api.call(verdicts_event([{"id": f"v{i}", "text": texts[i], "label": "ham"} for i in range(30)]))

    # Then they went out as two messages (each at most SQS's 256 KiB), one per batch, and all 23 are queued
    assert response.status == 202, response.body
    assert len(sizes) == 2 and all(len(batch) == 1 and batch[0] <= MAX_MESSAGE_BYTES for batch in sizes)
    assert response.body["queued"] == 30 and len(set(response.body["message_ids"])) == 2
    assert sorted(v.id for body in queued_messages() for v in _verdicts(body)) == sorted(f"v{i}" for i in range(30))


def test_verdict_too_large_for_a_message_is_413_and_nothing_is_queued(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given a record of 64 fields of 5,000 "é" as a verdict, with a small valid one: a 641 KB UTF-8 body, inside
    # every documented limit
    record = {f"f{index}": "\u00e9" * 5_000 for index in range(64)}
    verdicts = [{"id": "ok", "text": "hello", "label": "ham"}, {"id": "big", "fields": record, "label": "ham"}]
    body = json.dumps({"verdicts": verdicts}, ensure_ascii=False)
    assert 640_000 < len(body.encode()) < 1_000_000

    # When it is sent
    response = api.call(load_event("verdicts_post.json"), body=body)

    # Then 413 names the limit and the verdict's size (it can never fit, so no 5xx "send again"), and nothing
    # was queued
    error = assert_error(response, 413, "verdict_too_large")
    assert str(MAX_MESSAGE_BYTES) in error["message"]
    [detail] = error["details"]
    assert detail["index"] == 1 and detail["bytes"] > 640_000 and detail["max"] == MAX_MESSAGE_BYTES
    assert queued_messages() == []


def _verdicts(body: str) -> list[Any]:
    return parse_message_body(body, max_text_chars=5000, labels=None).verdicts


class PartlyFailingSqs:
    """Wraps a real SQS client; messages holding a verdict id of `fail_ids` fail `failures` times each."""

    def __init__(self, fail_ids: set[str], failures: int) -> None:
        self.client = boto3.client("sqs")
        self.fail_ids = fail_ids
        self.remaining = dict.fromkeys(fail_ids, failures)
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        failing, passing = [], []
        for entry in Entries:
            ids = {verdict["id"] for verdict in json.loads(entry["MessageBody"])["verdicts"]}
            if any(self.remaining.get(verdict_id, 0) > 0 for verdict_id in ids):
                for verdict_id in ids & self.fail_ids:
                    self.remaining[verdict_id] -= 1
                failing.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "x"})
            else:
                passing.append(entry)
        response = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=passing) if passing else {}
        return {"Successful": response.get("Successful", []), "Failed": failing}


def test_verdicts_failed_entries_are_retried(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given SQS fails one entry twice before accepting it
    sqs = PartlyFailingSqs({"e2"}, failures=2)
    api.rebuild(sqs=sqs)

    # When the verdicts event is sent
    response = api.call(load_event("verdicts_post.json"))

    # Then the entry was retried until queued, and 202 reports both
    assert response.status == 202, response.body
    assert sqs.calls == 3
    assert sorted(v.id for body in queued_messages() for v in _verdicts(body)) == ["e1", "e2"]


def test_verdicts_that_still_fail_are_named_in_a_503(
    api: Api,
    published_model: ModelRef,
    queued_messages: Callable[[], list[str]],
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given SQS keeps failing one entry
    api.rebuild(sqs=PartlyFailingSqs({"e2"}, failures=100))

    # When the verdicts event is sent
    response = api.call(load_event("verdicts_post.json"))

    # Then 503 names exactly the verdicts of the message that was not queued (both share one), and none is queued
    error = assert_error(response, 503, "verdicts_not_queued")
    assert [(d["index"], d["id"], d["queued"]) for d in error["details"]] == [(0, "e1", False), (1, "e2", False)]
    assert queued_messages() == []
    counted = read_metrics()
    assert (counted["VerdictsAccepted"], counted["VerdictsNotQueued"]) == (0, 2)


def test_verdicts_without_queue_configured_is_503(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no VERDICT_QUEUE_URL
    monkeypatch.setenv("VERDICT_QUEUE_URL", "")
    api.rebuild()

    # When verdicts are sent
    response = api.call(load_event("verdicts_post.json"))

    # Then they are refused with 503 rather than silently dropped
    assert_error(response, 503, "queue_not_configured")
