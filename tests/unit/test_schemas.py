"""The predict API's request/response models and body parsing, without AWS or a model."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from lodbrok.model.items import input_chars
from lodbrok.serving.openapi import with_limits
from lodbrok.serving.schemas import (
    BodyTooLarge,
    DuplicateIds,
    ExplainBudgetExceeded,
    InvalidJson,
    ItemPrediction,
    LimitExceeded,
    PredictionInput,
    PredictRequest,
    PredictResponse,
    VerdictsRequest,
    check_explain_budget,
    parse_json_body,
)

LIMITS = {"max_items": 100, "max_text_chars": 5000}


def error_locations(error: ValidationError) -> list[str]:
    return [".".join(str(part) for part in detail["loc"]) for detail in error.errors()]


# --- PredictRequest: shape ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"text": "hello"}, [PredictionInput("0", "hello")]),
        ({"texts": ["a", "b"]}, [PredictionInput("0", "a"), PredictionInput("1", "b")]),
        (
            {
                "items": [
                    {"id": "x", "fields": {"n": 1, "ok": True, "f": 1.5, "none": None, "s": "v"}},
                    {"id": "0", "text": "t"},
                ]
            },
            [PredictionInput("x", {"n": 1, "ok": True, "f": 1.5, "none": None, "s": "v"}), PredictionInput("0", "t")],
        ),
        (
            {"items": [{"fields": {"n": 1}}, {"text": "t", "id": None}]},
            [PredictionInput("0", {"n": 1}), PredictionInput("1", "t")],
        ),
    ],
    ids=["text", "texts", "items", "items-without-ids"],
)
def test_predict_request_to_inputs_keeps_order_and_assigns_positional_ids(
    body: dict[str, Any], expected: list[PredictionInput]
) -> None:
    # Given a valid request of each kind
    request = PredictRequest.model_validate(body)

    # When it is turned into inputs
    inputs = request.to_inputs(**LIMITS)

    # Then ids are the given ones or positions, and order is kept
    assert inputs == expected


def test_predict_request_record_values_keep_their_json_types() -> None:
    # Given a record with one value of each JSON scalar type
    request = PredictRequest.model_validate({"items": [{"fields": {"i": 1, "b": True, "f": 1.5, "n": None, "s": "1"}}]})

    # When inputs are taken
    [entry] = request.to_inputs(**LIMITS)

    # Then no value was coerced (a bool stays a bool, a numeric string stays a string)
    assert isinstance(entry.input, dict)
    assert [type(value) for value in entry.input.values()] == [int, bool, float, type(None), str]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, ""),
        ({"text": "a", "items": [{"text": "b"}]}, ""),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": None, "texts": None}, ""),
        ({"texts": ["a", " "]}, "texts.1"),
        ({"texts": []}, "texts"),
        ({"items": [{"text": "a", "fields": {"b": 1}}]}, "items.0"),
        ({"items": [{"id": "a"}]}, "items.0"),
        ({"items": [{"id": "x" * 257, "text": "a"}]}, "items.0.id"),
        ({"items": [{"fields": {"a": {"b": 1}}}]}, "items.0.fields.a"),
        ({"items": [{"fields": {"a": [1]}}]}, "items.0.fields.a"),
        ({"items": [{"fields": {"a": float("nan")}}]}, "items.0.fields.a"),
        ({"items": [{"fields": {"a": float("inf")}}]}, "items.0.fields.a"),
        ({"items": [{"fields": {"": "v"}}]}, "items.0.fields..[key]"),
        ({"items": [{"fields": {f"f{i}": "v" for i in range(65)}}]}, "items.0.fields"),
        ({"items": [{"fields": {"a": None, "b": ""}}]}, "items.0.fields"),
        ({"text": "a", "skip_cache": "true"}, "skip_cache"),
        ({"text": "a", "echo_input": 1}, "echo_input"),
        ({"text": 5}, "text"),
        ({"text": "a", "extra": 1}, "extra"),
    ],
)
def test_predict_request_rejects_malformed_bodies_at_the_offending_field(body: dict[str, Any], location: str) -> None:
    # Given a malformed body
    # When it is validated
    with pytest.raises(ValidationError) as caught:
        PredictRequest.model_validate(body)

    # Then the error points at the offending field (or the whole request for whole-request rules)
    assert location in error_locations(caught.value), error_locations(caught.value)


def test_predict_request_nested_record_error_is_one_clear_message() -> None:
    # Given a record with a nested object
    # When it is validated
    with pytest.raises(ValidationError) as caught:
        PredictRequest.model_validate({"items": [{"fields": {"a": {"b": 1}}}]})

    # Then there is one error saying records are flat (not one per union member)
    [detail] = caught.value.errors()
    assert "records are flat" in detail["msg"]


# --- PredictRequest: limits and duplicate ids ---------------------------------------------------------------------


def test_predict_request_over_max_items_raises_limit_exceeded() -> None:
    # Given four texts and a limit of three
    request = PredictRequest(texts=["a", "b", "c", "d"])

    # When inputs are taken
    with pytest.raises(LimitExceeded) as caught:
        request.to_inputs(max_items=3, max_text_chars=100)

    # Then the error states the count and the limit
    assert caught.value.details == [{"field": "texts", "count": 4, "max": 3}]


def test_predict_request_over_long_inputs_are_each_named() -> None:
    # Given items of which two are too long (a record: its longest string value), and a record within the limit
    request = PredictRequest.model_validate(
        {
            "items": [
                {"id": "ok", "text": "x" * 10},
                {"id": "t", "text": "x" * 11},
                {"id": "r", "fields": {"abc": "x" * 11}},
                {"id": "r2", "fields": {"a": "x" * 10, "b": "y" * 10}},
            ]
        }
    )

    # When inputs are taken with a 10-character limit
    with pytest.raises(LimitExceeded) as caught:
        request.to_inputs(max_items=10, max_text_chars=10)

    # Then both offenders are named by index, id and field
    assert [(d["index"], d["id"], d["field"], d["chars"]) for d in caught.value.details] == [
        (1, "t", "items.1.text", 11),
        (2, "r", "items.2.fields", 11),
    ]


def test_predict_request_duplicate_ids_are_named_with_positions() -> None:
    # Given two ids that each repeat
    request = PredictRequest.model_validate(
        {
            "items": [
                {"id": "a", "text": "1"},
                {"id": "1", "text": "2"},
                {"id": "a", "text": "3"},
                {"id": "1", "text": "4"},
            ]
        }
    )

    # When inputs are taken
    with pytest.raises(DuplicateIds) as caught:
        request.to_inputs(**LIMITS)

    # Then every repeated id is named with where it occurs
    assert caught.value.details == [{"id": "a", "indexes": [0, 2]}, {"id": "1", "indexes": [1, 3]}]


@pytest.mark.parametrize(
    ("texts", "over"),
    [(["a" * 10] * 3, False), (["a" * 10] * 4, True), (["a" * 15, "b" * 16], True)],
    ids=["within", "items", "chars"],
)
def test_check_explain_budget_refuses_more_items_or_characters_naming_both_limits(texts: list[str], over: bool) -> None:
    # Given an explain budget of 3 items and 30 characters, and an explained request
    inputs = PredictRequest(texts=texts, explain=True).to_inputs(**LIMITS)

    # When its budget is checked, then only a request over either limit is refused, naming both limits
    if not over:
        check_explain_budget(inputs, max_items=3, max_chars=30)
        return
    with pytest.raises(ExplainBudgetExceeded) as caught:
        check_explain_budget(inputs, max_items=3, max_chars=30)
    assert caught.value.details == [
        {"field": "explain", "items": len(texts), "max_items": 3, "chars": sum(map(len, texts)), "max_chars": 30}
    ]
    assert "at most 3 items and 30 characters" in caught.value.message


def test_check_explain_budget_counts_every_string_value_of_a_record() -> None:
    # Given one record of three 12-character strings and a number: one item, 36 characters
    inputs = PredictRequest(items=[{"fields": {"a": "x" * 12, "b": "y" * 12, "c": "z" * 12, "n": 10**6}}]).to_inputs(
        **LIMITS
    )

    # When it is checked against 30 characters, then it is over, though each value is short
    with pytest.raises(ExplainBudgetExceeded):
        check_explain_budget(inputs, max_items=3, max_chars=30)


def test_predict_request_schema_bounds_explained_items() -> None:
    # Given the JSON schema of a request with its limits filled in as the served document does
    schema = with_limits(
        {**PredictRequest.model_json_schema(), "additionalProperties": True},
        max_items=100,
        max_text_chars=50,
        explain_max_items=2,
        labels=None,
    )
    validator = jsonschema.Draft202012Validator(schema)

    # Then three texts are valid plain but not explained, and two are valid explained
    assert validator.is_valid({"texts": ["a", "b", "c"]})
    assert not validator.is_valid({"texts": ["a", "b", "c"], "explain": True})
    assert not validator.is_valid({"items": [{"text": "a"}, {"text": "b"}, {"text": "c"}], "explain": True})
    assert validator.is_valid({"texts": ["a", "b"], "explain": True})


def test_predict_request_implicit_id_can_never_collide_with_a_given_one() -> None:
    # Given items where one has no id and another has the id "0" (what the position used to give)
    body = {"items": [{"text": "free prize"}, {"id": "0", "text": "lunch?"}]}

    # When it is validated, then it is refused by the schema rule (ids for every item or none), not as duplicates
    with pytest.raises(ValidationError, match="give an id to every item of `items` or to none"):
        PredictRequest.model_validate(body)


def test_predict_request_schema_states_ids_for_all_items_or_none() -> None:
    # Given the JSON schema of `items` and bodies that mix, give all or give no ids

    schema = {**PredictRequest.model_json_schema(), "additionalProperties": True}
    validator = jsonschema.Draft202012Validator(schema)
    mixed = {"items": [{"text": "a"}, {"id": "0", "text": "b"}]}
    mixed_null = {"items": [{"id": None, "text": "a"}, {"id": "0", "text": "b"}]}
    given = {"items": [{"id": "x", "text": "a"}, {"id": "0", "text": "b"}]}
    none = {"items": [{"text": "a"}, {"id": None, "text": "b"}]}

    # Then the schema refuses exactly what the model refuses
    assert not validator.is_valid(mixed) and not validator.is_valid(mixed_null)
    assert validator.is_valid(given) and validator.is_valid(none)


@pytest.mark.parametrize(
    ("item", "size"),
    [("héllo", 5), ({"ab": "cde", "n": 12345, "flag": True, "none": None, "long": "wxyz"}, 4), ({"n": 1}, 0)],
)
def test_input_chars_is_the_text_or_the_longest_string_value(item: Any, size: int) -> None:
    # Given a text or record / When it is measured against MAX_TEXT_CHARS / Then its longest string counts
    assert input_chars(item) == size


# --- responses ---------------------------------------------------------------------------------------------------


def test_item_prediction_omits_input_unless_echoed() -> None:
    # Given predictions with and without an echoed input
    plain = ItemPrediction(
        id="0",
        label="ham",
        decision="ham",
        probabilities={"ham": 0.9, "spam": 0.1},
        from_cache=False,
        source="model",
    )
    echoed = plain.model_copy(update={"input": {"a": None}})

    # When they are serialized as the API does
    response = PredictResponse(model_version="v-id", model_label="v1", predictions=[plain, echoed])
    data = json.loads(response.model_dump_json())

    # Then `input` appears only where it was echoed (a record with a null value is still echoed)
    assert "input" not in data["predictions"][0]
    assert data["predictions"][1]["input"] == {"a": None}


def test_verdicts_request_accepts_any_items_for_per_item_checks() -> None:
    # Given verdict items of every shape, and an envelope without items
    # When they are validated
    request = VerdictsRequest.model_validate({"verdicts": [{"id": "a"}, 5, None, "x"]})

    # Then items pass through (they are checked one by one later), but an empty list or extra key fails
    assert request.verdicts == [{"id": "a"}, 5, None, "x"]
    with pytest.raises(ValidationError):
        VerdictsRequest.model_validate({"verdicts": []})
    with pytest.raises(ValidationError):
        VerdictsRequest.model_validate({"verdicts": [{}], "more": 1})


def test_verdicts_request_schema_documents_the_verdict_shape() -> None:
    # Given the request model / When its JSON schema is generated
    schema = VerdictsRequest.model_json_schema()

    # Then each item is described as a Verdict
    assert schema["properties"]["verdicts"]["items"]["title"] == "Verdict"
    assert {"id", "label", "text", "fields"} <= set(schema["properties"]["verdicts"]["items"]["properties"])


# --- body parsing ------------------------------------------------------------------------------------------------


def test_parse_json_body_parses_json() -> None:
    # Given a JSON body with non-ASCII text / When parsed / Then the value comes back
    assert parse_json_body('{"text": "héllo \\ud83d\\ude00"}', max_bytes=1024) == {"text": "héllo 😀"}


def test_parse_json_body_counts_utf8_bytes_not_characters() -> None:
    # Given a body of 600 two-byte characters (1200 bytes, 600+ characters)
    body = json.dumps({"text": "é" * 600}, ensure_ascii=False)

    # When parsed with a 1024-byte limit
    # Then it is too large, though it has fewer than 1024 characters
    assert len(body) < 1024
    with pytest.raises(BodyTooLarge):
        parse_json_body(body, max_bytes=1024)


@pytest.mark.parametrize(
    "body",
    ["{", "{'a': 1}", "[" * 50_000 + "]" * 50_000, '{"n": ' + "1" * 5000 + "}", "\x00"],
    ids=["truncated", "single quotes", "deep nesting", "huge integer", "control character"],
)
def test_parse_json_body_invalid_json_raises_invalid_json(body: str) -> None:
    # Given a body that is not acceptable JSON / When parsed / Then InvalidJson names the body
    with pytest.raises(InvalidJson) as caught:
        parse_json_body(body, max_bytes=10_000_000)
    assert caught.value.details[0]["field"] == "body"
