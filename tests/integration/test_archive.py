"""The verdict archive (lodbrok.archive): held verdicts survive a crash and are accepted or rejected for good.

Driven through `retrain.app.lambda_handler` with SQS events, against moto, like test_retrain.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lodbrok.cli import main
from lodbrok.retrain_state import Mode
from lodbrok.store import ModelRef, ModelStore
from support import RETRAIN_BUCKET as BUCKET
from support import flipped_template_spam, learning_loop


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
