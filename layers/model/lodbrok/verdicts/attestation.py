"""Verdict attestation: the predict function vouches for who sent a queue message's verdicts, and when.

Producers may write to the verdict queue directly, so the retrain function cannot take a message's word for
its sender, role or time. `POST /verdicts` therefore sends each message as an envelope

    {"verdicts": [...], "attestation": {"sender": <API key id>, "role": "feedback"|"reviewer",
                                        "received_at": <server time>, "mac": <base64>}}

whose MAC (a KMS HMAC_256 key: only the predict function may GenerateMac, only the retrain function may
VerifyMac) covers a canonical encoding of the sender, the role, the time and each verdict's fingerprint and
input digest. The retrain function trusts the sender, role and time of a message whose MAC verifies; any
other message (no attestation, a forged or altered one) is `feedback` from no known sender, stamped with the
queue's own SentTimestamp. KMS MACs at most 4 KiB, so the encoding is hashed first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lodbrok import aws
from lodbrok.access.roles import Role
from lodbrok.model.features import canonical_key, input_digest
from lodbrok.verdicts.verdict import Verdict

MAC_ALGORITHM = "HMAC_SHA_256"
# base64 of a 32-byte HMAC-SHA-256: every MAC has this length, so a message's size is known before its MAC.
MAC_CHARS = 44
_ENCODING_VERSION = "lodbrok-verdicts-1"


@dataclass(frozen=True)
class Provenance:
    """Who sent a verdict (a verified API key id, or None) with which role, and when the server received it."""

    sender: str | None
    role: Role
    received_at: str


class Attestation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: str = Field(min_length=1, max_length=128)
    role: Literal["feedback", "reviewer"]
    received_at: str = Field(min_length=1, max_length=40)
    mac: str = Field(min_length=1, max_length=128)


def attested_role(role: Role) -> Literal["feedback", "reviewer"]:
    """The role a message is attested with: a reviewer's or an admin's verdicts are trusted."""
    return "reviewer" if role.allows(Role.REVIEWER) else "feedback"


def _digest(sender: str, role: str, received_at: str, verdicts: Sequence[Verdict]) -> bytes:
    items = [[verdict.fingerprint(), input_digest(canonical_key(verdict.input))] for verdict in verdicts]
    material = json.dumps([_ENCODING_VERSION, sender, role, received_at, items], separators=(",", ":"))
    return hashlib.sha256(material.encode()).digest()


class Attester:
    """Makes (predict) or checks (retrain) the MAC of a message's attestation with one KMS HMAC key."""

    def __init__(self, key_id: str, *, kms: Any = None) -> None:
        self.key_id = key_id
        self.kms = kms or aws.client("kms")

    def attest(self, provenance: Provenance, verdicts: Sequence[Verdict]) -> Attestation:
        if provenance.sender is None:
            raise ValueError("only a known sender's verdicts are attested")
        role = attested_role(provenance.role)
        response = self.kms.generate_mac(
            KeyId=self.key_id,
            MacAlgorithm=MAC_ALGORITHM,
            Message=_digest(provenance.sender, role, provenance.received_at, verdicts),
        )
        mac = base64.b64encode(response["Mac"]).decode()
        return Attestation(sender=provenance.sender, role=role, received_at=provenance.received_at, mac=mac)

    def verify(self, raw: Any, verdicts: Sequence[Verdict]) -> Provenance | None:
        """The provenance a valid attestation of exactly these verdicts vouches for, else None.

        KMS being unreachable raises (the message is retried); a MAC that does not verify is None."""
        if raw is None:
            return None
        try:
            attestation = Attestation.model_validate(raw)
            mac = base64.b64decode(attestation.mac, validate=True)
        except (ValidationError, binascii.Error, ValueError):
            return None
        try:
            response = self.kms.verify_mac(
                KeyId=self.key_id,
                MacAlgorithm=MAC_ALGORITHM,
                Message=_digest(attestation.sender, attestation.role, attestation.received_at, verdicts),
                Mac=mac,
            )
        except ClientError as error:
            if aws.error_code(error) in {"KMSInvalidMacException", "ValidationException"}:
                return None
            raise
        if not response.get("MacValid"):
            return None
        return Provenance(sender=attestation.sender, role=Role(attestation.role), received_at=attestation.received_at)
