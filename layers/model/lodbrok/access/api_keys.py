"""API clients: one API Gateway key per client, in the stack's usage plan, and its role.

Each client gets its own key, so the call log (keyed by API Gateway's `apiKeyId`) shows a client only its
own calls, and one client can be revoked without touching the others. A revoked key is removed from the
usage plan and disabled, so API Gateway refuses it at once; it is kept (disabled) for the audit trail, and
its role entry is deleted. Each key's role (`lodbrok.access.roles`) is an entry of the clients table, set when the
key is made and changed without a new key. These are operator commands (`lodbrok clients
add|list|role|revoke`), run with the operator's IAM credentials; the functions never manage keys. The local
stack keeps its keys in the emulated API Gateway and checks requests with `authorize`, as API Gateway does.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lodbrok import aws
from lodbrok.access.roles import ClientRoles, Role

CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ClientKeyError(Exception):
    """A client operation that cannot be done (unknown or duplicate name, invalid name)."""


@dataclass(frozen=True)
class ApiClient:
    name: str
    key_id: str
    enabled: bool
    role: Role = Role.PREDICT


@dataclass(frozen=True)
class NewClient:
    name: str
    key_id: str
    key: str  # the secret value, shown once
    role: Role = Role.PREDICT


class ClientKeys:
    def __init__(self, usage_plan_id: str, apigateway: Any = None, roles: ClientRoles | None = None) -> None:
        self.usage_plan_id = usage_plan_id
        self.apigateway = apigateway or aws.client("apigateway")
        self.roles = roles  # without a clients table every key is `predict`

    def add(self, name: str, key: str | None = None, role: Role = Role.PREDICT) -> NewClient:
        """Create an enabled key for a new client with `role`, in the usage plan (its throttle and quota)."""
        self._check_can_record(role)
        if not CLIENT_NAME.fullmatch(name):
            raise ClientKeyError(f"invalid client name {name!r}: letters, digits, '_', '.', '-', at most 64")
        if any(client.name == name for client in self.list()):
            raise ClientKeyError(f"client {name!r} already has a key; revoke it first to issue a new one")
        created = self.apigateway.create_api_key(
            name=name,
            enabled=True,
            value=key or secrets.token_urlsafe(30),
            tags={"lodbrok-client": name},
        )
        if self.roles is not None:
            self.roles.put(created["id"], name, role)
        self.apigateway.create_usage_plan_key(usagePlanId=self.usage_plan_id, keyId=created["id"], keyType="API_KEY")
        return NewClient(name=name, key_id=created["id"], key=created["value"], role=role)

    def list(self) -> list[ApiClient]:
        """The clients whose keys are in the usage plan, by name, with their roles."""
        roles = self.roles.all() if self.roles is not None else {}
        clients = [
            ApiClient(
                name=entry["name"],
                key_id=entry["id"],
                enabled=self._enabled(entry["id"]),
                role=roles.get(entry["id"], ("", Role.PREDICT))[1],
            )
            for entry in self._plan_keys()
        ]
        return sorted(clients, key=lambda client: client.name)

    def key_id_of(self, name: str) -> str:
        matches = [entry["id"] for entry in self._plan_keys() if entry["name"] == name]
        if not matches:
            raise ClientKeyError(f"no client {name!r} in usage plan {self.usage_plan_id}")
        return str(matches[0])

    def set_role(self, name: str, role: Role) -> ApiClient:
        """Change a client's role, keeping its key; every warm function sees it within ROLE_CACHE_SECONDS."""
        self._check_can_record(role)
        key_id = self.key_id_of(name)
        if self.roles is not None:
            self.roles.put(key_id, name, role)
        return ApiClient(name=name, key_id=key_id, enabled=self._enabled(key_id), role=role)

    def _check_can_record(self, role: Role) -> None:
        if self.roles is None and role != Role.PREDICT:
            raise ClientKeyError(f"no clients table: the role {role!s} cannot be recorded (every key is predict)")

    def revoke(self, name: str) -> ApiClient:
        """Remove the client's key from the usage plan and disable it; its next request is refused."""
        key_id = self.key_id_of(name)
        self.apigateway.delete_usage_plan_key(usagePlanId=self.usage_plan_id, keyId=key_id)
        self.apigateway.update_api_key(
            apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
        )
        if self.roles is not None:
            self.roles.delete(key_id)
        return ApiClient(name=name, key_id=key_id, enabled=False)

    def authorize(self, key: str | None) -> str | None:
        """The key id of an enabled key in the usage plan with this value, else None (API Gateway's 403)."""
        if not key:
            return None
        for entry in self._plan_keys():
            if secrets.compare_digest(entry.get("value", ""), key) and self._enabled(entry["id"]):
                return str(entry["id"])
        return None

    def _plan_keys(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        paginator = self.apigateway.get_paginator("get_usage_plan_keys")
        try:
            for page in paginator.paginate(usagePlanId=self.usage_plan_id):
                entries.extend(page.get("items", []))
        except ClientError as error:
            if aws.error_code(error) == "NotFoundException":
                raise ClientKeyError(f"usage plan {self.usage_plan_id!r} does not exist") from error
            raise
        return entries

    def _enabled(self, key_id: str) -> bool:
        return bool(self.apigateway.get_api_key(apiKey=key_id).get("enabled"))
