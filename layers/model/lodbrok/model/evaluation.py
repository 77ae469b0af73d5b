"""Classification metrics in plain numpy, shared by the CLI, the benchmarks and the retrain gate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel


class LabelMetrics(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class Metrics(BaseModel):
    accuracy: float
    macro_f1: float
    count: int
    per_label: dict[str, LabelMetrics]
    confusion_matrix: list[list[int]]
    labels: list[str]

    def f1(self, label: str) -> float:
        return self.per_label[label].f1

    def table(self) -> str:
        """A fixed-width table for terminals."""
        lines = [f"{'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for label, scores in self.per_label.items():
            lines.append(
                f"{label:<16}{scores.precision:>10.4f}{scores.recall:>10.4f}{scores.f1:>10.4f}{scores.support:>10}"
            )
        lines.append(f"{'accuracy':<16}{self.accuracy:>30.4f}{self.count:>10}")
        lines.append(f"{'macro f1':<16}{self.macro_f1:>30.4f}")
        lines.append("confusion matrix (rows = true label, columns = predicted):")
        width = max(len(label) for label in self.labels) + 2
        lines.append(" " * width + "".join(f"{label:>{width}}" for label in self.labels))
        for label, row in zip(self.labels, self.confusion_matrix, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{count:>{width}}" for count in row))
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """The compact form stored in bundle metadata and S3 object metadata."""
        return {
            "accuracy": round(self.accuracy, 6),
            "macro_f1": round(self.macro_f1, 6),
            "count": self.count,
            "f1": {label: round(scores.f1, 6) for label, scores in self.per_label.items()},
        }


def compute_metrics(labels: Sequence[str], true: Sequence[str], predicted: Sequence[str]) -> Metrics:
    index = {label: position for position, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for truth, guess in zip(true, predicted, strict=True):
        matrix[index[truth], index[guess]] += 1
    per_label = {}
    for position, label in enumerate(labels):
        true_positive = int(matrix[position, position])
        predicted_count = int(matrix[:, position].sum())
        actual_count = int(matrix[position, :].sum())
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / actual_count if actual_count else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = LabelMetrics(precision=precision, recall=recall, f1=f1, support=actual_count)
    count = int(matrix.sum())
    present = [scores.f1 for scores in per_label.values() if scores.support]
    return Metrics(
        accuracy=float(np.trace(matrix) / count) if count else 0.0,
        macro_f1=float(np.mean(present)) if present else 0.0,
        count=count,
        per_label=per_label,
        confusion_matrix=matrix.tolist(),
        labels=list(labels),
    )


def ranked_cuts(scores: Sequence[float], positives: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cut of the scores ranked high to low, between distinct scores only (ties share a cut).

    For each cut: the lowest score still flagged, how many items are flagged, and how many of them are
    positives.
    """
    scores_array = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores_array, kind="stable")
    ranked, ranked_hits = scores_array[order], np.asarray(positives, dtype=bool)[order]
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    return ranked[ends], ends + 1, np.cumsum(ranked_hits)[ends]


def average_precision(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the precision-recall curve as the mean precision at each positive's rank (ties share a cut)."""
    total = int(np.sum(np.asarray(positives, dtype=bool)))
    if not total:
        return 0.0
    _, flagged, true_positives = ranked_cuts(scores, positives)
    recall_gain = np.diff(np.concatenate([[0], true_positives])) / total
    return float(np.sum(true_positives / flagged * recall_gain))
