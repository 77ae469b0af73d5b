"""Client roles: what each API key may do, and where the predict function reads it.

Roles are ordered, each allowing what the ones below it allow:

    predict   < feedback              < reviewer                        < admin
    classify,   also send verdicts      also send trusted verdicts that     everything
    model info, (untrusted reports that answer every client at once
    own calls   answer only the sender)

API Gateway authenticates keys and throttles them through the usage plan; the predict function authorises.
A client's role lives in the clients table (key `key_id`, the API key id; `name`, `role`, `updated_at`),
written by the operator commands `lodbrok clients add|role|revoke` (`lodbrok.access.api_keys`). The function reads
the caller's role by the `apiKeyId` of the request context with one GetItem, kept per key id for
`ROLE_CACHE_SECONDS` in the warm container, so a role change reaches every container within that time. A key
with no entry is `predict`: least privilege.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.clock import utc_iso


class Role(StrEnum):
    PREDICT = "predict"
    FEEDBACK = "feedback"
    REVIEWER = "reviewer"
    ADMIN = "admin"

    def allows(self, required: Role) -> bool:
        """This role may do what `required` may."""
        order = list(Role)
        return order.index(self) >= order.index(required)


class RolesUnavailable(Exception):
    """The clients table could not be read; no role can be decided."""


class ClientRoles:
    """The clients table: one item per API key id with the client's name and role."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table_name = table_name
        self.client = client or aws.client("dynamodb")
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Role]] = {}

    def role_of(self, key_id: str | None) -> Role:
        """The role of the key with this id (`predict` when it has no entry, or there is no key)."""
        if not key_id:
            return Role.PREDICT
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            item = self.client.get_item(TableName=self.table_name, Key={"key_id": {"S": key_id}}).get("Item") or {}
        except (ClientError, BotoCoreError) as error:
            raise RolesUnavailable(f"the clients table cannot be read ({aws.error_code(error)})") from error
        role = _role(item.get("role", {}).get("S"))
        self._cache[key_id] = (now, role)
        return role

    def put(self, key_id: str, name: str, role: Role) -> None:
        item = {"key_id": {"S": key_id}, "name": {"S": name}, "role": {"S": role.value}, "updated_at": {"S": utc_iso()}}
        self.client.put_item(TableName=self.table_name, Item=item)

    def delete(self, key_id: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"key_id": {"S": key_id}})

    def all(self) -> dict[str, tuple[str, Role]]:
        """Every entry: key id -> (name, role)."""
        entries = {}
        for page in self.client.get_paginator("scan").paginate(TableName=self.table_name):
            for item in page.get("Items", []):
                entries[item["key_id"]["S"]] = (item.get("name", {}).get("S", ""), _role(item.get("role", {}).get("S")))
        return entries


def _role(value: str | None) -> Role:
    """A stored role; anything unknown is the least privilege."""
    try:
        return Role(value or Role.PREDICT)
    except ValueError:
        return Role.PREDICT
