"""Predict function: the HTTP API of the classifier (API Gateway REST proxy -> Powertools routes).

Each route parses its input, makes one call into `lodbrok.serving.service.PredictService` and returns a model.
Before any route, the caller's role (`lodbrok.access.roles`, by the API key id API Gateway puts in the request
context) must allow it (`ROUTE_ROLES`), else 403: authorisation comes before parsing or validating a body.
Every error becomes an HTTP response in one place, `errors.py` (a router this app includes), from its
exception type; the body is always `{"error": {"code", "message", "details"}}`. Nothing heavy happens at
import: the service (boto3 clients, the model) is built on the first request and kept for warm invocations.
TensorFlow is never imported.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

import errors
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

import lodbrok
from lodbrok.access.roles import Role, RolesUnavailable
from lodbrok.observability import logger, metrics, tracer
from lodbrok.serving.call_log import MAX_PAGE_TOKEN_CHARS, Origin
from lodbrok.serving.model_provider import ModelUnavailable
from lodbrok.serving.openapi import with_limits
from lodbrok.serving.schemas import (
    ErrorResponse,
    GatewayResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    RecentCalls,
    Text,
    VerdictsAccepted,
    VerdictsRequest,
    parse_json_body,
)
from lodbrok.serving.service import PredictService
from lodbrok.serving.verdict_queue import MAX_MESSAGE_BYTES
from lodbrok.settings import get_settings

# Routes such as GET /openapi.json record no business metric; that is expected, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


@cache
def get_service() -> PredictService:
    """The process-wide service, built on first use and kept for warm invocations."""
    return PredictService(get_settings())


def _parse_body(body: str) -> Any:
    parsed = parse_json_body(body, max_bytes=get_settings().max_body_bytes)
    if not isinstance(parsed, dict):
        # Every body of this API is an object; Powertools would otherwise take the first element of an array.
        raise RequestValidationError(
            [{"loc": ("body",), "type": "model_type", "msg": "the body must be a JSON object"}]
        )
    return parsed


# The least role each route needs; a resource missing here needs admin (API Gateway invokes only declared ones).
ROUTE_ROLES: dict[str, Role] = {
    "/predict": Role.PREDICT,
    "/model": Role.PREDICT,
    "/calls/recent": Role.PREDICT,
    "/openapi.json": Role.PREDICT,
    "/swagger": Role.PREDICT,
    "/verdicts": Role.FEEDBACK,
}


def _documented(model: type[BaseModel], status: int, *errors: int) -> dict[str, Any]:
    """OpenAPI responses of a route (its model, and ErrorResponse for each error status) and its 500 on a bad answer.

    403 is API Gateway's (a missing or unknown key) or ours (a role that does not allow the route): either body."""
    content: dict[int, Any] = {status: {content_types.APPLICATION_JSON: {"model": model}}}
    content.update({code: {content_types.APPLICATION_JSON: {"model": ErrorResponse}} for code in (*errors, 500)})
    content[429] = {content_types.APPLICATION_JSON: {"model": GatewayResponse}}
    content[403] = {content_types.APPLICATION_JSON: {"model": ErrorResponse | GatewayResponse}}
    return {
        "responses": {
            code: {"description": HTTPStatus(code).phrase, "content": body} for code, body in content.items()
        },
        "custom_response_validation_http_code": HTTPStatus.INTERNAL_SERVER_ERROR,
    }


app = APIGatewayRestResolver(
    enable_validation=True,
    json_body_deserializer=_parse_body,
)
app.configure_openapi(
    title="Lodbrok predict API",
    version=lodbrok.__version__,
    description=(
        "Classify texts and flat records with the active Lodbrok model; send verdicts to retrain it. The schemas "
        "state every rule the API enforces, with this deployment's limits, except three that JSON Schema cannot: "
        "the ids given to items must be unique within a request (422 duplicate_ids), an explained request may "
        "hold at most EXPLAIN_MAX_CHARS characters in all (422 explain_budget_exceeded), a body may have at most "
        "MAX_BODY_BYTES bytes (413 body_too_large), and each verdict must fit one queue message of "
        f"{MAX_MESSAGE_BYTES} bytes as UTF-8 JSON (413 verdict_too_large; a text within the limits always fits, a "
        "very large record may not). Each route needs a role of your key (403 forbidden otherwise): POST /verdicts "
        "needs 'feedback' (your verdicts then answer only you at once) or 'reviewer' (they answer every client at "
        "once); every other route needs 'predict'."
    ),
    # API Gateway checks the key before any route: every method, declared or not, needs it.
    security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
    security=[{"apiKey": []}],
)
app.enable_swagger(path="/swagger")
app.include_router(errors.router)


def _origin() -> Origin:
    context = app.current_event.get("requestContext") or {}
    identity = context.get("identity") or {}
    return Origin.from_request(
        api_key_id=identity.get("apiKeyId"), source_ip=identity.get("sourceIp"), request_id=context.get("requestId")
    )


# --- routes --------------------------------------------------------------------------------------------------


@app.post(
    "/predict",
    summary="Classify one text, many texts, or items",
    **_documented(PredictResponse, 200, 400, 413, 415, 422, 503),
)
def predict(request: PredictRequest) -> PredictResponse:
    return get_service().answer(request, _origin())


@app.get(
    "/predict", summary="Classify one text given in the query string", **_documented(PredictResponse, 200, 422, 503)
)
def predict_query(
    text: Annotated[Text, Query(description="the text to classify")],
    skip_cache: Annotated[bool, Query(description="do not read the cache")] = False,
    echo_input: Annotated[bool, Query(description="repeat the input in the answer")] = False,
    explain: Annotated[bool, Query(description="say which pieces of the text weighed most on its label")] = False,
) -> PredictResponse:
    request = PredictRequest(text=text, skip_cache=skip_cache, echo_input=echo_input, explain=explain)
    return get_service().answer(request, _origin())


@app.get("/model", summary="The active model's metadata", **_documented(ModelInfo, 200, 422, 503))
def model() -> ModelInfo:
    return get_service().model_info()


@app.post(
    "/verdicts",
    status_code=HTTPStatus.ACCEPTED,
    summary="Queue verdicts (correct labels) for retraining",
    **_documented(VerdictsAccepted, 202, 400, 413, 415, 422, 503),
)
def verdicts(request: VerdictsRequest) -> VerdictsAccepted:
    return get_service().submit_verdicts(request, _origin())


@app.get(
    "/calls/recent",
    summary="Your own recent prediction requests, newest first",
    **_documented(RecentCalls, 200, 404, 422),
)
def recent_calls(
    limit: Annotated[int, Query(ge=1, le=100, description="calls per page")] = 20,
    next_token: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_PAGE_TOKEN_CHARS,
            description="`next_token` of the previous page: a position in your own log (any string is one)",
        ),
    ] = None,
) -> RecentCalls:
    return get_service().recent_calls(_origin(), limit=limit, next_token=next_token)


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=_openapi_json())


def _openapi_json() -> str:
    settings = get_settings()
    try:
        labels: tuple[str, ...] = tuple(get_service().models.current().labels)
    except ModelUnavailable:
        labels = ()
    return _openapi_json_for(settings.max_items, settings.max_text_chars, settings.explain_max_items, labels)


@cache
def _openapi_json_for(max_items: int, max_text_chars: int, explain_max_items: int, labels: tuple[str, ...]) -> str:
    """Generated once per set of limits and labels (the routes are fixed), not per request."""
    document = json.loads(app.get_openapi_json_schema())
    limited = with_limits(
        document,
        max_items=max_items,
        max_text_chars=max_text_chars,
        explain_max_items=explain_max_items,
        labels=labels,
    )
    return json.dumps(limited)


# --- entry point -------------------------------------------------------------------------------------------------


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return errors.form_body_refused(event) or _role_refused(event) or app.resolve(event, context)


def _role_refused(event: dict[str, Any]) -> dict[str, Any] | None:
    """The 403 (or 503) answer when the caller's role does not allow the route, else None."""
    required = ROUTE_ROLES.get(str(event.get("resource") or ""), Role.ADMIN)
    if required == Role.PREDICT:
        return None  # every key API Gateway lets through has at least this role: no lookup
    identity = (event.get("requestContext") or {}).get("identity") or {}
    try:
        role = get_service().role_of(identity.get("apiKeyId"))
    except RolesUnavailable as error:
        return errors.roles_unavailable(error)
    return None if role.allows(required) else errors.forbidden(required, role)
