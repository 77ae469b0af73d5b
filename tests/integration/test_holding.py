"""Held verdicts (lodbrok.learning.holding): written beside the archive with their reason, counted; senders whose
verdicts are mostly held suspended, with the rest of their batch held. Against a moto bucket, first without
the retrain function, then through it (`retrain.app.lambda_handler` with SQS events) and `lodbrok held clear`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from lodbrok.learning.holding import (
    SENDER_UNDER_REVIEW,
    SUSPECT_SENDER_MIN_VERDICTS,
    hold_screened,
    hold_suspended,
    hold_unknown_labels,
)
from lodbrok.learning.screening import HeldVerdict, Screening
from lodbrok.model.bundle import Bundle
from lodbrok.model.predictor import Predictor
from lodbrok.observability import digest, metrics
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.verdicts.archive import ArchivedVerdict, VerdictArchive, sender_digest
from lodbrok.verdicts.verdict import Verdict
from lodbrok_cli.main import main
from support import RETRAIN_BUCKET, active_bundle, flipped_template_spam, learning_loop, lying_batch, zorblax_verdicts

BUCKET = "lodbrok-holding-test"


@pytest.fixture
def archive(aws: None) -> VerdictArchive:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return VerdictArchive(BUCKET, s3=boto3.client("s3"))


def _archived(
    archive: VerdictArchive, source: str, count: int, label: str = "ham", *, trusted: bool = False
) -> list[ArchivedVerdict]:
    verdicts = [
        Verdict(id=f"{source}-{n}", text=f"{source} says {n} {trusted}", label=label, source=source)
        for n in range(count)
    ]
    keys = [
        archive.write(verdict, message_id=f"m-{source}", sent_at=None, index=n, trusted=trusted)
        for n, verdict in enumerate(verdicts)
    ]
    return archive.read(keys)


def _screening(learn: list[ArchivedVerdict], held: list[ArchivedVerdict]) -> Screening:
    return Screening([record.verdict.to_labelled_item() for record in learn], _held(held))


def _held(records: list[ArchivedVerdict]) -> list[HeldVerdict]:
    return [HeldVerdict(record.verdict.to_labelled_item(), "contradicts trusted data", {"n": 1}) for record in records]


def _flushed_metrics(read_metrics: Callable[[], dict[str, float]]) -> dict[str, float]:
    read_metrics()
    metrics.flush_metrics()
    return read_metrics()


def test_hold_screened_suspends_a_sender_only_when_most_of_enough_of_its_verdicts_were_held(
    archive: VerdictArchive, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given three senders: most of mallory's held, one of alice's, and all of bob's but too few to judge
    mallory = _archived(archive, "mallory", SUSPECT_SENDER_MIN_VERDICTS + 1)
    alice = _archived(archive, "alice", SUSPECT_SENDER_MIN_VERDICTS + 1)
    bob = _archived(archive, "bob", SUSPECT_SENDER_MIN_VERDICTS - 1)
    screened = mallory[:4] + alice[:1] + bob

    # When what the screening held is held
    result = hold_screened(archive, mallory + alice + bob, _screening(mallory[4:] + alice[1:], screened))

    # Then each is written beside the archive with its reason, evidence and sender
    records = {record["archive_key"]: record for record in archive.held()}
    assert {(records[r.key]["reason"], records[r.key]["evidence"]["n"]) for r in screened} == {
        ("contradicts trusted data", 1)
    }
    assert records[mallory[0].key]["sender"] == "unverified:mallory"
    # And only mallory is suspended: the rest of its batch is held too, and the others' is learned
    assert result.suspects == [digest("unverified:mallory")]
    assert archive.suspended() == {sender_digest("unverified:mallory")}
    assert {records[r.key]["reason"] for r in mallory[4:]} == {SENDER_UNDER_REVIEW}
    assert result.screening.learn == [record.verdict.to_labelled_item() for record in alice[1:]]
    assert result.count == len(screened) + 2 == len(result.screening.held)
    assert archive.held_archive_keys() == {r.key for r in screened + mallory[4:]}
    emitted = _flushed_metrics(read_metrics)
    assert emitted["VerdictsHeld"] == result.count and emitted["VerdictSourcesSuspect"] == 1


def test_hold_screened_never_holds_a_trusted_verdict_for_its_sender(archive: VerdictArchive) -> None:
    # Given mallory's batch mostly held, and a verdict a reviewer accepted that also names mallory
    mallory = _archived(archive, "mallory", SUSPECT_SENDER_MIN_VERDICTS + 1)
    [accepted] = _archived(archive, "mallory", 1, trusted=True)

    # When what the screening held is held
    result = hold_screened(archive, [*mallory, accepted], _screening([mallory[-1], accepted], mallory[:-1]))

    # Then mallory is suspended, and only the reviewed verdict is learned
    assert archive.suspended() == {sender_digest("unverified:mallory")}
    assert result.screening.learn == [accepted.verdict.to_labelled_item()]


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_hold_screened_with_nothing_held_writes_nothing_and_suspends_no_one(
    archive: VerdictArchive, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a batch the screening held nothing of
    records = _archived(archive, "mallory", SUSPECT_SENDER_MIN_VERDICTS + 1)

    # When it is passed on
    result = hold_screened(archive, records, _screening(records, []))

    # Then nothing is held, counted or suspended
    assert (result.count, result.suspects, len(result.screening.learn)) == (0, [], len(records))
    assert archive.held() == [] and archive.suspended() == set()
    emitted = _flushed_metrics(read_metrics)
    assert "VerdictsHeld" not in emitted and "VerdictSourcesSuspect" not in emitted


def test_hold_suspended_holds_a_suspended_senders_verdicts_unscreened_until_it_is_cleared(
    archive: VerdictArchive,
) -> None:
    # Given mallory is suspended, and new verdicts from mallory (one a reviewer accepted) and from alice
    archive.suspend("unverified:mallory", {"held": "6/6"})
    mallory, alice = _archived(archive, "mallory", 2), _archived(archive, "alice", 2)
    accepted = _archived(archive, "mallory", 1, trusted=True)

    # When the retrain's batch passes the suspension
    kept, held = hold_suspended(archive, mallory + alice + accepted)

    # Then mallory's are held as under review; alice's and the accepted one go on to the screening
    assert kept == alice + accepted and held == 2
    assert {record["reason"] for record in archive.held()} == {SENDER_UNDER_REVIEW}
    # And once the suspension is lifted, mallory's next verdicts go on too
    assert archive.lift("unverified:mallory") and not archive.lift("unverified:mallory")
    later = _archived(archive, "mallory", 1)
    assert hold_suspended(archive, later) == (later, 0)


def test_verdicts_whose_label_the_model_lacks_are_held_and_the_rest_returned(
    archive: VerdictArchive, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given verdicts archived while the model was unreadable, one with a label the model does not have
    known = _archived(archive, "alice", 2, label="spam")
    unknown = _archived(archive, "bob", 1, label="promo")

    # When they are checked against the model's labels
    kept, held = hold_unknown_labels(archive, known + unknown, ["ham", "spam"])

    # Then the unknown label is held, naming the label and the model's labels; the others go on
    assert kept == known and held == 1
    [record] = archive.held()
    assert record["archive_key"] == unknown[0].key and "'promo'" in record["reason"]
    assert record["evidence"] == {"model_labels": ["ham", "spam"]}
    assert _flushed_metrics(read_metrics)["VerdictsHeld"] == 1


# --- through the retrain function: a lying sender learns nothing, and is cleared by one action ----------------

FRESH_PRIZE_SPAM = "URGENT! You have won a £3000 prize! Call 09061234567 to claim. T&C apply"
FRESH_CHAT = "what time does the play start tonight"


@pytest.mark.slow
def test_retrain_learns_nothing_from_a_batch_of_lies_from_one_sender_and_holds_its_next_verdict(
    store: ModelStore,
    demo_bundle: Bundle,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    capsys: pytest.CaptureFixture[str],
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given the demo model, which answers fresh prize spam spam and fresh everyday chat ham
    base_ref = store.publish(demo_bundle.with_metadata(version="v1"), expected=None)
    assert [p.label for p in Predictor(demo_bundle).predict([FRESH_PRIZE_SPAM, FRESH_CHAT])] == ["spam", "ham"]
    lies = lying_batch(source="mallory")
    assert len({lie["text"] for lie in lies}) == 53

    # When one client sends 53 distinct lies (40 prize spam labelled ham, 13 everyday chat labelled spam)
    invoke(send(*(lies[index : index + 9] for index in range(0, len(lies), 9))))

    # Then none of them is learned: most were held by the screening, the rest for their sender
    assert store.head() == base_ref and store.candidates() == []
    loop = learning_loop()
    held = loop.archive.held()
    assert len(held) == 53 and {record["sender"] for record in held} == {"unverified:mallory"}
    assert any(record["reason"] == SENDER_UNDER_REVIEW for record in held), "the screening alone misses some"
    assert loop.archive.suspended() == {sender_digest("unverified:mallory")}
    # And fresh texts of both kinds are answered as before, and the verdict memory answers with none of the lies
    served = Predictor(active_bundle(store))
    assert [p.label for p in served.predict([FRESH_PRIZE_SPAM, FRESH_CHAT])] == ["spam", "ham"]
    assert read_metrics()["VerdictsRemembered"] == 0

    # When the same sender later sends verdicts the screening would pass
    invoke(send([{**verdict, "source": "mallory"} for verdict in zorblax_verdicts(4, start=100)]))

    # Then they are held for their sender, unscreened, until a reviewer clears it
    assert store.head() == base_ref
    later = [record for record in loop.archive.held() if record["verdict"]["id"].startswith("zb-")]
    assert len(later) == 4 and {record["reason"] for record in later} == {SENDER_UNDER_REVIEW}

    # When a reviewer clears the sender by rejecting everything it sent
    capsys.readouterr()
    assert main(["held", "clear", "--sender", "unverified:mallory", "--reject", "--bucket", RETRAIN_BUCKET]) == 0

    # Then all 57 are rejected in one action and the suspension is lifted
    assert "rejected 57 held verdicts of unverified:mallory; suspension lifted" in capsys.readouterr().out
    assert loop.archive.held("held") == [] and len(loop.archive.held("rejected")) == 57
    assert loop.archive.suspended() == set()


def test_retrain_learns_a_suspended_senders_verdicts_once_a_reviewer_clears_it_by_accepting_them(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given a sender suspended after most of a batch was held, whose next verdicts were held for it
    invoke(send(flipped_template_spam(6, source="moderator-9")))
    invoke(send([{**verdict, "source": "moderator-9"} for verdict in zorblax_verdicts(6)]))
    loop = learning_loop()
    assert len(loop.archive.held("held")) == 12 and loop.archive.suspended()

    # When a reviewer clears the sender by accepting everything it sent
    assert main(["held", "clear", "--sender", "unverified:moderator-9", "--accept", "--bucket", RETRAIN_BUCKET]) == 0

    # Then the suspension is lifted and the next retrain learns all 12 as trusted, holding none
    assert loop.archive.suspended() == set() and len(loop.archive.held("accepted")) == 12
    outcome = loop.retrain()
    assert outcome.verdicts == 12 and outcome.held == 0 and outcome.status in {"promoted", "rejected"}
    # And the sender's next verdicts are screened like anyone's again
    invoke(send([{**verdict, "source": "moderator-9"} for verdict in zorblax_verdicts(2, start=50)]))
    assert len(loop.archive.held("held")) == 0
