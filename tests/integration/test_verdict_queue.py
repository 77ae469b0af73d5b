"""The verdict queue (lodbrok.verdict_queue): verdicts sent to SQS in batches, failed entries retried, the
ones that still fail named.

Driven through the predict handler with the events of `events/`, against moto, like test_predict_api.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from lodbrok.store import ModelRef
from lodbrok.verdicts import parse_message_body
from support import assert_error, load_event, verdicts_event

if TYPE_CHECKING:
    from conftest import Api

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def test_verdicts_more_than_ten_are_sent_in_batches_of_ten(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given an SQS client that records its batch sizes
    sizes: list[int] = []
    sqs = boto3.client("sqs")
    original = sqs.send_message_batch

    def recording(**arguments: Any) -> Any:
        sizes.append(len(arguments["Entries"]))
        return original(**arguments)

    sqs.send_message_batch = recording
    api.rebuild(sqs=sqs)

    # When 23 verdicts are sent
    response = api.call(verdicts_event([{"id": f"v{i}", "text": f"text {i}", "label": "ham"} for i in range(23)]))

    # Then they went out as 10 + 10 + 3, and all 23 are on the queue in the order of their message ids
    assert response.status == 202, response.body
    assert sizes == [10, 10, 3]
    assert response.body["queued"] == 23 and len(set(response.body["message_ids"])) == 23
    assert sorted(
        v.id for body in queued_messages() for v in parse_message_body(body, max_text_chars=5000, labels=None)
    ) == sorted(f"v{i}" for i in range(23))


class PartlyFailingSqs:
    """Wraps a real SQS client; entries whose verdict id is in `fail_ids` fail `failures` times each."""

    def __init__(self, fail_ids: set[str], failures: int) -> None:
        self.client = boto3.client("sqs")
        self.fail_ids = fail_ids
        self.remaining = dict.fromkeys(fail_ids, failures)
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        failing, passing = [], []
        for entry in Entries:
            verdict_id = json.loads(entry["MessageBody"])["id"]
            if self.remaining.get(verdict_id, 0) > 0:
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
    assert sorted(
        v.id for body in queued_messages() for v in parse_message_body(body, max_text_chars=5000, labels=None)
    ) == ["e1", "e2"]


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

    # Then 503 names exactly the verdict that was not queued, and only the other one is on the queue
    error = assert_error(response, 503, "verdicts_not_queued")
    assert [(d["index"], d["id"], d["queued"]) for d in error["details"]] == [(1, "e2", False)]
    assert [v.id for body in queued_messages() for v in parse_message_body(body, max_text_chars=5000, labels=None)] == [
        "e1"
    ]
    counted = read_metrics()
    assert (counted["VerdictsAccepted"], counted["VerdictsNotQueued"]) == (1, 1)


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
