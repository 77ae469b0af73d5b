"""The call log (lodbrok.serving.call_log): each caller pages through its own recent calls, and nothing else.

Driven through the predict handler with the events of `events/`, against moto, like test_predict_api.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest

from lodbrok.registry.store import ModelRef
from support import CALL_LOG_TABLE, assert_error, load_event

if TYPE_CHECKING:
    from conftest import Api, FakeClock

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def test_calls_recent_pages_own_calls_newest_first(api: Api, published_model: ModelRef, clock: FakeClock) -> None:
    # Given five prediction requests by this caller, one second apart, and one by another caller
    single = load_event("predict_single.json")
    for number in range(5):
        api.call(single, request_id=f"request-{number}")
        clock.advance(1)
    api.call(single, identity={"apiKeyId": "someone-else"})

    # When the caller pages through its calls two at a time
    pages, token = [], None
    calls_event = load_event("calls_recent_get.json")
    for _ in range(5):
        params = {"limit": "2", **({"next_token": token} if token else {})}
        response = api.call(calls_event, query=params)
        assert response.status == 200, response.body
        pages.append([call["request_id"] for call in response.body["calls"]])
        token = response.body["next_token"]
        if token is None:
            break

    # Then it sees only its own five calls, newest first, 2 + 2 + 1
    assert pages == [["request-4", "request-3"], ["request-2", "request-1"], ["request-0"]]


def test_calls_recent_without_api_key_uses_source_ip(api: Api, published_model: ModelRef) -> None:
    # Given a request without an API key
    api.call(load_event("predict_single.json"), identity={"apiKeyId": None})

    # When the same source IP asks for its calls without a key
    response = api.call(load_event("calls_recent_get.json"), identity={"apiKeyId": None})

    # Then that IP's call is listed, and the keyed caller's log is separate
    assert response.body["caller"] == "ip#203.0.113.7"
    assert len(response.body["calls"]) == 1
    assert api.call(load_event("calls_recent_get.json")).body["calls"] == []


def test_calls_recent_expired_entries_are_hidden(api: Api, published_model: ModelRef, clock: FakeClock) -> None:
    # Given a call logged more than CALL_LOG_TTL_SECONDS (default 7 days) ago
    api.call(load_event("predict_single.json"))
    clock.advance(7 * 86_400 + 1)

    # When the caller lists its calls
    response = api.call(load_event("calls_recent_get.json"))

    # Then the expired entry is not shown even though DynamoDB (moto) has not deleted it
    assert response.body["calls"] == []


def test_calls_recent_token_is_only_a_position_in_the_callers_own_log(
    api: Api, published_model: ModelRef, clock: FakeClock
) -> None:
    # Given two calls by this caller and one by another
    single = load_event("predict_single.json")
    api.call(single, request_id="mine-1")
    clock.advance(1)
    api.call(single, request_id="mine-2")
    api.call(single, identity={"apiKeyId": "someone-else"})
    calls = load_event("calls_recent_get.json")

    # When tokens the API never issued are used: one after every sort key, one before all of them
    after_all = api.call(calls, query={"next_token": "~"})
    before_all = api.call(calls, query={"next_token": "0"})

    # Then each is just a position in the caller's own log: everything older than it, never another's calls
    assert [call["request_id"] for call in after_all.body["calls"]] == ["mine-2", "mine-1"]
    assert before_all.status == 200 and before_all.body["calls"] == []
    # And an empty or overlong token breaks the documented schema: 422
    for token in ("", "x" * 257):
        assert_error(api.call(calls, query={"next_token": token}), 422, "validation_error")


def test_calls_recent_when_disabled_is_404(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the call log is disabled
    monkeypatch.setenv("CALL_LOG_ENABLED", "false")
    api.rebuild()
    api.call(load_event("predict_single.json"))

    # When the calls endpoint is asked
    response = api.call(load_event("calls_recent_get.json"))

    # Then it answers 404 with a JSON error, and predicting wrote nothing to the log
    assert_error(response, 404, "call_log_disabled")
    assert boto3.client("dynamodb").scan(TableName=CALL_LOG_TABLE, Select="COUNT")["Count"] == 0
