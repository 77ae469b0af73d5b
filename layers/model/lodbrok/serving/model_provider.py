"""Which model answers: the active bundle, loaded lazily, refreshed cheaply, never replaced by a broken one.

`ModelProvider.current()` loads the active bundle on first use and keeps it for warm invocations. At most
every `refresh_seconds` it asks S3 for the active version with one HEAD request and, when the version id
changed, downloads and loads that version, then swaps it in with one reference assignment (a request
that already holds the old model finishes with it). A pinned version is loaded once and never refreshed.
A bundle that fails its checks (BundleError: corrupt, or not signed by a trusted key) is refused: logged,
counted as ModelLoadFailed, remembered so it is not downloaded again, and the previous model keeps serving.
A signature that cannot be checked because KMS is unreachable is not a refusal: the load is retried later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from botocore.exceptions import BotoCoreError, ClientError

from lodbrok import aws
from lodbrok.model.bundle import Bundle, BundleError
from lodbrok.model.predictor import Predictor
from lodbrok.observability import MetricUnit, logger, metrics
from lodbrok.registry.lineage import Lineage
from lodbrok.registry.store import ModelStore, ModelStoreError, StoredModel


class ModelUnavailable(Exception):
    """No model can answer: none published, the pinned version is missing, or only corrupt bundles exist."""


@dataclass(frozen=True)
class ActiveModel:
    """A loaded model and the S3 version it came from."""

    version_id: str
    predictor: Predictor

    @property
    def bundle(self) -> Bundle:
        return self.predictor.bundle

    @property
    def version_label(self) -> str:
        """The version label ("v3"), not to be confused with `version_id` (S3's) or `labels` (the classes)."""
        return self.predictor.version

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels

    @cached_property
    def lineage(self) -> Lineage:
        """The times whose verdicts this model's answers may reflect (memory entries outside it are ignored)."""
        return Lineage.of(self.bundle.metadata.get("stored"))


class ModelProvider:
    def __init__(
        self,
        store: ModelStore,
        *,
        refresh_seconds: float = 60.0,
        pinned_version: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.pinned_version = pinned_version
        self._clock = clock
        self._active: ActiveModel | None = None
        self._next_check = 0.0
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    @property
    def pinned(self) -> bool:
        return bool(self.pinned_version)

    def current(self) -> ActiveModel:
        """The model to answer with; raises ModelUnavailable when there is none."""
        active = self._active
        if active is not None and (self.pinned or self._clock() < self._next_check):
            return active
        with self._lock:
            if self._active is None:
                self._active = self._load_first()
            elif not self.pinned and self._clock() >= self._next_check:
                self._refresh(self._active)
            return self._active

    def _load_first(self) -> ActiveModel:
        self._next_check = self._clock() + self.refresh_seconds
        try:
            if self.pinned:
                if self.pinned_version in self._refused:
                    raise ModelUnavailable(_corrupt_message(self.pinned_version))
                stored = self.store.load(self.pinned_version, chained=False)  # named by the operator
            else:
                if self._refused:  # never download a refused bundle again; a HEAD tells whether it changed
                    ref = self.store.head()
                    if ref is not None and ref.version_id in self._refused:
                        raise ModelUnavailable(_corrupt_message(ref.version_id))
                stored = self.store.load()
        except ModelStoreError as error:
            raise ModelUnavailable(str(error)) from error
        except (ClientError, BotoCoreError) as error:
            logger.error("model store unreachable", extra={"error": aws.error_code(error)})
            raise ModelUnavailable("the model store could not be reached; try again shortly") from error
        try:
            active = self._build(stored)
        except (ClientError, BotoCoreError) as error:
            logger.error("model signature could not be checked", extra={"error": aws.error_code(error)})
            raise ModelUnavailable("the model's signature could not be checked; try again shortly") from error
        if active is None:
            raise ModelUnavailable(_corrupt_message(stored.ref.version_id))
        return active

    def _refresh(self, active: ActiveModel) -> None:
        self._next_check = self._clock() + self.refresh_seconds
        try:
            ref = self.store.head()
            if ref is None:
                logger.warning("no active model found on refresh; still serving", extra={"version": active.version_id})
                return
            if ref.version_id == active.version_id or ref.version_id in self._refused:
                return
            stored = self.store.load(None if ref.version_id == "null" else ref.version_id)
            replacement = self._build(stored)
        except (ModelStoreError, ClientError, BotoCoreError) as error:
            logger.warning("model refresh failed; still serving", extra={"error": aws.error_code(error)})
            return
        if replacement is not None:
            self._active = replacement
            logger.info(
                "switched model", extra={"from_version": active.version_id, "to_version": stored.ref.version_id}
            )

    def _build(self, stored: StoredModel) -> ActiveModel | None:
        started = time.perf_counter()
        version_id = stored.ref.version_id
        try:
            predictor = Predictor(stored.bundle())
        except BundleError as error:
            self._refused.add(version_id)
            metrics.add_metric(name="ModelLoadFailed", unit=MetricUnit.Count, value=1)
            logger.error("refused corrupt model bundle", extra={"version": version_id, "error": str(error)})
            return None
        metrics.add_metric(name="ModelLoaded", unit=MetricUnit.Count, value=1)
        logger.info(
            "model loaded",
            extra={
                "version": version_id,
                "label": predictor.version,
                "bytes": len(stored.data),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return ActiveModel(version_id=version_id, predictor=predictor)


def _corrupt_message(version_id: str) -> str:
    return (
        f"the active model (S3 version {version_id}) is corrupt and was refused, and no earlier model is loaded; "
        "publish a good bundle with `lodbrok publish` or roll back with `lodbrok rollback`"
    )
