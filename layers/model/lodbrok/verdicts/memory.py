"""Verdict memory: a corrected input is answered with its verdict at once, not at the next promotion.

Trust decides reach. A reviewer's verdict answers every client; a `feedback` verdict (an untrusted report)
answers only the client who sent it, so no client can change another client's answers. A verdict without a
verified sender (`lodbrok.verdicts.attestation`: one a producer wrote to the queue directly) is learned through the
gate like any other, but never remembered.

Item layout (table key `pk`, a string; TTL attribute `expires_at`):

    pk          S  sha256 hex of canonical_key(input), as in the prediction cache (no input text is stored),
                   followed by "#" and the sender's API key id for a feedback verdict
    label       S  the verdict's label
    verdict_id  S  the client's id of the verdict (answered only to that client)
    sender      S  the API key id of the verdict's sender, when known
    decided_at  S  when the API received the verdict (server time, UTC ISO 8601); a later verdict replaces it
    expires_at  N  epoch seconds: a safety net for entries no promoted model ever learns

and one counter per UTC day and sender (`pk` = "cap#<day>#<sender>", or "#*" for reviewers together) that
caps how many entries a day may add (`VerdictMemoryCapped`): past the cap a verdict is still archived and
learned, it only does not answer at once.

The retrain function writes an entry once a verdict is archived and passed the screening (a held verdict
enters only when a reviewer accepts it, through `lodbrok held accept`), and deletes it when a promoted model
answers that input with the verdict's label, and `lodbrok memory list|forget` shows and removes entries. A
rollback deletes nothing: the predict function ignores an entry decided outside the active model's lineage
(`lodbrok.registry.lineage`), so entries made under the versions a rollback undid stop answering at once, and the
retrain function does not write them. The predict function reads both entries of each input (everyone's and
the caller's own) in the same BatchGetItem call as the prediction cache; the latest wins over a cached or
computed answer. Exact inputs only: near-duplicates are the model's job. Best effort on both sides: a failing
table is logged and counted (VerdictMemoryErrors), and predictions are answered by the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.access.roles import Role
from lodbrok.model.features import canonical_key, input_digest
from lodbrok.observability import MetricUnit, logger, metrics
from lodbrok.verdicts.attestation import Provenance
from lodbrok.verdicts.verdict import Verdict

TTL_ATTRIBUTE = "expires_at"
CAP_PREFIX = "cap#"
_CAP_TTL_SECONDS = 2 * 86_400
EVERYONE = "*"  # the counter of reviewers' entries, which answer everyone


@dataclass(frozen=True)
class RememberedVerdict:
    label: str
    verdict_id: str
    decided_at: str
    sender: str | None = None

    def id_for(self, caller: str | None) -> str | None:
        """The verdict's id as `caller` may see it: only its own sender does."""
        return self.verdict_id if caller is not None and self.sender == caller else None


@dataclass(frozen=True)
class MemoryEntry:
    pk: str
    label: str
    verdict_id: str
    decided_at: str
    sender: str | None
    expires_at: int


def entry_key(key: str, *, everyone: bool, sender: str | None) -> str | None:
    """The `pk` of a verdict's entry on the input with canonical key `key`: everyone's for a reviewer's
    verdict, the sender's own for feedback; None when it has no entry (feedback from no known sender)."""
    digest = input_digest(key)
    if everyone:
        return digest
    return f"{digest}#{sender}" if sender else None


class VerdictMemory:
    def __init__(
        self,
        table_name: str,
        *,
        client: Any,
        ttl_seconds: int = 90 * 86_400,
        client_daily_cap: int = 200,
        global_daily_cap: int = 5_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.client_daily_cap = client_daily_cap
        self.global_daily_cap = global_daily_cap
        self._now = now

    # --- predict side -------------------------------------------------------------------------------------------

    def read_request(self, canonical_keys: Iterable[str], caller: str | None) -> dict[str, Any]:
        """This table's part of a BatchGetItem request for these inputs: everyone's entry and `caller`'s own."""
        keys = [
            pk
            for key in dict.fromkeys(canonical_keys)
            for pk in (entry_key(key, everyone=True, sender=None), entry_key(key, everyone=False, sender=caller))
            if pk is not None
        ]
        return {
            "Keys": [{"pk": {"S": pk}} for pk in keys],
            "ProjectionExpression": "pk, label, verdict_id, decided_at, sender, #expires",
            "ExpressionAttributeNames": {"#expires": TTL_ATTRIBUTE},
        }

    def parse(
        self, items: Sequence[Mapping[str, Any]], canonical_keys: Iterable[str], caller: str | None
    ) -> dict[str, RememberedVerdict]:
        """Unexpired entries of a BatchGetItem response, by canonical key; of two, the later decided wins."""
        by_pk: dict[str, str] = {}
        for key in canonical_keys:
            for pk in (entry_key(key, everyone=True, sender=None), entry_key(key, everyone=False, sender=caller)):
                if pk is not None:
                    by_pk[pk] = key
        now = self._now()
        found: dict[str, RememberedVerdict] = {}
        for item in items:
            try:
                if float(item[TTL_ATTRIBUTE]["N"]) <= now:
                    continue
                key = by_pk[item["pk"]["S"]]
                entry = RememberedVerdict(
                    item["label"]["S"],
                    item["verdict_id"]["S"],
                    item["decided_at"]["S"],
                    item.get("sender", {}).get("S"),
                )
            except (KeyError, TypeError, ValueError):
                continue
            if key not in found or found[key].decided_at < entry.decided_at:
                found[key] = entry
        return found

    # --- retrain side -------------------------------------------------------------------------------------------

    def remember(self, taught: Sequence[tuple[Verdict, Provenance]]) -> int:
        """Write an entry per verdict within its day's cap unless a later verdict on the same input is there;
        returns how many. A verdict from no known sender is not remembered (its reach is nobody's)."""
        expires_at = str(int(self._now()) + self.ttl_seconds)
        writes = []
        for verdict, provenance in taught:
            everyone = provenance.role.allows(Role.REVIEWER)
            pk = entry_key(canonical_key(verdict.input), everyone=everyone, sender=provenance.sender)
            if pk is None or not self._within_cap(EVERYONE if everyone else str(provenance.sender)):
                continue
            item = {
                "pk": {"S": pk},
                "label": {"S": verdict.label},
                "verdict_id": {"S": verdict.id},
                "decided_at": {"S": provenance.received_at},
                TTL_ATTRIBUTE: {"N": expires_at},
            }
            if provenance.sender:
                item["sender"] = {"S": provenance.sender}
            writes.append(
                {
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk) OR decided_at <= :decided",
                    "ExpressionAttributeValues": {":decided": {"S": provenance.received_at}},
                }
            )
        return self._each_if(self.client.put_item, writes, "write")

    def _within_cap(self, counter: str) -> bool:
        """Count one more entry for `counter` today; False (counted as VerdictMemoryCapped) past its cap.

        A counted entry whose write then loses to a later verdict still counts: the cap errs on the safe side."""
        cap = self.global_daily_cap if counter == EVERYONE else self.client_daily_cap
        day = datetime.fromtimestamp(self._now(), UTC).strftime("%Y-%m-%d")
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"{CAP_PREFIX}{day}#{counter}"}},
                UpdateExpression="ADD entries :one SET #expires = :expires",
                ConditionExpression="attribute_not_exists(entries) OR entries < :cap",
                ExpressionAttributeNames={"#expires": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":cap": {"N": str(cap)},
                    ":expires": {"N": str(int(self._now()) + _CAP_TTL_SECONDS)},
                },
            )
        except (ClientError, BotoCoreError) as error:
            if aws.error_code(error) != "ConditionalCheckFailedException":
                self.report("count", error)
                return False
            metrics.add_metric(name="VerdictMemoryCapped", unit=MetricUnit.Count, value=1)
            return False
        return True

    def forget_learned(self, learned: Sequence[tuple[str, Verdict]]) -> int:
        """Delete the entries of verdicts a promoted model now answers right, unless a newer verdict replaced them.

        `learned` holds (entry `pk`, verdict) pairs."""
        deletes = [
            {
                "Key": {"pk": {"S": pk}},
                "ConditionExpression": "verdict_id = :id AND label = :label",
                "ExpressionAttributeValues": {":id": {"S": verdict.id}, ":label": {"S": verdict.label}},
            }
            for pk, verdict in learned
        ]
        return self._each_if(self.client.delete_item, deletes, "delete")

    # --- operators ----------------------------------------------------------------------------------------------

    def entries(self) -> Iterator[MemoryEntry]:
        """Every entry (a Scan: for operators, not for serving), unexpired or not, counters left out."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table_name,
            FilterExpression="NOT begins_with(pk, :cap)",
            ExpressionAttributeValues={":cap": {"S": CAP_PREFIX}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield MemoryEntry(
                    pk=item["pk"]["S"],
                    label=item.get("label", {}).get("S", ""),
                    verdict_id=item.get("verdict_id", {}).get("S", ""),
                    decided_at=item.get("decided_at", {}).get("S", ""),
                    sender=item.get("sender", {}).get("S"),
                    expires_at=int(float(item.get(TTL_ATTRIBUTE, {}).get("N", "0"))),
                )

    def forget(self, digest: str, *, sender: str | None = None) -> int:
        """Delete the entries of the input with this digest: `sender`'s own, or (no sender) every one."""
        if sender is not None:
            pks = [f"{digest}#{sender}"]
        else:
            pks = [entry.pk for entry in self.entries() if entry.pk.split("#", 1)[0] == digest]
        deleted = 0
        for pk in pks:
            response = self.client.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}}, ReturnValues="ALL_OLD")
            deleted += bool(response.get("Attributes"))
        return deleted

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
