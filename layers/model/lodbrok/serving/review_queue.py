"""The review queue: answers too close to call, kept for people to label (the reviewer's console, issue 31).

A predict request that asks for it (`"review": true`) leaves each item answered with the decision `review`
here, one entry per distinct input (by the digest of its `canonical_key`; a repeat only counts `seen`), with
the model's scores, its explanation when one was computed, the first client that sent it, and a TTL. This is
the one table that keeps user text, so: the table is encrypted with a KMS key of the stack (template.yaml,
`ReviewQueueKey`), entries expire after `REVIEW_QUEUE_TTL_SECONDS`, and nothing here ever logs an input, an id
or a label: counts only.

Table layout (key `pk`, TTL attribute `expires_at`; index `by_priority` on `queue` + `priority`):

    pk           S  sha256 of the input's canonical key (32 hex characters): one entry per distinct input
    queue        S  "open": the index's one partition, so "most uncertain first" is one Query
    priority     S  "<skips, 4 digits>#<margin, 6 decimals>#<pk>": never-skipped items first, then the smallest
                    margin between the two most probable labels (the most uncertain), ties by pk
    margin       N  that margin, kept so a skip can rebuild the priority
    skips        N  how often a reviewer skipped it
    input        S  the item as JSON (a text, or a flat record)
    label        S  the model's label; probabilities S (JSON); explanation S (JSON, optional)
    client       S  the first caller that sent it ("key#<api key id>" or "ip#<address>")
    seen         N  how many predict requests asked for this input to be reviewed
    model_version, first_at, last_at  S
    expires_at   N  epoch seconds (last asked + REVIEW_QUEUE_TTL_SECONDS)

Writes are best effort, like the cache's: a failing table is logged by error type, counted as
`ReviewQueueErrors`, and the prediction is answered all the same.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.clock import utc_iso
from lodbrok.model.features import canonical_key
from lodbrok.model.items import ModelInput
from lodbrok.observability import MetricUnit, error_fields, logger, metrics

OPEN = "open"
INDEX = "by_priority"
TTL_ATTRIBUTE = "expires_at"


class ReviewItemNotFound(LookupError):
    """No open entry has this id (labelled, expired, or never queued)."""


@dataclass(frozen=True)
class Candidate:
    """One answer to queue: the input and what the model said about it."""

    input: ModelInput
    label: str
    probabilities: dict[str, float]
    explanation: dict[str, Any] | None = None


@dataclass(frozen=True)
class QueuedItem:
    id: str
    input: ModelInput
    label: str
    probabilities: dict[str, float]
    explanation: dict[str, Any] | None
    client: str
    seen: int
    skips: int
    first_at: str
    model_version: str


def item_id(item: ModelInput) -> str:
    return hashlib.sha256(canonical_key(item).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def margin(probabilities: dict[str, float]) -> float:
    """The gap between the two most probable labels: the smaller, the more uncertain."""
    top = [*sorted(probabilities.values(), reverse=True), 0.0]
    return round(top[0] - top[1], 6)


def _priority(skips: int, gap: float, pk: str) -> str:
    return f"{skips:04d}#{gap:.6f}#{pk}"


class ReviewQueue:
    def __init__(
        self, table_name: str, *, ttl_seconds: int, client: Any = None, now: Callable[[], float] = time.time
    ) -> None:
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self.client = client or aws.client("dynamodb", aws.PREDICT_CONFIG)
        self._now = now

    def enqueue(self, candidates: Sequence[Candidate], *, client: str, model_version: str) -> int:
        """Queue each candidate (one entry per distinct input, a repeat counted); how many entries are new."""
        distinct: dict[str, Candidate] = {}  # the first spelling of each input, as the cache keeps it
        for candidate in candidates:
            distinct.setdefault(item_id(candidate.input), candidate)
        added = 0
        try:
            for candidate in distinct.values():
                added += self._put(candidate, client=client, model_version=model_version)
        except (ClientError, BotoCoreError) as error:
            metrics.add_metric(name="ReviewQueueErrors", unit=MetricUnit.Count, value=1)
            logger.warning("review queue write failed", extra=error_fields(error))
            return added
        metrics.add_metric(name="ReviewItemsQueued", unit=MetricUnit.Count, value=added)
        if added:
            self.report_depth()
        return added

    def _put(self, candidate: Candidate, *, client: str, model_version: str) -> bool:
        pk = item_id(candidate.input)
        now = self._now()
        gap = margin(candidate.probabilities)
        values: dict[str, Any] = {
            ":input": {"S": json.dumps(candidate.input, ensure_ascii=False)},
            ":label": {"S": candidate.label},
            ":probabilities": {"S": json.dumps(candidate.probabilities)},
            ":client": {"S": client},
            ":version": {"S": model_version},
            ":now": {"S": utc_iso(now)},
            ":expires": {"N": str(int(now) + self.ttl_seconds)},
            ":open": {"S": OPEN},
            ":priority": {"S": _priority(0, gap, pk)},
            ":margin": {"N": str(gap)},
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
        }
        sets = [
            "#input = if_not_exists(#input, :input)",
            "label = :label",
            "probabilities = :probabilities",
            "client = if_not_exists(client, :client)",
            "model_version = :version",
            "first_at = if_not_exists(first_at, :now)",
            "last_at = :now",
            f"{TTL_ATTRIBUTE} = :expires",
            "#queue = :open",
            "priority = if_not_exists(priority, :priority)",
            "margin = if_not_exists(margin, :margin)",
            "skips = if_not_exists(skips, :zero)",
        ]
        if candidate.explanation is not None:
            values[":explanation"] = {"S": json.dumps(candidate.explanation)}
            sets.append("explanation = :explanation")
        response = self.client.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": pk}},
            UpdateExpression="SET " + ", ".join(sets) + " ADD seen :one",
            ExpressionAttributeNames={"#input": "input", "#queue": "queue"},
            ExpressionAttributeValues=values,
            ReturnValues="UPDATED_OLD",
        )
        return "seen" not in response.get("Attributes", {})

    def next_items(self, limit: int) -> list[QueuedItem]:
        """The open entries, most uncertain first (skipped ones last), leaving out expired ones."""
        now = int(self._now())
        items: list[QueuedItem] = []
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": INDEX,
            "KeyConditionExpression": "#queue = :open",
            "ExpressionAttributeNames": {"#queue": "queue"},
            "ExpressionAttributeValues": {":open": {"S": OPEN}},
        }
        while len(items) < limit:
            page = self.client.query(**arguments, Limit=limit)
            items += [_parse(raw) for raw in page.get("Items", []) if int(raw[TTL_ATTRIBUTE]["N"]) > now]
            if "LastEvaluatedKey" not in page:
                break
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit]

    def depth(self) -> int:
        """How many entries are open (expired ones DynamoDB has not deleted yet are counted out)."""
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": INDEX,
            "KeyConditionExpression": "#queue = :open",
            "FilterExpression": f"{TTL_ATTRIBUTE} > :now",
            "ExpressionAttributeNames": {"#queue": "queue"},
            "ExpressionAttributeValues": {":open": {"S": OPEN}, ":now": {"N": str(int(self._now()))}},
            "Select": "COUNT",
        }
        count = 0
        while True:
            page = self.client.query(**arguments)
            count += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return count
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def report_depth(self) -> int:
        """The depth, also published as the `ReviewQueueDepth` metric (the queue-growth alarm watches it)."""
        count = self.depth()
        metrics.add_metric(name="ReviewQueueDepth", unit=MetricUnit.Count, value=count)
        return count

    def get(self, pk: str) -> QueuedItem:
        raw = self.client.get_item(TableName=self.table_name, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        if raw is None or int(raw[TTL_ATTRIBUTE]["N"]) <= int(self._now()):
            raise ReviewItemNotFound(f"no open review item has the id {pk!r}; it was labelled or has expired")
        return _parse(raw)

    def remove(self, pk: str) -> None:
        """Take a labelled entry out of the queue (removing one already gone changes nothing)."""
        self.client.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}})

    def skip(self, pk: str) -> QueuedItem:
        """Put an entry behind every entry skipped fewer times, so the next one comes up."""
        item = self.get(pk)
        skips = item.skips + 1
        self.client.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": pk}},
            UpdateExpression="SET skips = :skips, priority = :priority",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={
                ":skips": {"N": str(skips)},
                ":priority": {"S": _priority(skips, margin(item.probabilities), pk)},
            },
        )
        return item


def _parse(raw: dict[str, Any]) -> QueuedItem:
    explanation = raw.get("explanation", {}).get("S")
    return QueuedItem(
        id=raw["pk"]["S"],
        input=json.loads(raw["input"]["S"]),
        label=raw["label"]["S"],
        probabilities=json.loads(raw["probabilities"]["S"]),
        explanation=json.loads(explanation) if explanation else None,
        client=raw.get("client", {}).get("S", ""),
        seen=int(raw.get("seen", {}).get("N", "1")),
        skips=int(raw.get("skips", {}).get("N", "0")),
        first_at=raw.get("first_at", {}).get("S", ""),
        model_version=raw.get("model_version", {}).get("S", ""),
    )
