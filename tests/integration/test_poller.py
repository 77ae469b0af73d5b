"""The local event source mapping (devstack.poller) on a moto queue: it gathers a batch as Lambda's does, until
BatchSize messages are in or the batching window closes, through empty receives."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from devstack.poller import QueuePoller
from devstack.template import QueueTrigger


class _Queue:
    """The SQS client, with messages arriving on a schedule: before each receive, the next group of bodies is
    sent; each receive takes one second of the test's clock, as a long poll with nothing to wait for would."""

    def __init__(self, queue_url: str, arrivals: list[list[str]]) -> None:
        self.sqs = boto3.client("sqs")
        self.queue_url = queue_url
        self.arrivals = list(arrivals)
        self.now = 0.0

    def receive_message(self, **request: Any) -> dict[str, Any]:
        for body in self.arrivals.pop(0) if self.arrivals else []:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
        self.now += 1
        return self.sqs.receive_message(**{**request, "WaitTimeSeconds": 0})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


def _poller(queue: _Queue, batch_size: int, window: int) -> tuple[QueuePoller, list[list[str]]]:
    batches: list[list[str]] = []

    def function(event: dict[str, Any], context: Any) -> None:
        batches.append([record["body"] for record in event["Records"]])

    trigger = QueueTrigger("VerdictQueue", batch_size, window, report_batch_item_failures=True)
    poller = QueuePoller(
        "RetrainFunction", function, trigger, queue.queue_url, "arn", queue, log=lambda _: None, clock=lambda: queue.now
    )
    return poller, batches


def test_poller_gathers_through_empty_receives_until_the_window_closes(verdict_queue: str) -> None:
    # Given verdicts arriving one every other second, and a 5 s batching window
    queue = _Queue(verdict_queue, [["a"], [], ["b"], [], ["c"], [], ["d"]])
    poller, batches = _poller(queue, batch_size=100, window=5)
    # When one batch is gathered
    size = poller.poll_once()
    # Then the function got every verdict that arrived within the window, not only those before the first empty
    # receive; the one after the window waits for the next batch
    assert (size, batches) == (3, [["a", "b", "c"]])
    assert poller.poll_once() == 1 and batches[-1] == ["d"]


def test_poller_invokes_once_batch_size_messages_are_in(verdict_queue: str) -> None:
    # Given more verdicts at once than the batch size, and a long window
    queue = _Queue(verdict_queue, [[f"v{index}" for index in range(5)]])
    poller, batches = _poller(queue, batch_size=3, window=300)
    # When one batch is gathered; Then it is BatchSize messages, without waiting for the window
    assert poller.poll_once() == 3 and queue.now == 1
    assert poller.poll_once() == 2
    assert [len(batch) for batch in batches] == [3, 2]


@pytest.mark.parametrize(("window", "expected"), [(0, ["a"]), (2, ["a", "b"])])
def test_poller_window_of_zero_sends_what_one_receive_brought(
    verdict_queue: str, window: int, expected: list[str]
) -> None:
    # Given a verdict now and one a second later
    queue = _Queue(verdict_queue, [["a"], ["b"]])
    poller, batches = _poller(queue, batch_size=100, window=window)
    # When one batch is gathered; Then without a window it holds the first receive's only
    poller.poll_once()
    assert batches == [expected]


def test_poller_with_an_empty_queue_invokes_nothing(verdict_queue: str) -> None:
    # Given no verdicts; When the poller polls; Then the function is not invoked
    poller, batches = _poller(_Queue(verdict_queue, []), batch_size=100, window=5)
    assert poller.poll_once() == 0 and batches == []
