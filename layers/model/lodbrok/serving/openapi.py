"""The OpenAPI document as served: the API's description and security, each route's documented responses, and
the routes' schemas with this deployment's limits filled in.

The request models state their rules in their JSON schemas (`lodbrok.verdicts.verdict`); the bounds that
depend on the settings or on the active model are marked with `LIMIT_KEYWORD` and set here, so a client
(or a fuzzer) reading `GET /openapi.json` sees exactly what this API accepts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from functools import cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, content_types
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from pydantic import BaseModel

from lodbrok.model.items import LIMIT_KEYWORD
from lodbrok.model.review_band import REVIEW_DECISION
from lodbrok.serving.schemas import ErrorResponse, GatewayResponse
from lodbrok.serving.verdict_queue import MAX_MESSAGE_BYTES

DESCRIPTION = (
    "Classify texts and flat records with the active Lodbrok model; send verdicts to retrain it. The schemas "
    "state every rule the API enforces, with this deployment's limits, except three that JSON Schema cannot: "
    "the ids given to items must be unique within a request (422 duplicate_ids), an explained request may "
    "hold at most EXPLAIN_MAX_CHARS characters in all (422 explain_budget_exceeded), a body may have at most "
    "MAX_BODY_BYTES bytes (413 body_too_large), and each verdict must fit one queue message of "
    f"{MAX_MESSAGE_BYTES} bytes as UTF-8 JSON (413 verdict_too_large; a text within the limits always fits, a "
    "very large record may not). Each route needs a role of your key (403 forbidden otherwise): POST /verdicts "
    "needs 'feedback' (your verdicts then answer only you at once) or 'reviewer' (they answer every client at "
    "once); the reviewer's routes (/review/..., GET /model/versions) need 'reviewer', POST /model/rollback needs "
    "'admin'; every other route needs 'predict'."
)


def configure_openapi(app: APIGatewayRestResolver, *, version: str) -> None:
    """The document's title, description and security: API Gateway checks the key before any route, so every
    method, declared or not, needs it."""
    app.configure_openapi(
        title="Lodbrok predict API",
        version=version,
        description=DESCRIPTION,
        security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
        security=[{"apiKey": []}],
    )


def documented(model: type[BaseModel], status: int, *errors: int) -> dict[str, Any]:
    """A route's OpenAPI responses (its model, and ErrorResponse for each error status) and its 500 on a bad
    answer. 403 is API Gateway's (a missing or unknown key) or ours (a role that does not allow the route)."""
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


def base_path(stage: str | None, request_path: str | None) -> str:
    """The path prefix a browser must put before a route: `/{stage}` when it called the stage's own URL
    (`https://ID.execute-api.REGION.amazonaws.com/Prod/...`), none through a custom domain or `make local`.
    The same rule Powertools applies to the Swagger UI's server, so the page and the document agree."""
    if stage and stage != "$default" and (request_path or "").startswith(f"/{stage}/"):
        return f"/{stage}"
    return ""


@cache
def served_document(
    app: APIGatewayRestResolver,
    *,
    server: str,
    max_items: int,
    max_text_chars: int,
    explain_max_items: int,
    labels: tuple[str, ...],
) -> str:
    """`app`'s document as JSON with this server URL, limits and labels: made once per set of them (the routes are
    fixed), not per request."""
    document = {**json.loads(app.get_openapi_json_schema()), "servers": [{"url": server}]}
    limited = with_limits(
        document,
        max_items=max_items,
        max_text_chars=max_text_chars,
        explain_max_items=explain_max_items,
        labels=labels,
    )
    return json.dumps(limited)


def with_limits(
    document: dict[str, Any],
    *,
    max_items: int,
    max_text_chars: int,
    explain_max_items: int,
    labels: Sequence[str] | None,
) -> dict[str, Any]:
    """A copy of `document` with every marked bound set; without a model, labels stay unconstrained."""
    bounds = {
        "text": {"maxLength": max_text_chars},
        "items": {"maxItems": max_items},
        "explain_items": {"maxItems": explain_max_items},
    }
    if labels:
        bounds["label"] = {"enum": list(labels)}
        bounds["decision"] = {"enum": [*labels, REVIEW_DECISION]}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            node.update(bounds.get(node.pop(LIMIT_KEYWORD, None), {}))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    limited = copy.deepcopy(document)
    visit(limited)
    return limited
