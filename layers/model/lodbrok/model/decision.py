"""The decision rule: from a model's probabilities to the label it answers. numpy only (serving imports it).

Probabilities stay the model's own; the label uses per-label thresholds chosen from scores the model
gave to items it was not trained on (out-of-fold scores at training time, the gate set after a
fine-tune), because a threshold chosen on training scores sees an overconfident model.

- Two labels: the rarer label is the positive one. Its threshold is the F1-optimal cut of the scores,
  or, with a precision target, the cut with the highest recall whose precision reaches the target.
  The label is positive when p(positive) >= threshold; the other label's threshold is 1 - threshold.
- More labels: the label with the largest p(label) / threshold(label); thresholds are found by
  coordinate ascent on macro F1. Equal thresholds reproduce the argmax.
- A bundle without a rule (written before rules existed) answers the argmax, which for two labels is
  the 0.5 threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lodbrok.model.evaluation import ranked_cuts

_SEARCH_ROUNDS = 3
_GRID = np.geomspace(0.02, 0.98, 41)


class DecisionError(ValueError):
    """A stored decision rule does not fit the model's labels."""


@dataclass(frozen=True)
class DecisionRule:
    thresholds: dict[str, float]
    positive_label: str | None = None
    method: str = ""
    min_precision: float | None = None
    scores_from: str = ""
    scored_items: int = 0
    expected: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": dict(self.thresholds),
            "positive_label": self.positive_label,
            "method": self.method,
            "min_precision": self.min_precision,
            "scores_from": self.scores_from,
            "scored_items": self.scored_items,
            "expected": self.expected,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], labels: Sequence[str]) -> DecisionRule | None:
        """The rule stored in a bundle's metadata, or None for a bundle from before rules existed."""
        raw = metadata.get("decision")
        if raw is None:
            return None
        try:
            thresholds = {str(label): float(value) for label, value in raw["thresholds"].items()}
            positive = raw.get("positive_label")
            rule = cls(
                thresholds=thresholds,
                positive_label=None if positive is None else str(positive),
                method=str(raw.get("method", "")),
                min_precision=None if raw.get("min_precision") is None else float(raw["min_precision"]),
                scores_from=str(raw.get("scores_from", "")),
                scored_items=int(raw.get("scored_items", 0)),
                expected=dict(raw.get("expected") or {}),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise DecisionError(f"the decision rule in the bundle metadata is malformed: {error}") from error
        if set(thresholds) != set(labels) or not all(0.0 < value < 1.0 for value in thresholds.values()):
            raise DecisionError("the decision rule needs a threshold strictly between 0 and 1 for every label")
        if rule.positive_label is not None and (len(labels) != 2 or rule.positive_label not in labels):
            raise DecisionError("a positive label is only valid for a two-label model, and must be one of its labels")
        return rule

    def choose(self, labels: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
        """The index of the answered label for each row of `probabilities` (n x labels)."""
        if self.positive_label is not None:
            positive = labels.index(self.positive_label)
            chosen = probabilities[:, positive] >= self.thresholds[self.positive_label]
            return np.where(chosen, positive, 1 - positive)
        return np.argmax(probabilities / np.array([self.thresholds[label] for label in labels]), axis=1)


def choose_labels(rule: DecisionRule | None, labels: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
    """Label indexes under `rule`, or the argmax when there is no rule."""
    if rule is None:
        return np.argmax(probabilities, axis=1)
    return rule.choose(labels, probabilities)


def fit_rule(
    labels: Sequence[str],
    probabilities: np.ndarray,
    truth: Sequence[str],
    *,
    min_precision: float | None = None,
    positive_label: str | None = None,
    scores_from: str,
) -> DecisionRule:
    """Choose thresholds from probabilities of items the model did not learn (n x labels) and their true labels.

    With two labels the positive one is `positive_label` when given (a fine-tune keeps its parent's),
    otherwise the rarer label of `truth`.
    """
    labels = list(labels)
    index = {label: position for position, label in enumerate(labels)}
    targets = np.array([index[label] for label in truth], dtype=np.int64)
    if len(labels) == 2:
        counts = np.bincount(targets, minlength=2)
        rarer = int(np.argmin(counts)) if counts[0] != counts[1] else 1
        positive = index[positive_label] if positive_label is not None else rarer
        threshold, expected = _binary_threshold(probabilities[:, positive], targets == positive, min_precision)
        method = (
            f"highest recall at out-of-sample precision >= {min_precision}"
            if min_precision is not None
            else "F1-optimal for the positive label"
        )
        return DecisionRule(
            thresholds={labels[positive]: threshold, labels[1 - positive]: 1.0 - threshold},
            positive_label=labels[positive],
            method=method,
            min_precision=min_precision,
            scores_from=scores_from,
            scored_items=len(targets),
            expected=expected,
        )
    if min_precision is not None:
        raise DecisionError("a precision target needs a two-label model (it applies to the rarer label)")
    thresholds = _multiclass_thresholds(probabilities, targets, len(labels))
    expected = {"macro_f1": round(_macro_f1(probabilities / thresholds, targets, len(labels)), 6)}
    return DecisionRule(
        thresholds={label: float(value) for label, value in zip(labels, thresholds, strict=True)},
        method="macro-F1-optimal per-label thresholds (label = argmax of probability / threshold)",
        scores_from=scores_from,
        scored_items=len(targets),
        expected=expected,
    )


def fit_rule_keeping(
    labels: Sequence[str],
    probabilities: np.ndarray,
    truth: Sequence[str],
    *,
    reference_probabilities: np.ndarray,
    reference_truth: Sequence[str],
    floors: Mapping[str, tuple[float, float]],
    positive_label: str,
    scores_from: str,
) -> DecisionRule | None:
    """Two labels: among the thresholds that keep every label's precision and recall on the reference set
    at or above `floors` (label -> (precision, recall)), the one with the best sum of the F1 of
    `positive_label` on `truth` and on the reference set; ties go to the threshold nearest 0.5.

    A fine-tune uses it with out-of-sample verdict scores and the gate set: the verdicts' domain and the
    known one count alike (one more verdict caught is not worth any loss on the gate set), and the known
    one never falls below the floors. None when no threshold keeps the floors.
    """
    labels = list(labels)
    positive = labels.index(positive_label)
    scores = np.asarray(probabilities, dtype=np.float64)[:, positive]
    reference = np.asarray(reference_probabilities, dtype=np.float64)[:, positive]
    distinct = _logit_array(np.unique(np.concatenate([scores, reference])))
    candidates = _sigmoid_array(np.append((distinct[1:] + distinct[:-1]) / 2, [_logit(0.5), distinct[0] - 1.0]))
    hits = np.array([label == positive_label for label in truth])
    reference_hits = np.array([label == positive_label for label in reference_truth])
    verdict_f1 = _f1_at(scores, hits, candidates)
    reference_flagged = reference[None, :] >= candidates[:, None]
    feasible = np.ones(len(candidates), dtype=bool)
    for label, (min_precision, min_recall) in floors.items():
        flagged = reference_flagged if label == positive_label else ~reference_flagged
        actual = reference_hits if label == positive_label else ~reference_hits
        true_positives = (flagged & actual[None, :]).sum(axis=1)
        precision = np.where(flagged.sum(axis=1) > 0, true_positives / np.maximum(flagged.sum(axis=1), 1), 0.0)
        recall = true_positives / max(int(actual.sum()), 1)
        feasible &= (precision >= min_precision - 1e-12) & (recall >= min_recall - 1e-12)
    if not feasible.any():
        return None
    reference_f1 = _f1_at(reference, reference_hits, candidates)
    order = np.lexsort((np.abs(candidates - 0.5), -(verdict_f1 + reference_f1)))
    best = int(next(index for index in order if feasible[index]))
    threshold = float(candidates[best])
    return DecisionRule(
        thresholds={positive_label: threshold, labels[1 - positive]: 1.0 - threshold},
        positive_label=positive_label,
        method="best verdicts F1 + gate-set F1, keeping every label's gate-set precision and recall within the gate",
        scores_from=scores_from,
        scored_items=len(scores) + len(reference),
        expected={"verdicts_f1": round(float(verdict_f1[best]), 6), "gate_f1": round(float(reference_f1[best]), 6)},
    )


def _f1_at(scores: np.ndarray, hits: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    flagged = scores[None, :] >= thresholds[:, None]
    true_positives = (flagged & hits[None, :]).sum(axis=1)
    denominator = flagged.sum(axis=1) + hits.sum()
    return np.where(denominator > 0, 2 * true_positives / np.maximum(denominator, 1), 0.0)


def _binary_threshold(
    scores: np.ndarray, positive: np.ndarray, min_precision: float | None
) -> tuple[float, dict[str, Any]]:
    """The best cut of the ranked scores, and a threshold inside it.

    A cut between two adjacent distinct scores makes the same decisions for any threshold between them.
    Among equally good cuts the one nearest 0.5 wins, and a cut that contains 0.5 keeps 0.5: when the
    scores separate the labels anywhere, the model's own midpoint is the safest threshold for
    items unlike any scored one. Otherwise the threshold sits halfway between the two scores in log-odds.
    """
    if not positive.any() or positive.all():
        return 0.5, {"note": "the scored items hold one label only; 0.5 kept"}
    upper, flagged, true_positives = ranked_cuts(scores, positive)
    lower = np.append(upper[1:], 0.0)
    precision = true_positives / flagged
    recall = true_positives / positive.sum()
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    if min_precision is None:
        candidates = np.flatnonzero(f1 >= f1.max() - 1e-12)
    else:
        reaching = np.flatnonzero(precision >= min_precision)
        if len(reaching):
            most_recall = recall[reaching].max()
            candidates = reaching[recall[reaching] >= most_recall - 1e-12]
            candidates = candidates[precision[candidates] >= precision[candidates].max() - 1e-12]
        else:
            candidates = np.flatnonzero(precision >= precision.max() - 1e-12)
    contains_half = (lower < 0.5) & (upper >= 0.5)
    distance = np.where(contains_half, 0.0, np.minimum(np.abs(lower - 0.5), np.abs(upper - 0.5)))
    best = int(candidates[int(np.argmin(distance[candidates]))])
    threshold = 0.5 if contains_half[best] else float(_sigmoid((_logit(upper[best]) + _logit(lower[best])) / 2))
    expected = {
        "precision": round(float(precision[best]), 6),
        "recall": round(float(recall[best]), 6),
        "f1": round(float(f1[best]), 6),
    }
    if min_precision is not None:
        expected["target_met"] = bool(precision[best] >= min_precision)
    return threshold, expected


def _multiclass_thresholds(probabilities: np.ndarray, targets: np.ndarray, count: int) -> np.ndarray:
    thresholds = np.full(count, 1.0 / count)
    best = _macro_f1(probabilities / thresholds, targets, count)
    for _ in range(_SEARCH_ROUNDS):
        improved = False
        for label in range(count):
            for value in _GRID:
                trial = thresholds.copy()
                trial[label] = value
                score = _macro_f1(probabilities / trial, targets, count)
                if score > best + 1e-12:
                    best, thresholds, improved = score, trial, True
        if not improved:
            break
    return thresholds


def _macro_f1(scaled: np.ndarray, targets: np.ndarray, count: int) -> float:
    chosen = np.argmax(scaled, axis=1)
    scores = []
    for label in range(count):
        true_positive = np.sum((chosen == label) & (targets == label))
        flagged, actual = np.sum(chosen == label), np.sum(targets == label)
        if actual:
            scores.append(2 * true_positive / (flagged + actual) if flagged + actual else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def _logit(value: float) -> float:
    clipped = min(max(float(value), 1e-7), 1 - 1e-7)
    return float(np.log(clipped / (1 - clipped)))


def _sigmoid(value: float) -> float:
    return float(1 / (1 + np.exp(-value)))


def _logit_array(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, 1e-7, 1 - 1e-7)
    return np.log(clipped / (1 - clipped))


def _sigmoid_array(values: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-values))
