"""Pydantic's validation messages in plain words (lodbrok.model.messages)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lodbrok.model.messages import plain_message
from lodbrok.serving.schemas import PredictRequest


def _errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as raised:
        PredictRequest.model_validate(body)
    return [dict(entry) for entry in raised.value.errors()]


def test_plain_message_names_the_fields_allowed_where_an_unknown_one_was_sent() -> None:
    # Given an unknown field at the top and one inside an item
    [top] = _errors({"text": "a", "colour": "red"})
    [nested] = _errors({"items": [{"text": "a", "colour": "red"}]})
    # Then each message names the fields of the object it was found in
    assert plain_message(top, PredictRequest) == (
        "'colour' is not a field of this object; the fields allowed here are "
        "text, texts, items, skip_cache, echo_input, explain, review"
    )
    assert plain_message(nested, PredictRequest).endswith("the fields allowed here are id, text, fields")
    # And without the model validated, it still says the field is unknown
    assert plain_message(top) == "'colour' is not a field of this object"


def test_plain_message_drops_pydantics_value_error_prefix() -> None:
    # Given the exactly-one rule broken; Then its message is the validator's own
    [entry] = _errors({"text": "a", "texts": ["b"]})
    assert entry["msg"].startswith("Value error, ")
    assert plain_message(entry, PredictRequest) == "give exactly one of `text`, `texts` or `items`"
