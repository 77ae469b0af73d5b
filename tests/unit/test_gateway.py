"""The local gateway (devstack.gateway): what a handler run by `make local` sees and logs, and what API Gateway
answers itself before any function runs."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from devstack.gateway import STAGE, LambdaContext, LocalGateway, proxy_event
from devstack.template import Route, Template
from lodbrok.observability import logger


@logger.inject_lambda_context
def _retrain_handler(event: dict[str, Any], context: Any) -> None:
    # Another function of the same process starts while this one runs (the API answering a request)
    logger.append_keys(function_name="PredictFunction")
    logger.info("retrain line")


def test_lambda_context_invoke_logs_name_the_invoked_function_while_another_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the structured log captured, and the retrain function invoked as `make local` invokes it
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    try:
        # When the predict function starts in another thread during the invocation
        LambdaContext("RetrainFunction").invoke(_retrain_handler, {})
    finally:
        logger.remove_keys(["function_name", "function_arn", "function_request_id", "function_memory_size"])
    # Then the retrain function's line still names it, and no key of it outlives the invocation
    [line] = [json.loads(raw) for raw in stream.getvalue().splitlines() if "retrain line" in raw]
    assert line["function_name"] == "RetrainFunction"
    assert line["function_arn"].endswith(":function:RetrainFunction")
    assert logger.thread_safe_get_current_keys() == {}


def test_proxy_event_path_is_the_one_called_so_the_swagger_server_is_the_root() -> None:
    # Given a request to the local API, which is served at the root as through a custom domain
    route = Route("/swagger", "GET", api_key_required=False)
    # When its proxy event is made
    event = proxy_event(route, "GET", "/swagger?format=json", {}, b"", "127.0.0.1", None, None)
    # Then the request context's path has no stage prefix, so Powertools names "/" as the Swagger UI's server
    assert event["requestContext"]["path"] == "/swagger"
    assert event["requestContext"]["stage"] == STAGE
    assert event["queryStringParameters"] == {"format": "json"}


class _Function:
    """What the gateway passes on: the events it invoked the function with."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}


@pytest.fixture
def gateway() -> tuple[LocalGateway, _Function]:
    """The predict routes and the API's Gateway Responses of template.yaml; one valid key, "good-key"."""
    template = Template()
    function = _Function()
    authorize = {"good-key": "key-id"}.get
    routes = template.routes("PredictFunction")
    answers = template.gateway_responses()
    return LocalGateway("PredictFunction", function, routes, authorize, answers, log=lambda _: None), function


def _refusal(gateway: LocalGateway, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    status, response_headers, payload = gateway.invoke(method, path, headers, b"", "127.0.0.1")
    assert response_headers["Content-Type"] == "application/json"
    return status, json.loads(payload)["message"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/predictions"), ("PUT", "/predict"), ("DELETE", "/model")])
@pytest.mark.parametrize("headers", [{}, {"x-api-key": "good-key"}])
def test_local_gateway_answers_an_undeclared_route_or_method_as_api_gateway_does(
    gateway: tuple[LocalGateway, _Function], method: str, path: str, headers: dict[str, str]
) -> None:
    # Given the local gateway; When a route or method the template does not declare is called, with a key or not
    api, function = gateway
    status, message = _refusal(api, method, path, headers)
    # Then it is API Gateway's 403 Missing Authentication Token, with the template's hint, and no function runs
    expected = json.loads(Template().gateway_responses()["MISSING_AUTHENTICATION_TOKEN"].body)["message"]
    assert (status, message) == (403, expected)
    assert message.startswith("Missing Authentication Token") and "x-api-key" in message
    assert function.events == []


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong-key"}, {"X-Api-Key": ""}])
def test_local_gateway_refuses_a_missing_or_unknown_key_saying_to_send_x_api_key(
    gateway: tuple[LocalGateway, _Function], headers: dict[str, str]
) -> None:
    # Given the local gateway; When a keyed route is called without a valid key
    api, function = gateway
    status, message = _refusal(api, "POST", "/predict", headers)
    # Then it is the template's INVALID_API_KEY answer, which says where the key goes, and no function runs
    expected = json.loads(Template().gateway_responses()["INVALID_API_KEY"].body)["message"]
    assert (status, message) == (403, expected)
    assert message.startswith("Forbidden") and "x-api-key" in message
    assert function.events == []


def test_local_gateway_serves_the_api_description_without_a_key(gateway: tuple[LocalGateway, _Function]) -> None:
    # Given the local gateway; When the Swagger UI and the document are requested without a key
    api, function = gateway
    statuses = [api.invoke("GET", path, {}, b"", "127.0.0.1")[0] for path in ("/swagger", "/openapi.json")]
    # Then both reach the function, with no key in the request context
    assert statuses == [200, 200]
    assert [event["requestContext"]["identity"]["apiKey"] for event in function.events] == [None, None]
