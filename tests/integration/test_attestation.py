"""Verdict attestation (lodbrok.verdicts.attestation) with a KMS HMAC key in moto: what verifies and what does not."""

from __future__ import annotations

import pytest

from lodbrok.access.roles import Role
from lodbrok.verdicts.attestation import Attester, Provenance
from lodbrok.verdicts.verdict import Verdict

AT = "2026-12-01T10:00:00.000Z"
VERDICTS = [Verdict(id="v1", text="claim your prize", label="spam"), Verdict(id="v2", text="lunch?", label="ham")]


@pytest.fixture
def attester(attestation_key: str) -> Attester:
    return Attester(attestation_key)


def test_attestation_of_a_message_verifies_with_its_sender_role_and_time(attester: Attester) -> None:
    # Given an admin's message, attested by the predict side
    attestation = attester.attest(Provenance("key-1", Role.ADMIN, AT), VERDICTS).model_dump()
    # When the retrain side verifies it
    verified = attester.verify(attestation, VERDICTS)
    # Then it carries the sender, the trusted role (an admin's verdicts are a reviewer's) and the time
    assert verified == Provenance("key-1", Role.REVIEWER, AT)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda attestation, verdicts: ({**attestation, "role": "reviewer"}, verdicts),
        lambda attestation, verdicts: ({**attestation, "sender": "key-2"}, verdicts),
        lambda attestation, verdicts: ({**attestation, "received_at": "9999-12-31T00:00:00.000Z"}, verdicts),
        lambda attestation, verdicts: (attestation, [verdicts[0].model_copy(update={"label": "ham"}), verdicts[1]]),
        lambda attestation, verdicts: (attestation, [*verdicts, Verdict(id="v3", text="extra", label="ham")]),
        lambda attestation, verdicts: ({**attestation, "mac": "not base64!"}, verdicts),
        lambda attestation, verdicts: ({**attestation, "mac": "A" * 44}, verdicts),
        lambda attestation, verdicts: ("a string", verdicts),
        lambda attestation, verdicts: (None, verdicts),
    ],
    ids=["role", "sender", "time", "label", "added verdict", "bad base64", "made-up mac", "not an object", "absent"],
)
def test_attestation_altered_or_absent_does_not_verify(attester: Attester, tamper: object) -> None:
    # Given a feedback client's attested message, then changed (or its attestation dropped) by a producer
    attestation = attester.attest(Provenance("key-1", Role.FEEDBACK, AT), VERDICTS).model_dump()
    changed, verdicts = tamper(attestation, VERDICTS)  # type: ignore[operator]
    # Then nothing about it verifies
    assert attester.verify(changed, verdicts) is None
