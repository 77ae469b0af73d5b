"""The reviewer's routes (lodbrok.serving.review_desk through `predict.app`), against moto resources built from
template.yaml: items answered `review` queued when a request asks, labelled into trusted verdicts through the path of
POST /verdicts, skipped; held verdicts judged as `lodbrok held` judges them; versions listed and rolled back by an
admin; the console page with its security headers; and the roles that guard each route."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from lodbrok.access.roles import ClientRoles, Role
from lodbrok.model.bundle import Bundle
from lodbrok.observability import logger
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.verdicts.archive import VerdictArchive
from lodbrok.verdicts.verdict import parse_message_body
from support import EVENT_KEY_ID, hold_verdict, load_event

MARKER = "QZXMARKER zorblax wallet airdrop"
EVERYTHING_REVIEWED = '{"spam": [0.0, 1.0]}'  # every answer is too close to call: each item goes to review


@pytest.fixture
def reviewing(api: Any, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REVIEW_BAND", EVERYTHING_REVIEWED)
    api.rebuild()
    return api


def _key_with_role(clients_table: str, key_id: str, role: Role) -> dict[str, str]:
    ClientRoles(clients_table, client=boto3.client("dynamodb")).put(key_id, key_id, role)
    return {"apiKeyId": key_id}


def _items(api: Any, kind: str = "review") -> Any:
    return api.call(load_event("review_items_get.json"), query={"kind": kind, "limit": "10"})


def test_review_queue_holds_what_a_request_asked_to_review_and_a_label_becomes_a_reviewers_verdict(
    reviewing: Any, queued_messages: Callable[[], list[str]]
) -> None:
    # Given one request that does not ask for review and one that does, with a text sent twice
    predict = load_event("predict_single.json")
    reviewing.call(predict, body={"text": "not asked"})
    answer = reviewing.call(predict, body={"texts": [MARKER, MARKER, "lunch at noon?"], "review": True})
    assert {p["decision"] for p in answer.body["predictions"]} == {"review"}

    # When a reviewer lists the queue
    listed = _items(reviewing)

    # Then the two distinct inputs of the asking request wait, each explained
    assert listed.status == 200, listed.body
    assert listed.body["remaining"] == 2
    assert {item["input"] for item in listed.body["items"]} == {MARKER, "lunch at noon?"}
    assert all(item["kind"] == "review" and item["explanation"]["towards"] for item in listed.body["items"])

    # When the reviewer labels the marker text
    item = next(item for item in listed.body["items"] if item["input"] == MARKER)
    done = reviewing.call(load_event("review_label_post.json"), body={"id": item["id"], "label": "spam"})

    # Then it is queued as a verdict attested with the reviewer's key and role, and leaves the review queue
    assert done.status == 200, done.body
    assert done.body["remaining"] == 1 and done.body["message_id"]
    [body] = queued_messages()
    message = parse_message_body(body, max_text_chars=5000, labels=None)
    assert [(v.text, v.label, v.source) for v in message.verdicts] == [(MARKER, "spam", "review-queue")]
    assert message.attestation["sender"] == EVENT_KEY_ID and message.attestation["role"] == "reviewer"
    assert [i["input"] for i in _items(reviewing).body["items"]] == ["lunch at noon?"]
    # And labelling it again says it is gone
    again = reviewing.call(load_event("review_label_post.json"), body={"id": item["id"], "label": "spam"})
    assert again.status == 404 and again.error["code"] == "review_item_not_found"


def test_review_label_refuses_a_label_the_model_lacks_and_keeps_the_item(reviewing: Any) -> None:
    # Given a queued item
    reviewing.call(load_event("predict_single.json"), body={"text": "what is this", "review": True})
    (item,) = _items(reviewing).body["items"]

    # When it is labelled with a label the model does not have
    refused = reviewing.call(load_event("review_label_post.json"), body={"id": item["id"], "label": "eggs"})

    # Then the verdict is refused as POST /verdicts refuses it, and the item still waits
    assert refused.status == 400 and refused.error["code"] == "invalid_verdicts"
    assert _items(reviewing).body["remaining"] == 1


def test_review_skip_puts_an_item_behind_the_others(reviewing: Any) -> None:
    # Given two queued items
    reviewing.call(load_event("predict_single.json"), body={"texts": ["first one", "second one"], "review": True})
    before = [item["id"] for item in _items(reviewing).body["items"]]

    # When the first is skipped
    skipped = reviewing.call(load_event("review_skip_post.json"), body={"id": before[0]})

    # Then it comes last, and nothing left the queue
    assert skipped.status == 200 and skipped.body["remaining"] == 2
    assert [item["id"] for item in _items(reviewing).body["items"]] == [before[1], before[0]]


def test_review_held_accepts_and_rejects_as_lodbrok_held_does(reviewing: Any, model_bucket: str) -> None:
    # Given two held verdicts in the archive
    archive = VerdictArchive(model_bucket, s3=boto3.client("s3"))
    accepted_key = hold_verdict(archive, "hold me and accept", "spam")
    rejected_key = hold_verdict(archive, "hold me and reject", "ham")
    listed = _items(reviewing, "held")
    assert listed.status == 200 and listed.body["remaining"] == 2
    assert {item["kind"] for item in listed.body["items"]} == {"held"}
    assert all(item["reason"] == "contradicts trusted data" for item in listed.body["items"])

    # When a reviewer accepts one and rejects the other
    event = load_event("review_held_post.json")
    accepted = reviewing.call(event, body={"key": accepted_key, "decision": "accept"})
    rejected = reviewing.call(event, body={"key": rejected_key, "decision": "reject", "note": "a lie"})

    # Then the first is archived again as trusted and answers at once, the second is only recorded
    assert accepted.status == 200, accepted.body
    assert accepted.body["status"] == "accepted" and accepted.body["answers_at_once"] is True
    assert rejected.body == {"key": rejected_key, "status": "rejected", "answers_at_once": False, "remaining": 0}
    assert {record["status"] for record in archive.held()} == {"accepted", "rejected"}
    answer = reviewing.call(load_event("predict_single.json"), body={"text": "hold me and accept"})
    assert answer.body["predictions"][0]["source"] == "verdict"
    # And a second decision, or a key outside the held verdicts, is refused
    assert reviewing.call(event, body={"key": accepted_key, "decision": "reject"}).status == 409
    outside = reviewing.call(event, body={"key": "models/default/active.lbk", "decision": "accept"})
    assert outside.status == 404 and outside.error["code"] == "held_verdict_not_found"


def test_model_versions_and_an_admins_rollback(
    reviewing: Any,
    model_store: ModelStore,
    tiny_bundle: Bundle,
    published_model: ModelRef,
    clients_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a stack that rolls back through the API, and a second version published over the first
    monkeypatch.setenv("API_ROLLBACK", "true")
    reviewing.rebuild()
    model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=model_store.head())
    versions = reviewing.call(load_event("model_versions_get.json"))
    assert versions.status == 200
    assert [v["is_active"] for v in versions.body["versions"]] == [True, False] and versions.body["rollback"] is True

    # When a reviewer tries to roll back, then an admin does
    rollback = load_event("model_rollback_post.json")
    reviewer = _key_with_role(clients_table, "reviewer-key", Role.REVIEWER)
    refused = reviewing.call(rollback, body={"to": published_model.version_id}, identity=reviewer)
    done = reviewing.call(rollback, body={"to": published_model.version_id})

    # Then only the admin's is done, as `lodbrok rollback` does it: a new version restoring the first
    assert refused.status == 403 and refused.error["details"] == [{"required_role": "admin", "role": "reviewer"}]
    assert done.status == 200, done.body
    assert done.body["restored"] == published_model.version_id
    head = reviewing.call(load_event("model_versions_get.json")).body["versions"][0]
    assert head["version_id"] == done.body["version_id"] and head["restored_from"] == published_model.version_id
    unknown = reviewing.call(rollback, body={"to": "no-such-version"})
    assert unknown.status == 404 and unknown.error["code"] == "unknown_version"


def test_model_rollback_is_refused_where_the_stacks_api_rollback_is_off(
    reviewing: Any, model_store: ModelStore, tiny_bundle: Bundle, published_model: ModelRef
) -> None:
    # Given a stack deployed with ApiRollback off (the default), and a second version published over the first
    second = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=model_store.head())

    # When an admin lists the versions and asks to roll back to the first
    versions = reviewing.call(load_event("model_versions_get.json"))
    refused = reviewing.call(load_event("model_rollback_post.json"), body={"to": published_model.version_id})

    # Then the listing says so, and the rollback is a JSON 403 naming the parameter and the CLI, not a 500
    assert versions.status == 200 and versions.body["rollback"] is False
    assert refused.status == 403, refused.body
    assert refused.error["code"] == "api_rollback_off"
    assert "ApiRollback" in refused.error["message"] and "lodbrok rollback" in refused.error["message"]
    # And nothing was written: the second version is still the active one, and the history is unchanged
    head = model_store.head()
    assert head is not None and head.version_id == second.version_id
    assert [v.version_id for v in model_store.versions()] == [second.version_id, published_model.version_id]


@pytest.mark.parametrize(
    "event_file",
    ["review_items_get.json", "review_label_post.json", "review_held_post.json", "model_versions_get.json"],
)
def test_reviewer_routes_refuse_a_predict_key(reviewing: Any, clients_table: str, event_file: str) -> None:
    # Given a key with the role predict
    viewer = _key_with_role(clients_table, "viewer-key", Role.PREDICT)

    # When it calls a reviewer's route
    response = reviewing.call(load_event(event_file), identity=viewer)

    # Then 403 says which role the route needs and which the key has
    assert response.status == 403
    assert response.error["details"] == [{"required_role": "reviewer", "role": "predict"}]


def test_console_page_needs_no_key_and_forbids_inline_script(api: Any) -> None:
    # When the page and its script are fetched without a key
    page = api.call(load_event("console_get.json"))
    script = api.call(load_event("console_script_get.json"))

    # Then both come with a Content-Security-Policy that allows only this origin and no inline script
    assert page.status == 200 and '<script src="console/console.js"' in page.body
    policy = page.headers["Content-Security-Policy"][0]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert script.status == 200 and script.headers["Content-Type"][0].startswith("text/javascript")
    # And the script never builds markup from data
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML\(|document\.write\(|eval\(", script.body)


def test_review_paths_never_log_the_texts(
    reviewing: Any, model_bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the structured log captured
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    key = hold_verdict(VerdictArchive(model_bucket, s3=boto3.client("s3")), f"{MARKER} held", "spam")

    # When a marker text is queued, listed, labelled, and a held one accepted
    reviewing.call(load_event("predict_single.json"), body={"text": MARKER, "review": True})
    (item,) = _items(reviewing).body["items"]
    reviewing.call(load_event("review_label_post.json"), body={"id": item["id"], "label": "ham"})
    reviewing.call(load_event("review_held_post.json"), body={"key": key, "decision": "accept"})

    # Then the steps were logged, never the text
    output = stream.getvalue() + capsys.readouterr().out
    assert '"message":"review item labelled"' in output and '"message":"held verdict reviewed"' in output
    assert "QZXMARKER" not in output
