"""The learning loop: verdicts in, archived once, fine-tuned into a candidate, gated, promoted or parked.

1. Intake (`LearningLoop.accept`, one queue message): parse and validate the verdicts again (producers
   may write to the queue directly), check their labels against the active model, and archive each one
   in S3 (`lodbrok.archive`) *before* the message is acknowledged. Archiving is idempotent per verdict
   (`Verdict.fingerprint()`: id + input + label) through Powertools idempotency on DynamoDB, so a
   verdict sent twice, or a message delivered twice, is archived once. Messages that can never become
   valid go to the quarantine with the reason and count as processed; anything else raises, so the
   queue redelivers the message (and after maxReceiveCount moves it to the DLQ).
2. Retraining (`LearningLoop.retrain`): the verdicts archived since the last training attempt (or, on
   the schedule, since the last promotion) are deduplicated (the latest label per input wins), and once
   there are at least MIN_VERDICTS_TO_TRAIN of them the active model is fine-tuned on them with
   rehearsal. The candidate is promoted only if the gate passes (`decide`); otherwise it is saved as a
   candidate with the reason and the active model is left alone.
3. Promotion is a conditional write on the active model's ETag. If another promotion won the race the
   fine-tune is redone from the new parent (bounded attempts): a candidate trained on a stale parent is
   never published, and the other promotion is never overwritten.

Progress is an `ArchiveCursor`: the state object `state/<model>/retrain.json` holds the position of the
last training attempt, and every promoted bundle records the position it was trained up to
(`metadata.learning.archive_cursor`), written atomically with the model itself. A failure anywhere
before the cursor moves leaves the verdicts pending, so the next batch or the schedule retries them.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from lodbrok.archive import ArchiveCursor, ArchivedVerdict, PendingKeys, VerdictArchive
from lodbrok.bundle import Bundle, utc_now_iso
from lodbrok.data import LabelledItem, dataset_fingerprint, items_from_jsonl
from lodbrok.evaluation import Metrics
from lodbrok.features import canonical_key
from lodbrok.observability import MetricUnit, logger, metrics
from lodbrok.predictor import Predictor
from lodbrok.settings import Settings
from lodbrok.store import ConcurrentUpdate, ModelRef, ModelStore, ModelStoreError, NoActiveModel
from lodbrok.training import FinetuneConfig, evaluate, finetune_bundle
from lodbrok.verdicts import Verdict, VerdictError, check_labels, parse_message_body

IDEMPOTENCY_KEY_PREFIX = "lodbrok-retrain.archive_verdict"
MIN_SECONDS_LEFT_TO_TRAIN = 180
_EPSILON = 1e-9


class Mode(enum.StrEnum):
    PENDING = "pending"  # everything archived since the last training attempt (the SQS path)
    SINCE_PROMOTION = "since-promotion"  # everything archived since the last promotion (the schedule)


class RetrainConflict(ModelStoreError):
    """Every attempt lost the promotion race; the verdicts stay pending and are retried later."""


@dataclass(frozen=True)
class LearningConfig:
    min_verdicts: int = 1
    gate_tolerance: float = 0.01
    max_attempts: int = 3
    max_verdicts: int = 5_000
    settle_seconds: float = 300.0
    idempotency_ttl_seconds: int = 30 * 86_400
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    @classmethod
    def from_settings(cls, settings: Settings) -> LearningConfig:
        return cls(
            min_verdicts=settings.min_verdicts_to_train,
            gate_tolerance=settings.gate_tolerance,
            max_attempts=settings.retrain_max_attempts,
            max_verdicts=settings.max_verdicts_per_retrain,
            settle_seconds=settings.archive_settle_seconds,
            idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
            finetune=FinetuneConfig(epochs=settings.finetune_epochs),
        )


class GateDecision(BaseModel):
    """Candidate vs. active model on the gate set and on the verdicts being learned."""

    promote: bool
    reason: str
    tolerance: float
    active_gate: dict[str, Any]
    candidate_gate: dict[str, Any]
    verdicts: int
    active_correct: int
    candidate_correct: int


def decide(
    active_gate: Metrics,
    candidate_gate: Metrics,
    *,
    active_correct: int,
    candidate_correct: int,
    verdicts: int,
    tolerance: float,
) -> GateDecision:
    """The promotion rule.

    Promote only if all hold:
    - the gate set is not empty;
    - candidate gate accuracy >= active gate accuracy - tolerance, and the same for gate macro F1;
    - the candidate learned the verdicts: it classifies strictly more of them correctly than the active
      model, or all of them when the active model already did (confirming verdicts are learned too).
    """
    problems = []
    if candidate_gate.count == 0:
        problems.append("the model has no gate set to check a candidate against")
    if candidate_gate.accuracy < active_gate.accuracy - tolerance - _EPSILON:
        problems.append(
            f"gate accuracy fell from {active_gate.accuracy:.4f} to {candidate_gate.accuracy:.4f} "
            f"(tolerance {tolerance})"
        )
    if candidate_gate.macro_f1 < active_gate.macro_f1 - tolerance - _EPSILON:
        problems.append(
            f"gate macro F1 fell from {active_gate.macro_f1:.4f} to {candidate_gate.macro_f1:.4f} "
            f"(tolerance {tolerance})"
        )
    learned = candidate_correct > active_correct or candidate_correct == active_correct == verdicts
    if not learned:
        problems.append(
            f"the candidate gets {candidate_correct}/{verdicts} verdicts right and the active model "
            f"{active_correct}/{verdicts}: nothing was learned"
        )
    summary = (
        f"gate accuracy {active_gate.accuracy:.4f} -> {candidate_gate.accuracy:.4f}, "
        f"macro F1 {active_gate.macro_f1:.4f} -> {candidate_gate.macro_f1:.4f}, "
        f"verdicts right {active_correct}/{verdicts} -> {candidate_correct}/{verdicts}"
    )
    return GateDecision(
        promote=not problems,
        reason="rejected: " + "; ".join(problems) if problems else "promoted: " + summary,
        tolerance=tolerance,
        active_gate=active_gate.summary(),
        candidate_gate=candidate_gate.summary(),
        verdicts=verdicts,
        active_correct=active_correct,
        candidate_correct=candidate_correct,
    )


class RetrainOutcome(BaseModel):
    status: Literal["promoted", "rejected", "waiting", "up-to-date"]
    mode: Mode
    pending: int = 0
    min_verdicts: int = 1
    verdicts: int = 0
    attempts: int = 0
    version: str | None = None
    version_id: str | None = None
    parent_version: str | None = None
    parent_version_id: str | None = None
    candidate_key: str | None = None
    decision: GateDecision | None = None
    finetune_seconds: float | None = None


@dataclass(frozen=True)
class MessageResult:
    archived: int = 0
    duplicates: int = 0
    quarantine_key: str | None = None


class AttemptRecord(BaseModel):
    at: str
    mode: Mode
    status: str
    verdicts: int
    fingerprint: str
    parent_version_id: str
    version: str | None = None
    version_id: str | None = None
    candidate_key: str | None = None


class RetrainState(BaseModel):
    model_config = ConfigDict(frozen=True)

    cursor: ArchiveCursor = ArchiveCursor()  # what the last training attempt (promoted or not) considered
    promoted_cursor: ArchiveCursor = ArchiveCursor()  # what the last promotion by this loop had learned
    last_attempt: AttemptRecord | None = None


class RetrainStateStore:
    """The small state object `state/<model>/retrain.json`, updated with conditional writes."""

    def __init__(self, bucket: str, model_name: str = "default", s3: Any = None) -> None:
        self.bucket = bucket
        self.key = f"state/{model_name}/retrain.json"
        self.s3 = s3 or boto3.client("s3")

    def load(self) -> tuple[RetrainState, str | None]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return RetrainState(), None
            raise
        return RetrainState.model_validate_json(response["Body"].read()), response["ETag"]

    def update(self, change: Callable[[RetrainState], RetrainState], attempts: int = 5) -> RetrainState:
        """Read, change and write back; a concurrent writer makes it re-read and re-apply `change`."""
        for _ in range(attempts):
            state, etag = self.load()
            updated = change(state)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=updated.model_dump_json(indent=2).encode(),
                    ContentType="application/json",
                    **condition,
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
                    continue
                raise
            return updated
        raise ConcurrentUpdate(f"s3://{self.bucket}/{self.key} kept changing; giving up after {attempts} attempts")


@dataclass(frozen=True)
class ActiveModel:
    ref: ModelRef
    bundle: Bundle


class LearningLoop:
    """Verdict intake and the retrain/gate/promote cycle for one model."""

    def __init__(
        self,
        store: ModelStore,
        archive: VerdictArchive,
        state: RetrainStateStore,
        config: LearningConfig | None = None,
        *,
        idempotency_store: Any = None,
    ) -> None:
        self.store = store
        self.archive = archive
        self.state = state
        self.config = config or LearningConfig()
        self._active_model: ActiveModel | None = None
        self._labels: list[str] | None = None
        self._idempotency_config = None
        self._archive_once: Callable[..., dict[str, Any]] = self._archive_verdict
        if idempotency_store is not None:
            from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

            self._idempotency_config = IdempotencyConfig(
                expires_after_seconds=self.config.idempotency_ttl_seconds, response_hook=_mark_duplicate
            )
            self._archive_once = idempotent_function(
                self._archive_verdict,
                data_keyword_argument="fingerprint",
                persistence_store=idempotency_store,
                config=self._idempotency_config,
                key_prefix=IDEMPOTENCY_KEY_PREFIX,
            )

    # ---- intake ---------------------------------------------------------------------------------

    def start_batch(self, lambda_context: Any = None) -> None:
        """Per invocation: re-read the active model's labels, and give idempotency the deadline."""
        self._labels = None
        if self._idempotency_config is not None and lambda_context is not None:
            self._idempotency_config.register_lambda_context(lambda_context)

    def accept(self, body: str, *, message_id: str, sent_timestamp: str | None = None) -> MessageResult:
        """Archive every verdict of one queue message, or quarantine the message if it is invalid.

        Raises on transient failures (S3, DynamoDB, no active model yet) so the message is retried.
        """
        sent_at = _epoch_millis_to_iso(sent_timestamp)
        try:
            verdicts = parse_message_body(body)
            check_labels(verdicts, self._current_labels())
        except VerdictError as error:
            key = self.archive.quarantine(body, error.problems, message_id=message_id, sent_at=sent_at)
            metrics.add_metric(name="VerdictsQuarantined", unit=MetricUnit.Count, value=1)
            logger.warning(
                "verdict message quarantined", extra={"message_id": message_id, "problems": error.problems, "key": key}
            )
            return MessageResult(quarantine_key=key)
        archived = duplicates = 0
        for index, verdict in enumerate(verdicts):
            result = self._archive_once(
                fingerprint=verdict.fingerprint(), verdict=verdict, message_id=message_id, sent_at=sent_at, index=index
            )
            if result.get("duplicate"):
                duplicates += 1
            else:
                archived += 1
        if archived:
            metrics.add_metric(name="VerdictsArchived", unit=MetricUnit.Count, value=archived)
        if duplicates:
            metrics.add_metric(name="VerdictsDuplicate", unit=MetricUnit.Count, value=duplicates)
        logger.info(
            "verdict message archived",
            extra={"message_id": message_id, "archived": archived, "duplicates": duplicates},
        )
        return MessageResult(archived=archived, duplicates=duplicates)

    def _archive_verdict(
        self, *, fingerprint: str, verdict: Verdict, message_id: str, sent_at: str | None, index: int
    ) -> dict[str, Any]:
        """The idempotent step (keyed on `fingerprint`): write one verdict to the archive."""
        key = self.archive.write(verdict, message_id=message_id, sent_at=sent_at, index=index)
        return {"key": key, "fingerprint": fingerprint}

    def _current_labels(self) -> list[str]:
        if self._labels is None:
            self._labels = list(self._active().bundle.labels)
        return self._labels

    # ---- retraining -----------------------------------------------------------------------------

    def retrain_if_due(self, lambda_context: Any = None) -> RetrainOutcome | None:
        """After a batch: retrain if enough verdicts are pending. Never fails the batch.

        The batch's verdicts are already archived; a failed retrain leaves them pending for the next
        batch or the schedule, so failing (and redelivering) the messages would gain nothing.
        """
        if (
            lambda_context is not None
            and lambda_context.get_remaining_time_in_millis() < MIN_SECONDS_LEFT_TO_TRAIN * 1000
        ):
            logger.warning("too little time left in this invocation to retrain; the schedule will pick it up")
            return None
        try:
            return self.retrain(Mode.PENDING)
        except Exception:
            logger.exception("retraining failed; the verdicts stay archived and pending, and will be retried")
            metrics.add_metric(name="RetrainFailed", unit=MetricUnit.Count, value=1)
            return None

    def retrain(self, mode: Mode = Mode.PENDING) -> RetrainOutcome:
        """One retrain cycle; see the module docstring. Raises on failure with the active model untouched."""
        min_verdicts = self.config.min_verdicts if mode is Mode.PENDING else 1
        for attempt in range(1, self.config.max_attempts + 1):
            active = self._active()
            state, _ = self.state.load()
            model_cursor = archive_cursor_of(active.bundle)
            if mode is Mode.PENDING:
                cursor = ArchiveCursor.merge(state.cursor, model_cursor)
            else:  # a rollback restores an older cursor; what the rolled-back model learned is not relearned
                cursor = ArchiveCursor.merge(state.promoted_cursor, model_cursor)
            listed_at = datetime.now(UTC)
            pending = self.archive.pending(cursor, limit=self.config.max_verdicts)
            outcome = RetrainOutcome(
                status="waiting", mode=mode, pending=len(pending.keys), min_verdicts=min_verdicts, attempts=attempt
            )
            metrics.add_metric(name="VerdictsPending", unit=MetricUnit.Count, value=len(pending.keys))
            if len(pending.keys) < min_verdicts:
                logger.info("waiting for more verdicts", extra={"pending": len(pending.keys), "min": min_verdicts})
                return outcome
            items = latest_verdicts(self.archive.read(pending.keys))
            outcome = outcome.model_copy(update={"verdicts": len(items)})
            if len(items) < min_verdicts:
                return outcome
            fingerprint = dataset_fingerprint(items)
            last = state.last_attempt
            if (
                mode is Mode.SINCE_PROMOTION
                and last is not None
                and last.fingerprint == fingerprint
                and last.parent_version_id == active.ref.version_id
            ):
                logger.info("these verdicts were already tried on this model", extra={"verdicts": len(items)})
                return outcome.model_copy(update={"status": "up-to-date"})

            settled = self._settled_position(pending, listed_at)
            considered = ArchiveCursor.merge(state.cursor, model_cursor).advance(pending.keys, settled)
            candidate, seconds = self._finetune(active, items)
            decision = self._judge(active.bundle, candidate, items)
            candidate = candidate.with_metadata(
                parent_version=active.bundle.version,
                parent_version_id=active.ref.version_id,
                verdict_count=len(items),
                metrics={**candidate.metadata.get("metrics", {}), "gate": decision.candidate_gate},
                learning={
                    "mode": str(mode),
                    "verdict_count": len(items),
                    "verdicts_fingerprint": fingerprint,
                    "first_key": pending.keys[0],
                    "last_key": pending.keys[-1],
                    "archive_cursor": considered.model_dump(mode="json"),
                    "decision": decision.model_dump(mode="json"),
                    "finetune_seconds": round(seconds, 3),
                    "attempt": attempt,
                    "decided_at": utc_now_iso(),
                },
            )
            outcome = outcome.model_copy(
                update={
                    "version": candidate.version,
                    "parent_version": active.bundle.version,
                    "parent_version_id": active.ref.version_id,
                    "decision": decision,
                    "finetune_seconds": round(seconds, 3),
                }
            )
            metrics.add_metric(name="FineTuneSeconds", unit=MetricUnit.Seconds, value=seconds)
            if decision.promote:
                try:
                    ref = self.store.publish(candidate, expected=active.ref, action="promote", verdict_count=len(items))
                except ConcurrentUpdate:
                    metrics.add_metric(name="RetrainConflicts", unit=MetricUnit.Count, value=1)
                    logger.warning(
                        "the active model changed during retraining; retrying from the new parent",
                        extra={"attempt": attempt, "stale_parent": active.ref.version_id},
                    )
                    continue
                outcome = outcome.model_copy(update={"status": "promoted", "version_id": ref.version_id})
                self._record_attempt(
                    outcome, fingerprint, model_cursor, pending.keys, settled, promoted=considered, must_succeed=False
                )
                metrics.add_metric(name="CandidatePromoted", unit=MetricUnit.Count, value=1)
                metrics.add_metric(name="VerdictsLearned", unit=MetricUnit.Count, value=len(items))
                logger.info("candidate promoted", extra=_log_fields(outcome))
                return outcome
            key = self.store.save_candidate(candidate, decision.reason)
            outcome = outcome.model_copy(update={"status": "rejected", "candidate_key": key})
            self._record_attempt(
                outcome, fingerprint, model_cursor, pending.keys, settled, promoted=None, must_succeed=True
            )
            metrics.add_metric(name="CandidateRejected", unit=MetricUnit.Count, value=1)
            logger.warning("candidate rejected by the gate", extra=_log_fields(outcome))
            return outcome
        raise RetrainConflict(
            f"the active model changed during each of {self.config.max_attempts} retrain attempts; "
            "the verdicts stay pending and are retried with the next batch or schedule"
        )

    def _active(self) -> ActiveModel:
        """The active model, downloaded only when its S3 version changed since the last call."""
        ref = self.store.head()
        if ref is None:
            raise NoActiveModel(f"no active model in s3://{self.store.bucket}/{self.store.active_key} to learn into")
        if self._active_model is None or self._active_model.ref != ref:
            stored = self.store.load()
            self._active_model = ActiveModel(stored.ref, stored.bundle())
        return self._active_model

    def _settled_position(self, pending: PendingKeys, listed_at: datetime) -> str:
        """Up to where every archived verdict is known to be listed.

        Concurrent writers may still be finishing verdicts stamped a moment before the listing, so the
        watermark trails the listing by `settle_seconds`; newer keys are remembered one by one.
        """
        settled = self.archive.position(listed_at - timedelta(seconds=self.config.settle_seconds))
        return min(settled, pending.keys[-1]) if pending.truncated else settled

    def _finetune(self, active: ActiveModel, items: Sequence[LabelledItem]) -> tuple[Bundle, float]:
        label = self.store.next_label()
        logger.info("fine-tuning", extra={"parent": active.ref.version_id, "version": label, "verdicts": len(items)})
        started = time.perf_counter()
        candidate, _ = finetune_bundle(
            active.bundle, items, self.config.finetune, version=label, parent_version=active.bundle.version
        )
        return candidate, time.perf_counter() - started

    def _judge(self, active: Bundle, candidate: Bundle, items: Sequence[LabelledItem]) -> GateDecision:
        gate = items_from_jsonl(active.gate)
        active_predictor, candidate_predictor = Predictor(active), Predictor(candidate)
        return decide(
            evaluate(active_predictor, gate),
            evaluate(candidate_predictor, gate),
            active_correct=_correct(evaluate(active_predictor, items)),
            candidate_correct=_correct(evaluate(candidate_predictor, items)),
            verdicts=len(items),
            tolerance=self.config.gate_tolerance,
        )

    def _record_attempt(
        self,
        outcome: RetrainOutcome,
        fingerprint: str,
        model_cursor: ArchiveCursor,
        keys: list[str],
        settled: str,
        *,
        promoted: ArchiveCursor | None,
        must_succeed: bool,
    ) -> None:
        record = AttemptRecord(
            at=utc_now_iso(),
            mode=outcome.mode,
            status=outcome.status,
            verdicts=outcome.verdicts,
            fingerprint=fingerprint,
            parent_version_id=outcome.parent_version_id or "",
            version=outcome.version,
            version_id=outcome.version_id,
            candidate_key=outcome.candidate_key,
        )

        def change(state: RetrainState) -> RetrainState:
            cursor = ArchiveCursor.merge(state.cursor, model_cursor).advance(keys, settled)
            promoted_cursor = (
                state.promoted_cursor if promoted is None else ArchiveCursor.merge(state.promoted_cursor, promoted)
            )
            return RetrainState(cursor=cursor, promoted_cursor=promoted_cursor, last_attempt=record)

        try:
            self.state.update(change)
        except (ClientError, ModelStoreError):
            if must_succeed:
                raise
            # The promoted bundle carries the same cursor, so these verdicts cannot be learned twice.
            logger.exception("could not save the retrain state after a promotion")


def build_learning_loop(settings: Settings, *, s3: Any = None, dynamodb: Any = None) -> LearningLoop:
    """Wire the loop from settings; clients are created here (lazily, by the caller), never at import."""
    if not settings.idempotency_table:
        raise ValueError("IDEMPOTENCY_TABLE is not set: the retrain function needs it to archive each verdict once")
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    s3 = s3 or boto3.client("s3")
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, boto3_client=dynamodb or boto3.client("dynamodb")
    )
    return LearningLoop(
        ModelStore(settings.model_bucket, settings.model_name, s3=s3),
        VerdictArchive(settings.model_bucket, settings.verdict_archive_prefix, s3=s3),
        RetrainStateStore(settings.model_bucket, settings.model_name, s3=s3),
        LearningConfig.from_settings(settings),
        idempotency_store=persistence,
    )


def archive_cursor_of(bundle: Bundle) -> ArchiveCursor:
    """Up to where a bundle has seen the archive (a base model has seen nothing)."""
    learning = bundle.metadata.get("learning")
    raw = learning.get("archive_cursor") if isinstance(learning, dict) else None
    return ArchiveCursor.model_validate(raw) if isinstance(raw, dict) else ArchiveCursor()


def latest_verdicts(records: Sequence[ArchivedVerdict]) -> list[LabelledItem]:
    """One item per input, in archive order; the latest verdict on an input wins (a correction)."""
    latest: dict[str, LabelledItem] = {}
    for record in records:
        item = record.verdict.to_labelled_item()
        key = canonical_key(item.input)
        latest.pop(key, None)
        latest[key] = item
    return list(latest.values())


def is_scheduled_event(event: Any) -> bool:
    """An EventBridge (or EventBridge Scheduler) scheduled event, as opposed to an SQS batch."""
    return (
        isinstance(event, dict)
        and event.get("detail-type") == "Scheduled Event"
        and event.get("source") in {"aws.events", "aws.scheduler"}
    )


def _mark_duplicate(response: Any, data_record: Any) -> dict[str, Any]:
    """Idempotency response hook: the verdict was archived before, this call archived nothing."""
    return {**(response if isinstance(response, dict) else {}), "duplicate": True}


def _correct(metrics_: Metrics) -> int:
    return sum(row[index] for index, row in enumerate(metrics_.confusion_matrix))


def _epoch_millis_to_iso(value: str | None) -> str | None:
    try:
        moment = datetime.fromtimestamp(int(value) / 1000, UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def _log_fields(outcome: RetrainOutcome) -> dict[str, Any]:
    fields = outcome.model_dump(mode="json", exclude={"decision"})
    if outcome.decision:
        fields["reason"] = outcome.decision.reason
    return fields
