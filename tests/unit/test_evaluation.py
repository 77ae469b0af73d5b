from __future__ import annotations

import json

import pytest

from lodbrok.model.evaluation import LabelMetrics, Metrics, compute_metrics

BINARY_LABELS = ["ham", "spam"]
# rows = truth: ham -> [2 ham, 2 spam], spam -> [1 ham, 1 spam]
BINARY_TRUE = ["ham", "ham", "ham", "ham", "spam", "spam"]
BINARY_PREDICTED = ["ham", "ham", "spam", "spam", "spam", "ham"]

TERNARY_LABELS = ["a", "b", "c"]
# rows = truth: a -> [1, 1, 1], b -> [1, 1, 0], c -> [1, 1, 2]
TERNARY_TRUE = ["a", "a", "a", "b", "b", "c", "c", "c", "c"]
TERNARY_PREDICTED = ["a", "b", "c", "b", "a", "c", "c", "b", "a"]


def binary_metrics() -> Metrics:
    return compute_metrics(BINARY_LABELS, BINARY_TRUE, BINARY_PREDICTED)


def assert_scores(scores: LabelMetrics, precision: float, recall: float, f1: float, support: int) -> None:
    assert scores.precision == pytest.approx(precision)
    assert scores.recall == pytest.approx(recall)
    assert scores.f1 == pytest.approx(f1)
    assert scores.support == support


def test_compute_metrics_binary_hand_computed() -> None:
    # Given 6 binary predictions: ham TP=2 FN=2 FP=1, spam TP=1 FN=1 FP=2
    # When metrics are computed
    metrics = binary_metrics()

    # Then precision, recall and F1 match the hand computation (P and R differ, so a swap shows)
    assert metrics.confusion_matrix == [[2, 2], [1, 1]]
    assert_scores(metrics.per_label["ham"], precision=2 / 3, recall=1 / 2, f1=4 / 7, support=4)
    assert_scores(metrics.per_label["spam"], precision=1 / 3, recall=1 / 2, f1=2 / 5, support=2)
    assert metrics.accuracy == pytest.approx(3 / 6)
    assert metrics.macro_f1 == pytest.approx((4 / 7 + 2 / 5) / 2)
    assert metrics.count == 6
    assert metrics.labels == BINARY_LABELS
    assert metrics.f1("spam") == pytest.approx(2 / 5)


def test_compute_metrics_three_labels_hand_computed() -> None:
    # Given 9 predictions over three labels
    # When metrics are computed
    metrics = compute_metrics(TERNARY_LABELS, TERNARY_TRUE, TERNARY_PREDICTED)

    # Then the confusion matrix has truth in rows, predictions in columns, and scores follow from it
    assert metrics.confusion_matrix == [[1, 1, 1], [1, 1, 0], [1, 1, 2]]
    assert_scores(metrics.per_label["a"], precision=1 / 3, recall=1 / 3, f1=1 / 3, support=3)
    assert_scores(metrics.per_label["b"], precision=1 / 3, recall=1 / 2, f1=2 / 5, support=2)
    assert_scores(metrics.per_label["c"], precision=2 / 3, recall=1 / 2, f1=4 / 7, support=4)
    assert metrics.accuracy == pytest.approx(4 / 9)
    assert metrics.macro_f1 == pytest.approx((1 / 3 + 2 / 5 + 4 / 7) / 3)
    assert metrics.count == 9
    assert list(metrics.per_label) == TERNARY_LABELS


def test_compute_metrics_perfect_predictions() -> None:
    # Given predictions equal to the truth
    # When metrics are computed
    metrics = compute_metrics(TERNARY_LABELS, TERNARY_TRUE, TERNARY_TRUE)

    # Then every score is 1 and the confusion matrix is diagonal
    assert metrics.accuracy == 1.0
    assert metrics.macro_f1 == 1.0
    assert all(scores.f1 == 1.0 for scores in metrics.per_label.values())
    assert metrics.confusion_matrix == [[3, 0, 0], [0, 2, 0], [0, 0, 4]]


def test_compute_metrics_label_without_support_and_never_predicted() -> None:
    # Given a label "c" that neither occurs in the truth nor is ever predicted
    # When metrics are computed
    metrics = compute_metrics(TERNARY_LABELS, ["a", "a", "b"], ["a", "b", "b"])

    # Then it scores 0.0 everywhere (no division by zero) and is left out of the macro F1
    assert_scores(metrics.per_label["c"], precision=0.0, recall=0.0, f1=0.0, support=0)
    assert_scores(metrics.per_label["a"], precision=1.0, recall=1 / 2, f1=2 / 3, support=2)
    assert_scores(metrics.per_label["b"], precision=1 / 2, recall=1.0, f1=2 / 3, support=1)
    assert metrics.macro_f1 == pytest.approx(2 / 3)
    assert metrics.confusion_matrix == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_compute_metrics_label_with_support_but_never_predicted() -> None:
    # Given a label that occurs in the truth but is never predicted
    # When metrics are computed
    metrics = compute_metrics(BINARY_LABELS, ["ham", "spam"], ["ham", "ham"])

    # Then its precision is 0.0 rather than a crash, and it drags the macro F1 down
    assert_scores(metrics.per_label["spam"], precision=0.0, recall=0.0, f1=0.0, support=1)
    assert_scores(metrics.per_label["ham"], precision=1 / 2, recall=1.0, f1=2 / 3, support=1)
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)


def test_compute_metrics_label_predicted_but_without_support() -> None:
    # Given a label that is predicted but never true
    # When metrics are computed
    metrics = compute_metrics(BINARY_LABELS, ["ham", "ham"], ["ham", "spam"])

    # Then its recall is 0.0 rather than a crash; its false positive shows in ham's recall
    assert_scores(metrics.per_label["spam"], precision=0.0, recall=0.0, f1=0.0, support=0)
    assert_scores(metrics.per_label["ham"], precision=1.0, recall=1 / 2, f1=2 / 3, support=2)
    assert metrics.macro_f1 == pytest.approx(2 / 3)


def test_compute_metrics_no_items() -> None:
    # Given no predictions at all
    # When metrics are computed
    metrics = compute_metrics(BINARY_LABELS, [], [])

    # Then everything is zero instead of NaN or a crash
    assert metrics.count == 0
    assert metrics.accuracy == 0.0
    assert metrics.macro_f1 == 0.0
    assert metrics.confusion_matrix == [[0, 0], [0, 0]]
    assert all(scores.f1 == 0.0 and scores.support == 0 for scores in metrics.per_label.values())


def test_compute_metrics_rejects_length_mismatch() -> None:
    # Given more truths than predictions
    # When metrics are computed
    # Then it fails loudly instead of silently scoring a prefix
    with pytest.raises(ValueError):
        compute_metrics(BINARY_LABELS, ["ham", "spam"], ["ham"])


def test_compute_metrics_rejects_unknown_label() -> None:
    # Given a prediction outside the label set
    # When metrics are computed
    # Then it fails naming the label
    with pytest.raises(KeyError, match="eggs"):
        compute_metrics(BINARY_LABELS, ["ham"], ["eggs"])


def test_metrics_summary_contents() -> None:
    # Given the binary example
    metrics = binary_metrics()

    # When it is summarized
    summary = metrics.summary()

    # Then it holds rounded accuracy, macro F1, count and per-label F1, and is JSON-serializable
    assert summary == {
        "accuracy": 0.5,
        "macro_f1": round((4 / 7 + 2 / 5) / 2, 6),
        "count": 6,
        "f1": {"ham": round(4 / 7, 6), "spam": 0.4},
    }
    assert json.loads(json.dumps(summary)) == summary


def test_metrics_table_contents() -> None:
    # Given the binary example
    metrics = binary_metrics()

    # When it is rendered as a table
    lines = metrics.table().splitlines()

    # Then it shows per-label scores, accuracy, macro F1 and the labelled confusion matrix
    assert lines == [
        "label            precision    recall        f1   support",
        "ham                 0.6667    0.5000    0.5714         4",
        "spam                0.3333    0.5000    0.4000         2",
        "accuracy                                0.5000         6",
        "macro f1                                0.4857",
        "confusion matrix (rows = true label, columns = predicted):",
        "         ham  spam",
        "ham        2     2",
        "spam       1     1",
    ]


def test_metrics_table_columns_align() -> None:
    # Given three labels of different lengths
    metrics = compute_metrics(["no", "maybe", "definitely"], ["no", "maybe"], ["no", "definitely"])

    # When it is rendered
    lines = metrics.table().splitlines()

    # Then the label column has a fixed width and the matrix columns are as wide as the longest label
    assert all(len(line) == len(lines[0]) for line in lines[1:4])
    matrix = lines[-4:]
    assert len({len(line) for line in matrix}) == 1
    assert matrix[0].split() == ["no", "maybe", "definitely"]
    assert matrix[2].split() == ["maybe", "0", "0", "1"]
