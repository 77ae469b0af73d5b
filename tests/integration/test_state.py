"""Where retraining stands (lodbrok.learning.state): the state object in moto's S3, and the cursor of a bundle."""

from __future__ import annotations

import boto3
import pytest

from lodbrok.learning.state import AttemptRecord, Mode, RetrainState, RetrainStateStore, archive_cursor_of
from lodbrok.model.bundle import Bundle
from lodbrok.registry.store import ConcurrentUpdate
from lodbrok.verdicts.archive import ArchiveCursor

BUCKET = "lodbrok-retrain-state-test"


@pytest.fixture
def state_store(aws: None) -> RetrainStateStore:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return RetrainStateStore(BUCKET, "default", s3=boto3.client("s3"))


def attempt(status: str, verdicts: int) -> AttemptRecord:
    return AttemptRecord(
        at="2026-01-01T00:00:00.000Z",
        mode=Mode.PENDING,
        status=status,
        verdicts=verdicts,
        fingerprint="f" * 16,
        parent_version_id="parent",
    )


def test_state_before_any_attempt_is_empty(state_store: RetrainStateStore) -> None:
    assert state_store.load() == (RetrainState(), None)


def test_record_attempt_consumes_what_it_considered_and_moves_the_promoted_cursor_only_on_promotion(
    state_store: RetrainStateStore,
) -> None:
    # Given an attempt that considered the archive up to key b (and the newer key d) and was not promoted
    state_store.record_attempt(attempt("rejected", 2), ArchiveCursor(watermark="b", consumed=("d",)), promoted=None)

    # When a later attempt considers up to c and is promoted
    promoted = ArchiveCursor(watermark="c")
    state_store.record_attempt(attempt("promoted", 1), promoted, promoted=promoted)

    # Then the stored state has both attempts' keys consumed, the promotion's cursor, and the last attempt
    state, etag = state_store.load()
    assert etag is not None
    assert state.cursor == ArchiveCursor(watermark="c", consumed=("d",))
    assert state.promoted_cursor == promoted
    assert state.last_attempt == attempt("promoted", 1)
    assert not state.cursor.is_pending("d") and state.cursor.is_pending("e")


def test_update_reapplies_the_change_over_a_concurrent_write(state_store: RetrainStateStore) -> None:
    # Given a writer that moves the state between this update's read and its write, once
    calls = []

    def change(state: RetrainState) -> RetrainState:
        calls.append(state)
        if len(calls) == 1:
            other = RetrainStateStore(BUCKET, "default", s3=boto3.client("s3"))
            other.record_attempt(attempt("rejected", 5), ArchiveCursor(watermark="x"), promoted=None)
        return state.model_copy(update={"promoted_cursor": ArchiveCursor(watermark="p")})

    # When the update runs
    updated = state_store.update(change)

    # Then its write lost the race once, and the change was applied again to the other writer's state
    assert len(calls) == 2 and calls[1].cursor == ArchiveCursor(watermark="x")
    assert state_store.load()[0] == updated
    assert (updated.cursor, updated.promoted_cursor) == (ArchiveCursor(watermark="x"), ArchiveCursor(watermark="p"))


def test_update_gives_up_when_the_state_keeps_changing(state_store: RetrainStateStore) -> None:
    # Given a writer that moves the state before every write of this update
    other = RetrainStateStore(BUCKET, "default", s3=boto3.client("s3"))

    def change(state: RetrainState) -> RetrainState:
        other.record_attempt(
            attempt("rejected", 1), ArchiveCursor(watermark=state.cursor.watermark + "a"), promoted=None
        )
        return state

    # When the update runs with three attempts
    # Then it raises rather than writing over the other writer
    with pytest.raises(ConcurrentUpdate, match="giving up after 3 attempts"):
        state_store.update(change, attempts=3)


def test_archive_cursor_of_a_bundle_is_what_it_learned_and_nothing_for_a_base_model(tiny_bundle: Bundle) -> None:
    learned = ArchiveCursor(watermark="verdicts/2026/01/01/k", consumed=("verdicts/2026/01/02/m",))
    child = tiny_bundle.with_metadata(learning={"archive_cursor": learned.model_dump()})
    assert archive_cursor_of(child) == learned
    assert archive_cursor_of(tiny_bundle) == ArchiveCursor()
    assert archive_cursor_of(tiny_bundle.with_metadata(learning="not an object")) == ArchiveCursor()
