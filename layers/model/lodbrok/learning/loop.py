"""The learning loop: verdicts in, archived once, screened, learned into a candidate, gated, promoted.

It composes the parts, each in its own module:
- `lodbrok.learning.intake`: every verdict of a queue message archived exactly once (or the message quarantined);
- `lodbrok.learning.proposal`: a batch of verdicts screened (`lodbrok.learning.screening`), learned into a candidate and
  judged by the gate (`lodbrok.learning.gate`);
- `lodbrok.learning.holding`: the verdicts the screening held, written beside the archive for review;
- `lodbrok.learning.state`: the archive cursor of the last attempt and of the last promotion.

The retrain function hands each SQS batch to `LearningLoop.learn_from_batch`, which knows the order: archive
each message (partial batch failures), remember the batch's verdicts, retrain if due. A retrain
(`LearningLoop.retrain`: gather, propose, then publish or reject, each a method of its own) reads the verdicts
archived since the last training attempt (or, on the schedule, since the last promotion), leaves out the ones
held for review, and keeps per input the verdict received last. Suspended senders' verdicts are held before
screening, and a sender the screening mostly holds is suspended with the rest of its batch
(`lodbrok.learning.holding`). Held verdicts are written under the archive's `held/` prefix before the cursor moves, so
a crash never loses them. The candidate is promoted only if the gate passes; otherwise it is saved as a
candidate with the reason and the active model is left alone. Promotion is a conditional write on the active
model's ETag: if another promotion won the race the candidate is redone from the new parent (bounded
attempts), so a candidate trained on a stale parent is never published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from lodbrok import aws
from lodbrok.access.roles import Role
from lodbrok.clock import utc_iso, utc_now
from lodbrok.learning.gate import GateDecision
from lodbrok.learning.holding import hold_screened, hold_suspended, hold_unknown_labels, suspects_among
from lodbrok.learning.intake import MessageResult, VerdictIntake
from lodbrok.learning.proposal import LearningConfig, Proposal, Screener, propose
from lodbrok.learning.state import AttemptRecord, Mode, RetrainState, RetrainStateStore, archive_cursor_of
from lodbrok.model.bundle import Bundle, BundleError
from lodbrok.model.data import LabelledItem, dataset_fingerprint
from lodbrok.model.features import canonical_key
from lodbrok.model.predictor import Predictor
from lodbrok.observability import MetricUnit, digest, error_fields, logger, metrics
from lodbrok.registry.lineage import Lineage
from lodbrok.registry.signing import BundleSigner
from lodbrok.registry.store import ConcurrentUpdate, ModelRef, ModelStore, ModelStoreError, NoActiveModel
from lodbrok.settings import Settings
from lodbrok.training.trainer import FinetuneConfig
from lodbrok.verdicts.archive import (
    ArchiveCursor,
    ArchivedVerdict,
    PendingKeys,
    VerdictArchive,
    judged_sender,
    sender_digest,
)
from lodbrok.verdicts.attestation import Attester, Provenance
from lodbrok.verdicts.memory import VerdictMemory, entry_key
from lodbrok.verdicts.verdict import latest_per_input, received_instant

MIN_SECONDS_LEFT_TO_TRAIN = 360  # screening, two probes and the candidate for up to MAX_VERDICTS_PER_RETRAIN


class RetrainConflict(ModelStoreError):
    """Every attempt lost the promotion race; the verdicts stay pending and are retried later."""


def learning_config(settings: Settings) -> LearningConfig:
    return LearningConfig(
        min_verdicts=settings.min_verdicts_to_train,
        gate_tolerance=settings.gate_tolerance,
        max_attempts=settings.retrain_max_attempts,
        max_verdicts=settings.max_verdicts_per_retrain,
        settle_seconds=settings.archive_settle_seconds,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        max_text_chars=settings.max_text_chars,
        max_clock_skew_seconds=settings.max_clock_skew_seconds,
        finetune=FinetuneConfig(epochs=settings.finetune_epochs),
    )


class RetrainOutcome(BaseModel):
    status: Literal["promoted", "rejected", "held", "waiting", "up-to-date"]
    mode: Mode
    pending: int = 0
    min_verdicts: int = 1
    verdicts: int = 0
    held: int = 0
    suspect_sources: list[str] = []  # digests of the senders suspended by this retrain
    attempts: int = 0
    version: str | None = None
    version_id: str | None = None
    parent_version: str | None = None
    parent_version_id: str | None = None
    candidate_key: str | None = None
    decision: GateDecision | None = None
    finetune_seconds: float | None = None


@dataclass(frozen=True)
class ActiveBundle:
    """The active model as the learning loop needs it: its bundle (to learn from) and S3 ref (to replace)."""

    ref: ModelRef
    bundle: Bundle


@dataclass
class Gathered:
    """One attempt's verdicts: read from the archive since the cursor, one per input, held ones set aside."""

    mode: Mode
    attempt: int
    active: ActiveBundle
    state: RetrainState
    model_cursor: ArchiveCursor
    pending: PendingKeys
    listed_at: datetime
    records: list[ArchivedVerdict]
    items: list[LabelledItem]
    fingerprint: str
    outcome: RetrainOutcome  # what the attempt reports so far

    def tried_before(self) -> bool:
        """On the schedule: these very verdicts were already tried on this very model."""
        last = self.state.last_attempt
        return (
            self.mode is Mode.SINCE_PROMOTION
            and last is not None
            and last.fingerprint == self.fingerprint
            and last.parent_version_id == self.active.ref.version_id
        )


@dataclass(frozen=True)
class Proposed:
    """A candidate the gate judged, with the archive positions its verdicts span."""

    candidate: Bundle
    decision: GateDecision
    learned: int
    settled: str
    considered: ArchiveCursor
    outcome: RetrainOutcome


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
        memory: VerdictMemory | None = None,
        attester: Attester | None = None,
    ) -> None:
        self.store = store
        self.memory = memory
        self._screener: tuple[ModelRef, Screener] | None = None
        self.archive = archive
        self.state = state
        self.config = config or LearningConfig()
        self._active_bundle: ActiveBundle | None = None
        self.intake = VerdictIntake(
            archive,
            self._labels_for_intake,
            max_text_chars=self.config.max_text_chars,
            idempotency_store=idempotency_store,
            idempotency_ttl_seconds=self.config.idempotency_ttl_seconds,
            attester=attester,
            max_clock_skew_seconds=self.config.max_clock_skew_seconds,
        )

    def _labels_for_intake(self) -> list[str] | None:
        """The active model's labels; None when its bundle cannot be read (intake goes on unchecked)."""
        try:
            return list(self._active().bundle.labels)
        except BundleError as error:
            metrics.add_metric(name="ActiveModelUnreadable", unit=MetricUnit.Count, value=1)
            logger.error(
                "the active model cannot be read; verdicts are archived without the label check",
                extra=error_fields(error),
            )
            return None

    def learn_from_batch(self, event: dict[str, Any], lambda_context: Any = None) -> PartialItemFailureResponse:
        """One SQS batch of verdict messages, start to end: each message archived (a failed one is reported
        alone, so one bad message never blocks the others), the batch's verdicts remembered so the predict
        function answers their inputs at once, then a retrain if enough verdicts are pending."""
        self.start_batch(lambda_context)
        response = process_partial_response(
            event=event,
            record_handler=self._accept_record,
            processor=BatchProcessor(event_type=EventType.SQS),
            context=lambda_context,
        )
        self.remember_batch()
        self.retrain_if_due(lambda_context)
        return response

    def _accept_record(self, record: SQSRecord) -> dict[str, Any]:
        result = self.accept(record.body, message_id=record.message_id, sent_timestamp=record.attributes.sent_timestamp)
        return {
            "archived": result.archived,
            "duplicates": result.duplicates,
            "quarantined": bool(result.quarantine_key),
        }

    def start_batch(self, lambda_context: Any = None) -> None:
        self.intake.start_batch(lambda_context)

    def remember_batch(self) -> int:
        """Put this batch's archived verdicts that pass the screening into the verdict memory, so the predict
        function answers their exact inputs with them right away. Best effort: never fails the batch."""
        if self.memory is None or not self.intake.accepted:
            return 0
        try:
            active = self._active()
            screener = self._screener_of(active)
            suspended = self.archive.suspended()
        except (BundleError, ModelStoreError, ClientError, BotoCoreError):
            logger.warning(
                "the active model or the senders cannot be read; verdicts reach answers at the next promotion"
            )
            return 0
        # A reviewer's verdict is trusted (never screened); feedback answers at once only if the retrain would
        # learn it: it passes the screening and its sender is neither suspect in this batch nor suspended. A
        # verdict received in a time the active model's lineage excludes (under versions a rollback undid) never
        # answers; the model learns it, or not, at the next retrain.
        lineage = Lineage.of(active.bundle.metadata.get("stored"))
        received_order = sorted(self.intake.accepted, key=lambda entry: received_instant(entry[1].received_at))
        latest = {
            (canonical_key(verdict.input), provenance.sender, provenance.role): (verdict, provenance)
            for verdict, provenance in received_order
            if verdict.label in active.bundle.labels and lineage.contains(provenance.received_at)
        }
        feedback = [(verdict, provenance) for verdict, provenance in latest.values() if not _trusted(provenance)]
        screening = screener.screen([verdict.to_labelled_item() for verdict, _ in feedback], self.config.screening)
        senders = {
            canonical_key(verdict.input): judged_sender(provenance.sender, verdict.source)
            for verdict, provenance in feedback
        }
        distrusted = set(suspects_among(screening, senders))
        learnable = {
            key
            for key in (canonical_key(item.input) for item in screening.learn)
            if senders[key] not in distrusted and sender_digest(senders[key]) not in suspended
        }
        remembered = self.memory.remember(
            [
                (verdict, provenance)
                for verdict, provenance in latest.values()
                if _trusted(provenance) or canonical_key(verdict.input) in learnable
            ]
        )
        metrics.add_metric(name="VerdictsRemembered", unit=MetricUnit.Count, value=remembered)
        return remembered

    def accept(self, body: str, *, message_id: str, sent_timestamp: str | None = None) -> MessageResult:
        return self.intake.accept(body, message_id=message_id, sent_timestamp=sent_timestamp)

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
        except Exception as error:
            logger.error(
                "retraining failed; the verdicts stay archived and pending, and will be retried",
                extra=error_fields(error),
            )
            metrics.add_metric(name="RetrainFailed", unit=MetricUnit.Count, value=1)
            return None

    def retrain(self, mode: Mode = Mode.PENDING) -> RetrainOutcome:
        """One retrain cycle; see the module docstring. Raises on failure with the active model untouched.

        Each attempt gathers the pending verdicts, proposes a candidate from them, and publishes it or records
        the rejection; an attempt that lost the promotion race is redone from the new parent."""
        for attempt in range(1, self.config.max_attempts + 1):
            gathered = self._gather(mode, attempt)
            if isinstance(gathered, RetrainOutcome):
                return gathered
            proposed = self._propose(gathered)
            if isinstance(proposed, RetrainOutcome):
                return proposed
            if not proposed.decision.promote:
                return self._reject(gathered, proposed)
            outcome = self._publish(gathered, proposed)
            if outcome is not None:
                return outcome
        raise RetrainConflict(
            f"the active model changed during each of {self.config.max_attempts} retrain attempts; "
            "the verdicts stay pending and are retried with the next batch or schedule"
        )

    def _gather(self, mode: Mode, attempt: int) -> Gathered | RetrainOutcome:
        """The verdicts pending since the cursor, one per input, without those held unscreened; an outcome
        instead when there is nothing to learn yet (too few, all held, or already tried on this model)."""
        min_verdicts = self.config.min_verdicts if mode is Mode.PENDING else 1
        active = self._active()
        state, _ = self.state.load()
        model_cursor = archive_cursor_of(active.bundle)
        # A rollback restores an older cursor; what the rolled-back model learned is not relearned.
        since = state.cursor if mode is Mode.PENDING else state.promoted_cursor
        listed_at = utc_now()
        pending = self.archive.pending(ArchiveCursor.merge(since, model_cursor), limit=self.config.max_verdicts)
        outcome = RetrainOutcome(
            status="waiting", mode=mode, pending=len(pending.keys), min_verdicts=min_verdicts, attempts=attempt
        )
        metrics.add_metric(name="VerdictsPending", unit=MetricUnit.Count, value=len(pending.keys))
        if len(pending.keys) < min_verdicts:
            logger.info("waiting for more verdicts", extra={"pending": len(pending.keys), "min": min_verdicts})
            return outcome
        held_before = self.archive.held_archive_keys()
        records = latest_records([r for r in self.archive.read(pending.keys) if r.key not in held_before])
        records, unknown_label = hold_unknown_labels(self.archive, records, active.bundle.labels)
        records, suspended = hold_suspended(self.archive, records)
        items = [record.verdict.to_labelled_item() for record in records]
        gathered = Gathered(
            mode=mode,
            attempt=attempt,
            active=active,
            state=state,
            model_cursor=model_cursor,
            pending=pending,
            listed_at=listed_at,
            records=records,
            items=items,
            fingerprint=dataset_fingerprint(items),
            outcome=outcome.model_copy(update={"verdicts": len(items), "held": unknown_label + suspended}),
        )
        if not items:  # all held: a label the model lacks, a suspended sender, or an attempt that crashed
            return self._record_held(gathered)
        if len(items) < min_verdicts:
            return gathered.outcome
        if gathered.tried_before():
            logger.info("these verdicts were already tried on this model", extra={"verdicts": len(items)})
            return gathered.outcome.model_copy(update={"status": "up-to-date"})
        return gathered

    def _propose(self, gathered: Gathered) -> Proposed | RetrainOutcome:
        """Screen the gathered verdicts (holding what the screening holds), learn a candidate and judge it;
        an outcome instead when the screening left nothing to learn or a single verdict."""
        active = gathered.active
        logger.info("screening and learning", extra={"parent": active.ref.version_id, "verdicts": len(gathered.items)})
        screener = self._screener_of(active)
        reviewed = {canonical_key(record.verdict.input) for record in gathered.records if record.trusted}
        screening = screener.screen(gathered.items, self.config.screening, reviewed=reviewed)
        held = hold_screened(self.archive, gathered.records, screening)
        gathered.outcome = gathered.outcome.model_copy(
            update={"held": held.count + gathered.outcome.held, "suspect_sources": held.suspects}
        )
        proposal = propose(
            active.bundle,
            gathered.items,
            self.config,
            reviewed=reviewed,
            version=self.store.next_version_label(),
            parent_version=active.bundle.version,
            screener=screener,
            screening=held.screening,
        )
        if proposal.candidate is None or proposal.decision is None:
            if proposal.screening.learn:
                logger.info("one verdict to learn: waiting for another, so that one can be held out")
                return gathered.outcome
            return self._record_held(gathered)
        metrics.add_metric(name="FineTuneSeconds", unit=MetricUnit.Seconds, value=proposal.seconds)
        return self._proposed(gathered, proposal, proposal.candidate, proposal.decision, held.count)

    def _proposed(
        self, gathered: Gathered, proposal: Proposal, candidate: Bundle, decision: GateDecision, held: int
    ) -> Proposed:
        """The candidate with its lineage and what it learned from, and the outcome that reports it."""
        active, pending, learned = gathered.active, gathered.pending, len(proposal.screening.learn)
        settled = self._settled_position(pending, gathered.listed_at)
        considered = ArchiveCursor.merge(gathered.state.cursor, gathered.model_cursor).advance(pending.keys, settled)
        candidate = candidate.with_metadata(
            parent_version=active.bundle.version,
            parent_version_id=active.ref.version_id,
            verdict_count=learned,
            metrics={**candidate.metadata.get("metrics", {}), "gate": decision.candidate_gate},
            learning={
                "mode": str(gathered.mode),
                "verdict_count": learned,
                "held": held,
                "verdicts_fingerprint": gathered.fingerprint,
                "first_key": pending.keys[0],
                "last_key": pending.keys[-1],
                "archive_cursor": considered.model_dump(mode="json"),
                "decision": decision.model_dump(mode="json"),
                "finetune_seconds": round(proposal.seconds, 3),
                "attempt": gathered.attempt,
                "decided_at": utc_iso(precision="seconds"),
            },
        )
        outcome = gathered.outcome.model_copy(
            update={
                "verdicts": learned,
                "version": candidate.version,
                "parent_version": active.bundle.version,
                "parent_version_id": active.ref.version_id,
                "decision": decision,
                "finetune_seconds": round(proposal.seconds, 3),
            }
        )
        return Proposed(candidate, decision, learned, settled, considered, outcome)

    def _publish(self, gathered: Gathered, proposed: Proposed) -> RetrainOutcome | None:
        """Promote the candidate over the parent it was trained on; None when another promotion won the race."""
        try:
            ref = self.store.publish(
                proposed.candidate, expected=gathered.active.ref, action="promote", verdict_count=proposed.learned
            )
        except ConcurrentUpdate:
            metrics.add_metric(name="RetrainConflicts", unit=MetricUnit.Count, value=1)
            logger.warning(
                "the active model changed during retraining; retrying from the new parent",
                extra={"attempt": gathered.attempt, "stale_parent": gathered.active.ref.version_id},
            )
            return None
        outcome = proposed.outcome.model_copy(update={"status": "promoted", "version_id": ref.version_id})
        self._forget_what_the_model_learned(proposed.candidate, gathered.records)
        self._record_attempt(outcome, gathered, proposed.settled, promoted=proposed.considered, must_succeed=False)
        metrics.add_metric(name="CandidatePromoted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="VerdictsLearned", unit=MetricUnit.Count, value=proposed.learned)
        logger.info("candidate promoted", extra=_log_fields(outcome))
        return outcome

    def _reject(self, gathered: Gathered, proposed: Proposed) -> RetrainOutcome:
        """Save the candidate the gate refused, with the reason; the active model is left alone."""
        key = self.store.save_candidate(proposed.candidate, proposed.decision.reason)
        outcome = proposed.outcome.model_copy(update={"status": "rejected", "candidate_key": key})
        self._record_attempt(outcome, gathered, proposed.settled, promoted=None, must_succeed=True)
        metrics.add_metric(name="CandidateRejected", unit=MetricUnit.Count, value=1)
        logger.warning("candidate rejected by the gate", extra=_log_fields(outcome))
        return outcome

    def _record_held(self, gathered: Gathered) -> RetrainOutcome:
        """Nothing left to learn: every verdict is held for review; move the cursor past them."""
        outcome = gathered.outcome.model_copy(
            update={"status": "held", "parent_version_id": gathered.active.ref.version_id}
        )
        settled = self._settled_position(gathered.pending, gathered.listed_at)
        self._record_attempt(outcome, gathered, settled, promoted=None, must_succeed=True)
        logger.warning("every pending verdict is held for review", extra=_log_fields(outcome))
        return outcome

    def _screener_of(self, active: ActiveBundle) -> Screener:
        """The active model's screener, built once per model version (intake and retraining share it)."""
        if self._screener is None or self._screener[0] != active.ref:
            self._screener = (active.ref, Screener.of(active.bundle))
        return self._screener[1]

    def _forget_what_the_model_learned(self, promoted: Bundle, records: Sequence[ArchivedVerdict]) -> None:
        """Entries the promoted model now answers the same way are no longer needed."""
        if self.memory is None or not records:
            return
        verdicts = [record.verdict for record in records]
        predictions = Predictor(promoted).predict([verdict.input for verdict in verdicts])
        entries = [
            entry_key(canonical_key(record.verdict.input), everyone=record.trusted, sender=record.sender)
            for record in records
        ]
        learned = [
            (pk, verdict)
            for pk, verdict, prediction in zip(entries, verdicts, predictions, strict=True)
            if pk is not None and prediction.label == verdict.label
        ]
        forgotten = self.memory.forget_learned(learned)
        logger.info("verdict memory entries the promoted model made unnecessary", extra={"forgotten": forgotten})

    def _active(self) -> ActiveBundle:
        """The active model, downloaded only when its S3 version changed since the last call."""
        ref = self.store.head()
        if ref is None:
            raise NoActiveModel(f"no active model in s3://{self.store.bucket}/{self.store.active_key} to learn into")
        if self._active_bundle is None or self._active_bundle.ref != ref:
            stored = self.store.load()
            try:
                self._active_bundle = ActiveBundle(stored.ref, stored.bundle())
            except BundleError:
                metrics.add_metric(name="ModelLoadFailed", unit=MetricUnit.Count, value=1)
                raise
        return self._active_bundle

    def _settled_position(self, pending: PendingKeys, listed_at: datetime) -> str:
        """Up to where every archived verdict is known to be listed.

        Concurrent writers may still be finishing verdicts stamped a moment before the listing, so the
        watermark trails the listing by `settle_seconds`; newer keys are remembered one by one.
        """
        settled = self.archive.position(listed_at - timedelta(seconds=self.config.settle_seconds))
        return min(settled, pending.keys[-1]) if pending.truncated else settled

    def _record_attempt(
        self,
        outcome: RetrainOutcome,
        gathered: Gathered,
        settled: str,
        *,
        promoted: ArchiveCursor | None,
        must_succeed: bool,
    ) -> None:
        record = AttemptRecord(
            at=utc_iso(precision="seconds"),
            mode=outcome.mode,
            status=outcome.status,
            verdicts=outcome.verdicts,
            fingerprint=gathered.fingerprint,
            parent_version_id=outcome.parent_version_id or "",
            version=outcome.version,
            version_id=outcome.version_id,
            candidate_key=outcome.candidate_key,
            held=outcome.held,
        )
        try:
            self.state.record_attempt(
                record, gathered.model_cursor.advance(gathered.pending.keys, settled), promoted=promoted
            )
        except (ClientError, ModelStoreError) as error:
            if must_succeed:
                raise
            # The promoted bundle carries the same cursor, so these verdicts cannot be learned twice.
            logger.error("could not save the retrain state after a promotion", extra=error_fields(error))


def build_learning_loop(settings: Settings, *, s3: Any = None, dynamodb: Any = None, kms: Any = None) -> LearningLoop:
    """Wire the loop from settings; clients are created here (lazily, by the caller), never at import."""
    if not settings.idempotency_table:
        raise ValueError("IDEMPOTENCY_TABLE is not set: the retrain function needs it to archive each verdict once")
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    s3 = s3 or aws.client("s3")
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, boto3_client=dynamodb or aws.client("dynamodb")
    )
    memory = None
    if settings.verdict_memory_table:
        memory = VerdictMemory(
            settings.verdict_memory_table,
            client=dynamodb or aws.client("dynamodb"),
            ttl_seconds=settings.verdict_memory_ttl_seconds,
            client_daily_cap=settings.verdict_memory_client_daily_cap,
            global_daily_cap=settings.verdict_memory_global_daily_cap,
        )
    attester = None
    if settings.verdict_attestation_key:
        attester = Attester(settings.verdict_attestation_key, kms=kms or aws.client("kms"))
    return LearningLoop(
        ModelStore(settings.model_bucket, settings.model_name, signer=BundleSigner.from_settings(settings, kms), s3=s3),
        VerdictArchive(settings.model_bucket, settings.verdict_archive_prefix, s3=s3),
        RetrainStateStore(settings.model_bucket, settings.model_name, s3=s3),
        learning_config(settings),
        idempotency_store=persistence,
        memory=memory,
        attester=attester,
    )


def latest_records(records: Sequence[ArchivedVerdict]) -> list[ArchivedVerdict]:
    """One record per input, in archive order: the verdict received last wins (a correction), whichever of the
    two was archived first. A verdict cannot have been received after it was archived, so a stamp in the
    future counts as its archive time and never outranks the corrections that follow it."""
    return latest_per_input(records, lambda record: record.verdict, lambda record: record.archived_at)


def _trusted(provenance: Provenance) -> bool:
    return provenance.role.allows(Role.REVIEWER)


def is_scheduled_event(event: Any) -> bool:
    """An EventBridge (or EventBridge Scheduler) scheduled event, as opposed to an SQS batch."""
    return (
        isinstance(event, dict)
        and event.get("detail-type") == "Scheduled Event"
        and event.get("source") in {"aws.events", "aws.scheduler"}
    )


def _log_fields(outcome: RetrainOutcome) -> dict[str, Any]:
    """The outcome as a log says it: sources by digest, and the gate's checks by name (their details and the
    reason quote labels)."""
    fields = outcome.model_dump(mode="json", exclude={"decision", "suspect_sources"})
    fields["suspect_sources"] = [digest(source) for source in outcome.suspect_sources]
    if outcome.decision:
        fields["checks"] = {check.name: check.passed for check in outcome.decision.checks}
    return fields
