"""Held verdicts (lodbrok.holding): written beside the archive with their reason, counted, and the sources
whose verdicts are mostly held reported. Against a moto bucket, without the retrain function."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from lodbrok.archive import ArchivedVerdict, VerdictArchive
from lodbrok.holding import SUSPECT_SOURCE_MIN_VERDICTS, hold_screened, hold_unknown_labels
from lodbrok.observability import metrics
from lodbrok.screening import HeldVerdict
from lodbrok.verdicts import Verdict

BUCKET = "lodbrok-holding-test"


@pytest.fixture
def archive(aws: None) -> VerdictArchive:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return VerdictArchive(BUCKET, s3=boto3.client("s3"))


def _archived(archive: VerdictArchive, source: str, count: int, label: str = "ham") -> list[ArchivedVerdict]:
    verdicts = [
        Verdict(id=f"{source}-{n}", text=f"{source} says {n}", label=label, source=source) for n in range(count)
    ]
    keys = [
        archive.write(verdict, message_id=f"m-{source}", sent_at=None, index=n) for n, verdict in enumerate(verdicts)
    ]
    return archive.read(keys)


def _held(records: list[ArchivedVerdict]) -> list[HeldVerdict]:
    return [HeldVerdict(record.verdict.to_labelled_item(), "contradicts trusted data", {"n": 1}) for record in records]


def _flushed_metrics(read_metrics: Callable[[], dict[str, float]]) -> dict[str, float]:
    read_metrics()
    metrics.flush_metrics()
    return read_metrics()


def test_a_source_is_reported_only_when_most_of_enough_of_its_verdicts_were_held(
    archive: VerdictArchive, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given three sources: most of mallory's held, one of alice's, and all of bob's but too few to judge
    mallory = _archived(archive, "mallory", SUSPECT_SOURCE_MIN_VERDICTS + 1)
    alice = _archived(archive, "alice", SUSPECT_SOURCE_MIN_VERDICTS + 1)
    bob = _archived(archive, "bob", SUSPECT_SOURCE_MIN_VERDICTS - 1)
    held = _held(mallory[:4] + alice[:1] + bob)

    # When what the screening held is held
    count, suspects = hold_screened(archive, mallory + alice + bob, held)

    # Then each is written beside the archive with its reason and evidence, and only mallory is reported
    assert count == len(held) and suspects == ["mallory"]
    records = archive.held()
    assert {record["archive_key"] for record in records} == {r.key for r in mallory[:4] + alice[:1] + bob}
    assert {(record["reason"], record["evidence"]["n"]) for record in records} == {("contradicts trusted data", 1)}
    assert archive.held_archive_keys() == {r.key for r in mallory[:4] + alice[:1] + bob}
    emitted = _flushed_metrics(read_metrics)
    assert emitted["VerdictsHeld"] == len(held) and emitted["VerdictSourcesSuspect"] == 1


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_nothing_held_writes_nothing_and_reports_no_source(
    archive: VerdictArchive, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a batch the screening held nothing of
    records = _archived(archive, "mallory", SUSPECT_SOURCE_MIN_VERDICTS + 1)

    # When it is passed on
    result = hold_screened(archive, records, [])

    # Then nothing is held, counted or reported
    assert result == (0, [])
    assert archive.held() == []
    emitted = _flushed_metrics(read_metrics)
    assert "VerdictsHeld" not in emitted and "VerdictSourcesSuspect" not in emitted


def test_verdicts_whose_label_the_model_lacks_are_held_and_the_rest_returned(
    archive: VerdictArchive, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given verdicts archived while the model was unreadable, one with a label the model does not have
    known = _archived(archive, "alice", 2, label="spam")
    unknown = _archived(archive, "bob", 1, label="promo")

    # When they are checked against the model's labels
    kept, held = hold_unknown_labels(archive, known + unknown, ["ham", "spam"])

    # Then the unknown label is held, naming the label and the model's labels; the others go on
    assert kept == known and held == 1
    [record] = archive.held()
    assert record["archive_key"] == unknown[0].key and "'promo'" in record["reason"]
    assert record["evidence"] == {"model_labels": ["ham", "spam"]}
    assert _flushed_metrics(read_metrics)["VerdictsHeld"] == 1
