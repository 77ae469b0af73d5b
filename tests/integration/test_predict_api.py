"""The predict function end to end: events/*.json through the Powertools handler against moto.

The routes and their error mapping (functions/predict/app.py, errors.py) as a client sees them; what the modules
behind a route do (the cache, the model provider, the queue, the call log) is in test_<module>.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

import lodbrok
from lodbrok.model.bundle import Bundle
from lodbrok.observability import logger
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.serving import call_log, prediction_cache
from lodbrok.settings import Settings
from lodbrok.verdicts.archive import VerdictArchive
from lodbrok.verdicts.verdict import parse_message_body
from predict import app as predict_app
from support import (
    API_ROLLBACK_ACTIONS,
    CODE_ACTIONS,
    EVENT_KEY_ID,
    assert_error,
    hold_verdict,
    load_event,
    predict_texts,
    recorded_aws_actions,
    verdicts_event,
)

if TYPE_CHECKING:
    from conftest import Api, ApiResponse


ROOT = Path(__file__).resolve().parents[2]

# The app silences this Powertools warning for routes without business metrics; pytest resets warning filters.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

HAM = "Are we still meeting for lunch at noon? I'll bring the bread"


def predict(api: Api, body: dict[str, object]) -> ApiResponse:
    return api.call(load_event("predict_batch.json"), body=body)


# --- import hygiene --------------------------------------------------------------------------------------------


def test_predict_app_import_loads_neither_tensorflow_nor_keras_nor_clients() -> None:
    # Given a fresh interpreter with the layer and function directories on the path (as Lambda has them)
    code = (
        "import json, sys\n"
        "import predict.app as app\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print(json.dumps({'heavy': heavy, 'service': app.get_service.cache_info().currsize > 0}))\n"
    )
    directories = [ROOT / "layers" / "model", ROOT / "functions", ROOT / "functions" / "predict"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(directory) for directory in directories)}

    # When the handler module is imported
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )

    # Then neither TensorFlow nor Keras is loaded, and nothing (clients, model) was built at import
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "service": False}


def test_template_wires_the_handler_environment_and_tables_the_code_uses(template_resources: dict[str, Any]) -> None:
    # Given the predict function and tables as template.yaml declares them
    function = template_resources["PredictFunction"]["Properties"]
    aliases = {field.alias for field in Settings.model_fields.values()}

    # When they are compared with the code
    # Then the handler is this module's lambda_handler, every variable is a setting, and the key schemas and
    # TTL attributes are the ones the cache and call log read and write (and create in the benchmark)
    assert (function["CodeUri"].rstrip("/"), function["Handler"]) == ("functions/predict", "app.lambda_handler")
    assert callable(predict_app.lambda_handler)
    assert set(function["Environment"]["Variables"]) <= aliases
    for logical_id, module in (("CacheTable", prediction_cache), ("CallLogTable", call_log)):
        table = template_resources[logical_id]["Properties"]
        definition = module.table_definition("any")
        assert table["KeySchema"] == definition["KeySchema"]
        assert table["AttributeDefinitions"] == definition["AttributeDefinitions"]
        assert table["TimeToLiveSpecification"] == {"AttributeName": module.TTL_ATTRIBUTE, "Enabled": True}


# --- each event file -------------------------------------------------------------------------------------------


def test_predict_single_event_answers_label_and_probabilities(api: Api, published_model: ModelRef) -> None:
    # Given a published model
    # When the single-text event is sent
    response = api.call(load_event("predict_single.json"))

    # Then the spam text is classified by the active S3 version, with a probability per label
    assert response.status == 200, response.body
    assert response.body["model_version"] == published_model.version_id
    assert response.body["model_label"] == "v1"
    [prediction] = response.body["predictions"]
    assert prediction["id"] == "0"
    assert prediction["label"] == "spam"
    assert set(prediction["probabilities"]) == {"ham", "spam"}
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction["from_cache"] is False
    assert "input" not in prediction


def test_predict_batch_event_answers_in_input_order(api: Api, published_model: ModelRef) -> None:
    # Given a published model
    # When the batch event (ham, spam, ham) is sent
    response = api.call(load_event("predict_batch.json"))

    # Then there is one prediction per text, in order, with positional ids
    assert response.status == 200, response.body
    predictions = response.body["predictions"]
    assert [p["id"] for p in predictions] == ["0", "1", "2"]
    assert [p["label"] for p in predictions] == ["ham", "spam", "ham"]


def test_predict_records_event_echoes_inputs_with_given_ids(api: Api, published_model: ModelRef) -> None:
    # Given the records event (a record and a text, echo_input set)
    event = load_event("predict_records.json")
    sent = json.loads(event["body"])["items"]

    # When it is sent
    response = api.call(event)

    # Then the given ids come back in order, each with its input echoed unchanged
    assert response.status == 200, response.body
    predictions = response.body["predictions"]
    assert [p["id"] for p in predictions] == ["e1", "e2"]
    assert predictions[0]["input"] == sent[0]["fields"]
    assert predictions[1]["input"] == sent[1]["text"]
    assert all(p["label"] in p["probabilities"] for p in predictions)


def test_predict_get_event_classifies_query_text(api: Api, published_model: ModelRef) -> None:
    # Given a published model
    # When the GET event with ?text= is sent
    response = api.call(load_event("predict_get.json"))

    # Then that one text is classified
    assert response.status == 200, response.body
    [prediction] = response.body["predictions"]
    assert prediction["label"] == "ham"
    assert prediction["id"] == "0"


def test_predict_get_echo_input_and_skip_cache_from_query(api: Api, published_model: ModelRef) -> None:
    # Given a text that was predicted (so it is cached)
    event = load_event("predict_get.json")
    text = event["queryStringParameters"]["text"]
    api.call(event)

    # When it is asked again with skip_cache and echo_input in the query string
    response = api.call(event, query={"text": text, "skip_cache": "true", "echo_input": "1"})

    # Then the cache was not read and the input is echoed
    assert response.status == 200, response.body
    [prediction] = response.body["predictions"]
    assert prediction["from_cache"] is False
    assert prediction["input"] == text


def test_predict_get_explains_from_the_query_string(api: Api, published_model: ModelRef) -> None:
    event = load_event("predict_get.json")
    text = event["queryStringParameters"]["text"]
    response = api.call(event, query={"text": text, "explain": "true"})
    assert response.status == 200, response.body
    assert response.body["predictions"][0]["explanation"]["label"] == response.body["predictions"][0]["label"]


def test_predict_bad_input_event_names_each_offending_item(api: Api, published_model: ModelRef) -> None:
    # Given the bad-input event: a blank text, a nested record value and an unknown field
    # When it is sent
    response = api.call(load_event("predict_bad_input.json"))

    # Then a 422 names each problem by field, index and id
    error = assert_error(response, 422, "validation_error")
    by_field = {detail["field"]: detail for detail in error["details"]}
    assert set(by_field) == {"items.0.text", "items.1.fields.subject", "colour"}
    assert (by_field["items.0.text"]["index"], by_field["items.0.text"]["id"]) == (0, "e1")
    assert (by_field["items.1.fields.subject"]["index"], by_field["items.1.fields.subject"]["id"]) == (1, "e2")
    assert by_field["colour"]["type"] == "extra_forbidden"
    assert all(set(detail) >= {"location", "field", "type", "message"} for detail in error["details"])
    # And in plain words: the unknown field with the fields allowed there, no pydantic prefix anywhere
    assert by_field["colour"]["message"] == (
        "'colour' is not a field of this object; the fields allowed here are "
        "text, texts, items, skip_cache, echo_input, explain, review"
    )
    assert not [detail for detail in error["details"] if detail["message"].startswith(("Value error", "Extra inputs"))]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"text": "a", "texts": ["b"]}, "body", "give exactly one of `text`, `texts` or `items`"),
        (
            {"items": [{"id": "x", "txt": "a"}]},
            "items.0.txt",
            "'txt' is not a field of this object; the fields allowed here are id, text, fields",
        ),
    ],
)
def test_predict_validation_messages_are_plain_words(
    api: Api, published_model: ModelRef, body: dict[str, Any], field: str, message: str
) -> None:
    # Given a body that breaks the exactly-one rule, or an item with an unknown field; When it is sent
    error = assert_error(api.call(load_event("predict_single.json"), body=body), 422, "validation_error")
    # Then the detail says so without pydantic's prefixes, naming the allowed fields of that object
    assert [(detail["field"], detail["message"]) for detail in error["details"]] == [(field, message)]


def test_model_get_event_describes_active_model(api: Api, published_model: ModelRef, tiny_bundle: Bundle) -> None:
    # Given a published model
    # When GET /model is sent
    response = api.call(load_event("model_get.json"))

    # Then its version, lineage, labels, metrics, architecture and featurizer are described
    assert response.status == 200, response.body
    info = response.body
    assert info["version"] == published_model.version_id
    assert info["label"] == "v1"
    assert info["parent"] is None
    assert info["created_at"] == tiny_bundle.metadata["created_at"]
    assert info["labels"] == ["ham", "spam"]
    assert info["metrics"] == tiny_bundle.metadata["metrics"]
    assert info["architecture"]["layers"] and info["architecture"]["parameters"] > 0
    assert info["network"] == tiny_bundle.metadata["network"]
    assert info["featurizer"] == tiny_bundle.featurizer.to_dict()
    assert info["pinned"] is False
    # And the decision rule that turns its probabilities into labels
    stored = tiny_bundle.metadata["decision"]
    assert info["decision"]["thresholds"] == stored["thresholds"]
    assert info["decision"]["positive_label"] == "spam"
    assert info["decision"]["scores_from"] == stored["scores_from"]
    assert info["decision"]["expected"] == stored["expected"]


def test_openapi_get_event_serves_the_spec(api: Api) -> None:
    # Given the API (no model needed)
    # When GET /openapi.json is sent
    response = api.call(load_event("openapi_get.json"))

    # Then it is a valid OpenAPI document with every route and the shared error shape
    assert response.status == 200
    spec = response.body
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["version"] == lodbrok.__version__
    reviewer_routes = {"/review/items", "/review/label", "/review/skip", "/review/held"}
    assert set(spec["paths"]) == {"/predict", "/model", "/verdicts", "/calls/recent", *reviewer_routes} | {
        "/model/versions",
        "/model/rollback",
    }
    assert set(spec["paths"]["/predict"]) == {"get", "post"}
    # And the rollback says when it is refused: a stack deployed with ApiRollback off answers 403 api_rollback_off
    rollback = spec["paths"]["/model/rollback"]["post"]
    assert "403" in rollback["responses"] and "api_rollback_off" in rollback["description"]
    assert "202" in spec["paths"]["/verdicts"]["post"]["responses"]
    error_ref = spec["paths"]["/predict"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error_ref == {"$ref": "#/components/schemas/ErrorResponse"}


def test_openapi_states_the_deployments_limits_labels_and_one_of_rules(
    api: Api, published_model: ModelRef, tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment with its own limits and a published model
    monkeypatch.setenv("MAX_ITEMS", "7")
    monkeypatch.setenv("MAX_TEXT_CHARS", "321")
    api.rebuild()
    # When the document is fetched
    spec = api.call(load_event("openapi_get.json")).body
    schemas = spec["components"]["schemas"]
    request = schemas["PredictRequest"]
    verdict = schemas["VerdictsRequest"]["properties"]["verdicts"]
    # Then exactly-one rules, limits and the model's labels are in the schemas, with no marker left over
    assert [rule["required"] for rule in request["oneOf"]] == [["text"], ["texts"], ["items"]]
    assert request["properties"]["texts"]["maxItems"] == 7 and verdict["maxItems"] == 7
    assert request["properties"]["text"]["anyOf"][0]["maxLength"] == 321
    assert verdict["items"]["properties"]["label"]["enum"] == tiny_bundle.labels
    assert [rule["required"] for rule in verdict["items"]["oneOf"]] == [["text"], ["fields"]]
    assert "x-lodbrok-limit" not in json.dumps(spec)
    # And every route is declared to need the API key, as API Gateway enforces
    assert spec["security"] == [{"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}


@pytest.mark.parametrize(("request_path", "server"), [("/Prod/openapi.json", "/Prod"), ("/openapi.json", "/")])
def test_openapi_and_swagger_servers_are_the_url_the_browser_called(api: Api, request_path: str, server: str) -> None:
    # Given a request on the stage's own URL (/Prod/...) or through a custom domain or `make local` (no stage)
    event, swagger = load_event("openapi_get.json"), load_event("openapi_get.json")
    event["requestContext"]["path"] = request_path
    swagger["resource"] = swagger["requestContext"]["resourcePath"] = "/swagger"
    swagger["requestContext"]["path"] = request_path.replace("openapi.json", "swagger")
    # When the document and the Swagger UI's document are fetched
    document = api.call(event).body
    page_document = api.call(swagger, path="/swagger", query={"format": "json"}).body
    # Then both name the server a browser's "Try it out" must call, and the key it must send
    assert document["servers"] == page_document["servers"] == [{"url": server}]
    assert page_document["security"] == [{"apiKey": []}]
    assert page_document["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"


def test_swagger_ui_is_served(api: Api) -> None:
    # Given the API
    # When the Swagger UI path is requested
    response = api.call(load_event("openapi_get.json"), path="/swagger")

    # Then an HTML page embedding the spec comes back
    assert response.status == 200
    assert "swagger" in response.body.lower() and "/predict" in response.body


def test_verdicts_post_event_queues_an_attested_message(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given a published model (its labels decide which verdicts are valid)
    event = load_event("verdicts_post.json")

    # When the verdicts event is sent
    response = api.call(event)

    # Then 202 with the message id of each verdict, and one message holds both, attested with the caller's
    # key id, its role and the server's time
    assert response.status == 202, response.body
    assert response.body["queued"] == 2
    assert len(response.body["message_ids"]) == 2
    [body] = queued_messages()
    message = parse_message_body(body, max_text_chars=5000, labels=None)
    assert sorted((v.id, v.label) for v in message.verdicts) == [("e1", "spam"), ("e2", "ham")]
    assert message.attestation["sender"] == EVENT_KEY_ID and message.attestation["role"] == "reviewer"
    assert message.attestation["received_at"].endswith("Z")
    assert {v.source for v in message.verdicts} == {"moderator-42"}


def test_calls_recent_get_event_lists_the_callers_calls(api: Api, published_model: ModelRef) -> None:
    # Given one prediction request by the caller of the event
    api.call(load_event("predict_single.json"))

    # When the calls event is sent
    response = api.call(load_event("calls_recent_get.json"))

    # Then the caller sees that request, with ids and labels but no input
    assert response.status == 200, response.body
    assert response.body["caller"] == "key#k7x2mq9zb1"
    [call] = response.body["calls"]
    assert call["request_id"] == load_event("predict_single.json")["requestContext"]["requestId"]
    assert call["item_count"] == 1
    assert call["predictions"] == [{"id": "0", "label": "spam"}]
    assert call["model_version"] == published_model.version_id
    assert response.body["next_token"] is None


# --- verdicts refused before anything is queued ----------------------------------------------------------------


def test_verdicts_invalid_items_are_named_and_nothing_is_queued(
    api: Api,
    published_model: ModelRef,
    queued_messages: Callable[[], list[str]],
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given one valid verdict and three invalid ones
    verdicts = [
        {"id": "ok", "text": "fine", "label": "ham"},
        {"id": "no-label", "text": "missing its label"},
        {"id": "both", "text": "x", "fields": {"a": "b"}, "label": "spam"},
        "not an object",
    ]

    # When they are sent
    response = api.call(verdicts_event(verdicts))

    # Then 400 names each bad verdict by index and id, and the valid one was not queued either
    error = assert_error(response, 400, "invalid_verdicts")
    assert [(d["index"], d["id"]) for d in error["details"]] == [(1, "no-label"), (2, "both"), (3, None)]
    assert "label" in error["details"][0]["error"]
    assert error["details"][1]["error"] == "item: give exactly one of `text` or `fields`"
    assert queued_messages() == []
    assert read_metrics()["VerdictsRejected"] == 3


def test_verdicts_lone_surrogate_is_refused_before_queueing(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given a verdict whose text holds a lone surrogate (valid as a JSON escape, never as UTF-8)
    verdicts = [{"id": "bad", "text": "free prize \ud800", "label": "spam"}]

    # When it is sent
    response = api.call(verdicts_event(verdicts))

    # Then it is refused with a 4xx naming it, and nothing is queued to fail on every receive later
    error = assert_error(response, 400, "invalid_verdicts")
    assert [(d["index"], d["id"]) for d in error["details"]] == [(0, "bad")]
    assert "lone surrogate" in error["details"][0]["error"]
    assert queued_messages() == []


def test_verdicts_unknown_label_is_rejected(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given a verdict with a label the model does not have, after a valid one
    verdicts = [{"id": "a", "text": "fine", "label": "ham"}, {"id": "b", "text": "eggs", "label": "eggs"}]

    # When they are sent
    response = api.call(verdicts_event(verdicts))

    # Then the unknown label is named (with its original index) and nothing is queued
    error = assert_error(response, 400, "invalid_verdicts")
    assert [(d["index"], d["id"]) for d in error["details"]] == [(1, "b")]
    assert "eggs" in error["details"][0]["error"] and "ham" in error["details"][0]["error"]
    assert queued_messages() == []


def test_verdicts_limits_apply(api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MAX_ITEMS=3 and MAX_TEXT_CHARS=20
    monkeypatch.setenv("MAX_ITEMS", "3")
    monkeypatch.setenv("MAX_TEXT_CHARS", "20")
    api.rebuild()

    # When four verdicts, and then one over-long verdict, are sent
    too_many = api.call(verdicts_event([{"id": str(i), "text": "t", "label": "ham"} for i in range(4)]))
    too_long = api.call(verdicts_event([{"id": "long", "text": "x" * 21, "label": "ham"}]))

    # Then both are refused, naming the limit and the item
    assert assert_error(too_many, 422, "limit_exceeded")["details"][0]["max"] == 3
    assert [(d["index"], d["id"]) for d in assert_error(too_long, 400, "invalid_verdicts")["details"]] == [(0, "long")]


# --- bad input: always a 4xx with the error body, never a 500 --------------------------------------------------

BAD_BODIES: list[tuple[str, Any, int, str, str | None]] = [
    # (case, body, status, code, a field named in details)
    ("empty text", {"text": ""}, 422, "validation_error", "text"),
    ("blank text", {"text": " \n\t"}, 422, "validation_error", "text"),
    ("missing input", {"skip_cache": True}, 422, "validation_error", None),
    ("text and texts", {"text": "a", "texts": ["b"]}, 422, "validation_error", None),
    ("text not a string", {"text": 42}, 422, "validation_error", "text"),
    ("texts not a list", {"texts": "abc"}, 422, "validation_error", "texts"),
    ("empty texts", {"texts": []}, 422, "validation_error", "texts"),
    ("blank text in texts", {"texts": ["ok", ""]}, 422, "validation_error", "texts.1"),
    ("unknown field", {"text": "a", "colour": "red"}, 422, "validation_error", "colour"),
    ("unknown item field", {"items": [{"id": "a", "text": "b", "x": 1}]}, 422, "validation_error", "items.0.x"),
    ("option not a bool", {"text": "a", "skip_cache": "yes"}, 422, "validation_error", "skip_cache"),
    ("item with text and fields", {"items": [{"text": "a", "fields": {"b": "c"}}]}, 422, "validation_error", "items.0"),
    ("item with neither", {"items": [{"id": "a"}]}, 422, "validation_error", "items.0"),
    ("empty id", {"items": [{"id": "", "text": "a"}]}, 422, "validation_error", "items.0.id"),
    ("nested record", {"items": [{"fields": {"a": [1, 2]}}]}, 422, "validation_error", "items.0.fields.a"),
    ("empty record", {"items": [{"fields": {}}]}, 422, "validation_error", "items.0.fields"),
    ("record of nulls", {"items": [{"fields": {"a": None, "b": " "}}]}, 422, "validation_error", "items.0.fields"),
    ("too many fields", {"items": [{"fields": {f"f{i}": i for i in range(65)}}]}, 422, "validation_error", None),
    ("body is a list", [{"text": "a"}], 422, "validation_error", None),
    ("body is null", None, 422, "validation_error", None),
    ("duplicate ids", {"items": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, 422, "duplicate_ids", None),
    ("not JSON", "{'text': 'single quotes'}", 400, "invalid_json", "body"),
    ("deeply nested", "[" * 100_000 + "]" * 100_000, 400, "invalid_json", "body"),
    ("huge integer", '{"text": ' + "9" * 5000 + "}", 400, "invalid_json", "body"),
    ("NaN in record", '{"items": [{"fields": {"a": NaN}}]}', 422, "validation_error", "items.0.fields.a"),
]


@pytest.mark.parametrize(("case", "body", "status", "code", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_predict_bad_input_is_a_clear_4xx(
    api: Api, published_model: ModelRef, case: str, body: Any, status: int, code: str, field: str | None
) -> None:
    # Given a malformed request body
    event = load_event("predict_single.json")

    # When it is sent
    response = api.call(event, body=body if body is not None else "null")

    # Then it is refused with the expected status and code, naming the offending field
    error = assert_error(response, status, code)
    if field is not None:
        assert field in [detail.get("field") for detail in error["details"]], error["details"]


def test_predict_duplicate_ids_are_named(api: Api, published_model: ModelRef) -> None:
    # Given items with repeated ids
    items = [{"id": "a", "text": "x"}, {"id": "1", "text": "y"}, {"id": "a", "text": "z"}, {"id": "1", "text": "w"}]

    # When they are sent
    response = api.call(load_event("predict_records.json"), body={"items": items})

    # Then each repeated id is named with the positions that use it
    error = assert_error(response, 422, "duplicate_ids")
    assert error["details"] == [{"id": "a", "indexes": [0, 2]}, {"id": "1", "indexes": [1, 3]}]


def test_predict_items_with_and_without_ids_are_refused_by_the_schema(api: Api, published_model: ModelRef) -> None:
    # Given an item without an id next to one whose id is "0" (the position the first would get)
    items = [{"text": "free prize"}, {"id": "0", "text": "lunch?"}]

    # When they are sent
    response = api.call(load_event("predict_records.json"), body={"items": items})

    # Then the schema's rule refuses them (ids for every item or none), never as a collision of ids
    error = assert_error(response, 422, "validation_error")
    assert "give an id to every item of `items` or to none" in error["message"] + json.dumps(error["details"])


def test_predict_batch_over_max_items_is_refused(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_ITEMS=3
    monkeypatch.setenv("MAX_ITEMS", "3")
    api.rebuild()

    # When four texts are sent
    response = predict_texts(api, ["a", "b", "c", "d"])

    # Then 422 states the limit
    error = assert_error(response, 422, "limit_exceeded")
    assert error["details"] == [{"field": "texts", "count": 4, "max": 3}]


def test_predict_text_over_max_text_chars_is_refused(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_TEXT_CHARS=50
    monkeypatch.setenv("MAX_TEXT_CHARS", "50")
    api.rebuild()
    items = [{"id": "short", "text": "fine"}, {"id": "long", "fields": {"body": "x" * 60}}]

    # When a request holds one input over the limit, and a GET holds another
    response = api.call(load_event("predict_records.json"), body={"items": items})
    query = api.call(load_event("predict_get.json"), query={"text": "y" * 51})

    # Then each names the offending item
    [detail] = assert_error(response, 422, "limit_exceeded")["details"]
    assert (detail["index"], detail["id"], detail["field"], detail["max"]) == (1, "long", "items.1.fields", 50)
    assert assert_error(query, 422, "limit_exceeded")["details"][0]["field"] == "text"


def test_predict_body_over_max_body_bytes_is_413(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_BODY_BYTES=2048
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")
    api.rebuild()

    # When a 2049-byte body (multi-byte characters) is sent
    body = json.dumps({"text": "é" * 1100}, ensure_ascii=False)
    assert len(body.encode()) > 2048 > len(body)
    response = api.call(load_event("predict_single.json"), body=body)

    # Then 413 before any parsing
    assert_error(response, 413, "body_too_large")


@pytest.mark.parametrize(
    ("query", "field"),
    [({}, "text"), ({"text": "  "}, "text"), ({"text": "ok", "skip_cache": "perhaps"}, "skip_cache")],
    ids=["missing text", "blank text", "bad bool"],
)
def test_predict_get_bad_query_is_422(api: Api, published_model: ModelRef, query: dict[str, str], field: str) -> None:
    # Given a GET /predict with a bad query string
    event = load_event("predict_get.json")

    # When it is sent
    response = api.call(event, query=query)

    # Then 422 names the query parameter
    error = assert_error(response, 422, "validation_error")
    assert [(d["location"], d["field"]) for d in error["details"]] == [("query", field)]


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_predict_bad_explain_value_is_a_validation_error(api: Api, published_model: ModelRef, value: object) -> None:
    response = predict(api, {"texts": [HAM], "explain": value})
    assert response.status == 422, response.body
    assert response.error["code"] == "validation_error"
    assert [detail["field"] for detail in response.error["details"]] == ["explain"]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "multipart/form-data",
        "multipart/form-data; boundary=lodbrok",
        "application/x-www-form-urlencoded; charset=utf-8",
    ],
)
def test_predict_non_json_content_type_is_415(api: Api, content_type: str) -> None:
    # Given a JSON body sent as another media type (a form type without its boundary, too)
    event = load_event("predict_single.json")

    # When it is sent
    response = api.call(event, content_type=content_type)

    # Then 415 with the error body, never a 500
    assert_error(response, 415, "unsupported_media_type")


def test_predict_binary_body_that_is_not_utf8_is_400(api: Api) -> None:
    # Given a body API Gateway passed base64-encoded (binary) whose bytes are not UTF-8
    event = load_event("predict_single.json")
    event["isBase64Encoded"] = True

    # When it is sent, then it is refused as not JSON, never a 500
    assert_error(api.call(event, body=base64.b64encode(b"\xff\xfe{").decode()), 400, "invalid_json")


def test_unknown_route_is_404_json(api: Api) -> None:
    # Given a path the API does not have
    event = load_event("model_get.json")

    # When it is requested
    response = api.call(event, path="/nope")

    # Then 404 with the error body
    assert_error(response, 404, "not_found")


class ExplodingService:
    def answer(self, *_: Any) -> Any:
        raise RuntimeError("secret internals at /var/task/thing.py")


def test_unexpected_error_is_json_500_without_internals(api: Api) -> None:
    # Given a service failing with an unexpected exception
    api.use_service(ExplodingService())

    # When a prediction is requested
    response = api.call(load_event("predict_single.json"))

    # Then the client gets a JSON 500 that does not leak the exception
    assert_error(response, 500, "internal_error")
    assert "secret" not in json.dumps(response.body) and "RuntimeError" not in json.dumps(response.body)


def test_logs_never_contain_user_text(
    api: Api, published_model: ModelRef, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the structured log captured, a text with a recognizable marker, and a bad request carrying another
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    marker, bad_marker = "ZEBRA-CROSSING-7781", "OKAPI-5532"

    # When both are sent
    predict_texts(api, [f"meet at the {marker}"])
    api.call(load_event("predict_single.json"), body={"text": bad_marker, "colour": bad_marker})

    # Then the requests were logged, but neither text appears in anything the function wrote
    output = stream.getvalue() + capsys.readouterr().out
    assert '"message":"predictions served"' in output
    assert marker not in output
    assert bad_marker not in output


def test_logs_never_contain_ids_labels_field_names_keys_or_sources(
    api: Api,
    published_model: ModelRef,
    queued_messages: Callable[[], list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the structured log captured, and markers as ids, labels, field names, unknown keys and sources
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    items = [{"id": "MARKID1", "fields": {"MARKFIELD1": "free prize"}}, {"id": "MARKID2", "text": "lunch?"}]
    records = load_event("predict_records.json")

    # When requests are answered, refused (unknown key, duplicate ids, a mix of ids) and verdicts accepted and refused
    assert api.call(records, body={"items": items}).status == 200
    api.call(records, body={"items": items, "MARKKEY1": 1})
    api.call(records, body={"items": [{"id": "MARKID3", "text": "a", "MARKKEY2": 1}, {"text": "b"}]})
    api.call(records, body={"items": [items[1], items[1]]})
    good = {"id": "MARKID4", "fields": {"MARKFIELD2": "x"}, "label": "spam", "source": "MARKSOURCE1"}
    assert api.call(verdicts_event([good])).status == 202
    api.call(verdicts_event([{**good, "label": "MARKLABEL1", "MARKKEY3": 1}, {"id": "MARKID5", "label": "ham"}]))

    # Then the requests were logged, but no marker appears in anything the function wrote
    output = stream.getvalue() + capsys.readouterr().out
    assert '"message":"predictions served"' in output and '"message":"verdicts queued"' in output
    assert "MARK" not in output


def test_predict_function_calls_exactly_what_its_role_allows(
    api: Api, model_store: ModelStore, tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch, model_bucket: str
) -> None:
    # Given a held verdict, and a review band every answer falls in
    held_key = hold_verdict(VerdictArchive(model_bucket, s3=boto3.client("s3")), "held for review", "spam")
    monkeypatch.setenv("REVIEW_BAND", '{"spam": [0.0, 1.0]}')
    # When a fresh container (its clients created inside the recording) of a stack deployed with ApiRollback off
    # goes through every route: no model yet, a model, a repeated request, model info, verdicts, the call log, the
    # reviewer's routes (an item queued, listed and labelled; a held verdict accepted; the versions, a refused
    # rollback), then a pinned version
    with recorded_aws_actions() as used:
        api.rebuild()
        assert api.call(load_event("predict_single.json")).status == 503
        ref = model_store.publish(tiny_bundle, expected=None)
        for _ in range(2):
            assert api.call(load_event("predict_single.json")).status == 200
        assert api.call(load_event("model_get.json")).status == 200
        assert api.call(load_event("verdicts_post.json")).status == 202
        assert api.call(load_event("calls_recent_get.json")).status == 200
        _review_every_way(api, held_key)
        second = model_store.publish(tiny_bundle, expected=model_store.head())
        assert api.call(load_event("model_rollback_post.json"), body={"to": ref.version_id}).status == 403
        monkeypatch.setenv("MODEL_VERSION", ref.version_id)
        api.rebuild()
        assert api.call(load_event("predict_single.json")).status == 200
    # Then it needed exactly the actions of its role (template.yaml, checked in tests/unit/test_template.py)
    assert used == CODE_ACTIONS["PredictFunctionRole"]
    # And it listed key names under models/ and verdicts/held/ only, as the role's s3:prefix conditions allow
    assert used.list_prefixes
    assert all(str(prefix).startswith(("models/", "verdicts/held/")) for prefix in used.list_prefixes)

    # When the stack is deployed with ApiRollback=true and an admin rolls back
    monkeypatch.setenv("API_ROLLBACK", "true")
    monkeypatch.delenv("MODEL_VERSION")
    with recorded_aws_actions() as rolling:
        api.rebuild()
        assert api.call(load_event("model_rollback_post.json"), body={"to": ref.version_id}).status == 200
    # Then it needed the actions the switch grants, and none beyond the role's
    assert second.version_id != ref.version_id
    assert API_ROLLBACK_ACTIONS <= rolling <= CODE_ACTIONS["PredictFunctionRole"] | API_ROLLBACK_ACTIONS


def _review_every_way(api: Api, held_key: str) -> None:
    assert api.call(load_event("predict_single.json"), body={"text": "too close", "review": True}).status == 200
    (item,) = api.call(load_event("review_items_get.json")).body["items"]
    assert api.call(load_event("review_skip_post.json"), body={"id": item["id"]}).status == 200
    assert api.call(load_event("review_label_post.json"), body={"id": item["id"], "label": "spam"}).status == 200
    accepted = api.call(load_event("review_held_post.json"), body={"key": held_key, "decision": "accept"})
    assert accepted.status == 200
    assert api.call(load_event("review_items_get.json"), query={"kind": "held"}).status == 200
    assert api.call(load_event("model_versions_get.json")).status == 200
