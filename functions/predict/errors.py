"""The predict API's errors: the one place where exceptions become HTTP responses.

A Powertools router (`APIGatewayRouter`) holding every exception handler, included by `app.py`, which
keeps only the routes. Each typed domain or request error maps to a status and a stable `code`; the body is always
`{"error": {"code", "message", "details"}}` (`lodbrok.serving.schemas.ErrorResponse`), and every answer counts
`RequestsRejected` (4xx) or `RequestsFailed` (5xx).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel

from lodbrok.access.roles import Role, RolesUnavailable
from lodbrok.model.messages import plain_message
from lodbrok.observability import MetricUnit, error_fields, logger, metrics
from lodbrok.registry.store import ModelStoreError, UnknownVersion
from lodbrok.serving.call_log import CallLogDisabled
from lodbrok.serving.model_provider import ModelUnavailable
from lodbrok.serving.review_desk import ApiRollbackOff, HeldVerdictNotFound, ReviewQueueDisabled
from lodbrok.serving.review_queue import ReviewItemNotFound
from lodbrok.serving.schemas import (
    BodyTooLarge,
    DuplicateIds,
    ErrorInfo,
    ErrorResponse,
    ExplainBudgetExceeded,
    InvalidJson,
    LimitExceeded,
    PredictRequest,
    RequestRejected,
    VerdictsRequest,
)
from lodbrok.serving.service import VerdictsNotQueued
from lodbrok.serving.verdict_queue import QueueNotConfigured, VerdictTooLarge
from lodbrok.verdicts.archive import ReviewError
from lodbrok.verdicts.verdict import VerdictError

router = APIGatewayRouter()


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    metrics.add_metric(name="RequestsRejected" if status < 500 else "RequestsFailed", unit=MetricUnit.Count, value=1)
    body = ErrorResponse(error=ErrorInfo(code=code, message=message, details=details or []))
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body.model_dump(mode="json"))


_REJECTIONS: dict[type[RequestRejected], tuple[HTTPStatus, str]] = {
    InvalidJson: (HTTPStatus.BAD_REQUEST, "invalid_json"),
    BodyTooLarge: (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body_too_large"),
    LimitExceeded: (HTTPStatus.UNPROCESSABLE_ENTITY, "limit_exceeded"),
    DuplicateIds: (HTTPStatus.UNPROCESSABLE_ENTITY, "duplicate_ids"),
    ExplainBudgetExceeded: (HTTPStatus.UNPROCESSABLE_ENTITY, "explain_budget_exceeded"),
}


@router.exception_handler(RequestRejected)
def _rejected(error: RequestRejected) -> Response:
    status, code = _REJECTIONS.get(type(error), (HTTPStatus.BAD_REQUEST, "bad_request"))
    return error_response(status, code, error.message, error.details)


@router.exception_handler(RequestValidationError)
def _invalid(error: RequestValidationError) -> Response:
    if _sent_as_form():
        return _unsupported_media(error)
    details = [_validation_detail(entry) for entry in error.errors()]
    return error_response(
        HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", "the request does not match the API schema", details
    )


@router.exception_handler(VerdictError)
def _invalid_verdicts(error: VerdictError) -> Response:
    message = f"{len(error.problems)} verdict(s) are invalid; nothing was queued"
    return error_response(HTTPStatus.BAD_REQUEST, "invalid_verdicts", message, error.problems)


@router.exception_handler(VerdictsNotQueued)
def _not_queued(error: VerdictsNotQueued) -> Response:
    return error_response(HTTPStatus.SERVICE_UNAVAILABLE, "verdicts_not_queued", error.message, error.details)


@router.exception_handler(VerdictTooLarge)
def _verdict_too_large(error: VerdictTooLarge) -> Response:
    return error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "verdict_too_large", error.message, error.details)


def forbidden(required: Role, actual: Role) -> dict[str, Any]:
    """The 403 of a key whose role does not allow the route (never naming the key)."""
    metrics.add_metric(name="RequestsForbidden", unit=MetricUnit.Count, value=1)
    message = f"this route needs the role '{required}'; this key has '{actual}'"
    details = [{"required_role": str(required), "role": str(actual)}]
    return proxy_response(error_response(HTTPStatus.FORBIDDEN, "forbidden", message, details))


def roles_unavailable(error: RolesUnavailable) -> dict[str, Any]:
    return proxy_response(error_response(HTTPStatus.SERVICE_UNAVAILABLE, "roles_unavailable", str(error)))


@router.exception_handler(QueueNotConfigured)
def _no_queue(error: QueueNotConfigured) -> Response:
    return error_response(HTTPStatus.SERVICE_UNAVAILABLE, "queue_not_configured", str(error))


@router.exception_handler(ModelUnavailable)
def _no_model(error: ModelUnavailable) -> Response:
    return error_response(HTTPStatus.SERVICE_UNAVAILABLE, "model_unavailable", str(error))


@router.exception_handler(CallLogDisabled)
def _no_call_log(error: CallLogDisabled) -> Response:
    return error_response(HTTPStatus.NOT_FOUND, "call_log_disabled", str(error))


# The reviewer's console: what it asked for is gone, was decided first by someone else, or is off on this stack.
_REVIEW_ERRORS: dict[type[Exception], tuple[HTTPStatus, str]] = {
    ApiRollbackOff: (HTTPStatus.FORBIDDEN, "api_rollback_off"),
    ReviewQueueDisabled: (HTTPStatus.NOT_FOUND, "review_queue_disabled"),
    ReviewItemNotFound: (HTTPStatus.NOT_FOUND, "review_item_not_found"),
    HeldVerdictNotFound: (HTTPStatus.NOT_FOUND, "held_verdict_not_found"),
    ReviewError: (HTTPStatus.CONFLICT, "already_reviewed"),
    UnknownVersion: (HTTPStatus.NOT_FOUND, "unknown_version"),
    ModelStoreError: (HTTPStatus.CONFLICT, "model_store_conflict"),
}


@router.exception_handler(list(_REVIEW_ERRORS))
def _review_error(error: Exception) -> Response:
    status, code = next(mapped for kind, mapped in _REVIEW_ERRORS.items() if isinstance(error, kind))
    return error_response(status, code, str(error))


UNSUPPORTED_MEDIA_MESSAGE = "send the body as JSON with Content-Type: application/json"
# Powertools parses these itself (not through our JSON deserializer) and then fails on them as a schema problem,
# or, for multipart without a boundary, with a ValueError; every body of this API is JSON, so either is a 415.
FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _sent_as_form() -> bool:
    return str(router.current_event.headers.get("content-type") or "").lower().startswith(FORM_MEDIA_TYPES)


@router.exception_handler(RequestUnsupportedContentType)
def _unsupported_media(error: Exception) -> Response:
    return error_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", UNSUPPORTED_MEDIA_MESSAGE)


def proxy_response(response: Response) -> dict[str, Any]:
    """An error answered before routing, as the API Gateway proxy response the resolver would give."""
    return {
        "statusCode": response.status_code,
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": json.dumps(response.body),
        "isBase64Encoded": False,
    }


@router.exception_handler(NotFoundError)
def _not_found(error: NotFoundError) -> Response:
    message = "no such route; see /openapi.json or /swagger for the API"
    return error_response(HTTPStatus.NOT_FOUND, "not_found", message)


@router.exception_handler(ServiceError)
def _service_error(error: ServiceError) -> Response:
    return error_response(error.status_code, "http_error", error.msg)


@router.exception_handler(ResponseValidationError)
def _bad_response(error: ResponseValidationError) -> Response:
    logger.error("response failed its schema", extra={"errors": [entry.get("type") for entry in error.errors()]})
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error; it has been logged")


@router.exception_handler(UnicodeDecodeError)
def _not_utf8(error: UnicodeDecodeError) -> Response:
    # A base64-encoded body (binary to API Gateway) that is not UTF-8 text cannot be JSON.
    message = "the request body is not UTF-8 JSON"
    return error_response(HTTPStatus.BAD_REQUEST, "invalid_json", message, [{"field": "body"}])


@router.exception_handler(ValueError)
def _value_error(error: ValueError) -> Response:
    return _unsupported_media(error) if _sent_as_form() else _unexpected(error)


@router.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.error("unhandled error", extra=error_fields(error))
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error; it has been logged")


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
    model = BODY_MODELS.get(router.current_event.resource) if location == "body" else None
    detail["message"] = plain_message({**entry, "loc": tuple(path)}, model)
    return detail


# The model each route validates its body with: where a body holds an unknown field, the message names the
# fields allowed there.
BODY_MODELS: dict[str, type[BaseModel]] = {"/predict": PredictRequest, "/verdicts": VerdictsRequest}


def _raw_item_id(collection: Any, index: int) -> str | None:
    try:
        item = router.current_event.json_body[collection][index]
    except (LookupError, TypeError, ValueError, RequestRejected, RequestValidationError):
        return None
    item_id = item.get("id") if isinstance(item, dict) else None
    return item_id if isinstance(item_id, str) else None
