"""The review queue (lodbrok.serving.review_queue) against a moto table built from template.yaml: one entry per
distinct input with its repeats counted, most uncertain first, skipped ones last, expired ones gone."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from lodbrok.observability import metrics
from lodbrok.serving.review_queue import Candidate, ReviewItemNotFound, ReviewQueue, item_id, margin

TTL = 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(review_queue_table: str, clock: Clock) -> ReviewQueue:
    return ReviewQueue(review_queue_table, ttl_seconds=TTL, client=boto3.client("dynamodb"), now=clock)


def _candidate(text: str, spam: float) -> Candidate:
    return Candidate(input=text, label="spam" if spam >= 0.5 else "ham", probabilities={"ham": 1 - spam, "spam": spam})


def test_review_queue_keeps_one_entry_per_distinct_input_and_counts_repeats(queue: ReviewQueue) -> None:
    # Given one text sent three times (twice written differently only in case and spacing) and another once
    # When they are queued by two requests
    added = queue.enqueue(
        [_candidate("Claim your  PRIZE", 0.6), _candidate("claim your prize", 0.6)], client="a", model_version="v"
    )
    added += queue.enqueue(
        [_candidate("claim your prize", 0.6), _candidate("lunch?", 0.4)], client="b", model_version="v"
    )

    # Then two entries exist, the repeated one counted once per request that asked, credited to the first client
    assert added == 2
    items = {item.input: item for item in queue.next_items(10)}
    assert set(items) == {"Claim your  PRIZE", "lunch?"}
    assert items["Claim your  PRIZE"].seen == 2
    assert items["Claim your  PRIZE"].client == "a" and items["lunch?"].seen == 1
    assert queue.depth() == 2


def test_review_queue_serves_the_most_uncertain_first_and_skipped_ones_last(queue: ReviewQueue) -> None:
    # Given three items, from sure-ish to a coin toss
    queue.enqueue(
        [_candidate("fairly sure", 0.75), _candidate("coin toss", 0.51), _candidate("leaning", 0.35)],
        client="a",
        model_version="v",
    )

    # When the queue is read, then the most uncertain one is skipped and it is read again
    first = [item.input for item in queue.next_items(3)]
    queue.skip(item_id("coin toss"))
    after_skip = [item.input for item in queue.next_items(3)]

    # Then it came first by margin, and after the skip it comes last
    assert first == ["coin toss", "leaning", "fairly sure"]
    assert after_skip == ["leaning", "fairly sure", "coin toss"]


def test_review_queue_forgets_expired_and_removed_items(queue: ReviewQueue, clock: Clock) -> None:
    # Given two items, one of which is then labelled (removed)
    queue.enqueue([_candidate("one", 0.5), _candidate("two", 0.6)], client="a", model_version="v")
    queue.remove(item_id("one"))

    # When the TTL passes (DynamoDB deletes expired items only eventually)
    assert [item.input for item in queue.next_items(5)] == ["two"]
    clock.now += TTL + 1

    # Then nothing is served or counted, and asking for the item says it is gone
    assert queue.next_items(5) == [] and queue.depth() == 0
    with pytest.raises(ReviewItemNotFound):
        queue.get(item_id("two"))


def test_review_queue_keeps_records_and_their_explanation(queue: ReviewQueue) -> None:
    # Given a record with an explanation
    explanation = {
        "label": "spam",
        "towards": [{"piece": "prize", "field": "subject", "weight": 1.2}],
        "away": [],
        "pieces": 3,
    }
    record = {"subject": "prize", "attachments": 0}
    queue.enqueue([Candidate(record, "spam", {"ham": 0.3, "spam": 0.7}, explanation)], client="a", model_version="v9")

    # When it is read back
    (item,) = queue.next_items(1)

    # Then it is the same record, scores, explanation and model version
    assert item.input == record and item.explanation == explanation
    assert item.probabilities == {"ham": 0.3, "spam": 0.7} and item.model_version == "v9"


def test_review_queue_margin_is_the_gap_between_the_two_most_probable_labels() -> None:
    assert margin({"a": 0.5, "b": 0.3, "c": 0.2}) == 0.2
    assert margin({"only": 1.0}) == 1.0


def test_review_queue_write_failure_is_counted_not_raised(
    review_queue_table: str, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a queue whose table does not exist
    queue = ReviewQueue("no-such-table", ttl_seconds=TTL, client=boto3.client("dynamodb"))

    # When an item is queued
    added = queue.enqueue([_candidate("x", 0.5)], client="a", model_version="v")

    # Then nothing is added, the failure is counted and the caller goes on
    read_metrics()
    metrics.flush_metrics()
    assert added == 0 and read_metrics().get("ReviewQueueErrors") == 1
