"""Verdicts held for review: written beside the archive before the cursor moves, counted; and senders whose
verdicts are mostly held, suspended (`lodbrok held list|accept|reject|clear` reviews them).

Sources earn trust. A sender (`lodbrok.verdicts.archive.sender_of`) is suspect when at least
`SUSPECT_SENDER_MIN_VERDICTS` of its verdicts were screened in a batch and most of them were held (Rspamd and
SpamAssassin learn only from trusted reporters): then none of its verdicts in that batch is learned (the
rest are held as "sender under review", because a liar's verdicts that the screening could not contradict
are the ones the model knows least about), and it is suspended, so its later verdicts are held before
screening until a reviewer clears it (`lodbrok held clear --sender`). The rest of the batch is learned.
Verdicts a reviewer vouched for (`trusted`) are never held for their sender. Logs name senders by digest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lodbrok.learning.screening import HeldVerdict, Screening
from lodbrok.model.features import canonical_key
from lodbrok.observability import MetricUnit, digest, logger, metrics
from lodbrok.verdicts.archive import ArchivedVerdict, VerdictArchive, sender_digest, sender_of

SUSPECT_SENDER_MIN_VERDICTS = 5  # a sender is judged when at least this many of its verdicts were screened
SUSPECT_SENDER_HELD_SHARE = 0.5  # and suspended when more than this share of them was held
SENDER_UNDER_REVIEW = "sender under review: most of its verdicts were held; none is learned until a reviewer clears it"


@dataclass(frozen=True)
class Held:
    """What holding left to learn, how many it held, and the digests of the senders it suspended."""

    screening: Screening
    count: int
    suspects: list[str]


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
    return known, _count_held(len(records) - len(known))


def hold_suspended(archive: VerdictArchive, records: Sequence[ArchivedVerdict]) -> tuple[list[ArchivedVerdict], int]:
    """Hold, unscreened, the verdicts of suspended senders (never trusted ones); the others, and how many."""
    suspended = archive.suspended()
    kept = []
    for record in records:
        if record.trusted or sender_digest(sender_of(record)) not in suspended:
            kept.append(record)
        else:
            archive.hold(record, SENDER_UNDER_REVIEW, {"sender_suspended": True})
    return kept, _count_held(len(records) - len(kept))


def hold_screened(archive: VerdictArchive, records: Sequence[ArchivedVerdict], screening: Screening) -> Held:
    """Hold what the screening held, with its reason and evidence; suspend the senders it mostly held and hold
    the rest of their verdicts too. `records` are the screened verdicts, one per input."""
    by_input = {canonical_key(record.verdict.input): record for record in records}
    for verdict in screening.held:
        archive.hold(by_input[canonical_key(verdict.item.input)], verdict.reason, verdict.evidence)
    suspects = suspects_among(
        screening, {key: sender_of(record) for key, record in by_input.items() if not record.trusted}
    )
    learn, held = [], list(screening.held)
    for item in screening.learn:
        record = by_input[canonical_key(item.input)]
        if record.trusted or sender_of(record) not in suspects:
            learn.append(item)
            continue
        evidence = {"sender_held": suspects[sender_of(record)]}
        archive.hold(record, SENDER_UNDER_REVIEW, evidence)
        held.append(HeldVerdict(item, SENDER_UNDER_REVIEW, evidence))
    for sender, share in suspects.items():
        archive.suspend(sender, {"held": share})
    digests = sorted(digest(sender) for sender in suspects)
    if held:
        logger.warning("verdicts held for review", extra={"held": len(held), "suspended_senders": digests})
    if suspects:
        metrics.add_metric(name="VerdictSourcesSuspect", unit=MetricUnit.Count, value=len(suspects))
    return Held(Screening(learn, held), _count_held(len(held)), digests)


def suspects_among(screening: Screening, senders: Mapping[str, str]) -> dict[str, str]:
    """The senders a screening mostly held; `senders` names the sender of each screened input (canonical key)."""
    held_keys = (canonical_key(verdict.item.input) for verdict in screening.held)
    held = Counter(senders[key] for key in held_keys if key in senders)
    return suspect_senders(Counter(senders.values()), held)


def suspect_senders(screened: Counter[str], held: Counter[str]) -> dict[str, str]:
    """The senders most of whose screened verdicts were held, with the share held ("held/screened")."""
    return {
        sender: f"{held[sender]}/{screened[sender]}"
        for sender in held
        if screened[sender] >= SUSPECT_SENDER_MIN_VERDICTS
        and held[sender] > SUSPECT_SENDER_HELD_SHARE * screened[sender]
    }


def _count_held(count: int) -> int:
    if count:
        metrics.add_metric(name="VerdictsHeld", unit=MetricUnit.Count, value=count)
    return count
