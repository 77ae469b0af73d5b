"""Every event in events/ through the wiring template.yaml declares: handler string, layer, environment.

The same JSON files are what a developer passes to `sam local invoke -e`; here the handlers are imported
from the template's CodeUri/Handler (or the image's CMD), the environment is the template's with its
references resolved, and the resources are created from the template in moto.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lodbrok
from devstack.resources import create_resources
from devstack.template import ROOT, Template
from lodbrok.access.roles import ClientRoles, Role
from lodbrok.model.bundle import Bundle
from lodbrok.registry.signing import BundleSigner
from lodbrok.registry.store import ModelStore
from lodbrok.settings import get_settings
from support import EVENT_KEY_ID, EVENTS_DIR, load_event

PREDICT_EVENTS = {
    "predict_single.json": 200,
    "predict_batch.json": 200,
    "predict_records.json": 200,
    "predict_get.json": 200,
    "predict_bad_input.json": 422,
    "model_get.json": 200,
    "openapi_get.json": 200,
    "verdicts_post.json": 202,
    "calls_recent_get.json": 404,  # the call log is off by default (template parameter CallLogEnabled)
    # the reviewer's console: an empty queue, no such item or held verdict, no such version; the page and its files
    "review_items_get.json": 200,
    "review_label_post.json": 404,
    "review_skip_post.json": 404,
    "review_held_post.json": 404,
    "model_versions_get.json": 200,
    "model_rollback_post.json": 403,  # rollback through the API is off by default (template parameter ApiRollback)
    "console_get.json": 200,
    "console_script_get.json": 200,
    "console_style_get.json": 200,
}


@pytest.fixture
def template() -> Template:
    return Template()


@pytest.fixture
def wired(aws: None, template: Template, tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> Iterator[Template]:
    # Resources from the template, the functions' environment from the template, a published model.
    create_resources(template)
    environment = {**template.environment("PredictFunction"), **template.environment("RetrainFunction")}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    store = ModelStore(
        environment["MODEL_BUCKET"], environment["MODEL_NAME"], signer=BundleSigner(environment["MODEL_SIGNING_KEY"])
    )
    store.publish(tiny_bundle, expected=None)
    # The events' API key is an admin's, so every route serves it.
    ClientRoles(environment["CLIENTS_TABLE"]).put(EVENT_KEY_ID, "events", Role.ADMIN)
    yield template
    for name in ("lodbrok_function_PredictFunction", "lodbrok_function_RetrainFunction"):
        sys.modules.pop(name, None)
    get_settings.cache_clear()


def test_events_directory_has_a_case_for_every_function_route(template: Template) -> None:
    # Then every API route of the template has at least one event, and every event file is exercised here
    event_routes = {(event["path"], event["httpMethod"]) for event in map(load_event, PREDICT_EVENTS)}
    template_routes = {(route.path, route.method) for route in template.routes("PredictFunction")} - {
        ("/swagger", "GET")
    }
    assert template_routes <= event_routes
    assert {path.name for path in EVENTS_DIR.glob("*.json")} == {
        *PREDICT_EVENTS,
        "retrain_sqs.json",
        "retrain_schedule.json",
    }


def test_events_model_layer_is_the_package_on_the_path(template: Template) -> None:
    # The predict function gets `lodbrok` only from ModelLayer, whose content is layers/model/
    layer = template.properties("ModelLayer")
    assert template.properties("PredictFunction")["Layers"] == [{"Ref": "ModelLayer"}]
    assert Path(lodbrok.__file__).parent == ROOT / layer["ContentUri"] / "lodbrok"


@pytest.mark.parametrize(("event_file", "expected_status"), sorted(PREDICT_EVENTS.items()))
def test_events_predict_function_answers_each_event(
    wired: Template, lambda_context: Any, event_file: str, expected_status: int
) -> None:
    # Given the predict handler the template names
    handler = wired.handler("PredictFunction")
    # When it is invoked with the event file
    response = handler(load_event(event_file), lambda_context)
    # Then it answers with the expected status and a JSON body of the documented shape
    assert response["statusCode"] == expected_status, response["body"]
    if event_file.startswith("console"):
        assert "Content-Security-Policy" in (response.get("multiValueHeaders") or response["headers"])
        return
    body = json.loads(response["body"])
    if expected_status >= 400:
        assert set(body["error"]) >= {"code", "message", "details"}
    elif event_file.startswith("predict"):
        assert body["predictions"] and {"id", "label", "probabilities", "from_cache"} <= set(body["predictions"][0])


def test_events_retrain_function_handles_the_sqs_event(wired: Template, lambda_context: Any) -> None:
    # Given the retrain handler from the image's CMD and the SQS event with valid, duplicate and invalid records
    handler = wired.handler("RetrainFunction")
    # When it is invoked
    response = handler(load_event("retrain_sqs.json"), lambda_context)
    # Then no record is reported as failed: valid ones were archived, invalid ones quarantined (not retried)
    assert response == {"batchItemFailures": []}


def test_events_retrain_function_handles_the_schedule(wired: Template, lambda_context: Any) -> None:
    # When the scheduled event arrives with nothing archived yet
    response = wired.handler("RetrainFunction")(load_event("retrain_schedule.json"), lambda_context)
    # Then it reports a retrain result rather than failing
    assert isinstance(response, dict) and response.get("status")
