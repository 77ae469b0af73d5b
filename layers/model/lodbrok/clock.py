"""UTC time as text, written one way: ISO 8601 ending in `Z`, or a compact stamp for S3 keys.

Stored records keep the precision they have always had, so each caller names it: milliseconds (the
default: verdicts, archive records, the verdict memory), microseconds (call-log sort keys, where two calls
may share a millisecond) or seconds (bundle metadata, cache entries).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Precision = Literal["seconds", "milliseconds", "microseconds"]
# Sorts in time order and holds only characters that are safe in an S3 key.
KEY_STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_iso(moment: datetime | float | None = None, *, precision: Precision = "milliseconds") -> str:
    """`moment` (an aware datetime, epoch seconds, or now when None) as `2026-01-02T03:04:05.678Z`."""
    if moment is None:
        moment = utc_now()
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec=precision).replace("+00:00", "Z")


def key_stamp(moment: datetime | None = None) -> str:
    """`20260102T030405678901Z`: `moment` (now when None) for an S3 key."""
    return (moment or utc_now()).strftime(KEY_STAMP_FORMAT)
