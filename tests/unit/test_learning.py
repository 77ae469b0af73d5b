"""Learning (lodbrok.learning) without AWS: the gate's near slice is the trusted items nearest the learned verdicts."""

from __future__ import annotations

from lodbrok.data import LabelledItem
from lodbrok.learning import LearningConfig, nearest_trusted_items
from lodbrok.screening import ScreeningConfig, TokenIndex
from support import TINY_FEATURIZER

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
