"""A reviewer's decision on a held verdict: the one code path of `lodbrok held accept|reject` and the API's
`POST /review/held` (the reviewer's console).

Accepting archives the verdict again as trusted (`VerdictArchive.review`) and, because a person decided it,
lets it answer its exact input for every client at once through the verdict memory, as a verdict that was never
held does after intake. Rejecting only records the decision. Either happens exactly once: a second review, or
one that races another, raises `ReviewError` (`ReviewConflict`).
"""

from __future__ import annotations

from typing import Any

from lodbrok.access.roles import Role
from lodbrok.clock import utc_iso
from lodbrok.verdicts.archive import VerdictArchive
from lodbrok.verdicts.attestation import Provenance
from lodbrok.verdicts.memory import VerdictMemory
from lodbrok.verdicts.verdict import Verdict


def review_held(
    archive: VerdictArchive,
    memory: VerdictMemory | None,
    key: str,
    status: str,
    *,
    reviewer: str | None = None,
    note: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Accept or reject the held verdict at `key`; the reviewed record, and whether it now answers at once."""
    record = archive.review(key, status, reviewer=reviewer, note=note)
    if status != "accepted" or memory is None:
        return record, False
    verdict = Verdict.model_validate(record["verdict"])
    provenance = Provenance(sender=None, role=Role.REVIEWER, received_at=verdict.received_at or utc_iso())
    return record, bool(memory.remember([(verdict, provenance)]))
