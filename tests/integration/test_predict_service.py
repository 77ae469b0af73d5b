"""The prediction core (lodbrok.predict_service), through the predict handler against moto: a remembered verdict
answers first, then the cache, then the model; a failing shared read of the two tables skips both; each distinct
input is computed once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
import pytest

from lodbrok.features import canonical_key
from lodbrok.store import ModelRef
from support import MEMORY_TABLE, cache_item_count, predict_texts

if TYPE_CHECKING:
    from conftest import Api

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def test_predict_answers_a_remembered_verdict_over_the_cache_until_it_is_forgotten(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    from lodbrok.verdict_memory import VerdictMemory
    from lodbrok.verdicts import Verdict

    # Given a text the model answers (and has cached), then a client's verdict on it, remembered by retrain
    text = "WINNER!! claim your free holiday, call 09012345678"
    before = predict_texts(api, [text, "see you at dinner"]).body["predictions"]
    flipped = "ham" if before[0]["label"] == "spam" else "spam"
    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    verdict = Verdict(id="fix-1", text=text, label=flipped, received_at="2026-01-01T00:00:00.000Z")
    memory.remember([verdict])
    read_metrics()

    # When the same texts are predicted again
    after = predict_texts(api, [text, "see you at dinner"]).body["predictions"]

    # Then the corrected one is answered by the verdict (over the cached answer), the other one by the cache
    assert after[0]["label"] == flipped and after[0]["source"] == "verdict"
    assert after[0]["verdict"] == {"id": "fix-1", "at": "2026-01-01T00:00:00.000Z"}
    assert after[0]["probabilities"][flipped] == 1.0 and after[0]["from_cache"] is False
    assert after[1]["source"] == "cache" and "verdict" not in after[1]
    assert read_metrics()["VerdictMemoryHits"] == 1
    # And once the entry is forgotten (a promoted model agrees), the model answers it again
    memory.forget_learned([(canonical_key(text), verdict)])
    assert predict_texts(api, [text]).body["predictions"][0]["source"] == "cache"


def test_predict_with_the_verdict_memory_unavailable_answers_from_the_model(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given the verdict memory table does not exist (deleted, or a wrong name)
    monkeypatch.setenv("VERDICT_MEMORY_TABLE", "no-such-table")
    api.rebuild()
    read_metrics()
    # When texts are predicted, twice
    responses = [predict_texts(api, ["hello there", "FREE prize"]) for _ in range(2)]
    # Then every answer comes from the model (the shared read failed, so the cache is skipped too), never a 5xx
    assert [response.status for response in responses] == [200, 200]
    assert {p["source"] for response in responses for p in response.body["predictions"]} == {"model"}
    counted = read_metrics()
    assert counted["VerdictMemoryErrors"] == 2 and counted["CacheErrors"] == 2


def test_predict_duplicates_in_one_request_computed_once(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a request whose texts are the same after normalization
    texts = ["Call me when you land", "  call ME when you   land ", "Call me when you land"]

    # When it is sent
    response = predict_texts(api, texts)

    # Then one distinct input was looked up and computed, and every item got the same answer
    assert response.status == 200
    predictions = response.body["predictions"]
    assert len({json.dumps(p["probabilities"], sort_keys=True) for p in predictions}) == 1
    counted = read_metrics()
    assert (counted["CacheMisses"], counted["PredictionsServed"]) == (1, 3)
    assert cache_item_count() == 1
