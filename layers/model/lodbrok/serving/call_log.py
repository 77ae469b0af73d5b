"""Opt-in call log: each caller can list its own recent prediction requests (CALL_LOG_ENABLED).

Table layout (partition key `caller`, sort key `at`, TTL attribute `expires_at`):

    caller         S  the caller: "key#<API Gateway apiKeyId>", or "ip#<sourceIp>" for calls without a key
    at             S  "<UTC ISO 8601 with microseconds>#<API Gateway request id>": sorts by time, unique
    request_id     S
    item_count     N
    cache_hits     N
    model_version  S  S3 version id of the model that answered
    model_label    S
    predictions    S  JSON list of {"id", "label"} for the first MAX_LOGGED_PREDICTIONS items (no inputs)
    truncated      BOOL
    expires_at     N  epoch seconds (answered + CALL_LOG_TTL_SECONDS)

One partition per caller and a time-ordered sort key make "my recent calls, newest first" a single
Query (ScanIndexForward=false) that pages with ExclusiveStartKey, whatever the time span. `next_token` is
the sort key of a page's last call: a position in the caller's own partition (the partition always comes
from the caller's identity), so any string is a valid token and can only page through the caller's own log. A caller's
writes land on one partition (about 1,000 writes/s); writes are best effort, so a caller beyond that
loses log entries, never predictions. Items past `expires_at` that DynamoDB has not yet deleted are
filtered out on read. Inputs are never stored: only ids and labels.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.clock import utc_iso
from lodbrok.observability import MetricUnit, logger, metrics
from lodbrok.serving.schemas import CallPrediction, CallRecord

MAX_LOGGED_PREDICTIONS = 100
MAX_PAGE_TOKEN_CHARS = 256
TTL_ATTRIBUTE = "expires_at"
_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def table_definition(table_name: str) -> dict[str, Any]:
    """`create_table` arguments for a call-log table (template.yaml declares the same key and TTL)."""
    return {
        "TableName": table_name,
        "AttributeDefinitions": [
            {"AttributeName": "caller", "AttributeType": "S"},
            {"AttributeName": "at", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "caller", "KeyType": "HASH"},
            {"AttributeName": "at", "KeyType": "RANGE"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


class CallLogDisabled(Exception):
    """The call log is not enabled for this deployment."""


@dataclass(frozen=True)
class Origin:
    """Who sent a request, and API Gateway's id for it."""

    caller: str
    request_id: str
    key_id: str | None = None  # API Gateway's id of the caller's API key, when the request had one

    @classmethod
    def from_request(cls, *, api_key_id: str | None, source_ip: str | None, request_id: str | None) -> Origin:
        caller = f"key#{api_key_id}" if api_key_id else f"ip#{source_ip or 'unknown'}"
        # The request id ends the sort key, which page tokens must reproduce: keep it printable ASCII.
        return cls(caller=caller, request_id=_PRINTABLE.sub("", request_id or "")[:128], key_id=api_key_id or None)


@dataclass(frozen=True)
class CallEntry:
    item_count: int
    cache_hits: int
    model_version: str
    model_label: str
    predictions: Sequence[tuple[str, str]]  # (id, label) in request order


@dataclass(frozen=True)
class CallPage:
    calls: list[CallRecord]
    next_token: str | None


class CallLog:
    def __init__(self, table_name: str, *, ttl_seconds: int, client: Any, now: Callable[[], float] = time.time) -> None:
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self.client = client
        self._now = now

    def record(self, origin: Origin, entry: CallEntry) -> None:
        """Append one answered request to the caller's log (best effort: failures are logged and counted)."""
        now = self._now()
        kept = [{"id": item_id, "label": label} for item_id, label in entry.predictions[:MAX_LOGGED_PREDICTIONS]]
        item = {
            "caller": {"S": origin.caller},
            "at": {"S": f"{utc_iso(now, precision='microseconds')}#{origin.request_id}"},
            "request_id": {"S": origin.request_id},
            "item_count": {"N": str(entry.item_count)},
            "cache_hits": {"N": str(entry.cache_hits)},
            "model_version": {"S": entry.model_version},
            "model_label": {"S": entry.model_label},
            # ASCII JSON: ids may hold any character, DynamoDB strings must be valid UTF-8
            "predictions": {"S": json.dumps(kept, separators=(",", ":"))},
            "truncated": {"BOOL": len(entry.predictions) > MAX_LOGGED_PREDICTIONS},
            TTL_ATTRIBUTE: {"N": str(int(now) + self.ttl_seconds)},
        }
        try:
            self.client.put_item(TableName=self.table_name, Item=item)
        except (ClientError, BotoCoreError) as error:
            logger.warning("call log write failed", extra={"error": aws.error_code(error)})
            metrics.add_metric(name="CallLogErrors", unit=MetricUnit.Count, value=1)

    def recent(self, caller: str, *, limit: int, next_token: str | None = None) -> CallPage:
        """The caller's requests, newest first, `limit` per page."""
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#caller = :caller",
            "FilterExpression": "#expires > :now",
            "ExpressionAttributeNames": {"#caller": "caller", "#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":caller": {"S": caller}, ":now": {"N": str(int(self._now()))}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if next_token:
            arguments["ExclusiveStartKey"] = {"caller": {"S": caller}, "at": {"S": next_token}}
        response = self.client.query(**arguments)
        calls = [_record(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return CallPage(calls=calls, next_token=last["at"]["S"] if last else None)


def _record(item: dict[str, Any]) -> CallRecord:
    return CallRecord(
        at=item["at"]["S"].split("#", 1)[0],
        request_id=item["request_id"]["S"],
        item_count=int(item["item_count"]["N"]),
        cache_hits=int(item["cache_hits"]["N"]),
        model_version=item["model_version"]["S"],
        model_label=item["model_label"]["S"],
        predictions=[CallPrediction(**entry) for entry in json.loads(item["predictions"]["S"])],
        truncated=item["truncated"]["BOOL"],
    )
