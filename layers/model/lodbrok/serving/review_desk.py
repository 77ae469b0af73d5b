"""What a reviewer does through the API (the reviewer's console): label or skip queued items, judge held verdicts,
and, for an admin, look at the model's versions and roll one back.

Every decision takes an existing path rather than a new one: a label becomes a trusted verdict through
`POST /verdicts`' own code (`PredictService.submit_verdicts`, with the reviewer's key, so it is attested as a
reviewer's and answers every client once the retrain function takes it in); a held verdict is judged by
`lodbrok.verdicts.review.review_held`, the code of `lodbrok held accept|reject`; a rollback is
`ModelStore.rollback`, the code of `lodbrok rollback`, and only where the stack's `ApiRollback` parameter is on
(else the predict role may not sign models, and the desk refuses before any write). Held verdicts are listed from
the archive beside the queue (`kind` tells them apart), so one console shows both. Logs and metrics carry counts
only, never an input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from lodbrok.model.explanation import explain
from lodbrok.observability import MetricUnit, logger, metrics
from lodbrok.serving.call_log import Origin
from lodbrok.serving.model_provider import ModelProvider
from lodbrok.serving.review_queue import QueuedItem, ReviewQueue
from lodbrok.serving.schemas import (
    ExplanationInfo,
    HeldReviewed,
    HeldReviewRequest,
    ModelVersion,
    ModelVersions,
    ReviewDone,
    ReviewItem,
    ReviewItems,
    ReviewKind,
    ReviewLabelRequest,
    RolledBack,
    VerdictsAccepted,
    VerdictsRequest,
)
from lodbrok.verdicts.archive import HeldNotFound, VerdictArchive
from lodbrok.verdicts.memory import VerdictMemory
from lodbrok.verdicts.review import review_held

REVIEW_SOURCE = "review-queue"  # the `source` of a verdict given in the console


class ReviewQueueDisabled(LookupError):
    """This deployment has no review queue (REVIEW_QUEUE_TABLE is empty)."""


class HeldVerdictNotFound(LookupError):
    """No held verdict has this key."""


class ApiRollbackOff(PermissionError):
    """This stack does not roll back through the API (its ApiRollback parameter is off)."""

    def __init__(self) -> None:
        super().__init__(
            'rollback through the API is off on this stack (its ApiRollback parameter is "false"): roll back with '
            "`lodbrok rollback --to VERSION_ID`, or deploy with ApiRollback=true"
        )


class ReviewDesk:
    def __init__(
        self,
        *,
        queue: ReviewQueue | None,
        archive: VerdictArchive,
        memory: VerdictMemory | None,
        models: ModelProvider,
        submit: Callable[[VerdictsRequest, Origin], VerdictsAccepted],
        explain_max_items: int,
        api_rollback: bool = False,
    ) -> None:
        self._queue = queue
        self.archive = archive
        self.memory = memory
        self.models = models
        self.submit = submit
        self.explain_max_items = explain_max_items
        self.api_rollback = api_rollback

    @property
    def queue(self) -> ReviewQueue:
        if self._queue is None:
            raise ReviewQueueDisabled("this deployment has no review queue (REVIEW_QUEUE_TABLE is not configured)")
        return self._queue

    def items(self, kind: ReviewKind, limit: int) -> ReviewItems:
        """The next `limit` items of one kind, and how many wait."""
        if kind == "held":
            held = [_held_item(record) for record in self.archive.held("held")]
            return ReviewItems(items=held[:limit], remaining=len(held))
        queued = self.queue.next_items(limit)
        return ReviewItems(items=self._explained(queued), remaining=self.queue.report_depth())

    def _explained(self, queued: list[QueuedItem]) -> list[ReviewItem]:
        """The items, each with an explanation: the one recorded, or the active model's (within the budget)."""
        missing = [item for item in queued if item.explanation is None][: self.explain_max_items]
        fresh = {}
        if missing:
            results = explain(self.models.current().predictor, [item.input for item in missing])
            fresh = {item.id: asdict(result.explanation) for item, result in zip(missing, results, strict=True)}
        return [
            ReviewItem(
                kind="review",
                id=item.id,
                input=item.input,
                label=item.label,
                probabilities=item.probabilities,
                explanation=_explanation(item.explanation or fresh.get(item.id)),
                seen=item.seen,
                queued_at=item.first_at,
            )
            for item in queued
        ]

    def label(self, request: ReviewLabelRequest, origin: Origin) -> ReviewDone:
        """Send the reviewer's label as a verdict (POST /verdicts' path), then take the item out of the queue."""
        item = self.queue.get(request.id)
        given = {"text": item.input} if isinstance(item.input, str) else {"fields": item.input}
        verdict = {"id": f"review-{item.id}", **given, "label": request.label, "source": REVIEW_SOURCE}
        accepted = self.submit(VerdictsRequest(verdicts=[verdict]), origin)
        self.queue.remove(item.id)
        metrics.add_metric(name="ReviewsDone", unit=MetricUnit.Count, value=1)
        logger.info("review item labelled", extra={"queued": accepted.queued})
        return ReviewDone(id=item.id, remaining=self.queue.report_depth(), message_id=accepted.message_ids[0])

    def skip(self, item_id: str) -> ReviewDone:
        self.queue.skip(item_id)
        metrics.add_metric(name="ReviewsSkipped", unit=MetricUnit.Count, value=1)
        return ReviewDone(id=item_id, remaining=self.queue.depth())

    def judge_held(self, request: HeldReviewRequest, origin: Origin) -> HeldReviewed:
        """Accept or reject a held verdict, as `lodbrok held accept|reject` does; the reviewer is the caller."""
        if not request.key.startswith(self.archive.held_prefix) or not request.key.endswith(".json"):
            raise HeldVerdictNotFound(f"not a held verdict's key: it starts with {self.archive.held_prefix!r}")
        status = "accepted" if request.decision == "accept" else "rejected"
        try:
            record, remembered = review_held(
                self.archive, self.memory, request.key, status, reviewer=origin.caller, note=request.note
            )
        except HeldNotFound as error:
            raise HeldVerdictNotFound(str(error)) from error
        metrics.add_metric(name="ReviewsDone", unit=MetricUnit.Count, value=1)
        logger.info("held verdict reviewed", extra={"status": status, "remembered": remembered})
        remaining = len(self.archive.held("held"))
        return HeldReviewed(key=record["key"], status=status, answers_at_once=remembered, remaining=remaining)

    def versions(self) -> ModelVersions:
        infos = self.models.store.versions()
        versions = [ModelVersion.model_validate(asdict(info)) for info in infos]
        return ModelVersions(versions=versions, rollback=self.api_rollback)

    def rollback(self, version_id: str) -> RolledBack:
        """Restore an earlier version as `lodbrok rollback --to` does; warm instances follow within the refresh."""
        if not self.api_rollback:
            raise ApiRollbackOff()
        ref = self.models.store.rollback(version_id)
        logger.info("model rolled back through the API", extra={"version": ref.version_id})
        return RolledBack(restored=version_id, version_id=ref.version_id)


def _explanation(value: dict[str, Any] | None) -> ExplanationInfo | None:
    return ExplanationInfo.model_validate(value) if value else None


def _held_item(record: dict[str, Any]) -> ReviewItem:
    verdict = record["verdict"]
    # Screening records the model's probability of the verdict's label; other holds record none.
    claimed = (record.get("evidence") or {}).get("verdict_label_probability")
    probabilities = {verdict["label"]: float(claimed)} if isinstance(claimed, int | float) else {}
    return ReviewItem(
        kind="held",
        id=record["key"],
        input=verdict["text"] if verdict.get("text") is not None else verdict["fields"],
        label=verdict["label"],
        probabilities=probabilities,
        reason=record.get("reason"),
        queued_at=record.get("held_at", ""),
    )
