"""The promotion gate: per-label checks, the slice near the verdicts, and learning measured on out-of-fold verdicts."""

from __future__ import annotations

from lodbrok.learning.gate import Comparison, OutOfFoldVerdicts, judge
from lodbrok.model.evaluation import Metrics, compute_metrics

LABELS = ["ham", "spam"]


def metrics(truth: list[str], predicted: list[str]) -> Metrics:
    return compute_metrics(LABELS, truth, predicted)


def gate_set(spam_missed: int, ham_flagged: int = 0) -> Metrics:
    """400 ham and 100 spam, with some spam missed and some ham flagged."""
    truth = ["ham"] * 400 + ["spam"] * 100
    predicted = ["spam"] * ham_flagged + ["ham"] * (400 - ham_flagged) + ["ham"] * spam_missed
    predicted += ["spam"] * (100 - spam_missed)
    return metrics(truth, predicted)


LEARNED = OutOfFoldVerdicts(count=20, active_correct=5, candidate_correct=18)


def test_a_candidate_equal_on_the_gate_that_learned_out_of_fold_verdicts_is_promoted() -> None:
    decision = judge(Comparison(gate_set(3), gate_set(3)), None, LEARNED, tolerance=0.01)

    assert decision.promote
    assert decision.reason.startswith("promoted: gate-set: accuracy 0.9940 -> 0.9940")
    assert [check.name for check in decision.checks] == [
        "gate-set",
        "per-label",
        "near-verdicts",
        "out-of-fold-verdicts",
    ]
    assert "out-of-fold verdicts right 5/20 -> 18/20" in decision.reason


def test_one_label_losing_recall_is_rejected_even_when_overall_accuracy_barely_moves() -> None:
    # Given a candidate that misses 3 more spam of 100 (recall -0.03) while accuracy drops only 0.006
    active, candidate = gate_set(2), gate_set(5)
    assert active.accuracy - candidate.accuracy < 0.01

    # When judged with a 1% tolerance
    decision = judge(Comparison(active, candidate), None, LEARNED, tolerance=0.01)

    # Then the per-label check rejects it, with the numbers
    assert not decision.promote
    assert "per-label: spam recall fell from 0.9800 to 0.9500 (tolerance 0.01, or one item)" in decision.reason
    assert "gate-set" not in decision.reason
    assert [check.passed for check in decision.checks] == [True, False, True, True]


def test_one_more_error_on_a_small_gate_set_is_not_a_regression() -> None:
    # Given a candidate that flags one more ham as spam: spam precision 1.0 -> 0.9901, within 0.01, but with
    # a stricter tolerance it would fall beyond it by that single item
    decision = judge(Comparison(gate_set(0), gate_set(0, ham_flagged=1)), None, LEARNED, tolerance=0.005)

    # Then a single item is not a regression
    assert decision.promote


def test_a_label_losing_precision_is_rejected() -> None:
    decision = judge(Comparison(gate_set(0), gate_set(0, ham_flagged=4)), None, LEARNED, tolerance=0.01)

    assert not decision.promote
    assert "spam precision fell from 1.0000 to 0.9615" in decision.reason


def test_verdicts_learned_only_by_memorising_are_rejected() -> None:
    # Given probes that got no more out-of-fold verdicts right than the active model
    memorised = OutOfFoldVerdicts(count=20, active_correct=0, candidate_correct=0)

    decision = judge(Comparison(gate_set(3), gate_set(3)), None, memorised, tolerance=0.01)

    assert not decision.promote
    assert (
        decision.reason
        == "rejected: out-of-fold-verdicts: out-of-fold verdicts right 0/20 -> 0/20: nothing was learned"
    )


def test_confirming_verdicts_the_active_model_already_gets_right_pass() -> None:
    confirmed = OutOfFoldVerdicts(count=6, active_correct=6, candidate_correct=6)

    assert judge(Comparison(gate_set(3), gate_set(3)), None, confirmed, tolerance=0.01).promote


def test_more_errors_among_the_gate_items_nearest_the_verdicts_are_rejected() -> None:
    # Given 30 trusted items near the verdicts: the candidate gets 2 more of them wrong
    truth = ["spam"] * 30
    near = Comparison(metrics(truth, ["spam"] * 30), metrics(truth, ["ham"] * 2 + ["spam"] * 28))

    decision = judge(Comparison(gate_set(3), gate_set(3)), near, LEARNED, tolerance=0.01)

    assert not decision.promote
    assert "near-verdicts: 0 -> 2 of 30 nearest trusted items wrong (at most 1 more allowed)" in decision.reason
    assert decision.near_verdicts == 30


def test_an_empty_gate_set_is_rejected() -> None:
    empty = metrics([], [])

    decision = judge(Comparison(empty, empty), None, LEARNED, tolerance=0.01)

    assert not decision.promote
    assert "the model has no gate set" in decision.reason
