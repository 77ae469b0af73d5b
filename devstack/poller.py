"""Local SQS event source mapping: poll the queue, batch as the template says, invoke, honour failures."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from devstack.gateway import LambdaContext
from devstack.template import REGION, QueueTrigger

LOCAL_RETRY_DELAY_SECONDS = 10  # failed messages come back sooner than the deployed visibility timeout


class QueuePoller:
    def __init__(
        self,
        function_name: str,
        handler: Callable[[dict[str, Any], Any], dict[str, Any] | None],
        trigger: QueueTrigger,
        queue_url: str,
        queue_arn: str,
        sqs: Any,
        timeout_seconds: int = 900,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.function_name = function_name
        self.handler = handler
        self.trigger = trigger
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.sqs = sqs
        self.timeout_seconds = timeout_seconds
        self.log = log
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{function_name}-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def poll_once(self) -> int:
        """Gather one batch as Lambda's event source mapping does and invoke the function; returns its size.

        Gathering starts with the first message and goes on, through empty receives, until BatchSize messages
        are in or the batching window (MaximumBatchingWindowInSeconds, from that first message) closes; with a
        window of 0 the function gets what one receive brought. (The mapping's 6 MB payload cut is not emulated:
        a verdict message is at most 256 KB.)"""
        messages: list[dict[str, Any]] = []
        window_closes = math.inf
        while len(messages) < self.trigger.batch_size and self.clock() < window_closes and not self._stop.is_set():
            messages += self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.trigger.batch_size - len(messages)),
                WaitTimeSeconds=1,  # long polls: the window closes at most a second late
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return 0
            if window_closes == math.inf:
                window_closes = self.clock() + self.trigger.batching_window_seconds
        if messages:
            self._invoke(messages)
        return len(messages)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as error:  # keep polling, as the managed mapping would
                self.log(f"{self.function_name} poller error: {type(error).__name__}: {error}")
                self._stop.wait(2)

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [self._record(message) for message in messages]}
        started = time.perf_counter()
        try:
            context = LambdaContext(self.function_name, timeout_seconds=self.timeout_seconds)
            response = context.invoke(self.handler, event)
            failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
            if not self.trigger.report_batch_item_failures:
                failed = {message["MessageId"] for message in messages} if failed else set()
        except Exception as error:  # a crashed invocation fails the whole batch
            self.log(f"{self.function_name} raised {type(error).__name__}: {error}")
            failed = {message["MessageId"] for message in messages}
        for message in messages:
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=LOCAL_RETRY_DELAY_SECONDS,
                )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        elapsed = time.perf_counter() - started
        self.log(f"{self.function_name} batch of {len(messages)} -> {len(failed)} failed ({elapsed:.1f} s)")

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType")}
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": REGION,
        }
