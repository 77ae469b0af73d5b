"""The verdict memory (lodbrok.verdict_memory) as the retrain function and the CLI keep it: screened verdicts
remembered at intake (unless decided under model versions a rollback undid), forgotten once a promoted model agrees.

Driven through `retrain.app.lambda_handler` with SQS events, against moto. How the predict function answers with
the memory, and ignores entries outside the active model's lineage, is in test_predict_service.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from lodbrok.clock import utc_iso
from lodbrok.predictor import Predictor
from lodbrok.store import ModelRef, ModelStore
from support import (
    MEMORY_TABLE,
    active_bundle,
    flipped_template_spam,
    fresh_container,
    learning_loop,
    zorblax_verdicts,
)
from support import (
    RETRAIN_BUCKET as BUCKET,
)


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
    fresh_container()
    campaign, lies = zorblax_verdicts(3), flipped_template_spam(5)
    invoke(send(campaign, lies))
    # Then the campaign is remembered at once, before any fine-tune; the lies, which screening holds, are not
    remembered = _remembered(*(verdict["text"] for verdict in campaign + lies))
    assert [remembered[verdict["text"]] for verdict in campaign] == ["spam"] * 3
    assert [remembered[verdict["text"]] for verdict in lies] == [None] * 5


def test_verdict_memory_takes_a_held_verdict_once_a_reviewer_accepts_it(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, capsys: Any
) -> None:
    # Given lies that the retrain function held for review
    from lodbrok.cli import main

    lies = flipped_template_spam(3)
    invoke(send(lies))
    held = learning_loop().archive.held("held")
    assert len(held) == 3
    texts = [record["verdict"]["text"] for record in held]
    # When a reviewer accepts one and rejects the others with the CLI
    capsys.readouterr()
    assert main(["held", "accept", held[0]["key"], "--bucket", BUCKET]) == 0
    assert "answered from the verdict memory" in capsys.readouterr().out
    assert main(["held", "reject", *(record["key"] for record in held[1:]), "--bucket", BUCKET]) == 0
    # Then only the accepted one is answered from the memory, before any fine-tune
    assert _remembered(*texts) == {texts[0]: held[0]["verdict"]["label"], texts[1]: None, texts[2]: None}


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
    campaign = zorblax_verdicts(12)
    invoke(send(*(campaign[index : index + 4] for index in range(0, 12, 4))))
    assert store.versions()[0].action == "promote"
    # Then the entries the promoted model answers the same way are gone; the model answers them now
    promoted = Predictor(active_bundle(store))
    texts = [verdict["text"] for verdict in campaign]
    right = [
        text for text, prediction in zip(texts, promoted.predict(texts), strict=True) if prediction.label == "spam"
    ]
    assert right, "the promoted model learned the campaign"
    assert set(_remembered(*right).values()) == {None}


def test_verdict_memory_after_a_rollback_takes_no_verdict_decided_under_the_undone_versions(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given a promotion over the seed, and a campaign verdict stamped while it was active
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    fresh_container()
    store.publish(active_bundle(store).with_metadata(version="v2"), expected=store.head(), action="promote")
    stamped_before, stamped_after = zorblax_verdicts(2)
    stamped_before["received_at"] = utc_iso()
    # When the promotion is rolled back, and only then the verdict is processed, with one stamped after the rollback
    store.rollback(base_ref.version_id)
    stamped_after["received_at"] = utc_iso()
    invoke(send([stamped_before, stamped_after]))
    # Then the verdict decided under the undone version is not remembered; the later one is
    assert _remembered(stamped_before["text"], stamped_after["text"]) == {
        stamped_before["text"]: None,
        stamped_after["text"]: "spam",
    }
