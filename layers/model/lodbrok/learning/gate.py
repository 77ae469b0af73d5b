"""The promotion gate: a candidate replaces the active model only if it is not worse where harm would show.

Checks (anchor: TFX Evaluator's per-slice change thresholds), each with its numbers in the decision:
- `gate-set`: the trusted gate set is not empty, and candidate accuracy and macro F1 are each within
  `tolerance` of the active model's;
- `per-label`: the precision and the recall of every label on the gate set are each within `tolerance`,
  or worse by a single item (so teaching "prize spam is ham" cannot hide in an overall number that
  barely moves, and one borderline message on a small gate set does not block learning);
- `near-verdicts`: on the trusted items nearest to the learned verdicts (each verdict's nearest neighbours
  in the parent's rehearsal sample and gate set, `lodbrok.learning.proposal`), where a lie that generalises shows
  first ("what time does the film start tonight" taught as spam turns "... the play start ..." spam),
  the candidate gets at most `max(1, tolerance x slice)` more of them wrong than the active model;
- `out-of-fold-verdicts`: the verdicts were learned, measured on verdicts the model that scored them did not
  see (k-fold of the batch): more of them right than the active model, or all of them when it already
  was. Memorising a batch cannot pass it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel

from lodbrok.model.evaluation import Metrics

_EPSILON = 1e-9


@dataclass(frozen=True)
class Comparison:
    """The active model and the candidate on the same items."""

    active: Metrics
    candidate: Metrics


@dataclass(frozen=True)
class OutOfFoldVerdicts:
    """How many of `count` verdicts each model got right; the candidate side comes from models that did not
    see the verdict they scored."""

    count: int
    active_correct: int
    candidate_correct: int


class GateCheck(BaseModel):
    name: str
    passed: bool
    detail: str


class GateDecision(BaseModel):
    promote: bool
    reason: str
    tolerance: float
    checks: list[GateCheck]
    active_gate: dict
    candidate_gate: dict
    verdicts: int
    active_correct: int
    candidate_correct: int
    near_verdicts: int


def judge(
    gate: Comparison, near_verdicts: Comparison | None, out_of_fold: OutOfFoldVerdicts, *, tolerance: float
) -> GateDecision:
    checks = [
        _gate_set(gate, tolerance),
        _per_label(gate, tolerance),
        _near_verdicts(near_verdicts, tolerance),
        _out_of_fold(out_of_fold),
    ]
    failed = [check for check in checks if not check.passed]
    if failed:
        reason = "rejected: " + "; ".join(f"{check.name}: {check.detail}" for check in failed)
    else:
        reason = "promoted: " + "; ".join(f"{check.name}: {check.detail}" for check in checks)
    return GateDecision(
        promote=not failed,
        reason=reason,
        tolerance=tolerance,
        checks=checks,
        active_gate=gate.active.summary(),
        candidate_gate=gate.candidate.summary(),
        verdicts=out_of_fold.count,
        active_correct=out_of_fold.active_correct,
        candidate_correct=out_of_fold.candidate_correct,
        near_verdicts=near_verdicts.candidate.count if near_verdicts else 0,
    )


def _gate_set(gate: Comparison, tolerance: float) -> GateCheck:
    active, candidate = gate.active, gate.candidate
    if candidate.count == 0:
        return GateCheck(name="gate-set", passed=False, detail="the model has no gate set to check a candidate against")
    fell = [
        f"{name} fell from {before:.4f} to {after:.4f}"
        for name, before, after in (
            ("accuracy", active.accuracy, candidate.accuracy),
            ("macro F1", active.macro_f1, candidate.macro_f1),
        )
        if after < before - tolerance - _EPSILON
    ]
    detail = (
        f"accuracy {active.accuracy:.4f} -> {candidate.accuracy:.4f}, "
        f"macro F1 {active.macro_f1:.4f} -> {candidate.macro_f1:.4f}"
    )
    return GateCheck(
        name="gate-set", passed=not fell, detail=(", ".join(fell) + f" (tolerance {tolerance})") if fell else detail
    )


def _per_label(gate: Comparison, tolerance: float) -> GateCheck:
    """Each label's precision and recall within `tolerance`, or off by a single item: on a gate set with a
    hundred items of a label, one more false positive moves its precision by more than 0.01."""
    fell = []
    active, candidate = gate.active, gate.candidate
    for position, label in enumerate(active.labels):
        before, after = active.per_label[label], candidate.per_label[label]
        if not before.support:
            continue
        extra_misses = _misses(candidate, position) - _misses(active, position)
        extra_false_alarms = _false_alarms(candidate, position) - _false_alarms(active, position)
        for name, old, new, extra in (
            ("precision", before.precision, after.precision, extra_false_alarms),
            ("recall", before.recall, after.recall, extra_misses),
        ):
            if new < old - tolerance - _EPSILON and extra > 1:
                fell.append(f"{label} {name} fell from {old:.4f} to {new:.4f}")
    if fell:
        return GateCheck(
            name="per-label", passed=False, detail=", ".join(fell) + f" (tolerance {tolerance}, or one item)"
        )
    return GateCheck(
        name="per-label", passed=True, detail=f"every label's precision and recall within {tolerance} or one item"
    )


def _misses(metrics: Metrics, position: int) -> int:
    """Items of the label at `position` answered with another label."""
    row = metrics.confusion_matrix[position]
    return sum(row) - row[position]


def _false_alarms(metrics: Metrics, position: int) -> int:
    """Items of other labels answered with the label at `position`."""
    column = [row[position] for row in metrics.confusion_matrix]
    return sum(column) - column[position]


def _near_verdicts(near: Comparison | None, tolerance: float) -> GateCheck:
    if near is None or near.candidate.count == 0:
        return GateCheck(name="near-verdicts", passed=True, detail="no trusted item is near the verdicts")
    count = near.candidate.count
    active_wrong = round((1 - near.active.accuracy) * count)
    candidate_wrong = round((1 - near.candidate.accuracy) * count)
    allowed = max(1, math.floor(tolerance * count))
    detail = f"{active_wrong} -> {candidate_wrong} of {count} nearest trusted items wrong"
    if candidate_wrong - active_wrong > allowed:
        return GateCheck(name="near-verdicts", passed=False, detail=f"{detail} (at most {allowed} more allowed)")
    return GateCheck(name="near-verdicts", passed=True, detail=detail)


def _out_of_fold(out_of_fold: OutOfFoldVerdicts) -> GateCheck:
    count, before, after = out_of_fold.count, out_of_fold.active_correct, out_of_fold.candidate_correct
    detail = f"out-of-fold verdicts right {before}/{count} -> {after}/{count}"
    learned = after > before or after == before == count
    if not learned:
        return GateCheck(name="out-of-fold-verdicts", passed=False, detail=f"{detail}: nothing was learned")
    return GateCheck(name="out-of-fold-verdicts", passed=True, detail=detail)
