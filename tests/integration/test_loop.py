"""The learning loop (lodbrok.learning.loop): a batch learned, gated and promoted; the minimum batch, a lost
promotion race and a failed promotion; the latest label per input.

Driven through `retrain.app.lambda_handler` with SQS events, against moto, like test_retrain.py (but for
`latest_records`, a plain function, kept here with the rest of its module's tests).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lodbrok.clock import utc_iso, utc_now
from lodbrok.learning import loop as loop_module
from lodbrok.learning.state import RetrainState
from lodbrok.model.bundle import Bundle
from lodbrok.model.data import LabelledItem
from lodbrok.model.features import canonical_key, input_digest
from lodbrok.model.predictor import Predictor
from lodbrok.registry.signing import SignatureError
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.verdicts.verdict import Verdict
from support import (
    MEMORY_TABLE,
    PROBE,
    active_bundle,
    archived_records,
    attested,
    fresh_container,
    learning_loop,
    load_event,
    zorblax_verdicts,
)


def test_retrain_promotes_a_candidate_that_learned_a_new_spam_campaign(
    base_ref: ModelRef, store: ModelStore, tiny_bundle: Bundle, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given an active model that has never seen the word "zorblax"
    assert Predictor(tiny_bundle).predict([PROBE])[0].label == "ham"
    event = send(*(zorblax_verdicts(12)[index : index + 4] for index in range(0, 12, 4)))

    # When verdicts teach that zorblax airdrop texts are spam
    response = invoke(event)

    # Then a new S3 version is active and classifies an unseen zorblax text as spam
    assert response == {"batchItemFailures": []}
    head = store.head()
    assert head is not None and head.version_id != base_ref.version_id
    promoted = active_bundle(store)
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
        "out-of-fold-verdicts",
    ]
    newest = store.versions()[0]
    assert (newest.version_id, newest.action, newest.parent, newest.verdict_count) == (
        head.version_id,
        "promote",
        "v1",
        12,
    )


def test_retrain_waits_for_min_verdicts_across_batches(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given MIN_VERDICTS_TO_TRAIN is 8
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "8")
    fresh_container()

    # When a first batch brings 5 verdicts
    invoke(load_event("retrain_sqs.json"))

    # Then they are archived and wait; nothing was trained
    assert store.head() == base_ref
    assert learning_loop().state.load() == (RetrainState(), None)

    # When a second batch brings 3 more
    invoke(send(zorblax_verdicts(3)))

    # Then all 8 are learned together
    promoted = active_bundle(store)
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
    loop_store = learning_loop().store
    real_publish = loop_store.publish
    rivals: list[ModelRef] = []

    def publish_after_a_rival(bundle: Bundle, *, expected: ModelRef | None, **kwargs: Any) -> ModelRef:
        if not rivals:
            rival = tiny_bundle.with_metadata(version="v2")
            rivals.append(real_publish(rival, expected=loop_store.head(), action="promote", verdict_count=1))
        return real_publish(bundle, expected=expected, **kwargs)

    monkeypatch.setattr(loop_store, "publish", publish_after_a_rival)

    # When our retrain runs
    invoke(send(*(zorblax_verdicts(12)[index : index + 4] for index in range(0, 12, 4))))

    # Then our first publish lost (ConcurrentUpdate), the fine-tune was redone on the rival, and both promotions stand
    [rival] = rivals
    history = store.versions()
    assert [info.label for info in history] == ["v3", "v2", "v1"]
    assert history[1].version_id == rival.version_id
    promoted = active_bundle(store)
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
    s3 = learning_loop().store.s3
    real_put = s3.put_object

    def failing_put(**kwargs: Any) -> Any:
        if kwargs["Key"] == store.active_key:
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "PutObject"
            )
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", failing_put)
    event = send(*(zorblax_verdicts(12)[index : index + 4] for index in range(0, 12, 4)))
    read_metrics()

    # When a batch arrives and its retrain fails while promoting
    response = invoke(event)

    # Then the messages are still acknowledged (their verdicts are archived) and the failure is counted
    assert response == {"batchItemFailures": []}
    assert read_metrics()["RetrainFailed"] == 1
    # And the active model is untouched and the verdicts stay pending
    assert store.head() == base_ref and len(store.versions()) == 1
    assert learning_loop().state.load() == (RetrainState(), None)

    # When S3 recovers and the schedule runs
    monkeypatch.setattr(s3, "put_object", real_put)
    outcome = invoke(load_event("retrain_schedule.json"))

    # Then the same verdicts are learned
    assert outcome["status"] == "promoted" and outcome["verdicts"] == 12
    assert active_bundle(store).metadata["parent_version_id"] == base_ref.version_id


def test_retrain_out_of_order_verdicts_learn_and_remember_the_one_received_last(
    base_ref: ModelRef,
    store: ModelStore,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given ham received at t2 that arrives first, and spam on the same input received at t1 < t2 that arrives
    # later (a delayed or redelivered message), with a new campaign to learn beside them
    t1, t2 = utc_iso(utc_now() - timedelta(minutes=2)), utc_iso(utc_now() - timedelta(minutes=1))
    text = "Hi team, the quarterly planning meeting moved to room 4B at 3pm"
    ham = {"id": "meeting", "text": text, "label": "ham"}
    spam = {**ham, "label": "spam"}
    learned: list[list[LabelledItem]] = []
    real_propose = loop_module.propose

    def recorded_propose(parent: Bundle, items: list[LabelledItem], *args: Any, **kwargs: Any) -> Any:
        learned.append(items)
        return real_propose(parent, items, *args, **kwargs)

    monkeypatch.setattr(loop_module, "propose", recorded_propose)

    # When the function archives, remembers and learns them in arrival order
    invoke(send(attested([*zorblax_verdicts(6), ham], received_at=t2), attested([spam], received_at=t1)))

    # Then the archive holds them in arrival order: ham, then spam
    loop = learning_loop()
    archived = [record.verdict.label for record in archived_records(loop) if record.verdict.id == "meeting"]
    assert archived == ["ham", "spam"]
    # And training learned ham, the verdict received last, and the verdict memory answers ham too
    [items] = learned
    assert [item.label for item in items if item.input == text] == ["ham"]
    assert loop.memory is not None
    entry = loop.memory.client.get_item(TableName=MEMORY_TABLE, Key={"pk": {"S": input_digest(canonical_key(text))}})
    remembered = entry["Item"]["label"]["S"] if "Item" in entry else None
    # (an entry the promoted model made unnecessary is forgotten: then the model answers ham)
    assert remembered == "ham" or (
        remembered is None and Predictor(active_bundle(store)).predict([text])[0].label == "ham"
    )


def test_latest_records_keep_the_newest_label_per_input() -> None:
    # Given a verdict, an exact copy and a later correction of another input
    from lodbrok.learning.loop import latest_records
    from lodbrok.verdicts.archive import ArchivedVerdict

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


def test_latest_records_a_verdict_stamped_in_the_future_never_outranks_a_later_correction() -> None:
    # Given a producer's verdict stamped 9999-12-31, archived at 10:00, and a correction received at 10:05
    from lodbrok.learning.loop import latest_records
    from lodbrok.verdicts.archive import ArchivedVerdict

    forged = Verdict(id="1", text="free tokens", label="ham", received_at="9999-12-31T00:00:00.000Z")
    correction = Verdict(id="1", text="free tokens", label="spam", received_at="2026-01-02T10:05:00.000Z")
    records = [
        ArchivedVerdict("k1", forged, forged.fingerprint(), "m1", None, "2026-01-02T10:00:00.000Z"),
        ArchivedVerdict("k2", correction, correction.fingerprint(), "m2", None, "2026-01-02T10:05:01.000Z"),
    ]

    # When the training set is built
    [latest] = latest_records(records)

    # Then the correction wins: the forged stamp counts as no later than its archive time
    assert latest.verdict.label == "spam"


@pytest.mark.parametrize("copied", ["candidate", "older version"])
def test_retrain_refuses_to_learn_into_a_model_copied_over_the_active_key(
    base_ref: ModelRef,
    store: ModelStore,
    tiny_bundle: Bundle,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    copied: str,
) -> None:
    # Given v2 promoted over the seed, then a gate-rejected candidate or the older seed copied over the active key
    store.publish(tiny_bundle.with_metadata(version="v2"), expected=base_ref, action="promote")
    source = {"Bucket": store.bucket, "Key": store.active_key, "VersionId": base_ref.version_id}
    if copied == "candidate":
        source = {"Bucket": store.bucket, "Key": store.save_candidate(tiny_bundle.with_metadata(version="v99"), "gate")}
    copy = store.s3.copy_object(Bucket=store.bucket, Key=store.active_key, CopySource=source)["VersionId"]
    fresh_container()

    # When verdicts arrive that would be learned and promoted
    response = invoke(send(*(zorblax_verdicts(12)[index : index + 4] for index in range(0, 12, 4))))

    # Then they are archived, but nothing is learned into the copy or promoted over it: it is not an approved model
    assert response == {"batchItemFailures": []}
    assert store.head() is not None and store.head().version_id == copy
    with pytest.raises(SignatureError):
        learning_loop().retrain()
