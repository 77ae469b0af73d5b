"""VerdictQueue: sends verdicts to the retrain queue with SQS SendMessageBatch, as attested envelopes.

A message is one envelope `{"verdicts": [...], "attestation": {...}}` (`lodbrok.verdicts.attestation`): as many
verdicts of one request as fit, one MAC per message. Each message is measured exactly as it will be sent,
in UTF-8 bytes, against SQS's limit, before anything is sent: a verdict that cannot fit a message alone is
refused (`VerdictTooLarge`, the API's 413) and nothing is queued, so a valid request never fails at SQS.
Bodies are UTF-8 JSON with the few characters SQS refuses (controls, U+FFFE, U+FFFF) escaped, so a
non-ASCII character costs its UTF-8 bytes, not a six-byte escape. Batches hold at most 10 messages and
256 KiB. Entries SQS reports as failed by its own fault, and whole batches that fail (throttling, network),
are retried with jittered exponential backoff a few times; entries failed by the sender's fault are not
retried. `send` reports exactly which verdicts were queued, so the API never claims a verdict was queued
when it was not.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.observability import logger
from lodbrok.verdicts.attestation import MAC_CHARS, Attestation, Attester, Provenance, attested_role
from lodbrok.verdicts.verdict import MAX_VERDICTS_PER_MESSAGE, Verdict

MAX_BATCH_ENTRIES = 10
# SQS's limit for one message (its body plus its attributes; these messages have none) and for the sum of a
# SendMessageBatch request's messages, in bytes. SQS has allowed 1 MiB since 2025, but not every
# deployment (or emulator) does; 256 KiB holds any text of MAX_TEXT_CHARS and is safe everywhere.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES
# Characters outside SQS's allowed set that JSON would otherwise leave as they are (lone surrogates never
# reach here: a verdict holding one is invalid).
_SQS_REFUSED = re.compile("[\ufffe\uffff]")


class QueueNotConfigured(Exception):
    """VERDICT_QUEUE_URL (or VERDICT_ATTESTATION_KEY) is not set."""


class VerdictTooLarge(Exception):
    """Verdicts that cannot fit one queue message even alone; `details` name each with its size."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        self.details = details
        self.message = (
            f"{len(details)} verdict(s) do not fit one queue message: the largest is "
            f"{max(detail['bytes'] for detail in details)} bytes as UTF-8 JSON, the limit is {MAX_MESSAGE_BYTES} "
            "bytes; nothing was queued"
        )
        super().__init__(self.message)


@dataclass
class SendOutcome:
    """Message ids of queued verdicts and reasons of failed ones, both by position in the sent list."""

    message_ids: dict[int, str] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)


def verdict_json(verdict: Verdict) -> str:
    """A verdict as it appears in a message."""
    text = json.dumps(verdict.model_dump(mode="json", exclude_none=True), ensure_ascii=False, separators=(",", ":"))
    return _SQS_REFUSED.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def envelope_body(pieces: Sequence[str], attestation: Attestation) -> str:
    """The message body of verdicts (each as `verdict_json`) with their attestation."""
    return f'{{"verdicts":[{",".join(pieces)}],"attestation":{attestation.model_dump_json()}}}'


def _size(text: str) -> int:
    return len(text.encode())


class VerdictQueue:
    def __init__(
        self,
        queue_url: str,
        *,
        client: Any,
        attester: Attester,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 4,
        base_delay: float = 0.05,
    ) -> None:
        self.queue_url = queue_url
        self.client = client
        self.attester = attester
        self._sleep = sleep
        self.max_attempts = max_attempts
        self.base_delay = base_delay

    def send(self, verdicts: Sequence[Verdict], provenance: Provenance) -> SendOutcome:
        """Queue `verdicts` from one sender; raises VerdictTooLarge (nothing sent) if one cannot fit a message."""
        pieces = [verdict_json(verdict) for verdict in verdicts]
        groups = _messages(pieces, provenance)
        bodies = [
            envelope_body(
                [pieces[position] for position in group],
                self.attester.attest(provenance, [verdicts[position] for position in group]),
            )
            for group in groups
        ]
        messages = SendOutcome()
        for batch in _batches([_size(body) for body in bodies]):
            self._send_batch(batch, bodies, messages)
        outcome = SendOutcome()
        for index, group in enumerate(groups):
            for position in group:
                if index in messages.message_ids:
                    outcome.message_ids[position] = messages.message_ids[index]
                else:
                    outcome.failures[position] = messages.failures.get(index, "SendFailed")
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
            aws.backoff(attempt, max_attempts=self.max_attempts, base_delay=self.base_delay, sleep=self._sleep)


def _messages(pieces: Sequence[str], provenance: Provenance) -> list[list[int]]:
    """Verdict positions grouped into messages that each fit MAX_MESSAGE_BYTES, measured as they will be sent.

    The attestation's size is known before its MAC (every MAC has MAC_CHARS characters)."""
    placeholder = Attestation(
        sender=provenance.sender or "",
        role=attested_role(provenance.role),
        received_at=provenance.received_at,
        mac="A" * MAC_CHARS,
    )
    overhead = _size(envelope_body([], placeholder))
    sizes = [_size(piece) for piece in pieces]
    too_large = [
        {"index": position, "bytes": overhead + size, "max": MAX_MESSAGE_BYTES}
        for position, size in enumerate(sizes)
        if overhead + size > MAX_MESSAGE_BYTES
    ]
    if too_large:
        raise VerdictTooLarge(too_large)
    groups: list[list[int]] = []
    group: list[int] = []
    size = overhead
    for position, piece_size in enumerate(sizes):
        separator = 1 if group else 0  # the comma between two verdicts
        if group and (len(group) == MAX_VERDICTS_PER_MESSAGE or size + separator + piece_size > MAX_MESSAGE_BYTES):
            groups.append(group)
            group, size, separator = [], overhead, 0
        group.append(position)
        size += separator + piece_size
    if group:
        groups.append(group)
    return groups


def _batches(sizes: Sequence[int]) -> Iterator[list[int]]:
    """Message positions grouped into batches of at most 10 entries and MAX_BATCH_BYTES of message bodies."""
    batch: list[int] = []
    total = 0
    for position, size in enumerate(sizes):
        if batch and (len(batch) == MAX_BATCH_ENTRIES or total + size > MAX_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(position)
        total += size
    if batch:
        yield batch
