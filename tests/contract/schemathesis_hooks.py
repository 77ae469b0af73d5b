"""What `tests/integration/test_api_contract.py` tells schemathesis beyond the OpenAPI document.

The document states every rule the API enforces except those JSON Schema cannot express; it says so in
its description. Two a fuzzer meets: unique item ids within a request (the schema says ids are given to
every item or to none, so a position never collides with an id), and the characters of an explained
request summed (`EXPLAIN_MAX_CHARS`, passed in by the test). Generated bodies that break them are skipped.
"""

import os
from typing import Any

import schemathesis


@schemathesis.hook
def filter_body(ctx: Any, body: Any) -> bool:
    if not isinstance(body, dict):
        return True
    items = body.get("items")
    if body.get("explain") is True and _chars(body) > int(os.environ["EXPLAIN_MAX_CHARS"]):
        return False
    if not isinstance(items, list):
        return True
    ids = [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
    return len(set(ids)) == len(ids)


def _chars(body: dict[str, Any]) -> int:
    """What the explain budget counts: texts, and records' string values, summed."""
    inputs = [body.get("text"), *(body.get("texts") or [])]
    for item in body.get("items") or []:
        if isinstance(item, dict):
            fields = item.get("fields")
            inputs += [item.get("text"), *(fields.values() if isinstance(fields, dict) else [])]
    return sum(len(value) for value in inputs if isinstance(value, str))
