"""The OpenAPI document as served: the routes' schemas with this deployment's limits filled in.

The request models state their rules in their JSON schemas (`lodbrok.verdicts.verdict`); the bounds that
depend on the settings or on the active model are marked with `LIMIT_KEYWORD` and set here, so a client
(or a fuzzer) reading `GET /openapi.json` sees exactly what this API accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from lodbrok.model.items import LIMIT_KEYWORD
from lodbrok.model.review_band import REVIEW_DECISION


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
