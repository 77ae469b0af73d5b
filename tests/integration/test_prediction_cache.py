"""The prediction cache (lodbrok.serving.prediction_cache): answers per model version in DynamoDB, best effort.

Driven through the predict handler with the events of `events/`, against moto, like test_predict_api.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lodbrok.registry.store import ModelRef
from support import CACHE_TABLE, cache_item_count, load_event, predict_texts

if TYPE_CHECKING:
    from conftest import Api, FakeClock

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def test_predict_batch_partial_cache_hits(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given two of three texts were predicted before
    texts = json.loads(load_event("predict_batch.json")["body"])["texts"]
    first = predict_texts(api, texts[:2])
    read_metrics()

    # When all three are predicted
    response = predict_texts(api, texts)

    # Then the first two come from the cache with the same answers, the third from the model
    assert response.status == 200
    predictions = response.body["predictions"]
    assert [p["from_cache"] for p in predictions] == [True, True, False]
    assert predictions[:2] == [{**p, "from_cache": True, "source": "cache"} for p in first.body["predictions"]]
    assert [p["source"] for p in predictions] == ["cache", "cache", "model"]
    counted = read_metrics()
    assert (counted["CacheHits"], counted["CacheMisses"], counted["PredictionsServed"]) == (2, 1, 3)


def test_predict_skip_cache_bypasses_reads_but_still_writes(api: Api, published_model: ModelRef) -> None:
    # Given a text predicted with skip_cache (nothing cached before)
    first = predict_texts(api, ["See you at the station"], skip_cache=True)

    # When it is predicted again with skip_cache, then without
    again = predict_texts(api, ["See you at the station"], skip_cache=True)
    cached = predict_texts(api, ["See you at the station"])

    # Then skip_cache never reads, but its answer was written and serves the normal request
    assert [p["from_cache"] for p in first.body["predictions"] + again.body["predictions"]] == [False, False]
    assert cached.body["predictions"][0]["from_cache"] is True


def test_predict_expired_cache_entry_is_a_miss(api: Api, published_model: ModelRef, clock: FakeClock) -> None:
    # Given a cached answer (moto never deletes expired items)
    predict_texts(api, ["Expiring text"])

    # When more than CACHE_TTL_SECONDS (default one day) pass
    clock.advance(86_400 + 1)
    response = predict_texts(api, ["Expiring text"])

    # Then the expired item is not served
    assert response.body["predictions"][0]["from_cache"] is False


def test_predict_cache_table_gone_still_answers_and_counts_cache_errors(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given the cache table has disappeared
    boto3.client("dynamodb").delete_table(TableName=CACHE_TABLE)

    # When texts are predicted
    response = predict_texts(api, ["Dinner at eight?", "WIN a FREE ipod now"])

    # Then the model answers, and the failed read and write are counted
    assert response.status == 200, response.body
    assert [p["from_cache"] for p in response.body["predictions"]] == [False, False]
    assert read_metrics()["CacheErrors"] == 2


class FailingDynamoDB:
    """A DynamoDB client whose every call is throttled."""

    def __getattr__(self, name: str) -> Any:
        def fail(**_: Any) -> Any:
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, name)

        return fail


def test_predict_cache_throttled_still_answers(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a DynamoDB that throttles every call
    api.rebuild(dynamodb=FailingDynamoDB())

    # When a text is predicted
    response = predict_texts(api, ["Running late, save me a seat"])

    # Then it is answered by the model and the cache errors are counted
    assert response.status == 200, response.body
    assert response.body["predictions"][0]["from_cache"] is False
    assert read_metrics()["CacheErrors"] == 2


class FlakyDynamoDB:
    """A real (moto) client whose first batch read and first batch write each process nothing."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb")
        self.calls: dict[str, int] = {"batch_get_item": 0, "batch_write_item": 0}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["batch_get_item"] += 1
        if self.calls["batch_get_item"] == 1:
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        return self.client.batch_get_item(RequestItems=RequestItems)

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["batch_write_item"] += 1
        if self.calls["batch_write_item"] == 1:
            return {"UnprocessedItems": RequestItems}
        return self.client.batch_write_item(RequestItems=RequestItems)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_predict_cache_retries_unprocessed_keys_and_items(api: Api, published_model: ModelRef) -> None:
    # Given DynamoDB leaves the first batch read and the first batch write unprocessed
    flaky = FlakyDynamoDB()
    api.rebuild(dynamodb=flaky)

    # When texts are predicted twice
    first = predict_texts(api, ["Bring the umbrella", "Claim your FREE voucher"])
    second = predict_texts(api, ["Bring the umbrella", "Claim your FREE voucher"])

    # Then the unprocessed write was retried (so the second request hits), and the reads were retried too
    assert [p["from_cache"] for p in first.body["predictions"]] == [False, False]
    assert [p["from_cache"] for p in second.body["predictions"]] == [True, True]
    assert flaky.calls == {"batch_get_item": 3, "batch_write_item": 2}


def test_predict_more_than_a_batch_of_keys_round_trips(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a limit above DynamoDB's 100 keys per BatchGetItem
    monkeypatch.setenv("MAX_ITEMS", "150")
    api.rebuild()
    texts = [f"Message number {index} about lunch" for index in range(150)]

    # When 150 distinct texts are predicted twice
    predict_texts(api, texts)
    response = predict_texts(api, texts)

    # Then all 150 were written (6 write batches) and all are read back (2 read batches)
    assert all(p["from_cache"] for p in response.body["predictions"])
    assert cache_item_count() == 150


def test_predict_without_cache_table_works_uncached(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given CACHE_TABLE is empty (cache disabled)
    monkeypatch.setenv("CACHE_TABLE", "")
    api.rebuild()

    # When a text is predicted twice
    predict_texts(api, ["No cache here"])
    response = predict_texts(api, ["No cache here"])

    # Then it is never served from a cache and nothing is written
    assert response.body["predictions"][0]["from_cache"] is False
    assert cache_item_count() == 0
