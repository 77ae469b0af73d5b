"""Screening (lodbrok.learning.screening): verdicts that contradict well-founded knowledge are held for review, not
learned; a new campaign is learned.

Driven through `retrain.app.lambda_handler` with SQS events, against moto, like test_retrain.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lodbrok.model.predictor import Predictor
from lodbrok.registry.store import ModelRef, ModelStore
from support import PROBE, active_bundle, flipped_template_spam, learning_loop, zorblax_verdicts


def test_retrain_holds_a_flipped_batch_of_near_duplicates_and_promotes_nothing(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, read_metrics: Any
) -> None:
    # Given 40 verdicts that call spam worded like the training data "ham", all from one source
    event = send(*(flipped_template_spam(40)[index : index + 10] for index in range(0, 40, 10)))
    read_metrics()

    # When the function learns from them
    invoke(event)

    # Then every one is held for review, with the reason and the evidence; nothing is trained or promoted
    assert store.head() == base_ref and store.candidates() == []
    held = learning_loop().archive.held()
    assert len(held) == 40 and {record["status"] for record in held} == {"held"}
    assert "nearest trusted items" in held[0]["reason"]
    evidence = held[0]["evidence"]
    assert evidence["model_label"] == "spam" and evidence["verdict_label_probability"] < 0.05
    assert {neighbour["label"] for neighbour in evidence["neighbours"]} == {"spam"}
    emitted = read_metrics()
    assert emitted["VerdictsHeld"] == 40 and emitted["VerdictSourcesSuspect"] == 1
    # And they are no longer pending (they wait for a reviewer, not for the next batch)
    state, _ = learning_loop().state.load()
    assert state.last_attempt is not None and state.last_attempt.status == "held"
    assert learning_loop().archive.pending(state.cursor).keys == []


def test_retrain_mixed_batch_learns_the_new_campaign_and_holds_the_lies(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given one batch: a new campaign labelled spam, and obvious template spam labelled ham
    lies = flipped_template_spam(10)
    event = send(zorblax_verdicts(12)[:6], lies[:5], zorblax_verdicts(12)[6:], lies[5:])

    # When the function learns from it
    assert invoke(event) == {"batchItemFailures": []}

    # Then the campaign is learned and promoted, and the lies are held, not learned
    promoted = active_bundle(store)
    assert store.head() != base_ref
    assert promoted.metadata["learning"]["verdict_count"] == 12 and promoted.metadata["learning"]["held"] == 10
    served = Predictor(promoted)
    assert served.predict([PROBE])[0].label == "spam"
    assert {prediction.label for prediction in served.predict([lie["text"] for lie in lies])} == {"spam"}
    assert len(learning_loop().archive.held()) == 10
    state, _ = learning_loop().state.load()
    assert learning_loop().archive.pending(state.cursor).keys == []
