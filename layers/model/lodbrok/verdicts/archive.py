"""The verdict archive in S3: the append-only dataset the model learns from, and a quarantine for rejects.

Layout under the archive prefix (`VERDICT_ARCHIVE_PREFIX`, default `verdicts/`):

    verdicts/archive/<yyyy>/<mm>/<dd>/<yyyymmddTHHMMSSffffffZ>-<message-id>-<nnn>.jsonl   one accepted verdict
    verdicts/quarantine/<yyyy>/<mm>/<dd>/<yyyymmddTHHMMSSffffffZ>-<message-id>.json        one rejected message
    verdicts/held/<yyyy>/<mm>/<dd>/<archive name>.json                                     one verdict held for review
    verdicts/senders/<sha256 of the sender>.json                                           one suspended sender

The timestamp is the UTC time of archiving with a fixed width, so lexicographic key order is time order
and "every verdict archived after position P" is one `list_objects_v2(StartAfter=P)`. Objects are written
once and never overwritten. An archive object is a JSON Lines dataset row (`id`, `text` or `fields`,
`label`) plus provenance (`source`, `received_at` (server time), `message_id`, `sent_at`, `archived_at`,
`fingerprint`, `sender` (the verified API key id of the client who sent it, or null: `lodbrok.verdicts.attestation`),
and `trusted` for a verdict a reviewer sent or accepted), so `lodbrok.model.data.items_from_jsonl` and
`lodbrok finetune --data` read it as is.

A verdict's sender (`sender_of`) is the verified sender the row names, or, for a verdict nobody vouched
for, `unverified:<source>`: the prefix keeps it apart from every verified sender.

A held record (`lodbrok.learning.screening` decided not to learn the verdict) sits beside the archive under the
same name, with the reason, the evidence, the sender and a review status: `held`, then `accepted` (the
verdict was archived again as trusted, so the loop learns it without screening) or `rejected` (never
learned). Holding is write-once, so a retried retrain never overwrites a review. A review changes the
status exactly once: a write conditional on the record as read, so of two racing reviewers one wins and
the other gets `ReviewConflict`. The accepted copy follows that write and is placed at the S3 time of it
(its LastModified), never the reviewer's clock, so the next retrain reads it however wrong that clock is;
the record names the copy last, so a review cut short is completed by running it again.

A suspended sender (most of its verdicts in a batch were held) has a marker under `senders/`, written
once; while it exists the retrain holds the sender's verdicts unread, and clearing the sender deletes it.

An `ArchiveCursor` says which archived verdicts were already consumed: every key up to its watermark,
plus the keys listed in `consumed` (keys newer than the watermark that a training run already used).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from lodbrok import aws
from lodbrok.clock import key_stamp, utc_iso, utc_now
from lodbrok.observability import logger
from lodbrok.verdicts.verdict import Verdict

PROVENANCE_FIELDS = ("fingerprint", "message_id", "sent_at", "archived_at", "trusted", "sender")
UNVERIFIED_PREFIX = "unverified:"
REVIEW_STATUSES = ("accepted", "rejected")
READ_WORKERS = 16
_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict"}
_UNSAFE_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")


class ArchiveCursor(BaseModel):
    """Which archive keys are consumed: all keys <= `watermark`, and every key in `consumed`."""

    model_config = ConfigDict(frozen=True)

    watermark: str = ""
    consumed: tuple[str, ...] = ()

    def is_pending(self, key: str) -> bool:
        return key > self.watermark and key not in self.consumed

    @classmethod
    def merge(cls, *cursors: ArchiveCursor) -> ArchiveCursor:
        """A cursor whose pending keys are exactly the keys pending under every one of `cursors`."""
        watermark = max((cursor.watermark for cursor in cursors), default="")
        consumed = {key for cursor in cursors for key in cursor.consumed if key > watermark}
        return cls(watermark=watermark, consumed=tuple(sorted(consumed)))

    def advance(self, keys: Iterable[str], settled: str) -> ArchiveCursor:
        """Mark `keys` consumed and move the watermark up to `settled`.

        The caller guarantees that every key pending under this cursor and not after `settled` is in `keys`
        (it listed them all), so only newer keys need to be remembered one by one.
        """
        watermark = max(self.watermark, settled)
        consumed = {key for key in (*self.consumed, *keys) if key > watermark}
        return ArchiveCursor(watermark=watermark, consumed=tuple(sorted(consumed)))


@dataclass(frozen=True)
class ArchivedVerdict:
    key: str
    verdict: Verdict
    fingerprint: str
    message_id: str
    sent_at: str | None
    archived_at: str
    trusted: bool = False
    sender: str | None = None  # verified by the API (its attestation of the client's key id); None when unknown


def sender_of(record: ArchivedVerdict) -> str:
    return judged_sender(record.sender, record.verdict.source)


def judged_sender(sender: str | None, source: str | None) -> str:
    """Who a verdict's trust is judged by: its verified sender, or its unverified `source`, marked as such."""
    return sender or f"{UNVERIFIED_PREFIX}{source or 'unknown'}"


def sender_digest(sender: str) -> str:
    """A sender named in logs and keys without its text (senders are client-controlled)."""
    return hashlib.sha256(sender.encode()).hexdigest()


class ReviewError(ValueError):
    """A held verdict that does not exist, or was already reviewed."""


class HeldNotFound(ReviewError):
    """No held verdict has this key."""


class ReviewConflict(ReviewError):
    """Another review changed the held verdict between this review's read and its write; that one stands."""


@dataclass(frozen=True)
class PendingKeys:
    keys: list[str]
    truncated: bool


class VerdictArchive:
    """Writes, lists and reads archived verdicts and quarantined messages in one S3 bucket."""

    def __init__(self, bucket: str, prefix: str = "verdicts/", s3: Any = None) -> None:
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.archive_prefix = f"{prefix}/archive/" if prefix else "archive/"
        self.quarantine_prefix = f"{prefix}/quarantine/" if prefix else "quarantine/"
        self.held_prefix = f"{prefix}/held/" if prefix else "held/"
        self.senders_prefix = f"{prefix}/senders/" if prefix else "senders/"
        self.s3 = s3 or aws.client("s3")

    def position(self, moment: datetime) -> str:
        """The archive position of an instant: every key archived before it sorts before this string."""
        moment = moment.astimezone(UTC)
        return f"{self.archive_prefix}{moment:%Y/%m/%d}/{key_stamp(moment)}"

    def write(
        self,
        verdict: Verdict,
        *,
        message_id: str,
        sent_at: str | None,
        index: int = 0,
        trusted: bool = False,
        sender: str | None = None,
        at: datetime | None = None,
    ) -> str:
        """Archive one verdict as a new object (at the position of `at`, default now); returns its key."""
        now = utc_now()
        key = f"{self.position(at or now)}-{_safe(message_id)}-{index:03d}.jsonl"
        row = {
            **verdict.model_dump(mode="json", exclude_none=True),
            "received_at": verdict.received_at or sent_at,
            "fingerprint": verdict.fingerprint(),
            "message_id": message_id,
            "sent_at": sent_at,
            "archived_at": utc_iso(now),
            "sender": sender,
            **({"trusted": True} if trusted else {}),
        }
        body = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        return key

    def quarantine(self, body: str, problems: Sequence[dict[str, Any]], *, message_id: str, sent_at: str | None) -> str:
        """Keep a message that will never be valid, with why, for inspection and a manual redrive."""
        now = utc_now()
        key = f"{self.quarantine_prefix}{now:%Y/%m/%d}/{key_stamp(now)}-{_safe(message_id)}.json"
        record = {
            "message_id": message_id,
            "sent_at": sent_at,
            "quarantined_at": utc_iso(now),
            "reason": "; ".join(str(problem.get("error")) for problem in problems),
            "problems": list(problems),
            "body": body,
        }
        data = json.dumps(record, ensure_ascii=False, indent=2, default=str).encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
        return key

    def pending(self, cursor: ArchiveCursor, limit: int | None = None) -> PendingKeys:
        """Keys not consumed by `cursor`, oldest first, at most `limit` of them."""
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.archive_prefix}
        if cursor.watermark:
            arguments["StartAfter"] = cursor.watermark
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(**arguments):
            for entry in page.get("Contents", []):
                if not cursor.is_pending(entry["Key"]):
                    continue
                if limit is not None and len(keys) >= limit:
                    return PendingKeys(keys, truncated=True)
                keys.append(entry["Key"])
        return PendingKeys(keys, truncated=False)

    def read(self, keys: Sequence[str]) -> list[ArchivedVerdict]:
        """The archived verdicts under `keys`, in the order given (parallel GETs)."""
        with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
            bodies = list(pool.map(self._get, keys))
        verdicts = []
        for key, body in zip(keys, bodies, strict=True):
            for line in filter(str.strip, body.splitlines()):
                try:
                    verdicts.append(_parse_row(key, line))
                except (ValueError, TypeError, AttributeError) as error:  # one bad row must not block learning
                    # A description names fields and unknown keys: the log says only how many problems of which kind.
                    problems = error.error_count() if isinstance(error, ValidationError) else 1
                    logger.warning(
                        "skipping an unreadable archive row",
                        extra={"key": key, "error_type": type(error).__name__, "problems": problems},
                    )
        return verdicts

    def hold(self, record: ArchivedVerdict, reason: str, evidence: dict[str, Any]) -> str:
        """Keep an archived verdict out of learning until it is reviewed; a second hold changes nothing."""
        key = self._held_key(record.key)
        document = {
            "archive_key": record.key,
            "status": "held",
            "held_at": utc_iso(),
            "reason": reason,
            "evidence": evidence,
            "verdict": record.verdict.model_dump(mode="json", exclude_none=True),
            "sender": sender_of(record),
            **({"verified_sender": True} if record.sender else {}),
        }
        self._put_once(key, document)
        return key

    def held_archive_keys(self) -> set[str]:
        """The archive keys of every held verdict, whatever its review status (one listing, no reads)."""
        return {self._archive_key(key) for key in self._list(self.held_prefix)}

    def held(self, status: str | None = None) -> list[dict[str, Any]]:
        """Held verdict records (with their `key`), oldest first; only those with `status` if given."""
        records = [{"key": key, **json.loads(self._get(key))} for key in self._list(self.held_prefix)]
        return [record for record in records if status is None or record["status"] == status]

    def held_by(self, sender: str, status: str = "held") -> list[dict[str, Any]]:
        """The held verdict records of one sender (as `sender_of` names it), oldest first."""
        return [record for record in self.held(status) if held_sender(record) == sender]

    def review(self, key: str, status: str, *, reviewer: str | None = None, note: str | None = None) -> dict[str, Any]:
        """Accept (archive the verdict again as trusted) or reject one held verdict, exactly once.

        Raises ReviewConflict when another review changed the record first, and ReviewError when it was
        reviewed before. Accepting a record whose accepted copy was never named (a review cut short) completes it.
        """
        if status not in REVIEW_STATUSES:
            raise ReviewError(f"a review is one of {REVIEW_STATUSES}, not {status!r}")
        record, etag = self._read_held(key)
        unfinished = record["status"] == "accepted" and not record.get("accepted_key")
        if record["status"] != "held" and not (unfinished and status == "accepted"):
            raise ReviewError(f"{key} was already {record['status']} at {record.get('reviewed_at')}")
        if not unfinished:
            record.update(status=status, reviewer=reviewer, note=note, reviewed_at=None)
        # The one state change; a rewrite of an unfinished accept also gives the copy a fresh S3 time.
        etag = self._put_record(key, record, etag)
        reviewed_at = self.s3.head_object(Bucket=self.bucket, Key=key)["LastModified"]
        record["reviewed_at"] = utc_iso(reviewed_at)
        if status == "accepted":
            verdict = Verdict.model_validate(record["verdict"])
            record["accepted_key"] = self.write(
                verdict,
                message_id=f"review-{PurePosixPath(key).stem}",
                sent_at=None,
                trusted=True,
                sender=record.get("sender") if record.get("verified_sender") else None,
                at=reviewed_at,
            )
        self._put_record(key, record, etag)
        return {"key": key, **record}

    def suspend(self, sender: str, evidence: dict[str, Any]) -> bool:
        """Hold `sender`'s verdicts until a reviewer clears it; False when it was suspended already."""
        document = {"sender": sender, "suspended_at": utc_iso(), **evidence}
        return self._put_once(self._sender_key(sender), document)

    def suspended(self) -> set[str]:
        """The digests (`sender_digest`) of the suspended senders: one listing, no reads."""
        return {PurePosixPath(key).stem for key in self._list(self.senders_prefix)}

    def lift(self, sender: str) -> bool:
        """Lift a suspension; False when the sender was not suspended."""
        key = self._sender_key(sender)
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if aws.error_code(error) in {"NoSuchKey", "404"}:
                return False
            raise
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined message record, oldest first (for operators and tests)."""
        return [{"key": key, **json.loads(self._get(key))} for key in self._list(self.quarantine_prefix)]

    def _read_held(self, key: str) -> tuple[dict[str, Any], str]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if aws.error_code(error) in {"NoSuchKey", "404"}:
                raise HeldNotFound(f"no held verdict at s3://{self.bucket}/{key}") from error
            raise
        return json.loads(response["Body"].read()), response["ETag"]

    def _put_record(self, key: str, record: dict[str, Any], etag: str) -> str:
        """Replace a held record if it is still the version read (`etag`); its new ETag."""
        data = json.dumps(record, ensure_ascii=False, indent=2).encode()
        try:
            response = self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType="application/json", IfMatch=etag
            )
        except ClientError as error:
            if aws.error_code(error) in _CONDITION_FAILED:
                raise ReviewConflict(
                    f"{key} was reviewed by someone else while this review ran; `lodbrok held list --status all` "
                    "shows the decision that stands"
                ) from error
            raise
        return str(response["ETag"])

    def _put_once(self, key: str, document: dict[str, Any]) -> bool:
        """Write `document` unless the key exists; whether this call wrote it."""
        data = json.dumps(document, ensure_ascii=False, indent=2).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json", IfNoneMatch="*")
        except ClientError as error:
            if aws.error_code(error) not in _CONDITION_FAILED:
                raise
            return False
        return True

    def _sender_key(self, sender: str) -> str:
        return f"{self.senders_prefix}{sender_digest(sender)}.json"

    def _held_key(self, archive_key: str) -> str:
        return self.held_prefix + archive_key.removeprefix(self.archive_prefix).removesuffix(".jsonl") + ".json"

    def _archive_key(self, held_key: str) -> str:
        return self.archive_prefix + held_key.removeprefix(self.held_prefix).removesuffix(".json") + ".jsonl"

    def _list(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [entry["Key"] for page in pages for entry in page.get("Contents", [])]

    def _get(self, key: str) -> str:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()


def _parse_row(key: str, line: str) -> ArchivedVerdict:
    row = json.loads(line)
    provenance = {name: row.pop(name, None) for name in PROVENANCE_FIELDS}
    verdict = Verdict.model_validate(row)
    return ArchivedVerdict(
        key=key,
        verdict=verdict,
        fingerprint=provenance["fingerprint"] or verdict.fingerprint(),
        message_id=provenance["message_id"] or "",
        sent_at=provenance["sent_at"],
        archived_at=provenance["archived_at"] or "",
        trusted=provenance["trusted"] is True,
        sender=provenance["sender"] if isinstance(provenance["sender"], str) and provenance["sender"] else None,
    )


def held_sender(record: dict[str, Any]) -> str:
    """The sender of a held record; records held before senders were kept name the verdict's source."""
    return judged_sender(record.get("sender"), record["verdict"].get("source"))


def _safe(value: str) -> str:
    return _UNSAFE_KEY_CHARACTERS.sub("_", value)[:128] or "unknown"
