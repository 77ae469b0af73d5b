"""Screening (lodbrok.learning.screening): verdicts that contradict well-founded knowledge are held for review, not
learned; a new campaign is learned.

Driven through `retrain.app.lambda_handler` with SQS events, against moto, like test_retrain.py; `screen` itself
on the tiny model in memory, without AWS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lodbrok.learning.proposal import Screener
from lodbrok.learning.screening import ScreeningConfig
from lodbrok.model.bundle import Bundle
from lodbrok.model.data import LabelledItem
from lodbrok.model.features import canonical_key
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


# ---- screen, on the tiny model in memory ------------------------------------------------------------------------


def _items(verdicts: list[dict[str, Any]]) -> list[LabelledItem]:
    return [LabelledItem(verdict["text"], verdict["label"]) for verdict in verdicts]


def test_screen_holds_lies_against_well_founded_knowledge_and_learns_a_new_campaign(tiny_bundle: Bundle) -> None:
    # Given the tiny model's screener, obvious spam labelled ham, and a spam campaign it has never seen
    screener = Screener.of(tiny_bundle)
    lies, campaign = _items(flipped_template_spam(5)), _items(zorblax_verdicts(4))

    # When the batch is screened
    screening = screener.screen(lies + campaign, ScreeningConfig())

    # Then the lies are held, each with the model's label, its neighbours and the reason, and the campaign is learned
    assert [held.item for held in screening.held] == lies
    assert screening.learn == campaign
    evidence = screening.held[0].evidence
    assert evidence["model_label"] == "spam" and evidence["verdict_label_probability"] < 0.05
    assert len(evidence["neighbours"]) >= ScreeningConfig().min_close
    assert {neighbour["label"] for neighbour in evidence["neighbours"]} == {"spam"}
    assert "nearest trusted items" in screening.held[0].reason


def test_screen_learns_a_contradiction_no_trusted_item_is_near(tiny_bundle: Bundle) -> None:
    # Given a verdict the model disagrees with, worded like nothing it was trained on
    screener = Screener.of(tiny_bundle)
    [model_label] = [p.label for p in screener.predictor.predict(["qwxz vbnm plokij"])]
    other = "ham" if model_label == "spam" else "spam"

    # When it is screened, Then too few close neighbours back the model, so it is learned
    assert screener.screen([LabelledItem("qwxz vbnm plokij", other)], ScreeningConfig()).learn == [
        LabelledItem("qwxz vbnm plokij", other)
    ]


def test_screen_never_holds_a_reviewed_verdict_nor_anything_when_disabled(tiny_bundle: Bundle) -> None:
    # Given lies, one of them accepted by a reviewer
    screener = Screener.of(tiny_bundle)
    lies = _items(flipped_template_spam(3))

    # When screened with the reviewed key, and with screening off
    reviewed = screener.screen(lies, ScreeningConfig(), reviewed={canonical_key(lies[0].input)})
    disabled = screener.screen(lies, ScreeningConfig(hold_below=0))

    # Then the reviewed one is learned and the others held; with screening off all are learned
    assert reviewed.learn == lies[:1] and [held.item for held in reviewed.held] == lies[1:]
    assert disabled.learn == lies and disabled.held == []


def test_screener_screens_the_verdict_received_last_per_input(tiny_bundle: Bundle) -> None:
    # Given a lie corrected later in the batch to the truth
    screener = Screener.of(tiny_bundle)
    [lie] = _items(flipped_template_spam(1))
    correction = LabelledItem(lie.input, "spam")

    # When the batch is screened, Then only the correction is considered, and learned
    screening = screener.screen([lie, correction], ScreeningConfig())
    assert screening.learn == [correction] and screening.held == []
