"""The learning loop end to end: SQS verdicts -> archive -> fine-tune -> gate -> promote, against moto.

Every test drives `retrain.app.lambda_handler` with events from `events/`; extra batches are sent through
a real (moto) SQS queue and received the way Lambda's event source mapping would deliver them.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.resources import create_table
from devstack.template import Template
from lodbrok import aws as aws_clients
from lodbrok.bundle import Bundle
from lodbrok.cli import main
from lodbrok.data import LabelledItem, items_from_jsonl
from lodbrok.observability import logger
from lodbrok.predictor import Predictor
from lodbrok.retrain_state import Mode, RetrainState
from lodbrok.retraining import LearningLoop
from lodbrok.settings import get_settings
from lodbrok.signing import BundleSigner
from lodbrok.store import ModelRef, ModelStore
from lodbrok.verdicts import Verdict
from retrain import app
from support import CODE_ACTIONS, load_event, make_tiny_dataset, recorded_aws_actions, same_model

BUCKET = "lodbrok-retrain-test"
IDEMPOTENCY_TABLE = "lodbrok-idempotency-test"
PROBE = "zorblax crypto airdrop for everyone who replies today"  # in no verdict and no training text
MEMORY_TABLE = "lodbrok-verdict-memory-test"
VALID_IDS = {"sms-1001", "sms-1002", "sms-1003", "sms-1004", "ticket-88"}
INVALID_MESSAGES = {  # message id suffix -> what the quarantine reason must mention
    "a05": "not JSON",
    "a06": "unknown label 'phishing'",
    "a07": "exactly one of `text` or `fields`",
}


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def retrain_env(signing_key: str, verdict_queue: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Versioned model bucket, the template's idempotency table, and the function's environment."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    create_table(Template(), "IdempotencyTable", IDEMPOTENCY_TABLE)
    create_table(Template(), "VerdictMemoryTable", MEMORY_TABLE)
    for name, value in {
        "MODEL_BUCKET": BUCKET,
        "MODEL_NAME": "default",
        "MODEL_SIGNING_KEY": signing_key,
        "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
        "VERDICT_MEMORY_TABLE": MEMORY_TABLE,
        "VERDICT_QUEUE_URL": verdict_queue,
        "MIN_VERDICTS_TO_TRAIN": "1",
        "GATE_TOLERANCE": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("VERDICT_ARCHIVE_PREFIX", "MODEL_VERSION", "POWERTOOLS_IDEMPOTENCY_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    _fresh_container()
    yield
    _fresh_container()


@pytest.fixture
def store(retrain_env: None, signer: BundleSigner) -> ModelStore:
    return ModelStore(BUCKET, "default", signer=signer, s3=boto3.client("s3"))


@pytest.fixture
def base_ref(store: ModelStore, tiny_bundle: Bundle) -> ModelRef:
    """The tiny model, published as the active model `v1`."""
    return store.publish(tiny_bundle, expected=None)


@pytest.fixture
def invoke(lambda_context: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: app.lambda_handler(event, lambda_context)


@pytest.fixture
def send(verdict_queue: str) -> Callable[..., dict[str, Any]]:
    """Send message bodies to the queue, receive them, and return the SQS event Lambda would deliver."""

    def send_batch(*bodies: Any) -> dict[str, Any]:
        sqs = boto3.client("sqs")
        for body in bodies:
            sqs.send_message(QueueUrl=verdict_queue, MessageBody=body if isinstance(body, str) else json.dumps(body))
        messages: list[dict[str, Any]] = []
        while len(messages) < len(bodies):
            received = sqs.receive_message(QueueUrl=verdict_queue, MaxNumberOfMessages=10, AttributeNames=["All"])
            messages.extend(received.get("Messages", []))
        return {"Records": [_lambda_record(message, verdict_queue) for message in messages]}

    return send_batch


def _fresh_container() -> None:
    get_settings.cache_clear()
    aws_clients.client.cache_clear()
    app.get_learning_loop.cache_clear()


def _lambda_record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    name = queue_url.rsplit("/", 1)[-1]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{name}",
        "awsRegion": "us-east-1",
    }


def _loop() -> LearningLoop:
    return app.get_learning_loop()


def _archived(loop: LearningLoop) -> list[Any]:
    from lodbrok.archive import ArchiveCursor

    return loop.archive.read(loop.archive.pending(ArchiveCursor()).keys)


def _active_bundle(store: ModelStore) -> Bundle:
    return store.load().bundle()


def _raise_s3_error(*args: Any, **kwargs: Any) -> Any:
    raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "PutObject")


def _zorblax_verdicts(count: int, start: int = 0) -> list[dict[str, Any]]:
    openers = ["hey", "psst", "good news", "friends", "attention", "today only", "hurry", "last call"]
    return [
        {
            "id": f"zb-{start + index}",
            "text": f"{openers[index % len(openers)]}: zorblax crypto airdrop, free tokens #{start + index}",
            "label": "spam",
            "source": "moderator-3",
        }
        for index in range(count)
    ]


# --- intake -------------------------------------------------------------------------------------------------


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
    archived = _archived(_loop())
    assert sorted(record.verdict.id for record in archived) == sorted(VALID_IDS)
    first = next(record for record in archived if record.verdict.id == "sms-1001")
    assert first.message_id == event["Records"][0]["messageId"]
    assert first.sent_at == "2025-06-02T09:14:03.000Z"
    assert first.verdict.source == "moderator-7" and first.verdict.received_at == "2025-06-02T09:14:03Z"
    assert first.key.startswith("verdicts/archive/") and first.key.endswith(".jsonl")
    # And every invalid message is in the quarantine with its body and the reason
    quarantined = {record["message_id"][-3:]: record for record in _loop().archive.quarantined()}
    assert set(quarantined) == set(INVALID_MESSAGES)
    for suffix, reason in INVALID_MESSAGES.items():
        assert reason in quarantined[suffix]["reason"]
        assert quarantined[suffix]["body"] == next(r["body"] for r in event["Records"] if r["messageId"][-3:] == suffix)
    emitted = read_metrics()
    assert emitted["VerdictsQuarantined"] == 3 and emitted["VerdictsArchived"] == 5
    assert emitted["VerdictsDuplicate"] == 1


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
    [quarantined] = _loop().archive.quarantined()
    assert "lone surrogate" in quarantined["reason"]
    assert [record.verdict.id for record in _archived(_loop())] == ["good"]


def test_handler_verdict_over_the_size_limit_from_the_queue_is_quarantined(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_TEXT_CHARS as the template sets it for both functions, and a producer writing to the queue
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    monkeypatch.setenv("MAX_TEXT_CHARS", "5000")
    _fresh_container()
    event = send(
        {"id": "huge", "text": "free prize " * 20_000, "label": "spam"}, {"id": "ok", "text": "hi", "label": "ham"}
    )

    # When the retrain function processes them
    response = invoke(event)

    # Then the 220,000-character verdict is quarantined with the limit, never archived; the other one is
    assert response == {"batchItemFailures": []}
    [quarantined] = _loop().archive.quarantined()
    assert "input has a string of 220000 characters; at most 5000 are allowed" in quarantined["reason"]
    assert [record.verdict.id for record in _archived(_loop())] == ["ok"]


def test_handler_transient_failure_reports_only_that_message_and_its_retry_succeeds(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given S3 fails while archiving the second message's verdicts
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    event = load_event("retrain_sqs.json")
    failing_id = event["Records"][1]["messageId"]
    archive = _loop().archive
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
    assert {record.verdict.id for record in _archived(_loop())} == VALID_IDS - {"sms-1002", "sms-1003"}

    # When SQS redelivers the batch after the fault cleared
    monkeypatch.setattr(archive, "write", real_write)
    response = invoke(event)

    # Then the failed message is archived now, and nothing else twice
    assert response == {"batchItemFailures": []}
    assert sorted(record.verdict.id for record in _archived(_loop())) == sorted(VALID_IDS)


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
            patch.setattr(_loop().archive, "quarantine", failing)
        response = invoke(event)
    # Then the messages it hit are reported for retry (none acknowledged unarchived), the others are not
    failed = {entry["itemIdentifier"] for entry in response["batchItemFailures"]}
    assert failed, "the fault must reach the batch response"
    if fault == "idempotency table":
        assert {record.verdict.id for record in _archived(_loop())} == set()
    # When SQS redelivers those messages after the fault cleared
    assert invoke({"Records": [record for record in event["Records"] if record["messageId"] in failed]}) == {
        "batchItemFailures": []
    }
    # Then every valid verdict is archived exactly once and every invalid message is quarantined once
    assert sorted(record.verdict.id for record in _archived(_loop())) == sorted(VALID_IDS)
    quarantined = list(_loop().archive.s3.list_objects_v2(Bucket=BUCKET, Prefix="verdicts/quarantine/")["Contents"])
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
    archived = _archived(_loop())
    assert len(archived) == len(VALID_IDS)
    assert len({record.fingerprint for record in archived}) == len(VALID_IDS)
    assert read_metrics()["VerdictsDuplicate"] == 6
    # And a copy that slipped past idempotency (e.g. after its record expired) is not learned twice either
    again = next(record for record in archived if record.verdict.id == "sms-1001")
    _loop().archive.write(again.verdict, message_id="late-redelivery", sent_at=None)
    invoke(load_event("retrain_schedule.json"))
    learned = _active_bundle(store).metadata
    assert learned["verdict_count"] == len(VALID_IDS)
    assert learned["training"]["verdict_count"] == len(VALID_IDS)


def test_handler_a_correction_back_to_an_earlier_label_is_archived_and_learned(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given one item judged spam, then ham, then spam again (three POST /verdicts, three acceptance times)
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    _fresh_container()
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
    archived = [record for record in _archived(_loop()) if record.verdict.id == "item-7"]
    assert [record.verdict.label for record in archived] == ["spam", "ham", "spam"]
    invoke(send(_zorblax_verdicts(6)))
    outcome = invoke(load_event("retrain_schedule.json"))
    assert outcome["status"] == "promoted"
    learned = {item.input: item.label for item in items_from_jsonl(_active_bundle(store).rehearsal)}
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
    response = invoke(send(_zorblax_verdicts(4), unchecked))

    # Then every schema-valid verdict is archived (nothing waits for the DLQ), and the broken model is counted
    assert response == {"batchItemFailures": []}
    assert len(_archived(_loop())) == 5
    counted = read_metrics()
    assert counted["ActiveModelUnreadable"] == 1 and counted["ModelLoadFailed"] >= 1

    # When a readable model is active again and the loop retrains
    store.publish(tiny_bundle, expected=store.head(), action="rollback")
    outcome = _loop().retrain()

    # Then the verdict with the unknown label is held for review, and the others are learned
    [held] = _loop().archive.held()
    assert held["verdict"]["id"] == "x-1" and "'phishing' is not a label of the model" in held["reason"]
    assert outcome.held == 1 and outcome.verdicts == 4 and outcome.status == "promoted"


def test_retrain_logs_never_contain_user_text(
    base_ref: ModelRef,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the structured log captured, and a marker text in verdicts that are learned, held and refused,
    # and in an archive row that cannot be read
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    marker = "QUOKKA-TRAMLINE-4417"
    archive = _loop().archive
    archive.s3.put_object(
        Bucket=BUCKET, Key=archive.archive_prefix + "2000/01/01/unreadable.jsonl", Body=f'{{"text": "{marker}"}}\n'
    )
    lie = _flipped_template_spam(1)[0]
    event = send(
        [{**verdict, "text": f"{verdict['text']} {marker}"} for verdict in _zorblax_verdicts(4)],
        [{**lie, "text": f"{lie['text']} {marker}"}],
        {"id": "bad", "text": marker, "label": "spam", "colour": marker},
    )

    # When the function archives, screens, learns and quarantines them
    invoke(event)
    invoke(load_event("retrain_schedule.json"))

    # Then the steps were logged, but the text appears in nothing the function wrote
    logged = stream.getvalue() + capsys.readouterr().out
    assert "skipping an unreadable archive row" in logged and "verdict message quarantined" in logged
    assert marker not in logged


# --- learning -----------------------------------------------------------------------------------------------


def test_retrain_promotes_a_candidate_that_learned_a_new_spam_campaign(
    base_ref: ModelRef, store: ModelStore, tiny_bundle: Bundle, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given an active model that has never seen the word "zorblax"
    assert Predictor(tiny_bundle).predict([PROBE])[0].label == "ham"
    event = send(*(_zorblax_verdicts(12)[index : index + 4] for index in range(0, 12, 4)))

    # When verdicts teach that zorblax airdrop texts are spam
    response = invoke(event)

    # Then a new S3 version is active and classifies an unseen zorblax text as spam
    assert response == {"batchItemFailures": []}
    head = store.head()
    assert head is not None and head.version_id != base_ref.version_id
    promoted = _active_bundle(store)
    assert Predictor(promoted).predict([PROBE])[0].label == "spam"
    # And its metadata names its parent (S3 version and label), the verdict count and the gate metrics
    assert promoted.version == "v2"
    assert promoted.metadata["parent_version"] == "v1"
    assert promoted.metadata["parent_version_id"] == base_ref.version_id
    assert promoted.metadata["verdict_count"] == 12
    learning = promoted.metadata["learning"]
    assert learning["held"] == 0, "a new campaign contradicts nothing the model knows well"
    decision = learning["decision"]
    assert decision["promote"] and decision["candidate_correct"] > decision["active_correct"]
    assert [check["name"] for check in decision["checks"] if check["passed"]] == [
        "gate-set",
        "per-label",
        "near-verdicts",
        "held-out-verdicts",
    ]
    newest = store.versions()[0]
    assert (newest.version_id, newest.action, newest.parent, newest.verdict_count) == (
        head.version_id,
        "promote",
        "v1",
        12,
    )


def _flipped_template_spam(count: int, source: str = "mallory") -> list[dict[str, Any]]:
    """Obvious spam, worded like the model's trusted training data, labelled ham: a lie."""
    spam = [item for item in make_tiny_dataset(size=4 * count, seed=99) if item.label == "spam"][:count]
    return [
        {"id": f"bad-{index}", "text": item.input, "label": "ham", "source": source} for index, item in enumerate(spam)
    ]


def test_retrain_holds_a_flipped_batch_of_near_duplicates_and_promotes_nothing(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, read_metrics: Any
) -> None:
    # Given 40 verdicts that call spam worded like the training data "ham", all from one source
    event = send(*(_flipped_template_spam(40)[index : index + 10] for index in range(0, 40, 10)))
    read_metrics()

    # When the function learns from them
    invoke(event)

    # Then every one is held for review, with the reason and the evidence; nothing is trained or promoted
    assert store.head() == base_ref and store.candidates() == []
    held = _loop().archive.held()
    assert len(held) == 40 and {record["status"] for record in held} == {"held"}
    assert "nearest trusted items" in held[0]["reason"]
    evidence = held[0]["evidence"]
    assert evidence["model_label"] == "spam" and evidence["verdict_label_probability"] < 0.05
    assert {neighbour["label"] for neighbour in evidence["neighbours"]} == {"spam"}
    emitted = read_metrics()
    assert emitted["VerdictsHeld"] == 40 and emitted["VerdictSourcesSuspect"] == 1
    # And they are no longer pending (they wait for a reviewer, not for the next batch)
    state, _ = _loop().state.load()
    assert state.last_attempt is not None and state.last_attempt.status == "held"
    assert _loop().archive.pending(state.cursor).keys == []


def test_retrain_mixed_batch_learns_the_new_campaign_and_holds_the_lies(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given one batch: a new campaign labelled spam, and obvious template spam labelled ham
    lies = _flipped_template_spam(10)
    event = send(_zorblax_verdicts(12)[:6], lies[:5], _zorblax_verdicts(12)[6:], lies[5:])

    # When the function learns from it
    assert invoke(event) == {"batchItemFailures": []}

    # Then the campaign is learned and promoted, and the lies are held, not learned
    promoted = _active_bundle(store)
    assert store.head() != base_ref
    assert promoted.metadata["learning"]["verdict_count"] == 12 and promoted.metadata["learning"]["held"] == 10
    served = Predictor(promoted)
    assert served.predict([PROBE])[0].label == "spam"
    assert {prediction.label for prediction in served.predict([lie["text"] for lie in lies])} == {"spam"}
    assert len(_loop().archive.held()) == 10
    state, _ = _loop().state.load()
    assert _loop().archive.pending(state.cursor).keys == []


def test_held_verdicts_survive_a_crash_and_are_accepted_or_rejected_for_good(
    base_ref: ModelRef,
    store: ModelStore,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    monkeypatch: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a retrain that crashes after holding a batch, before its cursor moves
    loop = _loop()
    event = send(_flipped_template_spam(6, source="moderator-9"))
    with monkeypatch.context() as crash:
        crash.setattr(loop.state, "update", _raise_s3_error)
        invoke(event)

    # Then the held verdicts are there, and the next retrain moves past them without learning them
    held = loop.archive.held()
    assert len(held) == 6
    assert loop.retrain().status == "held"
    assert store.head() == base_ref

    # When a reviewer lists them and accepts two and rejects the others, with the CLI
    capsys.readouterr()  # the function's logs so far
    assert main(["held", "list", "--bucket", BUCKET, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [record["key"] for record in listed] == [record["key"] for record in held]
    keys = [record["key"] for record in listed]
    assert main(["held", "accept", *keys[:2], "--bucket", BUCKET, "--reviewer", "ana"]) == 0
    assert main(["held", "reject", *keys[2:], "--bucket", BUCKET, "--reviewer", "ana", "--note", "prize spam"]) == 0

    # Then both decisions are recorded, and an accepted verdict is archived again as trusted
    archive = loop.archive
    accepted, rejected = archive.held("accepted"), archive.held("rejected")
    assert [record["reviewer"] for record in accepted] == ["ana", "ana"] and len(rejected) == 4
    assert rejected[0]["note"] == "prize spam" and not any(record.get("accepted_key") for record in rejected)
    assert all(record["accepted_key"].startswith(archive.archive_prefix) for record in accepted)
    # And a second review of the same verdict is refused
    capsys.readouterr()
    assert main(["held", "reject", keys[0], "--bucket", BUCKET]) == 2
    assert "already accepted" in capsys.readouterr().err

    # When the loop runs again: the accepted ones are learned without screening, the rejected never
    outcome = loop.retrain()
    assert outcome.held == 0 and outcome.verdicts == 2
    assert outcome.status in {"promoted", "rejected"}
    since_promotion = loop.retrain(Mode.SINCE_PROMOTION)
    assert since_promotion.verdicts <= 2 and since_promotion.held == 0


def test_retrain_rejects_verdicts_it_can_only_memorise(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given 24 made-up words with labels that follow no pattern (14 ham, 10 spam)
    rng = random.Random(5)
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(9)) for _ in range(24)]
    labels = ["ham"] * 14 + ["spam"] * 10
    rng.shuffle(labels)
    verdicts = [
        {"id": f"w-{index}", "text": word, "label": label}
        for index, (word, label) in enumerate(zip(words, labels, strict=True))
    ]

    # When the function learns from them
    invoke(send(verdicts[:12], verdicts[12:]))

    # Then the candidate is rejected: on verdicts held out of each fine-tune it is no better than the active model
    assert store.head() == base_ref
    [candidate] = store.candidates()
    assert "held-out-verdicts" in candidate.reason and "nothing was learned" in candidate.reason


def test_retrain_waits_for_min_verdicts_across_batches(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given MIN_VERDICTS_TO_TRAIN is 8
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "8")
    _fresh_container()

    # When a first batch brings 5 verdicts
    invoke(load_event("retrain_sqs.json"))

    # Then they are archived and wait; nothing was trained
    assert store.head() == base_ref
    assert _loop().state.load() == (RetrainState(), None)

    # When a second batch brings 3 more
    invoke(send(_zorblax_verdicts(3)))

    # Then all 8 are learned together
    promoted = _active_bundle(store)
    assert store.head() != base_ref
    assert promoted.metadata["verdict_count"] == 8


def test_retrain_race_retries_from_the_new_parent_and_loses_no_promotion(
    base_ref: ModelRef,
    store: ModelStore,
    tiny_bundle: Bundle,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given another retrain promotes its model between our load and our publish
    loop_store = _loop().store
    real_publish = loop_store.publish
    rivals: list[ModelRef] = []

    def publish_after_a_rival(bundle: Bundle, *, expected: ModelRef | None, **kwargs: Any) -> ModelRef:
        if not rivals:
            rival = tiny_bundle.with_metadata(version="v2")
            rivals.append(real_publish(rival, expected=loop_store.head(), action="promote", verdict_count=1))
        return real_publish(bundle, expected=expected, **kwargs)

    monkeypatch.setattr(loop_store, "publish", publish_after_a_rival)

    # When our retrain runs
    invoke(send(*(_zorblax_verdicts(12)[index : index + 4] for index in range(0, 12, 4))))

    # Then our first publish lost (ConcurrentUpdate), the fine-tune was redone on the rival, and both promotions stand
    [rival] = rivals
    history = store.versions()
    assert [info.label for info in history] == ["v3", "v2", "v1"]
    assert history[1].version_id == rival.version_id
    promoted = _active_bundle(store)
    assert promoted.metadata["parent_version_id"] == rival.version_id
    assert promoted.metadata["parent_version"] == "v2"
    assert promoted.metadata["learning"]["attempt"] == 2
    assert Predictor(promoted).predict([PROBE])[0].label == "spam"
    # And no published version was trained on the stale parent
    parents = [store.load(info.version_id).bundle().metadata.get("parent_version_id") for info in history]
    assert base_ref.version_id not in parents


def test_retrain_s3_failure_during_promotion_keeps_active_model_and_verdicts_pending(
    base_ref: ModelRef,
    store: ModelStore,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    monkeypatch: pytest.MonkeyPatch,
    read_metrics: Any,
) -> None:
    # Given S3 fails when the new active model is written
    s3 = _loop().store.s3
    real_put = s3.put_object

    def failing_put(**kwargs: Any) -> Any:
        if kwargs["Key"] == store.active_key:
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "PutObject"
            )
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", failing_put)
    event = send(*(_zorblax_verdicts(12)[index : index + 4] for index in range(0, 12, 4)))
    read_metrics()

    # When a batch arrives and its retrain fails while promoting
    response = invoke(event)

    # Then the messages are still acknowledged (their verdicts are archived) and the failure is counted
    assert response == {"batchItemFailures": []}
    assert read_metrics()["RetrainFailed"] == 1
    # And the active model is untouched and the verdicts stay pending
    assert store.head() == base_ref and len(store.versions()) == 1
    assert _loop().state.load() == (RetrainState(), None)

    # When S3 recovers and the schedule runs
    monkeypatch.setattr(s3, "put_object", real_put)
    outcome = invoke(load_event("retrain_schedule.json"))

    # Then the same verdicts are learned
    assert outcome["status"] == "promoted" and outcome["verdicts"] == 12
    assert _active_bundle(store).metadata["parent_version_id"] == base_ref.version_id


def test_handler_scheduled_event_retrains_from_verdicts_since_the_last_promotion(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given verdicts archived while below MIN_VERDICTS_TO_TRAIN
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    _fresh_container()
    invoke(load_event("retrain_sqs.json"))
    assert store.head() == base_ref

    # When the daily schedule fires
    first = invoke(load_event("retrain_schedule.json"))

    # Then it trains on all of them regardless of the minimum
    assert first["status"] == "promoted" and first["mode"] == "since-promotion" and first["verdicts"] == 5
    assert first["parent_version_id"] == base_ref.version_id

    # When more verdicts arrive and the schedule fires again
    invoke(send(_zorblax_verdicts(4, start=100)))
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


# --- history ------------------------------------------------------------------------------------------------


def test_store_rollback_restores_exact_bytes_and_lists_every_version(
    base_ref: ModelRef, store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given a second version on top of the first
    original = store.load(base_ref.version_id).data
    second = store.publish(tiny_bundle.with_metadata(version="v2"), expected=base_ref, action="promote")

    # When the operator rolls back to the first
    restored = store.rollback(base_ref.version_id)

    # Then the active object holds the earlier model byte for byte (but for its write stamp), as a new version
    current = boto3.client("s3").get_object(Bucket=BUCKET, Key=store.active_key)["Body"].read()
    assert same_model(current, original)
    # And the history lists all three versions, newest first, with only the restore active
    history = store.versions()
    assert [info.version_id for info in history] == [restored.version_id, second.version_id, base_ref.version_id]
    assert [info.is_active for info in history] == [True, False, False]
    assert history[0].action == "rollback" and history[0].restored_from == base_ref.version_id


def test_latest_records_keep_the_newest_label_per_input() -> None:
    # Given a verdict, an exact copy and a later correction of another input
    from lodbrok.archive import ArchivedVerdict
    from lodbrok.retraining import latest_records

    def archived(verdict_id: str, text: str, label: str) -> ArchivedVerdict:
        verdict = Verdict(id=verdict_id, text=text, label=label)
        return ArchivedVerdict("k", verdict, verdict.fingerprint(), "m", None, "")

    records = [
        archived("1", "free tokens", "spam"),
        archived("2", "see you at 8", "spam"),
        archived("1", "free tokens", "spam"),
        archived("2", "See you at 8 ", "ham"),
    ]

    # When the training set is built
    items = [record.verdict.to_labelled_item() for record in latest_records(records)]

    # Then each input appears once, with its latest label
    assert items == [
        LabelledItem("free tokens", "spam", item_id="1"),
        LabelledItem("See you at 8 ", "ham", item_id="2"),
    ]


def test_retrain_function_calls_exactly_what_its_role_allows(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given a batch of verdicts on the queue (sent and received outside the recording)
    event = send(*_zorblax_verdicts(6))
    # When a fresh container archives them, fine-tunes, gates and promotes, with every AWS call recorded
    with recorded_aws_actions() as used:
        _fresh_container()
        assert invoke(event) == {"batchItemFailures": []}
    assert _loop().store.versions()[0].action == "promote"
    # Then it needed no action outside its role (template.yaml, checked in tests/unit/test_template.py), and
    # every action of the role was used except one that Powertools' idempotency documents and needs only when
    # a put does not return the existing record (DeleteItem is used: the verdict memory forgets on promotion)
    assert used <= CODE_ACTIONS["RetrainFunctionRole"]
    assert CODE_ACTIONS["RetrainFunctionRole"] - used == {"dynamodb:GetItem"}


# --- verdict memory -----------------------------------------------------------------------------------------


def _remembered(*inputs: str) -> dict[str, str | None]:
    """The verdict memory's label for each input (None: no entry)."""
    from lodbrok.features import canonical_key
    from lodbrok.verdict_memory import VerdictMemory

    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    items = boto3.client("dynamodb").batch_get_item(
        RequestItems={MEMORY_TABLE: memory.read_request([canonical_key(text) for text in inputs])}
    )["Responses"][MEMORY_TABLE]
    found = memory.parse(items, [canonical_key(text) for text in inputs])
    return {text: (found[canonical_key(text)].label if canonical_key(text) in found else None) for text in inputs}


def test_verdict_memory_remembers_screened_verdicts_at_intake_and_never_held_ones(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch with a new campaign labelled spam and obvious template spam labelled ham (lies), no retrain
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    _fresh_container()
    campaign, lies = _zorblax_verdicts(3), _flipped_template_spam(5)
    invoke(send(campaign, lies))
    # Then the campaign is remembered at once, before any fine-tune; the lies, which screening holds, are not
    remembered = _remembered(*(verdict["text"] for verdict in campaign + lies))
    assert [remembered[verdict["text"]] for verdict in campaign] == ["spam"] * 3
    assert [remembered[verdict["text"]] for verdict in lies] == [None] * 5


def test_verdict_memory_later_verdict_replaces_and_promotion_forgets_what_the_model_learned(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given a correction, then a correction of that correction on the same input, in later messages
    first = {"id": "c-1", "text": "team lunch moved to friday", "label": "spam", "received_at": "2026-12-01T10:00:00Z"}
    second = {**first, "label": "ham", "received_at": "2026-12-01T10:05:00Z"}
    invoke(send(second))
    invoke(send(first))  # arrives late, but was decided earlier: it does not replace the newer one
    assert _remembered(first["text"]) == {first["text"]: "ham"}
    # When a campaign is learned and promoted
    campaign = _zorblax_verdicts(12)
    invoke(send(*(campaign[index : index + 4] for index in range(0, 12, 4))))
    assert store.versions()[0].action == "promote"
    # Then the entries the promoted model answers the same way are gone; the model answers them now
    promoted = Predictor(_active_bundle(store))
    texts = [verdict["text"] for verdict in campaign]
    right = [
        text for text, prediction in zip(texts, promoted.predict(texts), strict=True) if prediction.label == "spam"
    ]
    assert right, "the promoted model learned the campaign"
    assert set(_remembered(*right).values()) == {None}


def test_verdict_memory_rollback_clears_entries_decided_after_the_restored_version(
    base_ref: ModelRef, store: ModelStore, signing_key: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Given an entry decided before the seed version was stored and one decided after a later promotion
    from lodbrok.cli import main
    from lodbrok.verdict_memory import VerdictMemory

    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    old = Verdict(id="old", text="an old correction", label="ham", received_at="2000-01-01T00:00:00.000Z")
    new = Verdict(id="new", text="a new correction", label="spam", received_at="2999-01-01T00:00:00.000Z")
    assert memory.remember([old, new]) == 2
    store.publish(_active_bundle(store), expected=store.head(), action="promote")
    # When an operator rolls back to the seed with the CLI
    monkeypatch.setenv("MODEL_SIGNING_KEY", signing_key)
    get_settings.cache_clear()
    assert main(["rollback", "--bucket", BUCKET, "--to", base_ref.version_id]) == 0
    # Then what was decided after the seed was stored is cleared, and what came before is kept
    assert _remembered("an old correction", "a new correction") == {
        "an old correction": "ham",
        "a new correction": None,
    }
    assert "cleared 1 verdict memory entries" in capsys.readouterr().out
