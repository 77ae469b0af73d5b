"""Predict function: the HTTP API of the classifier (API Gateway REST proxy -> Powertools routes).

Each route parses its input, makes one call into `lodbrok.predict_service.PredictService` and returns a model.
Every error becomes an HTTP response here, in one place, from its exception type; the body is always
`{"error": {"code", "message", "details"}}`. Nothing heavy happens at import: the service (boto3 clients,
the model) is built on the first request and kept for warm invocations. TensorFlow is never imported.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

import lodbrok
from lodbrok.calllog import MAX_PAGE_TOKEN_CHARS, CallLogDisabled, Origin
from lodbrok.model_provider import ModelUnavailable
from lodbrok.observability import MetricUnit, logger, metrics, tracer
from lodbrok.openapi import with_limits
from lodbrok.predict_service import PredictService, VerdictsNotQueued
from lodbrok.schemas import (
    BodyTooLarge,
    DuplicateIds,
    ErrorInfo,
    ErrorResponse,
    GatewayResponse,
    InvalidJson,
    LimitExceeded,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    RecentCalls,
    RequestRejected,
    Text,
    VerdictsAccepted,
    VerdictsRequest,
    parse_json_body,
)
from lodbrok.settings import get_settings
from lodbrok.verdict_queue import QueueNotConfigured
from lodbrok.verdicts import VerdictError

# Routes such as GET /openapi.json record no business metric; that is expected, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

_service: PredictService | None = None


def get_service() -> PredictService:
    """The process-wide service, built on first use and kept for warm invocations."""
    global _service
    if _service is None:
        _service = PredictService(get_settings())
    return _service


def set_service(service: PredictService | None) -> None:
    """Use `service` (tests, benchmarks), or forget the current one (None) so the next request builds anew."""
    global _service
    _service = service


def _parse_body(body: str) -> Any:
    parsed = parse_json_body(body, max_bytes=get_settings().max_body_bytes)
    if not isinstance(parsed, dict):
        # Every body of this API is an object; Powertools would otherwise take the first element of an array.
        raise RequestValidationError(
            [{"loc": ("body",), "type": "model_type", "msg": "the body must be a JSON object"}]
        )
    return parsed


def _error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    metrics.add_metric(name="RequestsRejected" if status < 500 else "RequestsFailed", unit=MetricUnit.Count, value=1)
    body = ErrorResponse(error=ErrorInfo(code=code, message=message, details=details or []))
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body.model_dump(mode="json"))


def _documented(model: type[BaseModel], status: int, *errors: int) -> dict[str, Any]:
    """OpenAPI responses of a route (its model, and ErrorResponse for each error status) and its 500 on a bad answer."""
    content: dict[int, Any] = {status: {content_types.APPLICATION_JSON: {"model": model}}}
    content.update({code: {content_types.APPLICATION_JSON: {"model": ErrorResponse}} for code in (*errors, 500)})
    content.update({code: {content_types.APPLICATION_JSON: {"model": GatewayResponse}} for code in (403, 429)})
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
        "state every rule the API enforces, with this deployment's limits, except two that JSON Schema cannot: "
        "item ids must be unique within a request (422 duplicate_ids), and a body may have at most MAX_BODY_BYTES "
        "bytes (413 body_too_large)."
    ),
    # API Gateway checks the key before any route: every method, declared or not, needs it.
    security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
    security=[{"apiKey": []}],
)
app.enable_swagger(path="/swagger")


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
    return get_service().submit_verdicts(request)


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
    return _openapi_json_for(settings.max_items, settings.max_text_chars, labels)


@cache
def _openapi_json_for(max_items: int, max_text_chars: int, labels: tuple[str, ...]) -> str:
    """Generated once per set of limits and labels (the routes are fixed), not per request."""
    document = json.loads(app.get_openapi_json_schema())
    return json.dumps(with_limits(document, max_items=max_items, max_text_chars=max_text_chars, labels=labels))


# --- errors: the one place where exceptions become HTTP responses ---------------------------------------------

_REJECTIONS: dict[type[RequestRejected], tuple[HTTPStatus, str]] = {
    InvalidJson: (HTTPStatus.BAD_REQUEST, "invalid_json"),
    BodyTooLarge: (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body_too_large"),
    LimitExceeded: (HTTPStatus.UNPROCESSABLE_ENTITY, "limit_exceeded"),
    DuplicateIds: (HTTPStatus.UNPROCESSABLE_ENTITY, "duplicate_ids"),
}


@app.exception_handler(RequestRejected)
def _rejected(error: RequestRejected) -> Response:
    status, code = _REJECTIONS.get(type(error), (HTTPStatus.BAD_REQUEST, "bad_request"))
    return _error(status, code, error.message, error.details)


@app.exception_handler(RequestValidationError)
def _invalid(error: RequestValidationError) -> Response:
    details = [_validation_detail(entry) for entry in error.errors()]
    return _error(
        HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", "the request does not match the API schema", details
    )


@app.exception_handler(VerdictError)
def _invalid_verdicts(error: VerdictError) -> Response:
    message = f"{len(error.problems)} verdict(s) are invalid; nothing was queued"
    return _error(HTTPStatus.BAD_REQUEST, "invalid_verdicts", message, error.problems)


@app.exception_handler(VerdictsNotQueued)
def _not_queued(error: VerdictsNotQueued) -> Response:
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, "verdicts_not_queued", error.message, error.details)


@app.exception_handler(QueueNotConfigured)
def _no_queue(error: QueueNotConfigured) -> Response:
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, "queue_not_configured", str(error))


@app.exception_handler(ModelUnavailable)
def _no_model(error: ModelUnavailable) -> Response:
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, "model_unavailable", str(error))


@app.exception_handler(CallLogDisabled)
def _no_call_log(error: CallLogDisabled) -> Response:
    return _error(HTTPStatus.NOT_FOUND, "call_log_disabled", str(error))


UNSUPPORTED_MEDIA_MESSAGE = "send the body as JSON with Content-Type: application/json"
# Powertools parses these for routes with form parameters, before any handler runs; ours take JSON only.
FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_media(error: RequestUnsupportedContentType) -> Response:
    return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", UNSUPPORTED_MEDIA_MESSAGE)


def _form_body_refused(event: dict[str, Any]) -> dict[str, Any] | None:
    """A 415 for a form-encoded request, which Powertools would otherwise try (and maybe fail) to parse."""
    headers = event.get("headers") or {}
    content_type = next((str(value) for name, value in headers.items() if name.lower() == "content-type"), "")
    if not content_type.lower().startswith(FORM_MEDIA_TYPES):
        return None
    response = _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", UNSUPPORTED_MEDIA_MESSAGE)
    return {
        "statusCode": response.status_code,
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": json.dumps(response.body),
        "isBase64Encoded": False,
    }


@app.not_found
def _not_found(error: NotFoundError) -> Response:
    message = "no such route; see /openapi.json or /swagger for the API"
    return _error(HTTPStatus.NOT_FOUND, "not_found", message)


@app.exception_handler(ServiceError)
def _service_error(error: ServiceError) -> Response:
    return _error(error.status_code, "http_error", error.msg)


@app.exception_handler(ResponseValidationError)
def _bad_response(error: ResponseValidationError) -> Response:
    logger.error("response failed its schema", extra={"errors": [entry.get("type") for entry in error.errors()]})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error; it has been logged")


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(error: UnicodeDecodeError) -> Response:
    # A base64-encoded body (binary to API Gateway) that is not UTF-8 text cannot be JSON.
    return _error(HTTPStatus.BAD_REQUEST, "invalid_json", "the request body is not UTF-8 JSON", [{"field": "body"}])


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("unhandled error", extra={"error_type": type(error).__name__})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error; it has been logged")


def _validation_detail(entry: dict[str, Any]) -> dict[str, Any]:
    """One schema problem: where (location, dotted field, item index/id), what (type, message); never the value."""
    location, *path = entry.get("loc") or ("body",)
    detail: dict[str, Any] = {"location": location, "field": ".".join(str(part) for part in path) or location}
    if location == "body" and len(path) >= 2 and isinstance(path[1], int):
        detail["index"] = path[1]
        item_id = _raw_item_id(path[0], path[1])
        if item_id is not None:
            detail["id"] = item_id
    detail["type"] = entry.get("type", "invalid")
    detail["message"] = str(entry.get("msg", "invalid value"))
    return detail


def _raw_item_id(collection: Any, index: int) -> str | None:
    try:
        item = app.current_event.json_body[collection][index]
    except (LookupError, TypeError, ValueError, RequestRejected, RequestValidationError):
        return None
    item_id = item.get("id") if isinstance(item, dict) else None
    return item_id if isinstance(item_id, str) else None


# --- entry point -------------------------------------------------------------------------------------------------


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _form_body_refused(event) or app.resolve(event, context)
