"""A reviewer's decision on a held verdict (lodbrok.verdicts.review), the one path of `lodbrok held` and the API's
POST /review/held: against a moto bucket and the verdict memory table of template.yaml."""

from __future__ import annotations

import boto3
import pytest

from lodbrok.model.features import canonical_key
from lodbrok.verdicts.archive import ReviewError, VerdictArchive
from lodbrok.verdicts.memory import VerdictMemory
from lodbrok.verdicts.review import review_held
from support import hold_verdict

BUCKET = "lodbrok-review-test"


@pytest.fixture
def archive(aws: None) -> VerdictArchive:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return VerdictArchive(BUCKET, s3=boto3.client("s3"))


@pytest.fixture
def memory(verdict_memory_table: str) -> VerdictMemory:
    return VerdictMemory(verdict_memory_table, client=boto3.client("dynamodb"))


def test_review_held_accepted_is_archived_as_trusted_and_answers_everyone(
    archive: VerdictArchive, memory: VerdictMemory
) -> None:
    # Given a held verdict
    key = hold_verdict(archive, "win a free cruise today", "spam")

    # When a reviewer accepts it
    record, remembered = review_held(archive, memory, key, "accepted", reviewer="key#r1", note="checked")

    # Then it is archived again as trusted, and the memory answers its input for every client
    assert record["status"] == "accepted" and record["reviewer"] == "key#r1" and record["accepted_key"]
    (copy,) = archive.read([record["accepted_key"]])
    assert copy.trusted
    found = memory.parse(_read(memory, "win a free cruise today"), [canonical_key("win a free cruise today")], None)
    assert remembered and [entry.label for entry in found.values()] == ["spam"]


def test_review_held_rejected_is_only_recorded_and_cannot_be_decided_twice(
    archive: VerdictArchive, memory: VerdictMemory
) -> None:
    # Given a held verdict that a reviewer rejects
    key = hold_verdict(archive, "lunch at noon", "spam")
    record, remembered = review_held(archive, memory, key, "rejected")

    # Then nothing answers it, and a second decision is refused
    assert record["status"] == "rejected" and not remembered and "accepted_key" not in record
    assert memory.parse(_read(memory, "lunch at noon"), [canonical_key("lunch at noon")], None) == {}
    with pytest.raises(ReviewError):
        review_held(archive, memory, key, "accepted")


def _read(memory: VerdictMemory, text: str) -> list[dict]:
    request = memory.read_request([canonical_key(text)], None)
    return boto3.client("dynamodb").batch_get_item(RequestItems={memory.table_name: request})["Responses"][
        memory.table_name
    ]
