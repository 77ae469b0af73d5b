"""Bundle signatures: whoever publishes a model signs it with an AWS KMS asymmetric key, whoever loads it checks.

The checksums inside a bundle only catch accidents: anyone who can write to the bucket can rebuild them.
The signature covers the sha256 of the whole stored object and is made by a KMS key (ECC_NIST_P256) whose
private half never leaves KMS, so only a role allowed `kms:Sign` (the retrain function and operators) can
produce a model that the predict function, allowed only `kms:Verify`, will serve. It rides along as S3 user
metadata. A signature is accepted if the current signing key or one of the previously trusted keys (kept
during a key rotation) verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from lodbrok import aws
from lodbrok.bundle import BundleError
from lodbrok.settings import Settings

SIGNATURE_METADATA = "signature"
SIGNING_KEY_METADATA = "signing-key"
SIGNING_ALGORITHM = "ECDSA_SHA_256"


class SignatureError(BundleError):
    """The stored model is unsigned, or no trusted key verifies its signature."""


class SigningNotConfigured(ValueError):
    """No signing key was configured, so no model can be published or loaded."""


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

    def sign(self, data: bytes) -> dict[str, str]:
        """S3 user metadata carrying the signature of `data`."""
        response = self.kms.sign(
            KeyId=self.key_id,
            Message=hashlib.sha256(data).digest(),
            MessageType="DIGEST",
            SigningAlgorithm=SIGNING_ALGORITHM,
        )
        return {
            SIGNATURE_METADATA: base64.b64encode(response["Signature"]).decode(),
            SIGNING_KEY_METADATA: response["KeyId"],
        }

    def verify(self, data: bytes, metadata: Mapping[str, str]) -> None:
        """Raise SignatureError unless a trusted key signed `data`; KMS being unreachable raises ClientError."""
        encoded = metadata.get(SIGNATURE_METADATA)
        if not encoded:
            raise SignatureError("the stored model is not signed; publish it with `lodbrok publish`, which signs")
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise SignatureError("the stored model's signature is not valid base64") from error
        digest = hashlib.sha256(data).digest()
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
