"""Where retraining stands: the state object `state/<model>/retrain.json` and the cursor of a bundle.

Progress is an `ArchiveCursor`: the state object holds the position of the last training attempt, and
every promoted bundle records the position it was trained up to (`metadata.learning.archive_cursor`),
written atomically with the model itself. A failure anywhere before the cursor moves leaves the verdicts
pending, so the next batch or the schedule retries them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from lodbrok import aws
from lodbrok.model.bundle import Bundle
from lodbrok.registry.store import ConcurrentUpdate
from lodbrok.verdicts.archive import ArchiveCursor


class Mode(enum.StrEnum):
    PENDING = "pending"  # everything archived since the last training attempt (the SQS path)
    SINCE_PROMOTION = "since-promotion"  # everything archived since the last promotion (the schedule)


class AttemptRecord(BaseModel):
    at: str
    mode: Mode
    status: str
    verdicts: int
    fingerprint: str
    parent_version_id: str
    version: str | None = None
    version_id: str | None = None
    candidate_key: str | None = None
    held: int = 0


class RetrainState(BaseModel):
    model_config = ConfigDict(frozen=True)

    cursor: ArchiveCursor = ArchiveCursor()  # what the last training attempt (promoted or not) considered
    promoted_cursor: ArchiveCursor = ArchiveCursor()  # what the last promotion by this loop had learned
    last_attempt: AttemptRecord | None = None


class RetrainStateStore:
    """The small state object `state/<model>/retrain.json`, updated with conditional writes."""

    def __init__(self, bucket: str, model_name: str = "default", s3: Any = None) -> None:
        self.bucket = bucket
        self.key = f"state/{model_name}/retrain.json"
        self.s3 = s3 or aws.client("s3")

    def load(self) -> tuple[RetrainState, str | None]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if aws.error_code(error) in {"NoSuchKey", "404"}:
                return RetrainState(), None
            raise
        return RetrainState.model_validate_json(response["Body"].read()), response["ETag"]

    def update(self, change: Callable[[RetrainState], RetrainState], attempts: int = 5) -> RetrainState:
        """Read, change and write back; a concurrent writer makes it re-read and re-apply `change`."""
        for _ in range(attempts):
            state, etag = self.load()
            updated = change(state)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=updated.model_dump_json(indent=2).encode(),
                    ContentType="application/json",
                    **condition,
                )
            except ClientError as error:
                if aws.error_code(error) in {"PreconditionFailed", "ConditionalRequestConflict"}:
                    continue
                raise
            return updated
        raise ConcurrentUpdate(f"s3://{self.bucket}/{self.key} kept changing; giving up after {attempts} attempts")

    def record_attempt(
        self, record: AttemptRecord, considered: ArchiveCursor, *, promoted: ArchiveCursor | None
    ) -> RetrainState:
        """After an attempt: everything it `considered` is consumed, and `promoted` (if it was) learned."""

        def change(state: RetrainState) -> RetrainState:
            cursor = ArchiveCursor.merge(state.cursor, considered)
            promoted_cursor = (
                state.promoted_cursor if promoted is None else ArchiveCursor.merge(state.promoted_cursor, promoted)
            )
            return RetrainState(cursor=cursor, promoted_cursor=promoted_cursor, last_attempt=record)

        return self.update(change)


def archive_cursor_of(bundle: Bundle) -> ArchiveCursor:
    """Up to where a bundle has seen the archive (a base model has seen nothing)."""
    learning = bundle.metadata.get("learning")
    raw = learning.get("archive_cursor") if isinstance(learning, dict) else None
    return ArchiveCursor.model_validate(raw) if isinstance(raw, dict) else ArchiveCursor()
