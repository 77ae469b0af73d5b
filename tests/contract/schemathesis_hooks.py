"""What `tests/integration/test_api_contract.py` tells schemathesis beyond the OpenAPI document.

The document states every rule the API enforces except those JSON Schema cannot express; it says so in
its description. The one a fuzzer meets is unique item ids within a request (the schema says ids are given
to every item or to none, so a position never collides with an id), so generated bodies that repeat an
id are skipped.
"""

from typing import Any

import schemathesis


@schemathesis.hook
def filter_body(ctx: Any, body: Any) -> bool:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return True
    ids = [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
    return len(set(ids)) == len(ids)
