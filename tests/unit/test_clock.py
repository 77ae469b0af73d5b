"""UTC time as text: one helper, each stored format named by its precision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from lodbrok.clock import key_stamp, utc_iso

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_utc_iso_writes_each_precision_with_a_z() -> None:
    assert utc_iso(MOMENT) == "2026-01-02T03:04:05.678Z"
    assert utc_iso(MOMENT, precision="microseconds") == "2026-01-02T03:04:05.678901Z"
    assert utc_iso(MOMENT.timestamp(), precision="seconds") == "2026-01-02T03:04:05Z"


def test_utc_iso_converts_other_time_zones_and_defaults_to_now() -> None:
    moment = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert utc_iso(moment, precision="seconds") == "2026-01-02T03:04:05Z"
    before = datetime.now(UTC).replace(microsecond=0)
    assert datetime.fromisoformat(utc_iso(precision="seconds")) >= before


def test_key_stamp_is_compact_and_sorts_in_time_order() -> None:
    assert key_stamp(MOMENT) == "20260102T030405678901Z"
    assert key_stamp(MOMENT) < key_stamp(MOMENT + timedelta(microseconds=1))
