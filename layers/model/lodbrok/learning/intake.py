"""Verdict intake: every verdict of a queue message archived exactly once, or the message quarantined.

Producers may write to the queue directly, so each message is parsed and validated again and its labels
checked against the active model. Each verdict is archived in S3 (`lodbrok.verdicts.archive`) *before* the message
is acknowledged. Archiving is idempotent per occurrence of a verdict (`occurrence_key`: id + input + label,
and when it was given) through Powertools idempotency on DynamoDB, so a message delivered twice, or a copy
of a verdict with the same acceptance time, is archived once, while a correction that returns to an
earlier label (spam, then ham, then spam again) is archived every time and its latest label is learned.
Messages that can never become valid go to the quarantine with the reason and count as processed; anything
else raises, so the queue redelivers the message (and after maxReceiveCount moves it to the DLQ).

Time and trust are the server's (`lodbrok.verdicts.attestation`): a message whose attestation verifies carries its
sender, role and received_at; any other is `feedback` from no known sender, received at the queue's
SentTimestamp, and a `received_at` its verdicts claim is ignored (VerdictsClientTimeIgnored). A verified
time more than `max_clock_skew_seconds` ahead of this function's clock is clamped to now
(VerdictsClockClamped), so no stamp in the future can outrank a later correction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lodbrok.access.roles import Role
from lodbrok.clock import utc_iso
from lodbrok.observability import MetricUnit, logger, metrics
from lodbrok.verdicts.archive import VerdictArchive
from lodbrok.verdicts.attestation import Attester, Provenance
from lodbrok.verdicts.verdict import QueueMessage, Verdict, VerdictError, parse_message_body

IDEMPOTENCY_KEY_PREFIX = "lodbrok-retrain.archive_verdict"


@dataclass(frozen=True)
class MessageResult:
    archived: int = 0
    duplicates: int = 0
    quarantine_key: str | None = None


class VerdictIntake:
    """Archives queue messages; `labels` returns the active model's labels (read once per batch), or None
    when the model cannot be read: then verdicts are archived without the label check, so a broken model
    never stops intake (the retrain holds a verdict whose label the model turns out not to have)."""

    def __init__(
        self,
        archive: VerdictArchive,
        labels: Callable[[], list[str] | None],
        *,
        max_text_chars: int,
        idempotency_store: Any = None,
        idempotency_ttl_seconds: int = 30 * 86_400,
        attester: Attester | None = None,
        max_clock_skew_seconds: float = 60.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.archive = archive
        self.max_text_chars = max_text_chars
        self.attester = attester
        self.max_clock_skew_seconds = max_clock_skew_seconds
        self._now = now
        self._read_labels = labels
        self._labels: list[str] | None = None
        self._labels_read = False
        # Archived in this batch, with who sent them and when, for the verdict memory.
        self.accepted: list[tuple[Verdict, Provenance]] = []
        self._idempotency_config = None
        self._archive_once: Callable[..., dict[str, Any]] = self._archive_verdict
        if idempotency_store is not None:
            from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

            self._idempotency_config = IdempotencyConfig(
                expires_after_seconds=idempotency_ttl_seconds, response_hook=_mark_duplicate
            )
            self._archive_once = idempotent_function(
                self._archive_verdict,
                data_keyword_argument="occurrence",
                persistence_store=idempotency_store,
                config=self._idempotency_config,
                key_prefix=IDEMPOTENCY_KEY_PREFIX,
            )

    def start_batch(self, lambda_context: Any = None) -> None:
        """Per invocation: re-read the active model's labels, and give idempotency the deadline."""
        self._labels_read = False
        self.accepted = []
        if self._idempotency_config is not None and lambda_context is not None:
            self._idempotency_config.register_lambda_context(lambda_context)

    def accept(self, body: str, *, message_id: str, sent_timestamp: str | None = None) -> MessageResult:
        """Archive every verdict of one queue message, or quarantine the message if it is invalid.

        Raises on transient failures (S3, DynamoDB, no active model yet) so the message is retried.
        """
        sent_at = _epoch_millis_to_iso(sent_timestamp)
        try:
            message = parse_message_body(body, max_text_chars=self.max_text_chars, labels=self._current_labels())
        except VerdictError as error:
            key = self.archive.quarantine(body, error.problems, message_id=message_id, sent_at=sent_at)
            metrics.add_metric(name="VerdictsQuarantined", unit=MetricUnit.Count, value=1)
            # The problems name ids, labels, field names and unknown keys: the quarantine record keeps them.
            logger.warning(
                "verdict message quarantined",
                extra={"message_id": message_id, "problems": len(error.problems), "body_chars": len(body), "key": key},
            )
            return MessageResult(quarantine_key=key)
        provenance = self._provenance(message, sent_at)
        archived = duplicates = 0
        for index, given in enumerate(message.verdicts):
            # The occurrence is the verdict as given (a copy is a copy whatever it claims); its time is the server's.
            verdict = given.model_copy(update={"received_at": provenance.received_at})
            result = self._archive_once(
                occurrence=occurrence_key(given, message_id),
                verdict=verdict,
                message_id=message_id,
                sent_at=sent_at,
                index=index,
                sender=provenance.sender,
                trusted=provenance.role.allows(Role.REVIEWER),
            )
            if result.get("duplicate"):
                duplicates += 1
            else:
                archived += 1
            self.accepted.append((verdict, provenance))
        if archived:
            metrics.add_metric(name="VerdictsArchived", unit=MetricUnit.Count, value=archived)
        if duplicates:
            metrics.add_metric(name="VerdictsDuplicate", unit=MetricUnit.Count, value=duplicates)
        logger.info(
            "verdict message archived",
            extra={"message_id": message_id, "archived": archived, "duplicates": duplicates},
        )
        return MessageResult(archived=archived, duplicates=duplicates)

    def _archive_verdict(
        self,
        *,
        occurrence: str,
        verdict: Verdict,
        message_id: str,
        sent_at: str | None,
        index: int,
        sender: str | None,
        trusted: bool,
    ) -> dict[str, Any]:
        """The idempotent step (keyed on `occurrence`): write one verdict to the archive."""
        key = self.archive.write(
            verdict, message_id=message_id, sent_at=sent_at, index=index, sender=sender, trusted=trusted
        )
        return {"key": key, "occurrence": occurrence}

    def _provenance(self, message: QueueMessage, sent_at: str | None) -> Provenance:
        """Who sent the message's verdicts and when, as far as this function can verify it."""
        verified = self.attester.verify(message.attestation, message.verdicts) if self.attester else None
        if verified is None:
            claimed = sum(verdict.received_at is not None for verdict in message.verdicts)
            if claimed:
                metrics.add_metric(name="VerdictsClientTimeIgnored", unit=MetricUnit.Count, value=claimed)
            return Provenance(sender=None, role=Role.FEEDBACK, received_at=sent_at or utc_iso(self._now()))
        now = self._now()
        try:
            ahead: float | None = datetime.fromisoformat(verified.received_at).timestamp() - now
        except ValueError:
            ahead = None  # attested, but not a time: the server's clock decides
        if ahead is None or ahead > self.max_clock_skew_seconds:
            metrics.add_metric(name="VerdictsClockClamped", unit=MetricUnit.Count, value=len(message.verdicts))
            logger.warning("verdict time in the future clamped to now", extra={"ahead_seconds": ahead})
            return Provenance(sender=verified.sender, role=verified.role, received_at=utc_iso(now))
        return verified

    def _current_labels(self) -> list[str] | None:
        if not self._labels_read:
            self._labels, self._labels_read = self._read_labels(), True
        return self._labels


def occurrence_key(verdict: Verdict, message_id: str) -> str:
    """One giving of a verdict: its fingerprint and the time the API accepted it (`received_at`), or, for a
    producer writing to the queue without one, the queue message it came in (a redelivery keeps its id)."""
    return f"{verdict.fingerprint()}@{verdict.received_at or 'message:' + message_id}"


def _mark_duplicate(response: Any, data_record: Any) -> dict[str, Any]:
    """Idempotency response hook: the verdict was archived before, this call archived nothing."""
    return {**(response if isinstance(response, dict) else {}), "duplicate": True}


def _epoch_millis_to_iso(value: str | None) -> str | None:
    try:
        moment = datetime.fromtimestamp(int(value) / 1000, UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return utc_iso(moment) if moment else None
