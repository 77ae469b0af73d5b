"""Prediction cache in DynamoDB: the answer a model version gave for an input, reused until it expires.

Item layout (table key: `pk`, a string; TTL attribute: `expires_at`):

    pk             S  "<model S3 version id>#<sha256 hex of canonical_key(input)>"
    model_version  S  the S3 version id (also the prefix of pk; handy when inspecting the table)
    label          S  the predicted label
    probabilities  S  JSON object {label: probability}; a string rather than a map because DynamoDB
                      numbers are Decimals, and JSON floats round-trip exactly, so a cached answer is
                      bit-for-bit the answer the model gave
    created_at     S  UTC ISO 8601
    expires_at     N  epoch seconds (created + CACHE_TTL_SECONDS)

The key holds a hash of the input, never the input, so no user text is stored. The model version is part
of the key, so a new model never answers with its predecessor's results. DynamoDB deletes expired items
only eventually (and moto never does), so reads also check `expires_at`.

The cache is best effort: throttling, a missing table or an outage never fails a prediction. Each failed
operation is logged as a warning, counted as CacheErrors, and the items are predicted by the model.
Reads go through `batch_get_items`, which the predict function also uses to read the verdict memory in
the same round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.clock import utc_iso
from lodbrok.model.features import input_digest
from lodbrok.model.predictor import Prediction
from lodbrok.observability import MetricUnit, logger, metrics

READ_BATCH = 100  # BatchGetItem limit
WRITE_BATCH = 25  # BatchWriteItem limit
T = TypeVar("T")


def table_definition(table_name: str) -> dict[str, Any]:
    """`create_table` arguments for a cache table (template.yaml declares the same key and TTL)."""
    return {
        "TableName": table_name,
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    }


TTL_ATTRIBUTE = "expires_at"


def cache_key(model_version: str, canonical: str) -> str:
    """The item key for `canonical` (a `features.canonical_key`) as answered by `model_version`."""
    return f"{model_version}#{input_digest(canonical)}"


class CacheUnavailable(Exception):
    """Retries are exhausted; the caller reports it like any other table failure."""


def batch_get_items(
    client: Any,
    requests: Mapping[str, Mapping[str, Any]],
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 4,
    base_delay: float = 0.02,
) -> dict[str, list[dict[str, Any]]]:
    """Items of several tables in as few BatchGetItem calls as the 100-key limit allows, unprocessed keys
    retried with full-jitter backoff. `requests` maps each table to its part of a request (Keys, projection)."""
    found: dict[str, list[dict[str, Any]]] = {table: [] for table in requests}
    keys = [(table, key) for table, request in requests.items() for key in request["Keys"]]
    for chunk in _chunks(keys, READ_BATCH):
        pending: dict[str, Any] = {}
        for table, key in chunk:
            pending.setdefault(table, {**requests[table], "Keys": []})["Keys"].append(key)
        for attempt in range(max_attempts):
            response = client.batch_get_item(RequestItems=pending)
            for table, items in response.get("Responses", {}).items():
                found[table].extend(items)
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            aws.backoff(attempt, max_attempts=max_attempts, base_delay=base_delay, sleep=sleep)
        else:
            raise CacheUnavailable(f"{sum(len(part['Keys']) for part in pending.values())} keys still unprocessed")
    return found


class PredictionCache:
    def __init__(
        self,
        table_name: str,
        *,
        ttl_seconds: int,
        client: Any,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 4,
        base_delay: float = 0.02,
    ) -> None:
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self.client = client
        self._now = now
        self._sleep = sleep
        self.max_attempts = max_attempts
        self.base_delay = base_delay

    def read_request(self, model_version: str, canonical_keys: Iterable[str]) -> dict[str, Any]:
        """This table's part of a BatchGetItem request (see `batch_get_items`)."""
        return {
            "Keys": [{"pk": {"S": cache_key(model_version, key)}} for key in dict.fromkeys(canonical_keys)],
            "ProjectionExpression": "pk, label, probabilities, #expires",
            "ExpressionAttributeNames": {"#expires": TTL_ATTRIBUTE},
        }

    def parse(
        self, items: Sequence[Mapping[str, Any]], model_version: str, canonical_keys: Iterable[str]
    ) -> dict[str, Prediction]:
        """Cached, unexpired predictions by canonical key; missing entries are misses."""
        by_key = {cache_key(model_version, canonical): canonical for canonical in canonical_keys}
        now = self._now()
        found: dict[str, Prediction] = {}
        for item in items:
            prediction = _parse_item(item, now)
            if prediction is not None and item["pk"]["S"] in by_key:
                found[by_key[item["pk"]["S"]]] = prediction
        return found

    def put_many(self, model_version: str, predictions: Mapping[str, Prediction]) -> None:
        """Store fresh predictions by canonical key (best effort)."""
        now = self._now()
        created_at = utc_iso(now, precision="seconds")
        expires_at = str(int(now) + self.ttl_seconds)
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": cache_key(model_version, canonical)},
                        "model_version": {"S": model_version},
                        "label": {"S": prediction.label},
                        "probabilities": {"S": json.dumps(prediction.probabilities, separators=(",", ":"))},
                        "created_at": {"S": created_at},
                        TTL_ATTRIBUTE: {"N": expires_at},
                    }
                }
            }
            for canonical, prediction in predictions.items()
        ]
        try:
            for chunk in _chunks(requests, WRITE_BATCH):
                self._batch_write(chunk)
        except (ClientError, BotoCoreError, CacheUnavailable) as error:
            self.report("write", error)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.table_name: requests}
        for attempt in range(self.max_attempts):
            response = self.client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            aws.backoff(attempt, max_attempts=self.max_attempts, base_delay=self.base_delay, sleep=self._sleep)
        raise CacheUnavailable(f"{len(pending[self.table_name])} items still unwritten after retries")

    def report(self, operation: str, error: Exception) -> None:
        logger.warning(
            "prediction cache unavailable; answering from the model",
            extra={"operation": operation, "error": aws.error_code(error), "table": self.table_name},
        )
        metrics.add_metric(name="CacheErrors", unit=MetricUnit.Count, value=1)


def _parse_item(item: Mapping[str, Any], now: float) -> Prediction | None:
    """A stored prediction, or None when expired or malformed (treated as a miss)."""
    try:
        if float(item[TTL_ATTRIBUTE]["N"]) <= now:
            return None
        probabilities = json.loads(item["probabilities"]["S"])
        return Prediction(label=item["label"]["S"], probabilities={str(k): float(v) for k, v in probabilities.items()})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
