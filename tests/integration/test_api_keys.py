"""One API key per client: the keys in the usage plan, the CLI that manages them, and the call log they key."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack.gateway import LocalGateway
from devstack.resources import create_resources, create_table
from devstack.template import Template
from lodbrok.access.api_keys import ClientKeyError, ClientKeys
from lodbrok.access.roles import ClientRoles, Role
from lodbrok.model.bundle import Bundle
from lodbrok.registry.signing import BundleSigner
from lodbrok.registry.store import ModelStore
from lodbrok.settings import get_settings
from lodbrok_cli.main import main

FUNCTION_MODULE = "lodbrok_function_PredictFunction"  # where devstack.template imports the handler


@pytest.fixture
def usage_plan(aws: None) -> str:
    return str(boto3.client("apigateway").create_usage_plan(name="lodbrok-test-usage-plan")["id"])


def test_clients_get_their_own_keys_and_a_revoked_key_is_refused(usage_plan: str) -> None:
    keys = ClientKeys(usage_plan)
    # When two clients are added
    alice, bob = keys.add("alice"), keys.add("bob")
    # Then each has its own enabled key in the usage plan, and each key authorizes as itself
    assert alice.key != bob.key and alice.key_id != bob.key_id
    assert [(client.name, client.enabled) for client in keys.list()] == [("alice", True), ("bob", True)]
    assert keys.authorize(alice.key) == alice.key_id and keys.authorize(bob.key) == bob.key_id
    assert keys.authorize("not-a-key") is None and keys.authorize(None) is None
    # When alice is revoked
    revoked = keys.revoke("alice")
    # Then her key no longer authorizes and leaves the plan (disabled, kept for the audit trail); bob is untouched
    assert revoked.key_id == alice.key_id and not revoked.enabled
    assert keys.authorize(alice.key) is None and keys.authorize(bob.key) == bob.key_id
    assert [client.name for client in keys.list()] == ["bob"]
    assert boto3.client("apigateway").get_api_key(apiKey=alice.key_id)["enabled"] is False


def test_clients_refuse_duplicate_unknown_and_invalid_names(usage_plan: str) -> None:
    keys = ClientKeys(usage_plan)
    keys.add("alice")
    with pytest.raises(ClientKeyError, match="already has a key"):
        keys.add("alice")
    with pytest.raises(ClientKeyError, match="no client 'carol'"):
        keys.revoke("carol")
    with pytest.raises(ClientKeyError, match="invalid client name"):
        keys.add("a b")


@pytest.fixture
def clients_table(aws: None) -> str:
    return create_table(Template(), "ClientsTable", "lodbrok-clients-keys-test")


def test_cli_adds_lists_changes_the_role_of_and_revokes_clients(
    usage_plan: str, clients_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--usage-plan", usage_plan, "--clients-table", clients_table]
    roles = ClientRoles(clients_table)
    # When an operator adds a client with the feedback role
    assert main(["clients", "add", "support-desk", "--role", "feedback", *options, "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    # Then the key is printed once, it authorizes, and its role is recorded by key id
    assert added["name"] == "support-desk" and ClientKeys(usage_plan).authorize(added["key"]) == added["key_id"]
    assert added["role"] == "feedback" and roles.role_of(added["key_id"]) == Role.FEEDBACK
    assert main(["clients", "list", *options]) == 0
    assert f"support-desk\t{added['key_id']}\tfeedback\tenabled" in capsys.readouterr().out
    # When its role is changed, the same key has the new role
    assert main(["clients", "role", "support-desk", "reviewer", *options]) == 0
    assert ClientRoles(clients_table).role_of(added["key_id"]) == Role.REVIEWER
    assert ClientKeys(usage_plan).authorize(added["key"]) == added["key_id"]
    # When it is revoked, and revoked again
    assert main(["clients", "revoke", "support-desk", *options]) == 0
    assert ClientKeys(usage_plan).authorize(added["key"]) is None
    assert ClientRoles(clients_table).role_of(added["key_id"]) == Role.PREDICT  # its entry is gone
    assert main(["clients", "revoke", "support-desk", *options]) == 2
    assert "no client 'support-desk'" in capsys.readouterr().err
    # And a client without a role is predict
    assert main(["clients", "add", "reader", *options, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["role"] == "predict"


def test_cli_clients_read_the_usage_plan_and_table_from_the_environment(
    usage_plan: str, clients_table: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no usage plan anywhere, then one in USAGE_PLAN_ID and the table in CLIENTS_TABLE (the banner's exports)
    get_settings.cache_clear()
    assert main(["clients", "list"]) == 2
    assert "set USAGE_PLAN_ID" in capsys.readouterr().err
    monkeypatch.setenv("USAGE_PLAN_ID", usage_plan)
    monkeypatch.setenv("CLIENTS_TABLE", clients_table)
    get_settings.cache_clear()
    # When a client is added with no option naming them; Then it is in that plan, with its role in that table
    assert main(["clients", "add", "desk", "--role", "feedback", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert ClientKeys(usage_plan).authorize(added["key"]) == added["key_id"]
    assert ClientRoles(clients_table).role_of(added["key_id"]) == Role.FEEDBACK
    get_settings.cache_clear()


@pytest.fixture
def gateway(aws: None, tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalGateway, Any]]:
    """The predict function behind the local gateway, with the call log on, wired from template.yaml."""
    template = Template(parameter_overrides={"CallLogEnabled": "true"})
    created = create_resources(template)
    environment = template.environment("PredictFunction")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    signer = BundleSigner(environment["MODEL_SIGNING_KEY"])
    ModelStore(environment["MODEL_BUCKET"], signer=signer).publish(tiny_bundle, expected=None)
    keys = ClientKeys(created["LodbrokApiUsagePlan"])
    sys.modules.pop(FUNCTION_MODULE, None)  # a fresh "container" for this moto
    yield LocalGateway.from_template(template, "PredictFunction", keys.authorize), keys
    sys.modules.pop(FUNCTION_MODULE, None)
    get_settings.cache_clear()


def _call(gateway: LocalGateway, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    headers = {"x-api-key": key, "Content-Type": "application/json"}
    status, _, payload = gateway.invoke(method, path, headers, json.dumps(body).encode() if body else b"", "10.0.0.1")
    return status, json.loads(payload)


def test_call_log_shows_each_client_only_its_own_calls(gateway: tuple[LocalGateway, Any]) -> None:
    api, keys = gateway
    alice, bob = keys.add("alice"), keys.add("bob")
    # When alice makes a prediction
    assert _call(api, "POST", "/predict", alice.key, {"text": "see you at lunch"})[0] == 200
    # Then her call log holds it under her key id, and bob's holds nothing
    status, mine = _call(api, "GET", "/calls/recent", alice.key)
    assert status == 200 and mine["caller"] == f"key#{alice.key_id}" and len(mine["calls"]) == 1
    status, theirs = _call(api, "GET", "/calls/recent", bob.key)
    assert status == 200 and theirs["caller"] == f"key#{bob.key_id}" and theirs["calls"] == []
    # When alice is revoked, the gateway refuses her key as API Gateway does
    keys.revoke("alice")
    status, refused = _call(api, "GET", "/calls/recent", alice.key)
    assert status == 403 and refused["message"].startswith("Forbidden: send a valid API key in the x-api-key header")
