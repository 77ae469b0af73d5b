"""Signed approval: whoever publishes a model signs what it is approved for with a KMS key; whoever loads it checks.

The checksums inside a bundle only catch accidents: anyone who can write to the bucket can rebuild them.
A signature over the bytes alone says who made a bundle, not where it may serve: a gate-rejected candidate
or an older active version copied over the active key would still verify. So what is signed is an
`Approval` statement: the sha256 of the stored object, its role ("active" or "candidate"), the S3 key it
was written to, its version label, a monotonic sequence (the highest version number of the model so far),
and for the active key the S3 VersionId of the version it replaces ("" for the first). The statement's
fields ride in S3 user metadata beside the signature; a reader rebuilds the statement from the bytes, the
key it read and that metadata, so none of it can be changed without the signature failing. The store
(`lodbrok.registry.store`) then checks the role against the key and the `replaces` chain against the version list.

The key is an ECC_NIST_P256 KMS key whose private half never leaves KMS, so only a role allowed `kms:Sign`
(the retrain function and operators) can approve a model that the predict function, allowed only
`kms:Verify`, will serve. A signature is accepted if the current signing key or one of the previously
trusted keys (kept during a key rotation) verifies it. Objects signed before approvals existed (a signature
over the object's sha256 alone) are refused like unsigned ones; `verify_legacy` exists only so that
`lodbrok approve` can re-approve the active version once after an upgrade.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from lodbrok import aws
from lodbrok.model.bundle import BundleError
from lodbrok.settings import Settings

SIGNATURE_METADATA = "signature"
SIGNING_KEY_METADATA = "signing-key"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
APPROVAL_METADATA = {  # statement field -> S3 user metadata name (the object's sha256 and key are not stored)
    "role": "approved-role",
    "version": "approved-version",
    "sequence": "approved-sequence",
    "replaces": "approved-replaces",
}
Role = Literal["active", "candidate"]


class SignatureError(BundleError):
    """The stored model is unsigned, or no trusted key verifies its signature."""


class SigningNotConfigured(ValueError):
    """No signing key was configured, so no model can be published or loaded."""


@dataclass(frozen=True)
class Approval:
    """What a signature approves: these exact bytes, in this role, at this key, replacing that version."""

    sha256: str
    role: Role
    key: str
    version: str
    sequence: int
    replaces: str

    @classmethod
    def read(cls, data: bytes, key: str, metadata: Mapping[str, str]) -> Approval:
        """The statement an object read from `key` claims, rebuilt from its bytes and S3 user metadata."""
        fields = {field: metadata.get(name) for field, name in APPROVAL_METADATA.items()}
        role, sequence = fields["role"], fields["sequence"]
        if role not in ("active", "candidate") or sequence is None or not sequence.isdigit() or None in fields.values():
            raise SignatureError(
                "the stored model carries no approval (unsigned, or signed before approvals existed); "
                "publish it with `lodbrok publish`, or re-approve the active model once with `lodbrok approve`"
            )
        return cls(
            sha256=hashlib.sha256(data).hexdigest(),
            role=role,  # type: ignore[arg-type]  # checked above
            key=key,
            version=str(fields["version"]),
            sequence=int(sequence),
            replaces=str(fields["replaces"]),
        )

    def metadata(self) -> dict[str, str]:
        """The statement's fields as S3 user metadata (ASCII, as S3 requires)."""
        return {name: str(getattr(self, field)) for field, name in APPROVAL_METADATA.items()}

    def digest(self) -> bytes:
        """sha256 of the canonical JSON of the statement: what KMS signs."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).digest()


class BundleSigner:
    def __init__(self, key_id: str, trusted_key_ids: Sequence[str] = (), kms: Any = None) -> None:
        if not key_id:
            raise SigningNotConfigured(
                "no model signing key given (flag --signing-key, env MODEL_SIGNING_KEY, or a deployed stack); "
                "models are only published and loaded signed"
            )
        self.key_id = key_id
        self.trusted_key_ids = [key_id, *(key for key in trusted_key_ids if key and key != key_id)]
        self.kms = kms or aws.client("kms")

    @classmethod
    def from_settings(cls, settings: Settings, kms: Any = None, key_id: str = "") -> BundleSigner:
        trusted = [key.strip() for key in settings.trusted_signing_keys.split(",")]
        return cls(key_id or settings.model_signing_key, trusted, kms=kms)

    def sign(self, approval: Approval) -> dict[str, str]:
        """S3 user metadata carrying the approval statement and its signature."""
        response = self.kms.sign(
            KeyId=self.key_id, Message=approval.digest(), MessageType="DIGEST", SigningAlgorithm=SIGNING_ALGORITHM
        )
        return {
            **approval.metadata(),
            SIGNATURE_METADATA: base64.b64encode(response["Signature"]).decode(),
            SIGNING_KEY_METADATA: response["KeyId"],
        }

    def verify(self, data: bytes, key: str, metadata: Mapping[str, str]) -> Approval:
        """The approval of `data` read from `key`, once a trusted key's signature over it checks out.

        Raises SignatureError otherwise; KMS being unreachable raises ClientError."""
        approval = Approval.read(data, key, metadata)
        self._check(approval.digest(), metadata)
        return approval

    def verify_legacy(self, data: bytes, metadata: Mapping[str, str]) -> None:
        """Raise SignatureError unless a trusted key signed the sha256 of `data` itself (before approvals)."""
        self._check(hashlib.sha256(data).digest(), metadata)

    def _check(self, digest: bytes, metadata: Mapping[str, str]) -> None:
        encoded = metadata.get(SIGNATURE_METADATA)
        if not encoded:
            raise SignatureError("the stored model is not signed; publish it with `lodbrok publish`, which signs")
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise SignatureError("the stored model's signature is not valid base64") from error
        for key_id in self.trusted_key_ids:
            if self._verifies(key_id, digest, signature):
                return
        raise SignatureError(
            "no trusted signing key verifies the stored model's signature: it was modified or signed by another key"
        )

    def _verifies(self, key_id: str, digest: bytes, signature: bytes) -> bool:
        try:
            response = self.kms.verify(
                KeyId=key_id,
                Message=digest,
                MessageType="DIGEST",
                Signature=signature,
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except ClientError as error:
            # KMS answers a wrong signature with this error; moto answers SignatureValid=False.
            if aws.error_code(error) == "KMSInvalidSignatureException":
                return False
            raise
        return bool(response.get("SignatureValid"))
