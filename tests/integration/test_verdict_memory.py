"""The verdict memory (lodbrok.verdict_memory) as the retrain function and the CLI keep it: screened verdicts
remembered at intake, forgotten once a promoted model agrees or a rollback goes back before them.

Driven through `retrain.app.lambda_handler` with SQS events and through `lodbrok rollback`, against moto. How the
predict function answers with the memory is in test_predict_service.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from lodbrok.predictor import Predictor
from lodbrok.settings import get_settings
from lodbrok.store import ModelRef, ModelStore
from lodbrok.verdicts import Verdict
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
    store.publish(active_bundle(store), expected=store.head(), action="promote")
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
