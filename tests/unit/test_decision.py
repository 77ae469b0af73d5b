"""The decision rule: thresholds chosen from held-out scores, stored in metadata, applied to probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from lodbrok.model.decision import DecisionError, DecisionRule, choose_labels, fit_rule, fit_rule_keeping

LABELS = ["ham", "spam"]


def binary_scores(spam_scores: list[float]) -> np.ndarray:
    spam = np.array(spam_scores)
    return np.stack([1 - spam, spam], axis=1)


def noisy_binary(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A rare positive label whose scores are spread out, as an undertrained model gives them."""
    rng = np.random.default_rng(seed)
    spam = rng.beta(4, 3, 60)
    ham = rng.beta(1, 8, 540)
    truth = ["spam"] * 60 + ["ham"] * 540
    return binary_scores([*spam, *ham]), truth


def spam_f1(truth: list[str], decided: list[str]) -> float:
    hits = sum(t == d == "spam" for t, d in zip(truth, decided, strict=True))
    return 2 * hits / (truth.count("spam") + decided.count("spam"))


def test_fit_rule_binary_threshold_is_f1_optimal_and_applied_as_p_at_least_threshold() -> None:
    # Given held-out scores of a rare positive label
    probabilities, truth = noisy_binary()

    # When a rule is fitted
    rule = fit_rule(LABELS, probabilities, truth, scores_from="test")

    # Then spam is the positive label, the thresholds add up to 1, and no other cut gives a higher F1
    assert rule.positive_label == "spam"
    assert rule.thresholds["spam"] + rule.thresholds["ham"] == pytest.approx(1.0)
    decided = [LABELS[i] for i in rule.choose(LABELS, probabilities)]
    best = spam_f1(truth, decided)
    assert best == pytest.approx(rule.expected["f1"], abs=1e-6)
    for cut in np.linspace(0.01, 0.99, 99):
        other = ["spam" if p >= cut else "ham" for p in probabilities[:, 1]]
        assert spam_f1(truth, other) <= best + 1e-9
    assert best > spam_f1(truth, ["spam" if p >= 0.5 else "ham" for p in probabilities[:, 1]])
    # And the label is spam exactly when p(spam) reaches the threshold
    at = rule.thresholds["spam"]
    assert list(rule.choose(LABELS, binary_scores([at, np.nextafter(at, 0)]))) == [1, 0]


def test_fit_rule_separable_scores_keep_one_half_when_it_separates_them() -> None:
    # Given held-out scores that separate the labels, once around 0.5 and once entirely below it
    truth = ["spam", "spam", "ham", "ham", "ham"]
    around_half = fit_rule(LABELS, binary_scores([0.9, 0.6, 0.3, 0.2, 0.1]), truth, scores_from="test")
    below_half = fit_rule(LABELS, binary_scores([0.4, 0.3, 0.1, 0.05, 0.01]), truth, scores_from="test")

    # Then the model's own midpoint is kept where it separates, else the cut lies halfway in log-odds
    assert around_half.thresholds["spam"] == 0.5
    assert 0.1 < below_half.thresholds["spam"] < 0.3
    assert below_half.thresholds["spam"] == pytest.approx(1 / (1 + np.sqrt((0.7 / 0.3) * (0.9 / 0.1))))


def test_fit_rule_min_precision_takes_the_highest_recall_that_reaches_it() -> None:
    # Given scores where full recall costs precision
    probabilities, truth = noisy_binary(seed=1)

    # When a precision target is asked for
    rule = fit_rule(LABELS, probabilities, truth, min_precision=0.95, scores_from="test")

    # Then the precision reached is at least the target and any lower threshold falls below it
    decided = np.array([LABELS[i] for i in rule.choose(LABELS, probabilities)])
    flagged = decided == "spam"
    precision = np.mean(np.array(truth)[flagged] == "spam")
    assert precision >= 0.95 and rule.expected["target_met"] is True
    lower = probabilities[:, 1] >= np.max(probabilities[:, 1][~flagged])
    assert np.mean(np.array(truth)[lower] == "spam") < 0.95
    assert rule.min_precision == 0.95 and "precision >= 0.95" in rule.method


def test_fit_rule_unreachable_precision_is_reported_not_hidden() -> None:
    # Given a positive label whose best-scored item is a negative
    probabilities = binary_scores([0.9, 0.8, 0.7, 0.2])
    truth = ["ham", "spam", "ham", "spam"]

    # When a precision of 0.99 is asked for
    rule = fit_rule(LABELS, probabilities, truth, min_precision=0.99, scores_from="test")

    # Then the best precision available is used and the rule says the target was not met
    assert rule.expected["target_met"] is False


def test_fit_rule_more_labels_beats_argmax_on_macro_f1() -> None:
    # Given three labels where the model under-scores the rare one
    rng = np.random.default_rng(2)
    truth = ["billing"] * 30 + ["bug"] * 150 + ["other"] * 150
    rows = []
    for label in truth:
        row = rng.dirichlet([2, 2, 2])
        row[["billing", "bug", "other"].index(label)] += 0.5 if label != "billing" else 0.25
        rows.append(row / row.sum())
    probabilities = np.array(rows)
    labels = ["billing", "bug", "other"]

    # When a rule is fitted
    rule = fit_rule(labels, probabilities, truth, scores_from="test")

    # Then it has no positive label, keeps every threshold in (0, 1), and beats the argmax's macro F1
    assert rule.positive_label is None
    assert all(0 < value < 1 for value in rule.thresholds.values())

    def macro_f1(chosen: np.ndarray) -> float:
        scores = []
        for index, label in enumerate(labels):
            hits = sum(1 for c, t in zip(chosen, truth, strict=True) if c == index and t == label)
            scores.append(2 * hits / (truth.count(label) + int(np.sum(chosen == index))))
        return float(np.mean(scores))

    assert macro_f1(rule.choose(labels, probabilities)) > macro_f1(np.argmax(probabilities, axis=1))
    assert rule.expected["macro_f1"] == pytest.approx(macro_f1(rule.choose(labels, probabilities)), abs=1e-6)


def test_fit_rule_keeps_a_given_positive_label_even_when_it_is_not_the_rarer() -> None:
    # Given scores on a set where spam happens to be the majority
    probabilities = binary_scores([0.9, 0.8, 0.7, 0.6, 0.2])
    truth = ["spam", "spam", "spam", "ham", "ham"]

    # When a rule is fitted for a parent whose positive label was spam
    rule = fit_rule(LABELS, probabilities, truth, positive_label="spam", scores_from="test")

    # Then spam stays the positive label
    assert rule.positive_label == "spam"
    assert fit_rule(LABELS, probabilities, truth, scores_from="test").positive_label == "ham"


def test_fit_rule_precision_target_needs_two_labels() -> None:
    # Given three labels
    probabilities = np.full((3, 3), 1 / 3)

    # When a precision target is asked for
    # Then it is refused: there is no single positive label to aim it at
    with pytest.raises(DecisionError, match="two-label"):
        fit_rule(["a", "b", "c"], probabilities, ["a", "b", "c"], min_precision=0.9, scores_from="test")


def test_decision_rule_round_trips_through_metadata() -> None:
    # Given a fitted rule
    probabilities, truth = noisy_binary()
    rule = fit_rule(LABELS, probabilities, truth, scores_from="5-fold out-of-fold scores")

    # When it is stored as bundle metadata and read back
    restored = DecisionRule.from_metadata({"decision": rule.to_dict()}, LABELS)

    # Then it is the same rule
    assert restored == rule


def test_decision_rule_absent_means_argmax() -> None:
    # Given metadata from a bundle written before rules existed
    rule = DecisionRule.from_metadata({"version": "v1"}, LABELS)

    # When labels are chosen
    chosen = choose_labels(rule, LABELS, binary_scores([0.49, 0.51]))

    # Then there is no rule and the most probable label wins (the 0.5 threshold)
    assert rule is None
    assert list(chosen) == [0, 1]


@pytest.mark.parametrize(
    "decision",
    [
        {"thresholds": {"ham": 0.5}},
        {"thresholds": {"ham": 0.5, "spam": 0.0}},
        {"thresholds": {"ham": 0.5, "spam": 1.5}},
        {"thresholds": {"ham": 0.5, "spam": "x"}},
        {"thresholds": {"ham": 0.5, "spam": 0.5}, "positive_label": "phishing"},
        {"thresholds": ["ham", "spam"]},
        {},
    ],
)
def test_decision_rule_malformed_metadata_is_refused(decision: dict[str, object]) -> None:
    # Given a decision entry that does not fit the labels
    # When it is read
    # Then it is refused with a DecisionError rather than silently mislabelling
    with pytest.raises(DecisionError):
        DecisionRule.from_metadata({"decision": decision}, LABELS)


def _rows(spam_scores: list[float]) -> np.ndarray:
    spam = np.array(spam_scores)
    return np.column_stack([1 - spam, spam])


def test_fit_rule_keeping_serves_the_verdicts_as_far_as_the_gate_set_allows() -> None:
    # Given a gate set whose spam sits at 0.9 and ham at 0.1, except one ham at 0.35,
    # and new-domain verdicts whose spam scores only 0.3-0.4
    gate = _rows([0.9] * 10 + [0.1] * 29 + [0.35])
    gate_truth = ["spam"] * 10 + ["ham"] * 30
    verdicts = _rows([0.3, 0.33, 0.4, 0.38, 0.05, 0.02])
    verdict_truth = ["spam"] * 4 + ["ham"] * 2

    def fit(floor: float) -> DecisionRule | None:
        return fit_rule_keeping(
            LABELS,
            verdicts,
            verdict_truth,
            reference_probabilities=gate,
            reference_truth=gate_truth,
            floors={"spam": (floor, floor), "ham": (floor, floor)},
            positive_label="spam",
            scores_from="test",
        )

    # When every gate precision and recall must stay at 1.0: only thresholds above the ham at 0.35 qualify
    strict = fit(1.0)
    # Then the threshold is the lowest that keeps the gate set perfect, catching the verdicts above 0.35
    assert strict is not None and 0.35 < strict.thresholds["spam"] <= 0.38
    assert strict.expected["gate_f1"] == 1.0 and strict.expected["verdicts_f1"] == pytest.approx(2 * 2 / (2 + 4))

    # When a little gate precision may be given up: the threshold drops below every verdict spam, because the
    # verdicts gain more F1 (0.67 -> 1.0) than the gate set loses (1.0 -> 0.95)
    loose = fit(0.9)
    assert loose is not None and 0.05 < loose.thresholds["spam"] <= 0.3
    assert loose.expected["verdicts_f1"] == 1.0
    assert loose.positive_label == "spam" and loose.method.startswith("best verdicts F1 + gate-set F1")


def test_fit_rule_keeping_without_a_threshold_that_keeps_the_floors_returns_none() -> None:
    gate = _rows([0.6, 0.4])  # spam below ham: no threshold gets both right
    rule = fit_rule_keeping(
        LABELS,
        _rows([0.9]),
        ["spam"],
        reference_probabilities=gate,
        reference_truth=["ham", "spam"],
        floors={"spam": (1.0, 1.0), "ham": (1.0, 1.0)},
        positive_label="spam",
        scores_from="test",
    )
    assert rule is None
