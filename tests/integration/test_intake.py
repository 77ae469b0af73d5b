"""Verdict intake (lodbrok.learning.intake): every verdict of a queue message archived exactly once, or the message
quarantined; a fault retries only the messages it hit.

Driven through `retrain.app.lambda_handler` with SQS events, against moto, like test_retrain.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lodbrok.model.bundle import Bundle
from lodbrok.model.data import items_from_jsonl
from lodbrok.registry.store import ModelRef, ModelStore
from support import (
    INVALID_MESSAGES,
    VALID_IDS,
    active_bundle,
    archived_records,
    fresh_container,
    learning_loop,
    load_event,
    zorblax_verdicts,
)
from support import (
    RETRAIN_BUCKET as BUCKET,
)


def test_handler_lone_surrogate_message_is_quarantined_not_retried(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a producer's message whose JSON escapes decode to a lone surrogate, next to a valid one
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    event = send(
        {"id": "bad", "text": "free prize \ud800", "label": "spam"}, {"id": "good", "text": "lunch?", "label": "ham"}
    )

    # When the retrain function processes them
    response = invoke(event)

    # Then nothing is retried (so nothing can end in the DLQ): the bad message is quarantined, the good archived
    assert response == {"batchItemFailures": []}
    [quarantined] = learning_loop().archive.quarantined()
    assert "lone surrogate" in quarantined["reason"]
    assert [record.verdict.id for record in archived_records(learning_loop())] == ["good"]


@pytest.mark.parametrize("body", ["[" * 200_000, "7" * 5_000], ids=["deep-nesting", "5000-digit-integer"])
def test_handler_never_valid_message_is_quarantined_on_first_sight(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    # Given a producer's message that can never parse (RecursionError, or an integer past Python's digit limit)
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    event = send(body, {"id": "good", "text": "lunch?", "label": "ham"})

    # When the retrain function processes it once
    response = invoke(event)

    # Then it is quarantined at once, with its body, and not failed (so SQS never retries it into the DLQ)
    assert response == {"batchItemFailures": []}
    [quarantined] = learning_loop().archive.quarantined()
    assert quarantined["body"] == body
    assert [record.verdict.id for record in archived_records(learning_loop())] == ["good"]


def test_handler_verdict_over_the_size_limit_from_the_queue_is_quarantined(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_TEXT_CHARS as the template sets it for both functions, and a producer writing to the queue
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    monkeypatch.setenv("MAX_TEXT_CHARS", "5000")
    fresh_container()
    event = send(
        {"id": "huge", "text": "free prize " * 20_000, "label": "spam"}, {"id": "ok", "text": "hi", "label": "ham"}
    )

    # When the retrain function processes them
    response = invoke(event)

    # Then the 220,000-character verdict is quarantined with the limit, never archived; the other one is
    assert response == {"batchItemFailures": []}
    [quarantined] = learning_loop().archive.quarantined()
    assert "input has a string of 220000 characters; at most 5000 are allowed" in quarantined["reason"]
    assert [record.verdict.id for record in archived_records(learning_loop())] == ["ok"]


@pytest.mark.parametrize("fault", ["idempotency table", "quarantine write"])
def test_handler_aws_fault_during_intake_retries_the_message_and_loses_nothing(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    # Given DynamoDB (the idempotency records) or S3 (the quarantine) failing while a batch is taken in
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    event = load_event("retrain_sqs.json")
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutItem")

    def failing(*_: Any, **__: Any) -> Any:
        raise throttled

    with monkeypatch.context() as patch:
        if fault == "idempotency table":
            patch.setattr(DynamoDBPersistenceLayer, "_put_record", failing)
        else:
            patch.setattr(learning_loop().archive, "quarantine", failing)
        response = invoke(event)
    # Then the messages it hit are reported for retry (none acknowledged unarchived), the others are not
    failed = {entry["itemIdentifier"] for entry in response["batchItemFailures"]}
    assert failed, "the fault must reach the batch response"
    if fault == "idempotency table":
        assert {record.verdict.id for record in archived_records(learning_loop())} == set()
    # When SQS redelivers those messages after the fault cleared
    assert invoke({"Records": [record for record in event["Records"] if record["messageId"] in failed]}) == {
        "batchItemFailures": []
    }
    # Then every valid verdict is archived exactly once and every invalid message is quarantined once
    assert sorted(record.verdict.id for record in archived_records(learning_loop())) == sorted(VALID_IDS)
    quarantined = list(
        learning_loop().archive.s3.list_objects_v2(Bucket=BUCKET, Prefix="verdicts/quarantine/")["Contents"]
    )
    assert len(quarantined) == len(INVALID_MESSAGES)


def test_handler_duplicate_verdicts_are_archived_and_learned_once(
    base_ref: ModelRef,
    store: ModelStore,
    invoke: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    read_metrics: Any,
) -> None:
    # Given the same event delivered twice (it also holds one verdict sent twice)
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    event = load_event("retrain_sqs.json")
    invoke(event)
    read_metrics()

    # When it is processed a second time
    invoke(event)

    # Then no verdict got a second archive entry
    archived = archived_records(learning_loop())
    assert len(archived) == len(VALID_IDS)
    assert len({record.fingerprint for record in archived}) == len(VALID_IDS)
    assert read_metrics()["VerdictsDuplicate"] == 6
    # And a copy that slipped past idempotency (e.g. after its record expired) is not learned twice either
    again = next(record for record in archived if record.verdict.id == "sms-1001")
    learning_loop().archive.write(again.verdict, message_id="late-redelivery", sent_at=None)
    invoke(load_event("retrain_schedule.json"))
    learned = active_bundle(store).metadata
    assert learned["verdict_count"] == len(VALID_IDS)
    assert learned["training"]["verdict_count"] == len(VALID_IDS)


def test_handler_a_correction_back_to_an_earlier_label_is_archived_and_learned(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given one item judged spam, then ham, then spam again (three POST /verdicts, three acceptance times)
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    fresh_container()
    text = "zorblax crypto airdrop for the early wallets, free tokens tonight"
    judged = [
        {"id": "item-7", "text": text, "label": label, "received_at": f"2026-12-01T10:00:0{second}.000Z"}
        for second, label in ((1, "spam"), (2, "ham"), (3, "spam"))
    ]
    for verdict in judged:
        invoke(send(verdict))
    # And the last message delivered twice
    redelivered = send(judged[-1])
    invoke(redelivered)
    invoke(redelivered)

    # Then every judgement is archived once, and the latest label (spam) is the one learned
    archived = [record for record in archived_records(learning_loop()) if record.verdict.id == "item-7"]
    assert [record.verdict.label for record in archived] == ["spam", "ham", "spam"]
    invoke(send(zorblax_verdicts(6)))
    outcome = invoke(load_event("retrain_schedule.json"))
    assert outcome["status"] == "promoted"
    learned = {item.input: item.label for item in items_from_jsonl(active_bundle(store).rehearsal)}
    assert learned[text] == "spam"


@pytest.mark.parametrize("damage", ["corrupt", "forged"])
def test_handler_archives_valid_verdicts_while_the_active_model_is_unreadable(
    base_ref: ModelRef,
    store: ModelStore,
    tiny_bundle: Bundle,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    read_metrics: Any,
    damage: str,
) -> None:
    # Given an active model whose bundle is corrupt, or forged: valid, but not what the signature covers
    s3 = boto3.client("s3")
    if damage == "corrupt":
        s3.put_object(Bucket=BUCKET, Key=store.active_key, Body=b"PK\x03\x04 not a bundle")
    else:
        signed = s3.head_object(Bucket=BUCKET, Key=store.active_key)["Metadata"]
        forged = tiny_bundle.with_metadata(version="v9").to_bytes()
        s3.put_object(Bucket=BUCKET, Key=store.active_key, Body=forged, Metadata=signed)
    read_metrics()

    # When verdicts arrive, one with a label the model may not have
    unchecked = {"id": "x-1", "text": "verify your account at this link", "label": "phishing"}
    response = invoke(send(zorblax_verdicts(4), unchecked))

    # Then every schema-valid verdict is archived (nothing waits for the DLQ), and the broken model is counted
    assert response == {"batchItemFailures": []}
    assert len(archived_records(learning_loop())) == 5
    counted = read_metrics()
    assert counted["ActiveModelUnreadable"] == 1 and counted["ModelLoadFailed"] >= 1

    # When a readable model is active again and the loop retrains
    store.publish(tiny_bundle, expected=store.head(), action="rollback")
    outcome = learning_loop().retrain()

    # Then the verdict with the unknown label is held for review, and the others are learned
    [held] = learning_loop().archive.held()
    assert held["verdict"]["id"] == "x-1" and "'phishing' is not a label of the model" in held["reason"]
    assert outcome.held == 1 and outcome.verdicts == 4 and outcome.status == "promoted"
