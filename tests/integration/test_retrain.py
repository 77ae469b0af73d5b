"""The retrain function end to end: SQS verdicts -> archive -> fine-tune -> gate -> promote, against moto.

The handler (functions/retrain/app.py): an SQS batch and its partial batch response, the daily schedule, its logs
and its role. What the modules behind it do (intake, screening, the archive, learning, the loop, the verdict
memory) is in test_<module>.py. Every test drives `retrain.app.lambda_handler` with events from `events/`; extra
batches are sent through a real (moto) SQS queue and received the way Lambda's event source mapping would deliver
them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lodbrok.observability import logger
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.verdicts.verdict import Verdict
from support import (
    CODE_ACTIONS,
    INVALID_MESSAGES,
    VALID_IDS,
    archived_records,
    attested,
    flipped_template_spam,
    fresh_container,
    learning_loop,
    load_event,
    recorded_aws_actions,
    zorblax_verdicts,
)
from support import (
    RETRAIN_BUCKET as BUCKET,
)

# --- SQS batches -----------------------------------------------------------------------------------------------


def test_handler_sqs_event_archives_valid_verdicts_and_quarantines_invalid_messages(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch, read_metrics: Any
) -> None:
    # Given the shipped SQS event (valid, list, wrapper, duplicate, bad JSON, unknown label, missing input)
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    event = load_event("retrain_sqs.json")

    # When the retrain function processes it
    response = invoke(event)

    # Then no message is retried: invalid ones are not transient
    assert response == {"batchItemFailures": []}
    # And each valid verdict was archived once, with its provenance, as a dataset row
    archived = archived_records(learning_loop())
    assert sorted(record.verdict.id for record in archived) == sorted(VALID_IDS)
    first = next(record for record in archived if record.verdict.id == "sms-1001")
    assert first.message_id == event["Records"][0]["messageId"]
    assert first.sent_at == "2025-06-02T09:14:03.000Z"
    # And a producer writing to the queue directly is no known sender: its time is SQS's, not the one it claims
    assert first.verdict.source == "moderator-7" and first.verdict.received_at == first.sent_at
    assert first.sender is None and not first.trusted
    assert first.key.startswith("verdicts/archive/") and first.key.endswith(".jsonl")
    # And every invalid message is in the quarantine with its body and the reason
    quarantined = {record["message_id"][-3:]: record for record in learning_loop().archive.quarantined()}
    assert set(quarantined) == set(INVALID_MESSAGES)
    for suffix, reason in INVALID_MESSAGES.items():
        assert reason in quarantined[suffix]["reason"]
        assert quarantined[suffix]["body"] == next(r["body"] for r in event["Records"] if r["messageId"][-3:] == suffix)
    emitted = read_metrics()
    assert emitted["VerdictsQuarantined"] == 3 and emitted["VerdictsArchived"] == 5
    assert emitted["VerdictsDuplicate"] == 1


def test_handler_transient_failure_reports_only_that_message_and_its_retry_succeeds(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given S3 fails while archiving the second message's verdicts
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    event = load_event("retrain_sqs.json")
    failing_id = event["Records"][1]["messageId"]
    archive = learning_loop().archive
    real_write = archive.write

    def flaky_write(verdict: Verdict, *, message_id: str, **kwargs: Any) -> str:
        if message_id == failing_id:
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "PutObject"
            )
        return real_write(verdict, message_id=message_id, **kwargs)

    monkeypatch.setattr(archive, "write", flaky_write)

    # When the batch is processed
    response = invoke(event)

    # Then only that message is reported for retry; the others (even the invalid ones) are acknowledged
    assert response == {"batchItemFailures": [{"itemIdentifier": failing_id}]}
    assert {record.verdict.id for record in archived_records(learning_loop())} == VALID_IDS - {"sms-1002", "sms-1003"}

    # When SQS redelivers the batch after the fault cleared
    monkeypatch.setattr(archive, "write", real_write)
    response = invoke(event)

    # Then the failed message is archived now, and nothing else twice
    assert response == {"batchItemFailures": []}
    assert sorted(record.verdict.id for record in archived_records(learning_loop())) == sorted(VALID_IDS)


# --- the daily schedule ----------------------------------------------------------------------------------------


def test_handler_scheduled_event_retrains_from_verdicts_since_the_last_promotion(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given verdicts archived while below MIN_VERDICTS_TO_TRAIN
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    fresh_container()
    invoke(load_event("retrain_sqs.json"))
    assert store.head() == base_ref

    # When the daily schedule fires
    first = invoke(load_event("retrain_schedule.json"))

    # Then it trains on all of them regardless of the minimum
    assert first["status"] == "promoted" and first["mode"] == "since-promotion" and first["verdicts"] == 5
    assert first["parent_version_id"] == base_ref.version_id

    # When more verdicts arrive and the schedule fires again
    invoke(send(zorblax_verdicts(4, start=100)))
    second = invoke(load_event("retrain_schedule.json"))

    # Then only the verdicts archived since that promotion are learned
    assert second["status"] == "promoted" and second["verdicts"] == 4
    assert second["parent_version_id"] == first["version_id"]

    # And with nothing new, the schedule does nothing
    third = invoke(load_event("retrain_schedule.json"))
    assert third["status"] == "waiting" and third["pending"] == 0
    assert len(store.versions()) == 3

    # And after a rollback, it does not relearn what the rolled-back model had learned
    store.rollback(first["version_id"])
    fourth = invoke(load_event("retrain_schedule.json"))
    assert fourth["status"] == "waiting" and fourth["pending"] == 0
    assert len(store.versions()) == 4


# --- what it logs and what it calls ----------------------------------------------------------------------------


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
    """Everything the function wrote so far: its structured log and anything printed."""
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    return lambda: stream.getvalue() + capsys.readouterr().out


def test_retrain_logs_never_contain_user_text(
    base_ref: ModelRef,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    logged: Callable[[], str],
) -> None:
    # Given the structured log captured, and a marker text in verdicts that are learned, held and refused,
    # and in an archive row that cannot be read
    marker = "QUOKKA-TRAMLINE-4417"
    archive = learning_loop().archive
    archive.s3.put_object(
        Bucket=BUCKET, Key=archive.archive_prefix + "2000/01/01/unreadable.jsonl", Body=f'{{"text": "{marker}"}}\n'
    )
    lie = flipped_template_spam(1)[0]
    event = send(
        [{**verdict, "text": f"{verdict['text']} {marker}"} for verdict in zorblax_verdicts(4)],
        [{**lie, "text": f"{lie['text']} {marker}"}],
        {"id": "bad", "text": marker, "label": "spam", "colour": marker},
    )

    # When the function archives, screens, learns and quarantines them
    invoke(event)
    invoke(load_event("retrain_schedule.json"))

    # Then the steps were logged, but the text appears in nothing the function wrote
    written = logged()
    assert "skipping an unreadable archive row" in written and "verdict message quarantined" in written
    assert marker not in written


def test_retrain_logs_carry_no_ids_labels_field_names_keys_or_sources(
    base_ref: ModelRef,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    logged: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the structured log captured, and unique markers as ids, labels, field names, unknown keys and sources
    marker = {
        name: f"MARK{name.upper()}{index}X" for index, name in enumerate(["id", "label", "field", "key", "source"])
    }
    loop = learning_loop()
    quarantined = [
        {"id": marker["id"] + "q1", "text": "hi", "label": marker["label"] + "q", marker["key"] + "q": 1},
        {"id": marker["id"] + "q2", "fields": {marker["field"] + "q": [1]}, "label": "ham"},
    ]
    unknown_label = {"id": marker["id"] + "u", "text": "see you", "label": marker["label"] + "u"}
    row = {"id": marker["id"] + "r", "fields": {marker["field"] + "r": [1]}, "label": "ham", marker["key"] + "r": 1}
    loop.archive.s3.put_object(
        Bucket=BUCKET, Key=loop.archive.archive_prefix + "2000/01/01/unreadable.jsonl", Body=json.dumps(row) + "\n"
    )
    lies = [
        {**lie, "id": f"{marker['id']}l{index}", "source": marker["source"] + "l"}
        for index, lie in enumerate(flipped_template_spam(6))
    ]
    learned = [
        {**verdict, "id": f"{marker['id']}z{index}", "source": marker["source"] + "z"}
        for index, verdict in enumerate(zorblax_verdicts(12))
    ]
    record = {"id": marker["id"] + "f", "fields": {marker["field"] + "f": "zorblax airdrop"}, "label": "spam"}

    # When the function quarantines messages, holds a verdict archived while the model was unreadable (its label
    # unchecked), skips an unreadable row, holds a source's lies, and learns and gates the rest
    with monkeypatch.context() as unreadable:
        unreadable.setattr(loop.intake, "_read_labels", lambda: None)
        invoke(send(*quarantined, unknown_label))
    invoke(send(lies, learned, record))

    # Then every path logged, but no marker appears in anything the function wrote
    written = logged()
    for message in (
        "verdict message quarantined",
        "verdict held for review",
        "every pending verdict is held for review",
        "skipping an unreadable archive row",
        "verdicts held for review",
        "suspended_senders",
    ):
        assert message in written, message
    assert "candidate promoted" in written or "candidate rejected by the gate" in written
    assert "MARK" not in written


def test_retrain_function_calls_exactly_what_its_role_allows(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given a batch of a reviewer's verdicts on the queue, as the API sends them (sent and received outside the
    # recording)
    event = send(*(attested([verdict]) for verdict in zorblax_verdicts(6)))
    # When a fresh container archives them, fine-tunes, gates and promotes, with every AWS call recorded
    with recorded_aws_actions() as used:
        fresh_container()
        assert invoke(event) == {"batchItemFailures": []}
    assert learning_loop().store.versions()[0].action == "promote"
    # Then it needed no action outside its role (template.yaml, checked in tests/unit/test_template.py), and
    # every action of the role was used except one that Powertools' idempotency documents and needs only when
    # a put does not return the existing record (DeleteItem is used: the verdict memory forgets on promotion)
    assert used <= CODE_ACTIONS["RetrainFunctionRole"]
    assert CODE_ACTIONS["RetrainFunctionRole"] - used == {"dynamodb:GetItem"}
