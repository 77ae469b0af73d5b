"""What `tests/integration/test_api_contract.py` tells schemathesis beyond the OpenAPI document.

The document states every rule the API enforces except those JSON Schema cannot express; it says so in
its description. The one a fuzzer meets is unique item ids within a request, so generated bodies that
repeat an id (explicitly, or by giving an item the id another item gets from its position) are skipped.
"""

from typing import Any

import schemathesis


@schemathesis.hook
def filter_body(ctx: Any, body: Any) -> bool:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return True
    ids = [
        str(item["id"]) if isinstance(item, dict) and item.get("id") is not None else str(position)
        for position, item in enumerate(items)
    ]
    return len(set(ids)) == len(ids)
