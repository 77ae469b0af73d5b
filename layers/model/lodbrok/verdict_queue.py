"""VerdictQueue: sends verdicts to the retrain queue with SQS SendMessageBatch.

One verdict per message, its body the verdict as JSON (what `verdicts.parse_message_body` reads back).
Bodies are ASCII JSON (non-ASCII characters escaped), so no text can hold a character SQS refuses.
Batches hold at most 10 entries and 256 KiB. Entries SQS reports as failed by its own fault, and whole
batches that fail (throttling, network), are retried with jittered exponential backoff a few times;
entries failed by the sender's fault are not retried. `send` reports exactly which verdicts were queued,
so the API never claims a verdict was queued when it was not.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.observability import logger
from lodbrok.verdicts import Verdict

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024


class QueueNotConfigured(Exception):
    """VERDICT_QUEUE_URL is not set."""


@dataclass
class SendOutcome:
    """Message ids of queued verdicts and reasons of failed ones, both by position in the sent list."""

    message_ids: dict[int, str] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)


def message_body(verdict: Verdict) -> str:
    return json.dumps(verdict.model_dump(mode="json", exclude_none=True), separators=(",", ":"))


class VerdictQueue:
    def __init__(
        self,
        queue_url: str,
        *,
        client: Any,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 4,
        base_delay: float = 0.05,
    ) -> None:
        self.queue_url = queue_url
        self.client = client
        self._sleep = sleep
        self.max_attempts = max_attempts
        self.base_delay = base_delay

    def send(self, verdicts: Sequence[Verdict]) -> SendOutcome:
        outcome = SendOutcome()
        bodies = [message_body(verdict) for verdict in verdicts]
        for batch in _batches(bodies):
            self._send_batch(batch, bodies, outcome)
        return outcome

    def _send_batch(self, positions: list[int], bodies: Sequence[str], outcome: SendOutcome) -> None:
        pending = list(positions)
        for attempt in range(self.max_attempts):
            entries = [{"Id": str(position), "MessageBody": bodies[position]} for position in pending]
            try:
                response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                reason = aws.error_code(error)
                logger.warning("verdict batch not sent", extra={"error": reason, "attempt": attempt + 1})
                outcome.failures.update(dict.fromkeys(pending, reason))
            else:
                for entry in response.get("Successful", []):
                    position = int(entry["Id"])
                    outcome.message_ids[position] = entry["MessageId"]
                    outcome.failures.pop(position, None)
                retry = []
                for entry in response.get("Failed", []):
                    position = int(entry["Id"])
                    outcome.failures[position] = str(entry.get("Code") or "SendFailed")
                    if not entry.get("SenderFault"):
                        retry.append(position)
                pending = retry
            if not pending:
                return
            if attempt + 1 < self.max_attempts:
                self._sleep(random.uniform(0, self.base_delay * 2**attempt))


def _batches(bodies: Sequence[str]) -> Iterator[list[int]]:
    """Positions grouped into batches of at most 10 entries and 256 KiB of message bodies."""
    batch: list[int] = []
    size = 0
    for position, body in enumerate(bodies):
        length = len(body)  # ASCII, so characters are bytes
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(position)
        size += length
    if batch:
        yield batch
