"""Fuzzing the predict API: no input, however odd, may produce a 5xx or an error body of another shape."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lodbrok.registry.store import ModelRef
from support import load_event

if TYPE_CHECKING:
    from conftest import Api, ApiResponse

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
KNOWN_KEYS = ["text", "texts", "items", "id", "fields", "skip_cache", "echo_input", "verdicts", "label", "source"]

# Strings: ordinary unicode, the characters that break naive code (NUL, lone surrogates, BOM, RTL marks),
# and now and then a long one (over MAX_TEXT_CHARS). Bodies over MAX_BODY_BYTES come from `oversized`.
odd_characters = st.sampled_from(["\x00", "\ud800", "\udfff", "\ufeff", "\u202e", "\U0001f600", "\n", '"', "\\"])
short_strings = st.one_of(
    st.text(max_size=40), st.text(alphabet=st.one_of(st.characters(), odd_characters), min_size=1, max_size=40)
)
long_strings = st.builds(lambda char, count: char * count, st.characters(), st.integers(4_000, 6_000))
strings = st.one_of(short_strings, short_strings, short_strings, long_strings)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(), strings
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)),
    max_leaves=25,
)
plausible_texts = st.text(alphabet=st.one_of(st.characters(), odd_characters), min_size=1, max_size=60).filter(
    str.strip
)
flat_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), short_strings)
records = st.dictionaries(st.text(max_size=10), flat_values, max_size=5)
options = {"skip_cache": st.booleans() | json_values, "echo_input": st.booleans() | json_values}

# Bodies that look almost right (or are right), so fuzzing also gets past the outer checks.
items = st.fixed_dictionaries(
    {}, optional={"id": short_strings | json_values, "text": strings | json_values, "fields": records | json_values}
)
predict_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"text": strings | json_values, **options}),
    st.fixed_dictionaries({"texts": st.lists(strings, max_size=8) | json_values}, optional=options),
    st.fixed_dictionaries({"items": st.lists(items, max_size=8) | json_values}, optional=options),
    st.fixed_dictionaries({"items": st.lists(st.fixed_dictionaries({"fields": records}), min_size=1, max_size=5)}),
    st.fixed_dictionaries(
        {"texts": st.lists(plausible_texts, min_size=1, max_size=8)},
        optional={"skip_cache": st.booleans(), "echo_input": st.booleans()},
    ),
    st.fixed_dictionaries(
        {
            "items": st.lists(
                st.fixed_dictionaries({"text": plausible_texts}, optional={"id": short_strings}), max_size=5
            )
        }
    ),
)
verdict_items = st.fixed_dictionaries(
    {},
    optional={
        "id": short_strings | json_values,
        "text": strings | json_values,
        "fields": records | json_values,
        "label": st.sampled_from(["ham", "spam", "eggs", ""]) | json_values,
        "source": short_strings | json_values,
        "received_at": json_values,
    },
)
plausible_verdicts = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=8), "text": short_strings, "label": st.sampled_from(["ham", "spam"])}
)
verdict_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"verdicts": st.lists(verdict_items, max_size=12) | json_values}),
    st.fixed_dictionaries({"verdicts": st.lists(plausible_verdicts, min_size=1, max_size=12)}),
)
raw_bodies = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "{", "[1,", "NaN", '{"text": Infinity}', "[" * 20_000, "\ud800", "null", "[]", "5"]),
)
oversized = st.sampled_from([json.dumps({"text": "x" * 1_100_000}), "[" + "1," * 600_000 + "1]"])


def encoded(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def assert_well_formed(response: ApiResponse) -> None:
    event(f"status {response.status} {response.body['error']['code'] if response.status >= 400 else ''}".strip())
    assert response.status < 500, response.body
    if response.status >= 400:
        assert set(response.body) == {"error"}, response.body
        error = response.body["error"]
        assert set(error) == {"code", "message", "details"}
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["details"], list) and all(isinstance(detail, dict) for detail in error["details"])
    else:
        assert isinstance(response.body, dict)


@FUZZ
@given(body=st.one_of(predict_bodies.map(encoded), raw_bodies, oversized))
def test_predict_post_fuzzed_body_never_fails_the_server(api: Api, published_model: ModelRef, body: str) -> None:
    # Given any body / When it is sent to POST /predict / Then the answer is 2xx, or a 4xx with the error shape
    response = api.call(load_event("predict_single.json"), body=body)
    assert_well_formed(response)
    if response.status == 200:
        assert all(set(p) >= {"id", "label", "probabilities", "from_cache"} for p in response.body["predictions"])


@FUZZ
@given(body=st.one_of(verdict_bodies.map(encoded), raw_bodies, oversized))
def test_verdicts_post_fuzzed_body_never_fails_the_server(api: Api, published_model: ModelRef, body: str) -> None:
    # Given any body / When it is sent to POST /verdicts / Then the answer is 202, or a 4xx with the error shape
    response = api.call(load_event("verdicts_post.json"), body=body)
    assert_well_formed(response)
    if response.status < 400:
        assert response.status == 202
        assert response.body["queued"] == len(response.body["message_ids"])


query_keys = st.one_of(
    st.sampled_from(["text", "skip_cache", "echo_input", "limit", "next_token"]), st.text(max_size=8)
)
query_values = st.one_of(
    strings, plausible_texts, st.sampled_from(["true", "false", "1", "0", "yes", "", "a,b", "%00", "-1", "999"])
)


@FUZZ
@given(query=st.dictionaries(query_keys, query_values, max_size=5))
def test_predict_get_fuzzed_query_never_fails_the_server(
    api: Api, published_model: ModelRef, query: dict[str, str]
) -> None:
    # Given any query string / When it is sent to GET /predict / Then the answer is 200, or a 4xx with the error shape
    response = api.call(load_event("predict_get.json"), query=query)
    assert_well_formed(response)


@FUZZ
@given(query=st.dictionaries(query_keys, query_values, max_size=4))
def test_calls_recent_fuzzed_query_never_fails_the_server(
    api: Api, published_model: ModelRef, query: dict[str, str]
) -> None:
    # Given any query string / When it is sent to GET /calls/recent / Then 200, or a 4xx with the error shape
    response = api.call(load_event("calls_recent_get.json"), query=query)
    assert_well_formed(response)
