"""The lineage of the active model (lodbrok.registry.lineage): which verdict times its answers may still reflect."""

from __future__ import annotations

import pytest

from lodbrok.registry.lineage import MAX_INTERVALS, Lineage

SEED_STORED = "2026-03-01T00:00:00.000Z"
ROLLED_BACK = "2026-03-10T00:00:00.000Z"


def test_lineage_without_a_record_descends_from_everything() -> None:
    # Given bundle metadata without a lineage (a bundle stored before lineages existed)
    lineage = Lineage.of({"action": "publish"})
    # Then every verdict time is inside it, as before
    assert lineage.contains("1999-01-01T00:00:00.000Z") and lineage.contains("2999-01-01T00:00:00Z")


def test_lineage_restored_excludes_what_came_between_the_restored_version_and_the_rollback() -> None:
    # Given a version that descends from everything, stored at SEED_STORED and restored at ROLLED_BACK
    restored = Lineage().restored(SEED_STORED, ROLLED_BACK)
    # Then verdicts decided before it was stored and after the rollback are inside, those between are not
    assert restored.to_json() == [[None, SEED_STORED], [ROLLED_BACK, None]]
    assert restored.contains("2026-02-01T00:00:00.000Z")
    assert not restored.contains("2026-03-05T12:00:00.000Z")
    assert not restored.contains("2026-03-09T23:59:59.999Z")
    assert restored.contains("2026-03-10T00:00:00.001Z")


def test_lineage_restored_twice_cuts_the_earlier_restore_too() -> None:
    # Given a rollback, then a version stored inside the second interval, restored again later
    first = Lineage().restored(SEED_STORED, ROLLED_BACK)
    again = first.restored("2026-03-20T00:00:00.000Z", "2026-04-01T00:00:00.000Z")
    # Then the undone gaps stay undone and the new gap is added
    assert again.to_json() == [
        [None, SEED_STORED],
        [ROLLED_BACK, "2026-03-20T00:00:00.000Z"],
        ["2026-04-01T00:00:00.000Z", None],
    ]
    # And a restore of a version stored before an interval began drops that interval
    assert first.restored("2026-02-01T00:00:00.000Z", "2026-05-01T00:00:00.000Z").to_json() == [
        [None, "2026-02-01T00:00:00.000Z"],
        ["2026-05-01T00:00:00.000Z", None],
    ]


def test_lineage_keeps_only_the_newest_intervals_which_only_hides_old_entries() -> None:
    # Given many rollbacks, each a day apart
    lineage = Lineage()
    for day in range(1, 12):
        lineage = lineage.restored(f"2026-01-{day:02d}T00:00:00.000Z", f"2026-01-{day:02d}T12:00:00.000Z")
    # Then at most MAX_INTERVALS are kept, and what was dropped (the oldest) no longer answers
    assert len(lineage.intervals) == MAX_INTERVALS
    assert not lineage.contains("2025-12-31T00:00:00.000Z")
    assert lineage.contains("2026-01-11T13:00:00.000Z")
    # And it survives the round trip through S3 user metadata, which it fits
    assert Lineage.parse(lineage.metadata()) == lineage and len(lineage.metadata()) < 400


@pytest.mark.parametrize(
    "raw",
    ["not json", "[[1, 2]]", '[["2026-01-01T00:00:00", null]]', '[["a"]]'],
    ids=["text", "numbers", "naive", "short"],
)
def test_lineage_malformed_descends_from_nothing(raw: str) -> None:
    # Given a malformed lineage, then an unreadable verdict time
    # Then nothing is inside it: a memory entry it cannot place never answers
    assert not Lineage.parse(raw).contains("2026-01-01T00:00:00.000Z")
    assert not Lineage().contains("yesterday")
