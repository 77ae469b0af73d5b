"""Why an input got its label: occlusion on the served LiteRT model itself. numpy only (serving imports it).

Each piece of an input (a word, a URL, a shape of the whole text such as `<phone>` or `<bang>`; for a record,
a word or value of a named field) is scored by the served model on the input's own token ids with that
piece's tokens replaced by padding: its word, its character n-grams, the word pairs it is part of. How much
the log-odds of the answered label drop is the piece's weight: positive pushed the input towards the label,
negative away from it (+0.69 means the piece doubled the label's odds). Log-odds rather than probability,
because a confident answer rests on several pieces that each barely move a probability of 0.9999; the
ranking is the same either way. The weights are what the served model does, not what a second model guesses, and
need nothing but the model's own labels, so any label set works. The cost is one extra row per piece (a
batch per item, at most `max_tokens` rows), scored in one pass with the plain prediction.

The featurizer says which pieces make each token (`Featurizer.attributed_token_ids`, the same code path as
`transform`), so a piece's removal takes exactly the tokens that only it makes; an n-gram that another word
also makes stays. Tokens cut by truncation are not brought back: the row the model saw, minus the piece.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from lodbrok.model.decision import choose_labels
from lodbrok.model.features import Featurizer, Piece
from lodbrok.model.items import ModelInput
from lodbrok.model.predictor import Prediction, Predictor

TOP_PIECES = 5  # pieces reported on each side: what a moderator reads, not every word


@dataclass(frozen=True)
class PieceWeight:
    piece: str
    field: str | None  # the record field the piece came from; None for a text
    weight: float  # log-odds of the label minus its log-odds without the piece


@dataclass(frozen=True)
class Explanation:
    label: str
    towards: list[PieceWeight]  # largest positive weights first
    away: list[PieceWeight]  # most negative weights first
    pieces: int  # how many pieces were scored


@dataclass(frozen=True)
class Explained:
    prediction: Prediction  # the same as `Predictor.predict` answers
    explanation: Explanation
    token_ids: np.ndarray  # the row the model saw


class Occlusion:
    """An input's row of token ids and, for each piece, the positions whose tokens need it."""

    def __init__(self, featurizer: Featurizer, item: ModelInput) -> None:
        ids, removed_by = featurizer.attributed_token_ids(item)
        self.row = np.zeros(featurizer.config.max_tokens, dtype=np.int32)
        self.row[: len(ids)] = ids
        positions: dict[Piece, list[int]] = {}
        for position, pieces in enumerate(removed_by):
            for piece in pieces:
                positions.setdefault(piece, []).append(position)
        self.positions = positions

    @property
    def pieces(self) -> list[Piece]:
        return list(self.positions)

    def rows_without(self, removals: Sequence[Collection[Piece]]) -> np.ndarray:
        """One row per removal: the input's row with the tokens of those pieces set to padding."""
        rows = np.repeat(self.row[None, :], len(removals), axis=0)
        for index, pieces in enumerate(removals):
            for piece in pieces:
                rows[index, self.positions[piece]] = 0
        return rows


def explain(predictor: Predictor, items: Sequence[ModelInput], *, top: int = TOP_PIECES) -> list[Explained]:
    """Each item's prediction and the pieces that weighed most on its label."""
    occlusions = [Occlusion(predictor.featurizer, item) for item in items]
    blocks = [occlusion.rows_without([(), *([piece] for piece in occlusion.pieces)]) for occlusion in occlusions]
    if not blocks:
        return []
    probabilities = predictor.predict_ids(np.concatenate(blocks))
    starts = np.cumsum([0, *(len(block) for block in blocks)])[:-1]
    whole = probabilities[starts]
    chosen = choose_labels(predictor.decision, predictor.labels, whole)
    results = []
    for occlusion, start, row, label_index in zip(occlusions, starts, whole, chosen, strict=True):
        label = predictor.labels[int(label_index)]
        odds = log_odds(probabilities[start : start + 1 + len(occlusion.pieces)], int(label_index))
        weights = [
            PieceWeight(piece=text, field=field, weight=float(odds[0] - value))
            for (field, text), value in zip(occlusion.pieces, odds[1:], strict=True)
        ]
        prediction = Prediction(
            label=label, probabilities={name: float(value) for name, value in zip(predictor.labels, row, strict=True)}
        )
        results.append(Explained(prediction, _explanation(label, weights, top), occlusion.row))
    return results


def log_odds(probabilities: np.ndarray, label: int) -> np.ndarray:
    """log(p / (1 - p)) of `label` for each row, with 1 - p summed from the other labels' own probabilities, which
    stay exact in float32 where p itself rounds to 1."""
    rows = np.asarray(probabilities, dtype=np.float64)
    others = np.delete(rows, label, axis=1).sum(axis=1)
    return np.log(np.maximum(rows[:, label], 1e-300)) - np.log(np.maximum(others, 1e-300))


def _explanation(label: str, weights: list[PieceWeight], top: int) -> Explanation:
    ranked = sorted(weights, key=lambda entry: entry.weight, reverse=True)
    return Explanation(
        label=label,
        towards=[entry for entry in ranked[:top] if entry.weight > 0],
        away=[entry for entry in reversed(ranked[-top:]) if entry.weight < 0],
        pieces=len(weights),
    )
