"""The served OpenAPI document (lodbrok.serving.openapi): the marked bounds filled in with this deployment's limits."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from lodbrok.model.items import LIMIT_KEYWORD
from lodbrok.serving.openapi import base_path, with_limits

DOCUMENT: dict[str, Any] = {
    "components": {
        "schemas": {
            "Request": {
                "properties": {
                    "text": {"type": "string", LIMIT_KEYWORD: "text"},
                    "texts": {
                        "type": "array",
                        LIMIT_KEYWORD: "items",
                        "items": {"type": "string", LIMIT_KEYWORD: "text"},
                    },
                    "note": {"anyOf": [{"type": "string", LIMIT_KEYWORD: "text"}, {"type": "null"}]},
                }
            },
            "Answer": {
                "properties": {
                    "label": {"type": "string", LIMIT_KEYWORD: "label"},
                    "decision": {"type": "string", LIMIT_KEYWORD: "decision"},
                }
            },
        }
    }
}


def test_with_limits_sets_every_marked_bound_and_drops_the_marks() -> None:
    # Given a document whose bounds are marked, nested in objects and lists
    # When it is served with this deployment's limits and a model's labels
    served = with_limits(DOCUMENT, max_items=3, max_text_chars=50, explain_max_items=2, labels=["ham", "spam"])

    # Then each mark became its bound, a decision may also be `review`, and no mark is left for a client to see
    request = served["components"]["schemas"]["Request"]["properties"]
    answer = served["components"]["schemas"]["Answer"]["properties"]
    assert request["text"] == {"type": "string", "maxLength": 50}
    assert request["texts"] == {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 50}}
    assert request["note"]["anyOf"][0] == {"type": "string", "maxLength": 50}
    assert answer["label"] == {"type": "string", "enum": ["ham", "spam"]}
    assert answer["decision"] == {"type": "string", "enum": ["ham", "spam", "review"]}
    assert LIMIT_KEYWORD not in json.dumps(served)


def test_with_limits_without_a_model_leaves_labels_unconstrained() -> None:
    served = with_limits(DOCUMENT, max_items=3, max_text_chars=50, explain_max_items=2, labels=None)
    answer = served["components"]["schemas"]["Answer"]["properties"]
    assert answer == {"label": {"type": "string"}, "decision": {"type": "string"}}


def test_with_limits_leaves_the_document_it_was_given_unchanged() -> None:
    # Given the document the app builds once per process
    original = copy.deepcopy(DOCUMENT)
    # When it is served twice with different limits
    first = with_limits(DOCUMENT, max_items=3, max_text_chars=50, explain_max_items=2, labels=["ham", "spam"])
    second = with_limits(DOCUMENT, max_items=9, max_text_chars=70, explain_max_items=4, labels=["a", "b", "c"])
    # Then the second is not stuck with the first's bounds, and the source still holds its marks
    assert original == DOCUMENT
    assert first["components"]["schemas"]["Request"]["properties"]["text"]["maxLength"] == 50
    assert second["components"]["schemas"]["Request"]["properties"]["text"]["maxLength"] == 70


@pytest.mark.parametrize(
    ("stage", "request_path", "expected"),
    [
        ("Prod", "/Prod/swagger", "/Prod"),  # the stage's own URL on execute-api
        ("Prod", "/swagger", ""),  # a custom domain, or `make local`
        ("$default", "/$default/swagger", ""),
        (None, None, ""),
    ],
)
def test_base_path_is_the_stage_only_when_the_browser_called_it(
    stage: str | None, request_path: str | None, expected: str
) -> None:
    # Given where a request came in; When its base path is derived; Then it is what the browser must prefix
    assert base_path(stage, request_path) == expected
