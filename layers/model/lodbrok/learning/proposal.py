"""From a batch of verdicts to a judged candidate: screen, probe, learn, gate.

One code path for the retrain function (`lodbrok.learning.loop`) and `lodbrok finetune`:

1. Screening (`lodbrok.learning.screening`) holds the verdicts that contradict well-founded knowledge.
2. Probes: the batch is split into `probe_folds` folds and a probe learns all but one, to
   score the verdicts it did not see. Those out-of-sample scores say whether the verdicts generalise
   (the gate's out-of-fold check) and, with the gate set, choose the candidate's decision rule, so the
   threshold also fits the verdicts' domain.
3. The candidate learns every learnable verdict and is judged (`lodbrok.learning.gate`).

Probes and candidate learn by the same recipe (`LearningConfig.method`): by default a fine-tune of the parent
(`lodbrok.training.trainer.Finetuner`), or a joint retrain, a new network on the parent's stored training
data (the base sample plus every verdict learned since) and the batch, verdicts weighted (`Retrainer`), which
may build a linear network (`RetrainConfig.network`: squared hinge, L2-normalised bag, Adagrad).
`make bench-learning` measures them on a new domain (docs/learning-design.md): the linear joint retrain
learns the new domain best, but costs the old one a false alarm more than the gate allows in most
batches, so the fine-tune stays the default.

A candidate needs at least `MIN_VERDICTS_TO_LEARN` learnable verdicts, so that each can be scored
by a probe that did not learn it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lodbrok.learning.gate import Comparison, GateDecision, OutOfFoldVerdicts, judge
from lodbrok.learning.screening import Screening, ScreeningConfig, TokenIndex, screen
from lodbrok.model.bundle import Bundle
from lodbrok.model.data import LabelledItem, deduplicate, items_from_jsonl, stratified_folds
from lodbrok.model.decision import DecisionRule, choose_labels
from lodbrok.model.evaluation import Metrics
from lodbrok.model.features import canonical_key
from lodbrok.model.predictor import Predictor
from lodbrok.training.trainer import (
    FinetuneConfig,
    Finetuner,
    Learner,
    Progress,
    RetrainConfig,
    Retrainer,
    evaluate,
    keras_probabilities,
)

MIN_VERDICTS_TO_LEARN = 2


@dataclass(frozen=True)
class LearningConfig:
    min_verdicts: int = 1
    gate_tolerance: float = 0.01
    max_attempts: int = 3
    max_verdicts: int = 5_000
    settle_seconds: float = 300.0
    idempotency_ttl_seconds: int = 30 * 86_400
    max_text_chars: int = 5_000  # a verdict's input, as MAX_TEXT_CHARS (the template sets it for both functions)
    max_clock_skew_seconds: float = 60.0  # how far ahead an attested verdict time may be before it is clamped
    probe_folds: int = 2
    near_items: int = 5  # per learned verdict: its nearest trusted items (rehearsal + gate) form the near slice
    method: Literal["finetune", "retrain"] = "finetune"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)


@dataclass(frozen=True)
class Proposal:
    """What a batch produced. No candidate means nothing to learn, or too few verdicts to hold some out."""

    screening: Screening
    candidate: Bundle | None = None
    decision: GateDecision | None = None
    seconds: float = 0.0


def propose(
    parent: Bundle,
    verdicts: Sequence[LabelledItem],
    config: LearningConfig,
    *,
    reviewed: Collection[str] = (),
    version: str | None = None,
    parent_version: str | None = None,
    progress: Progress | None = None,
    screener: Screener | None = None,
    screening: Screening | None = None,
) -> Proposal:
    """Screen `verdicts` (the latest per input wins), learn a candidate from the learnable ones, judge it.

    `reviewed` holds canonical keys of verdicts a reviewer accepted: they are never held. `screener` is
    `Screener.of(parent)`, given by a caller that already built it; `screening` is its screening of
    `verdicts`, given by a caller that held more of them (`lodbrok.learning.holding`).
    """
    started = time.perf_counter()
    screener = screener or Screener.of(parent)
    active, gate_items = screener.predictor, screener.gate_items
    screening = screening or screener.screen(verdicts, config.screening, reviewed=reviewed)
    learn = screening.learn
    if len(learn) < MIN_VERDICTS_TO_LEARN:
        return Proposal(screening, seconds=time.perf_counter() - started)

    learner = make_learner(parent, config, progress)
    verdict_scores = out_of_fold_scores(learner, learn, config.probe_folds)
    candidate, candidate_gate = learner.export(
        learner.fit(learn),
        learn,
        verdict_scores=verdict_scores,
        keep_within=config.gate_tolerance,
        version=version,
        parent_version=parent_version,
    )
    rule = DecisionRule.from_metadata(candidate.metadata, candidate.labels)
    out_of_fold_labels = choose_labels(rule, candidate.labels, verdict_scores)
    out_of_fold = OutOfFoldVerdicts(
        count=len(learn),
        active_correct=_correct(evaluate(active, learn)),
        candidate_correct=sum(
            candidate.labels[index] == item.label for index, item in zip(out_of_fold_labels, learn, strict=True)
        ),
    )
    near_items = nearest_trusted_items(screener.trusted, learn, config)
    near = Comparison(evaluate(active, near_items), evaluate(Predictor(candidate), near_items)) if near_items else None
    decision = judge(
        Comparison(evaluate(active, gate_items), candidate_gate), near, out_of_fold, tolerance=config.gate_tolerance
    )
    return Proposal(screening, candidate, decision, time.perf_counter() - started)


@dataclass(frozen=True)
class Screener:
    """What screening needs of a model: the model itself and its trusted items (rehearsal + gate set)."""

    predictor: Predictor
    trusted: TokenIndex
    gate_items: list[LabelledItem]

    @classmethod
    def of(cls, parent: Bundle) -> Screener:
        gate_items = items_from_jsonl(parent.gate)
        trusted = TokenIndex(parent.featurizer, items_from_jsonl(parent.rehearsal) + gate_items)
        return cls(Predictor(parent), trusted, gate_items)

    def screen(
        self, verdicts: Sequence[LabelledItem], config: ScreeningConfig, *, reviewed: Collection[str] = ()
    ) -> Screening:
        """The latest verdict per input, screened: what may be learned, and what is held and why."""
        latest, _ = deduplicate(reversed(verdicts))
        latest.reverse()
        return screen(self.predictor, self.trusted, latest, config, reviewed=reviewed)


def make_learner(parent: Bundle, config: LearningConfig, progress: Progress | None = None) -> Learner:
    """The candidate's (and the probes') recipe: a fine-tune of `parent` or a joint retrain."""
    if config.method == "retrain":
        return Retrainer(parent, config.retrain, progress)
    return Finetuner(parent, config.finetune, progress)


def out_of_fold_scores(learner: Learner, verdicts: Sequence[LabelledItem], folds: int) -> np.ndarray:
    """Every verdict's probabilities from a probe that learned the other folds of the batch."""
    scores: dict[str, np.ndarray] = {}
    # Dealt round-robin, so with folds <= len(verdicts) every fold has items to train on and to score.
    for train, scored in stratified_folds(verdicts, min(folds, len(verdicts)), salt="lodbrok-probes"):
        probabilities = keras_probabilities(learner.fit(train), learner.featurizer, scored)
        scores.update(zip((canonical_key(item.input) for item in scored), probabilities, strict=True))
    return np.array([scores[canonical_key(item.input)] for item in verdicts])


def nearest_trusted_items(
    trusted: TokenIndex, verdicts: Sequence[LabelledItem], config: LearningConfig
) -> list[LabelledItem]:
    """The trusted items (the parent's rehearsal sample and gate set) nearest to each learned verdict: where a
    lie that generalises shows first. Items the verdicts themselves relabel are left out."""
    relabelled = {canonical_key(item.input) for item in verdicts}
    positions = {
        neighbour.index
        for item in verdicts
        for neighbour in trusted.nearest(item.input, config.near_items, config.screening.min_similarity)
        if canonical_key(trusted.items[neighbour.index].input) not in relabelled
    }
    return [trusted.items[position] for position in sorted(positions)]


def _correct(metrics: Metrics) -> int:
    return sum(row[index] for index, row in enumerate(metrics.confusion_matrix))
