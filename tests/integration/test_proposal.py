"""Proposals (lodbrok.learning.proposal): a candidate that only memorised its verdicts is rejected on the verdicts
of each probe.

Driven through `retrain.app.lambda_handler` with SQS events, against moto, like test_retrain.py; `propose` itself
on the tiny model in memory, without AWS.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from lodbrok.learning.proposal import LearningConfig, nearest_trusted_items, propose
from lodbrok.learning.screening import ScreeningConfig, TokenIndex
from lodbrok.model.bundle import Bundle
from lodbrok.model.data import LabelledItem
from lodbrok.model.predictor import Predictor
from lodbrok.registry.store import ModelRef, ModelStore
from support import PROBE, TINY_FEATURIZER, flipped_template_spam, zorblax_verdicts


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
    assert "out-of-fold-verdicts" in candidate.reason and "nothing was learned" in candidate.reason


REHEARSAL = [
    LabelledItem("what time does the match start tonight at the stadium", "ham"),
    LabelledItem("what time does the film start", "ham"),
    LabelledItem("WINNER claim your prize now call 09061234567", "spam"),
]
GATE = [LabelledItem("what time does the show start tonight", "ham"), LabelledItem("see you at lunch", "ham")]


def test_nearest_trusted_items_are_the_rehearsal_and_gate_items_near_each_learned_verdict() -> None:
    # Given the parent's trusted items (rehearsal sample and gate set), and a learned verdict that relabels
    # one of them while another verdict is near none
    trusted = TokenIndex(TINY_FEATURIZER, REHEARSAL + GATE)
    verdicts = [
        LabelledItem("what time does the film start", "spam"),
        LabelledItem("zorblax airdrop", "spam"),
    ]

    # When the gate's near slice is chosen
    near = nearest_trusted_items(trusted, verdicts, LearningConfig(screening=ScreeningConfig(min_similarity=0.4)))

    # Then it holds the near items of both kinds, never the item the verdict relabels, nor the far ones
    assert near == [REHEARSAL[0], GATE[0]]


# ---- propose, on the tiny model in memory ------------------------------------------------------------------------


def _items(verdicts: list[dict[str, Any]]) -> list[LabelledItem]:
    return [LabelledItem(verdict["text"], verdict["label"]) for verdict in verdicts]


@pytest.mark.parametrize("method", ["finetune", "retrain"])
def test_propose_learns_a_new_campaign_into_a_candidate_the_gate_promotes(tiny_bundle: Bundle, method: str) -> None:
    # Given a spam campaign the tiny model has never seen, and a lie among it
    campaign, lies = _items(zorblax_verdicts(12)), _items(flipped_template_spam(2))

    # When a candidate is proposed from them, by a fine-tune (the default) or a joint retrain
    config = LearningConfig(method=method)  # type: ignore[arg-type]
    proposal = propose(tiny_bundle, campaign + lies, config, version="v-next", parent_version="v-base")

    # Then the lie is held, the campaign learned, and the gate promotes a candidate that calls the campaign spam
    assert proposal.screening.learn == campaign and [held.item for held in proposal.screening.held] == lies
    assert proposal.candidate is not None and proposal.decision is not None
    assert proposal.decision.promote, proposal.decision.reason
    assert [check.name for check in proposal.decision.checks if check.passed] == [
        "gate-set",
        "per-label",
        "near-verdicts",
        "out-of-fold-verdicts",
    ]
    assert proposal.candidate.version == "v-next"
    assert proposal.candidate.metadata["training"]["kind"] == method
    assert Predictor(tiny_bundle).predict([PROBE])[0].label == "ham"
    assert Predictor(proposal.candidate).predict([PROBE])[0].label == "spam"


def test_propose_with_fewer_than_two_learnable_verdicts_fine_tunes_nothing(tiny_bundle: Bundle) -> None:
    # Given one verdict to learn, and lies the screening holds
    verdicts = _items(zorblax_verdicts(1)) + _items(flipped_template_spam(3))

    # When a candidate is proposed, Then there is none (nothing could be held out), only the screening
    proposal = propose(tiny_bundle, verdicts, LearningConfig())
    assert proposal.candidate is None and proposal.decision is None
    assert len(proposal.screening.learn) == 1 and len(proposal.screening.held) == 3
