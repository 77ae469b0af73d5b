"""Verdicts held for review: written beside the archive before the cursor moves, counted, and the
sources whose verdicts are mostly held reported (`lodbrok held list|accept|reject` reviews them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from lodbrok.archive import ArchivedVerdict, VerdictArchive
from lodbrok.features import canonical_key
from lodbrok.observability import MetricUnit, digest, logger, metrics
from lodbrok.screening import HeldVerdict

SUSPECT_SOURCE_MIN_VERDICTS = 5  # a source is reported when at least this many of its verdicts were screened
SUSPECT_SOURCE_HELD_SHARE = 0.5  # and more than this share of them was held


def hold_unknown_labels(
    archive: VerdictArchive, records: Sequence[ArchivedVerdict], labels: Sequence[str]
) -> tuple[list[ArchivedVerdict], int]:
    """Hold verdicts archived without the label check (the model was unreadable) whose label it lacks;
    the others, and how many were held."""
    known = [record for record in records if record.verdict.label in labels]
    for record in records:
        if record.verdict.label not in labels:
            reason = f"label {record.verdict.label!r} is not a label of the model ({', '.join(labels)})"
            key = archive.hold(record, reason, {"model_labels": list(labels)})
            logger.warning("verdict held for review", extra={"key": key, "reason": "unknown label"})
    unknown = len(records) - len(known)
    if unknown:
        metrics.add_metric(name="VerdictsHeld", unit=MetricUnit.Count, value=unknown)
    return known, unknown


def hold_screened(
    archive: VerdictArchive, records: Sequence[ArchivedVerdict], held: Sequence[HeldVerdict]
) -> tuple[int, list[str]]:
    """Hold what the screening held, with its reason and evidence; how many, and the sources mostly held."""
    by_input = {canonical_key(record.verdict.input): record for record in records}
    held_sources: Counter[str] = Counter()
    for verdict in held:
        record = by_input[canonical_key(verdict.item.input)]
        key = archive.hold(record, verdict.reason, verdict.evidence)
        held_sources[record.verdict.source or "unknown"] += 1
        logger.warning("verdict held for review", extra={"key": key, "reason": "screening"})
    if not held_sources:
        return 0, []
    metrics.add_metric(name="VerdictsHeld", unit=MetricUnit.Count, value=sum(held_sources.values()))
    screened = Counter(record.verdict.source or "unknown" for record in records)
    suspects = sorted(
        source
        for source, count in held_sources.items()
        if screened[source] >= SUSPECT_SOURCE_MIN_VERDICTS and count > SUSPECT_SOURCE_HELD_SHARE * screened[source]
    )
    if suspects:
        metrics.add_metric(name="VerdictSourcesSuspect", unit=MetricUnit.Count, value=len(suspects))
        logger.warning(
            "most verdicts of these sources were held for review",
            extra={"sources": {digest(source): f"{held_sources[source]}/{screened[source]}" for source in suspects}},
        )
    return sum(held_sources.values()), suspects
