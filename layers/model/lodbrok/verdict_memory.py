"""Verdict memory: a corrected input is answered with its verdict at once, not at the next promotion.

Item layout (table key `pk`, a string; TTL attribute `expires_at`):

    pk          S  sha256 hex of canonical_key(input), as in the prediction cache: no input text is stored
    label       S  the verdict's label
    verdict_id  S  the client's id of the verdict
    decided_at  S  when the API accepted the verdict (UTC ISO 8601); a later verdict on the input replaces it
    expires_at  N  epoch seconds: a safety net for entries no promoted model ever learns

The retrain function writes an entry once a verdict is archived and passed the screening (a held verdict
enters only when a reviewer accepts it, through `lodbrok held accept`), and deletes it when a promoted model
answers that input with the verdict's label. A rollback deletes nothing: the predict function ignores an entry
decided outside the active model's lineage (`lodbrok.lineage`), so entries made under the versions a rollback
undid stop answering at once, and the retrain function does not write them. The predict function reads entries
in the same BatchGetItem call as the prediction cache, and an entry wins over a cached or computed answer.
Exact inputs only: near-duplicates are the model's job. Best effort on both sides: a failing table is
logged and counted (VerdictMemoryErrors), and predictions are answered by the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.clock import utc_iso
from lodbrok.features import canonical_key, input_digest
from lodbrok.observability import MetricUnit, logger, metrics
from lodbrok.verdicts import Verdict

TTL_ATTRIBUTE = "expires_at"


@dataclass(frozen=True)
class RememberedVerdict:
    label: str
    verdict_id: str
    decided_at: str


class VerdictMemory:
    def __init__(self, table_name: str, *, client: Any, ttl_seconds: int = 90 * 86_400, now: Any = time.time) -> None:
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds
        self._now = now

    # --- predict side -------------------------------------------------------------------------------------------

    def read_request(self, canonical_keys: Iterable[str]) -> dict[str, Any]:
        """This table's part of a BatchGetItem request for these inputs."""
        return {
            "Keys": [{"pk": {"S": input_digest(key)}} for key in dict.fromkeys(canonical_keys)],
            "ProjectionExpression": "pk, label, verdict_id, decided_at, #expires",
            "ExpressionAttributeNames": {"#expires": TTL_ATTRIBUTE},
        }

    def parse(self, items: Sequence[Mapping[str, Any]], canonical_keys: Iterable[str]) -> dict[str, RememberedVerdict]:
        """Unexpired entries of a BatchGetItem response, by canonical key."""
        by_digest = {input_digest(key): key for key in canonical_keys}
        now = self._now()
        found = {}
        for item in items:
            try:
                if float(item[TTL_ATTRIBUTE]["N"]) <= now:
                    continue
                found[by_digest[item["pk"]["S"]]] = RememberedVerdict(
                    item["label"]["S"], item["verdict_id"]["S"], item["decided_at"]["S"]
                )
            except (KeyError, TypeError, ValueError):
                continue
        return found

    # --- retrain side -------------------------------------------------------------------------------------------

    def remember(self, verdicts: Sequence[Verdict]) -> int:
        """Write an entry per verdict unless a later verdict on the same input is there; returns how many."""
        expires_at = str(int(self._now()) + self.ttl_seconds)
        writes = []
        for verdict in verdicts:
            decided_at = verdict.received_at or utc_iso(self._now())
            writes.append(
                {
                    "Item": {
                        "pk": {"S": input_digest(canonical_key(verdict.input))},
                        "label": {"S": verdict.label},
                        "verdict_id": {"S": verdict.id},
                        "decided_at": {"S": decided_at},
                        TTL_ATTRIBUTE: {"N": expires_at},
                    },
                    "ConditionExpression": "attribute_not_exists(pk) OR decided_at <= :decided",
                    "ExpressionAttributeValues": {":decided": {"S": decided_at}},
                }
            )
        return self._each_if(self.client.put_item, writes, "write")

    def forget_learned(self, learned: Sequence[tuple[str, Verdict]]) -> int:
        """Delete the entries of verdicts a promoted model now answers right, unless a newer verdict replaced them.

        `learned` holds (canonical key, verdict) pairs."""
        deletes = [
            {
                "Key": {"pk": {"S": input_digest(key)}},
                "ConditionExpression": "verdict_id = :id AND label = :label",
                "ExpressionAttributeValues": {":id": {"S": verdict.id}, ":label": {"S": verdict.label}},
            }
            for key, verdict in learned
        ]
        return self._each_if(self.client.delete_item, deletes, "delete")

    def _each_if(self, operation: Callable[..., Any], requests: Sequence[dict[str, Any]], name: str) -> int:
        """Run each conditional request; a failed condition skips it, any other failure stops (reported)."""
        done = 0
        for request in requests:
            try:
                operation(TableName=self.table_name, **request)
                done += 1
            except ClientError as error:
                if aws.error_code(error) != "ConditionalCheckFailedException":  # else: a newer verdict holds the entry
                    self.report(name, error)
                    return done
            except BotoCoreError as error:
                self.report(name, error)
                return done
        return done

    def report(self, operation: str, error: Exception) -> None:
        logger.warning(
            "verdict memory unavailable; answering from the model",
            extra={"operation": operation, "error": aws.error_code(error), "table": self.table_name},
        )
        metrics.add_metric(name="VerdictMemoryErrors", unit=MetricUnit.Count, value=1)
