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

import warnings
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

import console
import errors
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

import lodbrok
from lodbrok.access.roles import Role, RolesUnavailable
from lodbrok.observability import logger, metrics, tracer
from lodbrok.serving.call_log import MAX_PAGE_TOKEN_CHARS, Origin
from lodbrok.serving.model_provider import ModelUnavailable
from lodbrok.serving.openapi import base_path, configure_openapi, documented, served_document
from lodbrok.serving.schemas import (
    HeldReviewed,
    HeldReviewRequest,
    ModelInfo,
    ModelVersions,
    PredictRequest,
    PredictResponse,
    RecentCalls,
    ReviewDone,
    ReviewItems,
    ReviewKind,
    ReviewLabelRequest,
    ReviewSkipRequest,
    RollbackRequest,
    RolledBack,
    Text,
    VerdictsAccepted,
    VerdictsRequest,
    parse_json_body,
)
from lodbrok.serving.service import PredictService
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
# The document and its Swagger UI need no key at all (template.yaml): "predict" lets them through without a lookup.
ROUTE_ROLES: dict[str, Role] = {
    "/predict": Role.PREDICT,
    "/model": Role.PREDICT,
    "/calls/recent": Role.PREDICT,
    "/openapi.json": Role.PREDICT,
    "/swagger": Role.PREDICT,
    "/verdicts": Role.FEEDBACK,
    # The reviewer's console: the page asks for a key; what it shows needs a reviewer's (rollback an admin's).
    "/console": Role.PREDICT,
    "/console/console.js": Role.PREDICT,
    "/console/console.css": Role.PREDICT,
    "/review/items": Role.REVIEWER,
    "/review/label": Role.REVIEWER,
    "/review/skip": Role.REVIEWER,
    "/review/held": Role.REVIEWER,
    "/model/versions": Role.REVIEWER,
    "/model/rollback": Role.ADMIN,
}


app = APIGatewayRestResolver(
    enable_validation=True,
    json_body_deserializer=_parse_body,
)
configure_openapi(app, version=lodbrok.__version__)
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
    **documented(PredictResponse, 200, 400, 413, 415, 422, 503),
)
def predict(request: PredictRequest) -> PredictResponse:
    return get_service().answer(request, _origin())


@app.get(
    "/predict", summary="Classify one text given in the query string", **documented(PredictResponse, 200, 422, 503)
)
def predict_query(
    text: Annotated[Text, Query(description="the text to classify")],
    skip_cache: Annotated[bool, Query(description="do not read the cache")] = False,
    echo_input: Annotated[bool, Query(description="repeat the input in the answer")] = False,
    explain: Annotated[bool, Query(description="say which pieces of the text weighed most on its label")] = False,
) -> PredictResponse:
    request = PredictRequest(text=text, skip_cache=skip_cache, echo_input=echo_input, explain=explain)
    return get_service().answer(request, _origin())


@app.get("/model", summary="The active model's metadata", **documented(ModelInfo, 200, 422, 503))
def model() -> ModelInfo:
    return get_service().model_info()


@app.post(
    "/verdicts",
    status_code=HTTPStatus.ACCEPTED,
    summary="Queue verdicts (correct labels) for retraining",
    **documented(VerdictsAccepted, 202, 400, 413, 415, 422, 503),
)
def verdicts(request: VerdictsRequest) -> VerdictsAccepted:
    return get_service().submit_verdicts(request, _origin())


@app.get(
    "/calls/recent",
    summary="Your own recent prediction requests, newest first",
    **documented(RecentCalls, 200, 404, 422),
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
    context = app.current_event.request_context
    return served_document(
        app,
        server=base_path(context.stage, context.path) or "/",
        max_items=settings.max_items,
        max_text_chars=settings.max_text_chars,
        explain_max_items=settings.explain_max_items,
        labels=labels,
    )


# --- the reviewer's console (issue 31): its routes, then the page itself ----------------------------------------


@app.get(
    "/review/items",
    summary="The next items for people: queued `review` answers (most uncertain first) or held verdicts",
    **documented(ReviewItems, 200, 404, 422, 503),
)
def review_items(
    kind: Annotated[ReviewKind, Query(description="review: the review queue; held: held verdicts")] = "review",
    limit: Annotated[int, Query(ge=1, le=50, description="items per answer")] = 10,
) -> ReviewItems:
    return get_service().desk.items(kind, limit)


@app.post(
    "/review/label",
    summary="Label a queued item: it becomes a trusted verdict, sent as POST /verdicts sends it",
    **documented(ReviewDone, 200, 400, 404, 413, 415, 422, 503),
)
def review_label(request: ReviewLabelRequest) -> ReviewDone:
    return get_service().desk.label(request, _origin())


@app.post(
    "/review/skip",
    summary="Skip a queued item: it goes behind the others",
    **documented(ReviewDone, 200, 400, 404, 413, 415, 422),
)
def review_skip(request: ReviewSkipRequest) -> ReviewDone:
    return get_service().desk.skip(request.id)


@app.post(
    "/review/held",
    summary="Accept or reject a held verdict (as `lodbrok held accept|reject`)",
    **documented(HeldReviewed, 200, 400, 404, 409, 413, 415, 422),
)
def review_held(request: HeldReviewRequest) -> HeldReviewed:
    return get_service().desk.judge_held(request, _origin())


@app.get("/model/versions", summary="Every version of the model, newest first", **documented(ModelVersions, 200, 503))
def model_versions() -> ModelVersions:
    return get_service().desk.versions()


@app.post(
    "/model/rollback",
    summary="Make an earlier version active again (as `lodbrok rollback --to`); admin only",
    description='Only where the stack\'s ApiRollback parameter is "true"; else 403 `api_rollback_off` and nothing '
    "is written (`lodbrok rollback` is the way). GET /model/versions tells which (`rollback`).",
    **documented(RolledBack, 200, 400, 404, 409, 413, 415, 422, 503),
)
def model_rollback(request: RollbackRequest) -> RolledBack:
    return get_service().desk.rollback(request.to)


@app.get("/console", include_in_schema=False)
def console_page() -> Response[str]:
    return console.asset("index.html")


@app.get("/console/console.js", include_in_schema=False)
def console_script() -> Response[str]:
    return console.asset("console.js")


@app.get("/console/console.css", include_in_schema=False)
def console_style() -> Response[str]:
    return console.asset("console.css")


# --- entry point -------------------------------------------------------------------------------------------------


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _role_refused(event) or app.resolve(event, context)


def _role_refused(event: dict[str, Any]) -> dict[str, Any] | None:
    """The 403 (or 503) answer when the caller's role does not allow the route, else None.

    Checked before `app.resolve`: Powertools runs its request validation, which reads the body, before any
    middleware, and a caller without the role must not learn what its body would have got.
    """
    required = ROUTE_ROLES.get(str(event.get("resource") or ""), Role.ADMIN)
    if required == Role.PREDICT:
        return None  # every key API Gateway lets through has at least this role: no lookup
    identity = (event.get("requestContext") or {}).get("identity") or {}
    try:
        role = get_service().role_of(identity.get("apiKeyId"))
    except RolesUnavailable as error:
        return errors.roles_unavailable(error)
    return None if role.allows(required) else errors.forbidden(required, role)
