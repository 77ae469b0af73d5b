"""The verdict archive (lodbrok.verdicts.archive): held verdicts survive a crash and are accepted or rejected for good,
exactly once, at the server's time.

Driven through `retrain.app.lambda_handler` with SQS events, against moto, like test_retrain.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lodbrok import aws as aws_clients
from lodbrok.learning.state import Mode
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.verdicts import archive as archive_module
from lodbrok.verdicts.archive import ArchiveCursor, ReviewError, VerdictArchive
from lodbrok.verdicts.verdict import Verdict
from lodbrok_cli.main import main
from support import RETRAIN_BUCKET as BUCKET
from support import flipped_template_spam, learning_loop


def parse_iso(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _raise_s3_error(*args: Any, **kwargs: Any) -> Any:
    raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "PutObject")


def test_held_verdicts_survive_a_crash_and_are_accepted_or_rejected_for_good(
    base_ref: ModelRef,
    store: ModelStore,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    monkeypatch: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a retrain that crashes after holding a batch, before its cursor moves
    loop = learning_loop()
    event = send(flipped_template_spam(6, source="moderator-9"))
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


def test_held_verdict_accepted_by_a_reviewer_whose_clock_is_ten_minutes_behind_is_still_learned(
    base_ref: ModelRef,
    store: ModelStore,
    invoke: Callable[..., dict[str, Any]],
    send: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given held verdicts, and a retrain that moved its cursor past them (its watermark trails it by minutes)
    loop = learning_loop()
    invoke(send(flipped_template_spam(6, source="moderator-9")))
    keys = [record["key"] for record in loop.archive.held()]
    state, _ = loop.state.load()
    assert state.last_attempt is not None and state.last_attempt.status == "held"

    # When a reviewer whose clock is 10 minutes behind accepts two of them
    real_now = archive_module.utc_now
    with monkeypatch.context() as skewed:
        skewed.setattr(archive_module, "utc_now", lambda: real_now() - timedelta(minutes=10))
        assert main(["held", "accept", *keys[:2], "--bucket", BUCKET, "--reviewer", "ana"]) == 0

    # Then the review is stamped with the server's time, and the next retrain reads and learns both
    accepted = loop.archive.held("accepted")
    assert all(real_now() - parse_iso(record["reviewed_at"]) < timedelta(minutes=1) for record in accepted)
    assert {record["accepted_key"] for record in accepted} <= set(loop.archive.pending(state.cursor).keys)
    outcome = loop.retrain()
    assert outcome.verdicts == 2 and outcome.held == 0 and outcome.status in {"promoted", "rejected"}


def _held_verdict(archive: VerdictArchive) -> str:
    verdict = Verdict(id="h-1", text="URGENT! You have won a £1000 prize", label="ham", source="moderator-9")
    [record] = archive.read([archive.write(verdict, message_id="m-1", sent_at=None)])
    return archive.hold(record, "contradicts trusted data", {})


def test_review_race_between_accept_and_reject_has_one_winner_and_a_clear_message_for_the_loser(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a held verdict, and a rival reviewer who rejects it between this reviewer's read and write
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    key = _held_verdict(VerdictArchive(BUCKET, s3=boto3.client("s3")))
    reviewer_s3 = aws_clients.client("s3")  # the client the CLI uses
    real_get = reviewer_s3.get_object
    rivals: list[str] = []

    def get_then_rival_rejects(**kwargs: Any) -> Any:
        response = real_get(**kwargs)
        if kwargs["Key"] == key and not rivals:
            rivals.append("bo")
            VerdictArchive(BUCKET, s3=boto3.client("s3")).review(key, "rejected", reviewer="bo")
        return response

    monkeypatch.setattr(reviewer_s3, "get_object", get_then_rival_rejects)

    # When this reviewer accepts it with the CLI
    code = main(["held", "accept", key, "--bucket", BUCKET, "--reviewer", "ana"])

    # Then the rival's reject stands, no accepted copy was archived, and this reviewer gets a clear message
    assert code == 2
    error = capsys.readouterr().err
    assert "reviewed by someone else" in error and "Traceback" not in error
    archive = VerdictArchive(BUCKET, s3=boto3.client("s3"))
    [record] = archive.held("rejected")
    assert record["reviewer"] == "bo" and "accepted_key" not in record
    assert [verdict.trusted for verdict in archive.read(archive.pending(ArchiveCursor()).keys)] == [False]


def test_review_cut_short_after_the_decision_is_completed_by_accepting_again(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an accept that crashed after its decision was written, before the trusted copy was archived
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    archive = VerdictArchive(BUCKET, s3=boto3.client("s3"))
    key = _held_verdict(archive)
    with monkeypatch.context() as crash:
        crash.setattr(archive, "write", _raise_s3_error)
        with pytest.raises(ClientError):
            archive.review(key, "accepted", reviewer="ana")
    [unfinished] = archive.held("accepted")
    assert "accepted_key" not in unfinished

    # When the reviewer accepts it again (a reject is refused: the decision was made)
    with pytest.raises(ReviewError, match="already accepted"):
        archive.review(key, "rejected")
    completed = archive.review(key, "accepted", reviewer="ana")

    # Then the trusted copy is archived once and named by the record; a further review is refused
    copies = [verdict for verdict in archive.read(archive.pending(ArchiveCursor()).keys) if verdict.trusted]
    assert [copy.key for copy in copies] == [completed["accepted_key"]]
    with pytest.raises(ReviewError, match="already accepted"):
        archive.review(key, "accepted")
