"""The domain calls behind the predict function: one method per endpoint, plus the prediction core.

`PredictService.predict` is the core: inputs -> the active model's predictions, reusing cached answers
for this model version and computing each distinct input (by `canonical_key`) once. The other methods
turn validated API requests into response models. Every dependency (boto3 clients, clocks) can be
injected; those not injected are created on first use and kept for warm invocations.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.access.roles import ClientRoles, Role
from lodbrok.clock import utc_iso
from lodbrok.model.decision import DecisionRule
from lodbrok.model.explanation import Explanation
from lodbrok.model.explanation import explain as explain_predictions
from lodbrok.model.features import canonical_key
from lodbrok.model.items import ModelInput
from lodbrok.model.predictor import Prediction
from lodbrok.model.review_band import REVIEW_DECISION, ReviewBand, ReviewBandError
from lodbrok.observability import MetricUnit, logger, metrics, tracer
from lodbrok.registry.signing import BundleSigner, SigningNotConfigured
from lodbrok.registry.store import BucketNotFound, ModelStore
from lodbrok.serving.call_log import CallEntry, CallLog, CallLogDisabled, Origin
from lodbrok.serving.drift import DriftSignals, TokenNovelty
from lodbrok.serving.model_provider import ActiveModel, ModelProvider, ModelUnavailable
from lodbrok.serving.prediction_cache import CacheUnavailable, PredictionCache, batch_get_items
from lodbrok.serving.review_desk import ReviewDesk
from lodbrok.serving.review_queue import Candidate, ReviewQueue
from lodbrok.serving.schemas import (
    DecisionInfo,
    ExplanationInfo,
    ItemPrediction,
    LimitExceeded,
    ModelInfo,
    PredictionInput,
    PredictRequest,
    PredictResponse,
    RecentCalls,
    ReviewBandInfo,
    VerdictsAccepted,
    VerdictSource,
    VerdictsRequest,
    check_explain_budget,
)
from lodbrok.serving.verdict_queue import QueueNotConfigured, VerdictQueue
from lodbrok.settings import Settings
from lodbrok.verdicts.archive import VerdictArchive
from lodbrok.verdicts.attestation import Attester, Provenance
from lodbrok.verdicts.memory import RememberedVerdict, VerdictMemory
from lodbrok.verdicts.verdict import Verdict, VerdictError, parse_verdicts


class VerdictsNotQueued(Exception):
    """Some verdicts could not be sent; `details` name each, `message_ids` hold those that were."""

    def __init__(self, message: str, details: list[dict[str, Any]], message_ids: dict[int, str]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.message_ids = message_ids


@dataclass(frozen=True)
class ServedPrediction:
    prediction: Prediction
    from_cache: bool
    verdict: RememberedVerdict | None = None  # set when a client's verdict on this exact input answered
    explanation: Explanation | None = None  # set when asked for, on answers the model computed

    @property
    def source(self) -> str:
        return "verdict" if self.verdict else "cache" if self.from_cache else "model"


class PredictService:
    def __init__(
        self,
        settings: Settings,
        *,
        s3: Any = None,
        dynamodb: Any = None,
        sqs: Any = None,
        kms: Any = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._s3 = s3
        self._dynamodb = dynamodb
        self._sqs = sqs
        self._kms = kms
        self._clock = clock
        self._now = now
        self._sleep = sleep

    # --- dependencies, built on first use -------------------------------------------------------------------

    @cached_property
    def models(self) -> ModelProvider:
        try:
            store = ModelStore(
                self.settings.model_bucket,
                self.settings.model_name,
                signer=BundleSigner.from_settings(
                    self.settings, kms=self._kms or aws.client("kms", aws.PREDICT_CONFIG)
                ),
                s3=self._s3 or aws.client("s3", aws.PREDICT_CONFIG),
            )
        except (BucketNotFound, SigningNotConfigured) as error:
            raise ModelUnavailable(str(error)) from error
        return ModelProvider(
            store,
            refresh_seconds=self.settings.model_refresh_seconds,
            pinned_version=self.settings.pinned_model_version,
            clock=self._clock,
        )

    @cached_property
    def _dynamodb_client(self) -> Any:
        """One fail-fast client for the cache and the call log (both best effort)."""
        return self._dynamodb or aws.client("dynamodb", aws.PREDICT_BEST_EFFORT_CONFIG)

    @cached_property
    def cache(self) -> PredictionCache | None:
        if not self.settings.cache_table:
            return None
        return PredictionCache(
            self.settings.cache_table,
            ttl_seconds=self.settings.cache_ttl_seconds,
            client=self._dynamodb_client,
            now=self._now,
            sleep=self._sleep,
        )

    @cached_property
    def verdict_memory(self) -> VerdictMemory | None:
        if not self.settings.verdict_memory_table:
            return None
        return VerdictMemory(
            self.settings.verdict_memory_table,
            client=self._dynamodb_client,
            ttl_seconds=self.settings.verdict_memory_ttl_seconds,
            now=self._now,
        )

    @cached_property
    def roles(self) -> ClientRoles | None:
        if not self.settings.clients_table:
            return None
        return ClientRoles(
            self.settings.clients_table,
            client=self._dynamodb or aws.client("dynamodb", aws.PREDICT_CONFIG),
            cache_seconds=self.settings.role_cache_seconds,
            clock=self._clock,
        )

    def role_of(self, key_id: str | None) -> Role:
        """The caller's role (lodbrok.access.roles); without a clients table every key is `predict`."""
        return self.roles.role_of(key_id) if self.roles is not None else Role.PREDICT

    @cached_property
    def call_log(self) -> CallLog | None:
        if not (self.settings.call_log_enabled and self.settings.call_log_table):
            return None
        return CallLog(
            self.settings.call_log_table,
            ttl_seconds=self.settings.call_log_ttl_seconds,
            client=self._dynamodb_client,
            now=self._now,
        )

    @cached_property
    def queue(self) -> VerdictQueue:
        if not self.settings.verdict_queue_url:
            raise QueueNotConfigured("verdicts cannot be accepted: VERDICT_QUEUE_URL is not configured")
        if not self.settings.verdict_attestation_key:
            raise QueueNotConfigured("verdicts cannot be accepted: VERDICT_ATTESTATION_KEY is not configured")
        client = self._sqs or aws.client("sqs", aws.PREDICT_CONFIG)
        attester = Attester(
            self.settings.verdict_attestation_key, kms=self._kms or aws.client("kms", aws.PREDICT_CONFIG)
        )
        return VerdictQueue(self.settings.verdict_queue_url, client=client, attester=attester, sleep=self._sleep)

    @cached_property
    def review_queue(self) -> ReviewQueue | None:
        if not self.settings.review_queue_table:
            return None
        return ReviewQueue(
            self.settings.review_queue_table,
            ttl_seconds=self.settings.review_queue_ttl_seconds,
            client=self._dynamodb or aws.client("dynamodb", aws.PREDICT_CONFIG),
            now=self._now,
        )

    @cached_property
    def desk(self) -> ReviewDesk:
        """The reviewer's routes (lodbrok.serving.review_desk)."""
        archive = VerdictArchive(
            self.settings.model_bucket,
            self.settings.verdict_archive_prefix,
            s3=self._s3 or aws.client("s3", aws.PREDICT_CONFIG),
        )
        return ReviewDesk(
            queue=self.review_queue,
            archive=archive,
            memory=self.verdict_memory,
            models=self.models,
            submit=self.submit_verdicts,
            explain_max_items=self.settings.explain_max_items,
            api_rollback=self.settings.api_rollback,
        )

    # --- the prediction core ---------------------------------------------------------------------------------

    @cached_property
    def review_band(self) -> ReviewBand:
        return ReviewBand.parse(self.settings.review_band)

    def _active_model(self) -> ActiveModel:
        """The model to answer with, refused while this stack's review band does not fit its labels."""
        model = self.models.current()
        try:
            self.review_band.check_labels(model.labels)
        except ReviewBandError as error:
            raise ModelUnavailable(str(error)) from error
        return model

    @tracer.capture_method(capture_response=False)
    def predict(
        self,
        inputs: Sequence[ModelInput],
        *,
        skip_cache: bool = False,
        explain: bool = False,
        caller: str | None = None,
    ) -> tuple[ActiveModel, list[ServedPrediction], TokenNovelty | None]:
        """Predictions for `inputs` in order: a remembered verdict on the exact input first (a reviewer's, or
        one of `caller`'s own, an API key id), then cached answers of the active model, then the model itself;
        and how novel the model-computed inputs were.

        With `explain`, every answer the model gives is explained and the cache is neither read nor written:
        an explained answer is never served as a plain one, nor a plain one as explained."""
        model = self._active_model()
        keys = [canonical_key(item) for item in inputs]
        distinct: dict[str, ModelInput] = {}  # each canonical input once, first occurrence first
        for key, item in zip(keys, inputs, strict=True):
            distinct.setdefault(key, item)
        cache = None if explain else self.cache
        remembered, cached = self._look_up(model, list(distinct), cache=None if skip_cache else cache, caller=caller)
        missing = [key for key in distinct if key not in cached and key not in remembered]
        if explain:
            results = explain_predictions(model.predictor, [distinct[key] for key in missing])
            computed = [result.prediction for result in results]
            explanations: list[Explanation | None] = [result.explanation for result in results]
            rows = np.array([result.token_ids for result in results], dtype=np.int32).reshape(
                len(results), model.bundle.featurizer.max_tokens
            )
        else:
            rows = model.predictor.featurizer.transform([distinct[key] for key in missing])
            computed = model.predictor.predict_featurized(rows)
            explanations = [None] * len(missing)
        fresh = dict(zip(missing, computed, strict=True))
        explained = dict(zip(missing, explanations, strict=True))
        if cache is not None and fresh:
            cache.put_many(model.version_id, fresh)
        metrics.add_metric(name="PredictionsServed", unit=MetricUnit.Count, value=len(inputs))
        served = [
            ServedPrediction(_verdict_answer(remembered[key], model.labels), False, remembered[key])
            if key in remembered
            else ServedPrediction(cached[key], True)
            if key in cached
            else ServedPrediction(fresh[key], False, explanation=explained[key])
            for key in keys
        ]
        trained = model.predictor.trained_buckets
        novelty = TokenNovelty.of(rows, trained) if len(rows) and trained is not None else None
        return model, served, novelty

    def _look_up(
        self, model: ActiveModel, keys: list[str], *, cache: PredictionCache | None, caller: str | None
    ) -> tuple[dict[str, RememberedVerdict], dict[str, Prediction]]:
        """The verdict memory and `cache`, read in one round trip; a failing table answers nothing."""
        memory = self.verdict_memory
        requests = {}
        if cache is not None:
            requests[cache.table_name] = cache.read_request(model.version_id, keys)
        if memory is not None:
            requests[memory.table_name] = memory.read_request(keys, caller)
        if not requests:
            return {}, {}
        try:
            items = batch_get_items(self._dynamodb_client, requests, sleep=self._sleep)
        except (ClientError, BotoCoreError, CacheUnavailable) as error:
            for table in (cache, memory):
                if table is not None:
                    table.report("read", error)
            return {}, {}
        remembered = memory.parse(items[memory.table_name], keys, caller) if memory is not None else {}
        # An entry made under versions a rollback undid, or for a label the model lacks, is not an answer.
        remembered = {
            key: entry
            for key, entry in remembered.items()
            if entry.label in model.labels and model.lineage.contains(entry.decided_at)
        }
        cached = cache.parse(items[cache.table_name], model.version_id, keys) if cache is not None else {}
        if cache is not None:
            metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=len(cached))
            metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=len(keys) - len(cached))
        if memory is not None:
            metrics.add_metric(name="VerdictMemoryHits", unit=MetricUnit.Count, value=len(remembered))
        return remembered, cached

    # --- one method per endpoint -----------------------------------------------------------------------------

    def answer(self, request: PredictRequest, origin: Origin) -> PredictResponse:
        """POST/GET /predict."""
        inputs = request.to_inputs(max_items=self.settings.max_items, max_text_chars=self.settings.max_text_chars)
        if request.explain:
            check_explain_budget(
                inputs, max_items=self.settings.explain_max_items, max_chars=self.settings.explain_max_chars
            )
        model, served, novelty = self.predict(
            [entry.input for entry in inputs],
            skip_cache=request.skip_cache,
            explain=request.explain,
            caller=origin.key_id,
        )
        decisions = [
            result.prediction.label
            if result.verdict
            else self.review_band.decision(result.prediction.label, result.prediction.probabilities)
            for result in served
        ]
        self._account(model, inputs, served, decisions, novelty, origin)
        if request.review:
            self._queue_for_review(model, inputs, served, decisions, origin)
        return PredictResponse(
            model_version=model.version_id,
            model_label=model.version_label,
            predictions=[
                ItemPrediction(
                    id=item.id,
                    label=result.prediction.label,
                    decision=decision,
                    probabilities=result.prediction.probabilities,
                    from_cache=result.from_cache,
                    source=result.source,
                    verdict=VerdictSource(id=result.verdict.id_for(origin.key_id), at=result.verdict.decided_at)
                    if result.verdict
                    else None,
                    input=item.input if request.echo_input else None,
                    explanation=_explanation_info(result.explanation) if result.explanation else None,
                )
                for item, result, decision in zip(inputs, served, decisions, strict=True)
            ],
        )

    def _account(
        self,
        model: ActiveModel,
        inputs: Sequence[PredictionInput],
        served: Sequence[ServedPrediction],
        decisions: Sequence[str],
        novelty: TokenNovelty | None,
        origin: Origin,
    ) -> None:
        """What one answer leaves behind: drift signals, a log line of counts, and the caller's call log entry."""
        DriftSignals(
            labels=Counter(result.prediction.label for result in served),
            in_review_band=decisions.count(REVIEW_DECISION) if self.review_band.bands else None,
            novelty=novelty,
        ).emit()
        hits = sum(result.from_cache for result in served)
        logger.info(
            "predictions served",
            extra={
                "items": len(inputs),
                "cache_hits": hits,
                "model_version": model.version_id,
                "caller": origin.caller,
            },
        )
        if self.call_log is not None:
            entry = CallEntry(
                item_count=len(inputs),
                cache_hits=hits,
                model_version=model.version_id,
                model_label=model.version_label,
                predictions=[(item.id, result.prediction.label) for item, result in zip(inputs, served, strict=True)],
            )
            self.call_log.record(origin, entry)

    def _queue_for_review(
        self,
        model: ActiveModel,
        inputs: Sequence[PredictionInput],
        served: Sequence[ServedPrediction],
        decisions: Sequence[str],
        origin: Origin,
    ) -> None:
        """Leave the items answered `review` in the review queue (best effort, like the cache)."""
        if self.review_queue is None:
            return
        candidates = [
            Candidate(
                input=item.input,
                label=result.prediction.label,
                probabilities=result.prediction.probabilities,
                explanation=asdict(result.explanation) if result.explanation else None,
            )
            for item, result, decision in zip(inputs, served, decisions, strict=True)
            if decision == REVIEW_DECISION
        ]
        if candidates:
            self.review_queue.enqueue(candidates, client=origin.caller, model_version=model.version_id)

    def model_info(self) -> ModelInfo:
        """GET /model."""
        model = self._active_model()
        metadata = model.bundle.metadata
        return ModelInfo(
            version=model.version_id,
            label=model.version_label,
            parent=_text_or_none(metadata.get("parent_version")),
            created_at=_text_or_none(metadata.get("created_at")),
            labels=model.labels,
            metrics=_dict(metadata.get("metrics")),
            architecture=_dict(metadata.get("architecture")),
            network=_dict(metadata.get("network")),
            featurizer=model.bundle.featurizer.to_dict(),
            decision=_decision_info(model.predictor.decision),
            pinned=self.models.pinned,
            review_band={
                label: ReviewBandInfo(low=low, high=high) for label, (low, high) in self.review_band.bands.items()
            },
        )

    def submit_verdicts(self, request: VerdictsRequest, origin: Origin) -> VerdictsAccepted:
        """POST /verdicts: validate every verdict, then queue all of them, attested with the caller and its
        role and the server's time, or say exactly which were not."""
        if len(request.verdicts) > self.settings.max_items:
            raise LimitExceeded(
                f"at most {self.settings.max_items} verdicts per request, got {len(request.verdicts)}",
                [{"field": "verdicts", "count": len(request.verdicts), "max": self.settings.max_items}],
            )
        verdicts = self._valid_verdicts(request.verdicts)
        received_at = utc_iso(self._now())
        verdicts = [verdict.model_copy(update={"received_at": received_at}) for verdict in verdicts]
        provenance = Provenance(sender=origin.key_id, role=self.role_of(origin.key_id), received_at=received_at)
        outcome = self.queue.send(verdicts, provenance)
        queued = len(outcome.message_ids)
        metrics.add_metric(name="VerdictsAccepted", unit=MetricUnit.Count, value=queued)
        if outcome.failures:
            metrics.add_metric(name="VerdictsNotQueued", unit=MetricUnit.Count, value=len(outcome.failures))
            logger.error("verdicts not queued", extra={"queued": queued, "failed": len(outcome.failures)})
            details = [
                {"index": position, "id": verdicts[position].id, "queued": False, "error": reason}
                for position, reason in sorted(outcome.failures.items())
            ]
            raise VerdictsNotQueued(
                f"{queued} of {len(verdicts)} verdicts were queued; the {len(details)} listed in details were not "
                "and can be sent again",
                details,
                outcome.message_ids,
            )
        logger.info("verdicts queued", extra={"queued": queued})
        return VerdictsAccepted(queued=queued, message_ids=[outcome.message_ids[i] for i in range(len(verdicts))])

    def recent_calls(self, origin: Origin, *, limit: int, next_token: str | None) -> RecentCalls:
        """GET /calls/recent."""
        if self.call_log is None:
            if self.settings.call_log_enabled:
                raise CallLogDisabled("the call log is enabled but CALL_LOG_TABLE is not configured")
            raise CallLogDisabled("the call log is not enabled for this deployment (CALL_LOG_ENABLED)")
        page = self.call_log.recent(origin.caller, limit=limit, next_token=next_token)
        return RecentCalls(caller=origin.caller, calls=page.calls, next_token=page.next_token)

    def _valid_verdicts(self, raw_verdicts: Sequence[Any]) -> list[Verdict]:
        """Every verdict validated; one VerdictError names every bad one (nothing is queued then)."""
        try:
            return parse_verdicts(
                raw_verdicts, max_text_chars=self.settings.max_text_chars, labels=self.models.current().labels
            )
        except VerdictError as error:
            metrics.add_metric(name="VerdictsRejected", unit=MetricUnit.Count, value=len(error.problems))
            raise


def _verdict_answer(entry: RememberedVerdict, labels: Sequence[str]) -> Prediction:
    """A verdict's answer: its label, with all the probability (it is a person's decision, not a score)."""
    return Prediction(label=entry.label, probabilities={label: float(label == entry.label) for label in labels})


def _explanation_info(explanation: Explanation) -> ExplanationInfo:
    return ExplanationInfo.model_validate(asdict(explanation))


def _decision_info(rule: DecisionRule | None) -> DecisionInfo | None:
    return None if rule is None else DecisionInfo.model_validate(rule.to_dict())


def _text_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
