"""Client roles (lodbrok.access.roles) through the predict handler: what each role may call, how far its verdicts
reach once the retrain side (lodbrok.learning.intake, lodbrok.verdicts.memory) has taken them, and who sees whose ids.

The predict side is driven through `predict.app.lambda_handler` with the events of `events/`; the queued
messages are taken by the retrain function's learning loop, against moto.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from devstack.resources import create_table
from devstack.template import Template
from lodbrok.access.roles import ClientRoles, Role
from lodbrok.learning.loop import LearningLoop, build_learning_loop
from lodbrok.registry.store import ModelRef
from lodbrok.settings import get_settings
from lodbrok.verdicts.archive import ArchiveCursor
from support import CLIENTS_TABLE, EVENT_KEY_ID, assert_error, load_event, verdicts_event

if TYPE_CHECKING:
    from conftest import Api

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

ROUTES = {  # event -> the least role its route needs
    "predict_single.json": Role.PREDICT,
    "predict_get.json": Role.PREDICT,
    "model_get.json": Role.PREDICT,
    "calls_recent_get.json": Role.PREDICT,
    "openapi_get.json": Role.PREDICT,
    "verdicts_post.json": Role.FEEDBACK,
    "review_items_get.json": Role.REVIEWER,
    "review_label_post.json": Role.REVIEWER,
    "review_skip_post.json": Role.REVIEWER,
    "review_held_post.json": Role.REVIEWER,
    "model_versions_get.json": Role.REVIEWER,
    "model_rollback_post.json": Role.ADMIN,
}
# What an allowed call of these events answers: the item, held verdict or version they name does not exist.
NOT_FOUND_EVENTS = {
    "review_label_post.json",
    "review_skip_post.json",
    "review_held_post.json",
    "model_rollback_post.json",
}
ATTACK = "Crypto airdrop!!! Claim 500 FREE USDT now at http://claim-usdt.example/win before midnight"


def _set_role(key_id: str, role: Role) -> None:
    ClientRoles(CLIENTS_TABLE, client=boto3.client("dynamodb")).put(key_id, key_id, role)


@pytest.mark.parametrize("role", list(Role))
def test_roles_matrix_every_route_answers_403_json_or_serves(
    api: Api, published_model: ModelRef, role: Role, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the events' key has `role`, on a stack that rolls back through the API (ApiRollback=true)
    _set_role(EVENT_KEY_ID, role)
    monkeypatch.setenv("API_ROLLBACK", "true")
    api.rebuild()
    for event, required in ROUTES.items():
        # When each route is called
        response = api.call(load_event(event))
        # Then a route the role allows serves, any other answers 403 naming the needed and the actual role
        if role.allows(required):
            assert response.status in ({404} if event in NOT_FOUND_EVENTS else {200, 202}), (event, response.body)
        else:
            error = assert_error(response, 403, "forbidden")
            assert f"'{required}'" in error["message"] and f"'{role}'" in error["message"]
            assert error["details"] == [{"required_role": str(required), "role": str(role)}]
            assert EVENT_KEY_ID not in str(response.body)


def test_roles_a_key_without_an_entry_is_predict(api: Api, published_model: ModelRef) -> None:
    # When a key that the clients table does not know sends verdicts
    response = api.call(load_event("verdicts_post.json"), identity={"apiKeyId": "unknown-key"})
    # Then it is refused: least privilege
    assert_error(response, 403, "forbidden")


def test_roles_change_reaches_a_warm_function_within_the_cache_time(api: Api, published_model: ModelRef) -> None:
    # Given a feedback key whose role a warm function has read
    _set_role("changing-key", Role.FEEDBACK)
    assert api.call(load_event("verdicts_post.json"), identity={"apiKeyId": "changing-key"}).status == 202
    # When the operator lowers it to predict
    _set_role("changing-key", Role.PREDICT)
    # Then the cached role serves until ROLE_CACHE_SECONDS pass, and the new one after
    assert api.call(load_event("verdicts_post.json"), identity={"apiKeyId": "changing-key"}).status == 202
    api.clock.advance(61)
    assert_error(api.call(load_event("verdicts_post.json"), identity={"apiKeyId": "changing-key"}), 403, "forbidden")


@pytest.fixture
def intake(api: Api, monkeypatch: pytest.MonkeyPatch, verdict_queue: str) -> Callable[[], LearningLoop]:
    """Hand every queued message to the retrain function's learning loop (same bucket, memory and keys)."""
    table = create_table(Template(), "IdempotencyTable", "lodbrok-idempotency-roles-test")
    monkeypatch.setenv("IDEMPOTENCY_TABLE", table)
    get_settings.cache_clear()
    loop = build_learning_loop(get_settings(), s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"))
    sqs = boto3.client("sqs")

    def deliver() -> LearningLoop:
        loop.start_batch()
        while messages := sqs.receive_message(
            QueueUrl=verdict_queue, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", []):
            for message in messages:
                loop.accept(
                    message["Body"],
                    message_id=message["MessageId"],
                    sent_timestamp=message["Attributes"]["SentTimestamp"],
                )
                sqs.delete_message(QueueUrl=verdict_queue, ReceiptHandle=message["ReceiptHandle"])
        loop.remember_batch()
        return loop

    return deliver


def _answer(api: Api, key_id: str, text: str) -> dict[str, Any]:
    response = api.call(
        load_event("predict_batch.json"), body={"texts": [text], "skip_cache": True}, identity={"apiKeyId": key_id}
    )
    assert response.status == 200, response.body
    return dict(response.body["predictions"][0])


def _send(api: Api, key_id: str, verdicts: list[dict[str, Any]]) -> None:
    response = api.call(verdicts_event(verdicts), identity={"apiKeyId": key_id})
    assert response.status == 202, response.body


def test_roles_a_feedback_verdict_answers_its_sender_only_and_a_reviewer_verdict_everyone(
    api: Api, published_model: ModelRef, intake: Callable[[], LearningLoop]
) -> None:
    # Given an attacker with a feedback key, a victim with a predict key, and the model's answer to a spam text
    _set_role("attacker", Role.FEEDBACK)
    _set_role("reviewer", Role.REVIEWER)
    model_label = _answer(api, "victim", ATTACK)["label"]
    flipped = "ham" if model_label == "spam" else "spam"

    # When the attacker sends the opposite label as a verdict, and the retrain side takes it
    _send(api, "attacker", [{"id": "atk2", "text": ATTACK, "label": flipped}])
    intake()

    # Then the attacker gets their own verdict, with its id; the victim still gets the model's answer
    mine = _answer(api, "attacker", ATTACK)
    assert (mine["label"], mine["source"], mine["verdict"]["id"]) == (flipped, "verdict", "atk2")
    theirs = _answer(api, "victim", ATTACK)
    assert (theirs["label"], theirs["source"]) == (model_label, "model") and "atk2" not in str(theirs)

    # When a reviewer sends the same correction
    _send(api, "reviewer", [{"id": "rev-1", "text": ATTACK, "label": flipped}])
    intake()

    # Then everyone gets it at once, and only the reviewer sees its id
    victim = _answer(api, "victim", ATTACK)
    assert (victim["label"], victim["source"], victim["verdict"]["id"]) == (flipped, "verdict", None)
    assert _answer(api, "reviewer", ATTACK)["verdict"]["id"] == "rev-1"


def test_roles_a_queue_message_with_a_forged_attestation_is_feedback_at_its_sent_time(
    api: Api, published_model: ModelRef, intake: Callable[[], LearningLoop], verdict_queue: str
) -> None:
    # Given messages a producer wrote to the queue directly: one posing as a reviewer with a made-up MAC and a
    # stamp far in the future, one without any attestation claiming the same stamp
    forged = {
        "verdicts": [{"id": "f1", "text": ATTACK, "label": "ham"}],
        "attestation": {
            "sender": "reviewer",
            "role": "reviewer",
            "received_at": "9999-12-31T00:00:00.000Z",
            "mac": "A" * 44,
        },
    }
    bare = [{"id": "f2", "text": ATTACK + " again", "label": "ham", "received_at": "9999-12-31T00:00:00.000Z"}]
    sqs = boto3.client("sqs")
    before = time.time()
    for body in (forged, bare):
        sqs.send_message(QueueUrl=verdict_queue, MessageBody=json.dumps(body))

    # When the retrain side takes them
    loop = intake()

    # Then both are archived as feedback from no known sender, at the queue's time, and neither is remembered
    records = loop.archive.read(loop.archive.pending(ArchiveCursor()).keys)
    assert sorted(record.verdict.id for record in records) == ["f1", "f2"]
    for record in records:
        assert record.sender is None and not record.trusted
        assert record.verdict.received_at is not None and record.verdict.received_at < "2100"
        assert record.verdict.received_at >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1))
    assert _answer(api, "victim", ATTACK)["source"] == "model"
    assert [verdict.id for verdict, _ in loop.intake.accepted] == ["f1", "f2"]
    assert {provenance.role for _, provenance in loop.intake.accepted} == {Role.FEEDBACK}


def test_roles_an_attested_stamp_in_the_future_is_clamped_and_a_later_correction_replaces_it(
    api: Api, published_model: ModelRef, intake: Callable[[], LearningLoop], clock: Any
) -> None:
    # Given a reviewer whose verdict the API stamps a year ahead (a server clock gone wrong)
    _set_role("reviewer", Role.REVIEWER)
    clock.now = time.time() + 365 * 86_400
    _send(api, "reviewer", [{"id": "early", "text": ATTACK, "label": "ham"}])
    intake()
    # When a correction follows, stamped by a right clock
    clock.now = time.time() + 30
    _send(api, "reviewer", [{"id": "later", "text": ATTACK, "label": "spam"}])
    intake()
    # Then the future stamp was clamped to the retrain side's now, so the later correction answers
    answer = _answer(api, "reviewer", ATTACK)
    assert (answer["label"], answer["verdict"]["id"]) == ("spam", "later")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.PREDICT, {Role.PREDICT}),
        (Role.FEEDBACK, {Role.PREDICT, Role.FEEDBACK}),
        (Role.REVIEWER, {Role.PREDICT, Role.FEEDBACK, Role.REVIEWER}),
        (Role.ADMIN, set(Role)),
    ],
)
def test_role_allows_what_every_role_below_it_allows(role: Role, allowed: set[Role]) -> None:
    # Then each role allows exactly itself and the roles below it
    assert {required for required in Role if role.allows(required)} == allowed
