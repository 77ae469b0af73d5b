"""Screening verdicts before learning: hold the ones that contradict well-founded knowledge.

A verdict is held for review (not learned, never lost) when both hold:
- the active model is confident it is wrong: it gives the verdict's label a probability below
  `hold_below` (SpamAssassin's auto-learn refuses to learn against a strong disagreement of its own
  learner; cleanlab's confident learning flags a label when another class is confidently predicted);
- that confidence is well-founded: the verdict's nearest trusted items (the parent's training data and
  verdicts learned before, compared by their shared featurizer tokens) are close, and most of them carry
  the model's label, not the verdict's.

A verdict about something the model has no trusted knowledge of (a new campaign, a new domain) has no
close trusted neighbours, so it is learned even when the model disagrees; the gate then checks the
candidate where the harm would be. Verdicts accepted by a reviewer (`trusted`) are never held.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lodbrok.model.data import LabelledItem
from lodbrok.model.features import Featurizer, FeaturizerConfig, canonical_key
from lodbrok.model.predictor import Predictor

PREVIEW_CHARS = 120


@dataclass(frozen=True)
class ScreeningConfig:
    """Neighbours are compared by the cosine of their token sets. Chosen on the demo model: at 0.4, 80 of
    80 templated lies (prize spam labelled ham, everyday chat labelled spam) were held and 4 of 1,138
    YouTube comments (a new domain); at 0.45, 55 of 80 and none (`make bench-learning` reports it)."""

    hold_below: float = 0.05
    neighbours: int = 5
    min_close: int = 3
    min_similarity: float = 0.4
    min_agreement: float = 0.8

    @property
    def enabled(self) -> bool:
        return self.hold_below > 0


@dataclass(frozen=True)
class Neighbour:
    index: int
    similarity: float


class TokenIndex:
    """Nearest items by cosine similarity of their token sets, through an inverted index of token ids."""

    def __init__(self, featurizer: FeaturizerConfig, items: Sequence[LabelledItem]) -> None:
        self.featurizer = Featurizer(featurizer)
        self.items = list(items)
        postings: dict[int, list[int]] = {}
        self._sizes = np.zeros(len(self.items), dtype=np.float64)
        for position, item in enumerate(self.items):
            ids = set(self.featurizer.token_ids(item.input))
            self._sizes[position] = len(ids)
            for token in ids:
                postings.setdefault(token, []).append(position)
        self._postings = {token: np.asarray(rows, dtype=np.int32) for token, rows in postings.items()}

    def nearest(self, item_input: Any, count: int, min_similarity: float = 0.0) -> list[Neighbour]:
        ids = set(self.featurizer.token_ids(item_input))
        hits = [self._postings[token] for token in ids if token in self._postings]
        if not hits or not self.items:
            return []
        overlap = np.bincount(np.concatenate(hits), minlength=len(self.items))
        similarity = overlap / np.sqrt(self._sizes * len(ids))
        best = np.argsort(-similarity, kind="stable")[:count]
        return [
            Neighbour(int(position), float(similarity[position]))
            for position in best
            if similarity[position] >= min_similarity and similarity[position] > 0
        ]


@dataclass(frozen=True)
class HeldVerdict:
    item: LabelledItem
    reason: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Screening:
    learn: list[LabelledItem]
    held: list[HeldVerdict] = field(default_factory=list)


def screen(
    predictor: Predictor,
    trusted: TokenIndex,
    verdicts: Sequence[LabelledItem],
    config: ScreeningConfig,
    *,
    reviewed: Collection[str] = (),
) -> Screening:
    """Split `verdicts` into the ones to learn and the ones to hold; `reviewed` are canonical keys of
    verdicts a reviewer accepted, which are always learned."""
    if not config.enabled or not verdicts:
        return Screening(list(verdicts))
    predictions = predictor.predict([item.input for item in verdicts])
    learn: list[LabelledItem] = []
    held: list[HeldVerdict] = []
    for item, prediction in zip(verdicts, predictions, strict=True):
        verdict_probability = prediction.probabilities[item.label]
        if verdict_probability >= config.hold_below or canonical_key(item.input) in reviewed:
            learn.append(item)
            continue
        neighbours = trusted.nearest(item.input, config.neighbours, config.min_similarity)
        labels = Counter(trusted.items[neighbour.index].label for neighbour in neighbours)
        agreeing = labels[prediction.label]
        if len(neighbours) < config.min_close or agreeing < config.min_agreement * len(neighbours):
            learn.append(item)
            continue
        evidence = {
            "model_label": prediction.label,
            "verdict_label_probability": round(verdict_probability, 6),
            "neighbours": [
                {
                    "similarity": round(neighbour.similarity, 4),
                    "label": trusted.items[neighbour.index].label,
                    "preview": _preview(trusted.items[neighbour.index].input),
                }
                for neighbour in neighbours
            ],
        }
        reason = (
            f"the model gives {item.label!r} {verdict_probability:.4f} and {agreeing} of its {len(neighbours)} "
            f"nearest trusted items (similarity >= {config.min_similarity}) are {prediction.label!r}"
        )
        held.append(HeldVerdict(item, reason, evidence))
    return Screening(learn, held)


def _preview(item_input: Any) -> str:
    text = item_input if isinstance(item_input, str) else str(dict(item_input))
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
