"""Lineage: the times whose verdicts the active model's answers may still reflect.

The verdict memory answers an input with a client's verdict at once, before any model learned it. A
rollback undoes what the versions after the restored one learned, so it must also undo the memory entries
decided under them, without a table scan and without the operator naming the table. Instead every write of
the active model records, in the bundle's `stored` metadata (signed with it) and in its S3 user metadata,
the intervals of time it descends from: `[[start, end], ...]`, ISO 8601 UTC, `null` for "since the
beginning" and "still open". Publishing and promoting carry the current lineage forward; a rollback to a
version stored at tR, done at T, gets that version's lineage cut at tR plus `[T, null]`. The predict
function ignores a memory entry whose `decided_at` lies outside the active model's lineage, and the
retrain function does not write one, so a rollback by any route leaves no answer made under the versions
it undid, including one for a verdict stamped before the rollback and processed after it.

Only the newest `MAX_INTERVALS` are kept (S3 user metadata is small); dropping the oldest only ever hides
old entries, never shows undone ones. A bundle without a lineage (trained outside the store, or stored
before lineages existed) descends from everything, as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_INTERVALS = 6
LINEAGE_METADATA = "lineage"  # the key in the bundle's `stored` metadata and in the S3 user metadata

Interval = tuple[str | None, str | None]


@dataclass(frozen=True)
class Lineage:
    intervals: tuple[Interval, ...] = ((None, None),)

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Lineage:
        """The lineage recorded in a bundle's `stored` metadata; everything when there is none."""
        raw = (stored or {}).get(LINEAGE_METADATA)
        return cls.parse(raw) if raw is not None else cls()

    @classmethod
    def parse(cls, raw: Any) -> Lineage:
        """From the JSON list (or its text); a malformed lineage descends from nothing, so it hides entries."""
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
            intervals = tuple((_moment(start), _moment(end)) for start, end in value)
        except (TypeError, ValueError):
            return cls(())
        return cls(intervals)

    def contains(self, moment: str) -> bool:
        """True if a verdict decided at `moment` (ISO 8601 UTC) may be reflected in the model's answers."""
        try:
            at = _parse(moment)
        except (TypeError, ValueError):
            return False
        return any(
            (start is None or _parse(start) <= at) and (end is None or at <= _parse(end))
            for start, end in self.intervals
        )

    def restored(self, stored_at: str, at: str) -> Lineage:
        """The lineage of a version stored at `stored_at` and restored at `at`: what it knew then, and what comes."""
        cut = _parse(stored_at)
        kept = [
            (start, end if end is not None and _parse(end) <= cut else stored_at)
            for start, end in self.intervals
            if start is None or _parse(start) <= cut
        ]
        return Lineage(tuple([*kept, (at, None)][-MAX_INTERVALS:]))

    def to_json(self) -> list[list[str | None]]:
        return [[start, end] for start, end in self.intervals]

    def metadata(self) -> str:
        """Compact JSON for S3 user metadata."""
        return json.dumps(self.to_json(), separators=(",", ":"))


def _moment(value: Any) -> str | None:
    if value is None:
        return None
    _parse(value)
    return str(value)


def _parse(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment)
    if parsed.tzinfo is None:
        raise ValueError("lineage times are UTC with an offset")
    return parsed
