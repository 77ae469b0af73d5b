"""Bundle signatures (lodbrok.signing) against moto's KMS: only bytes a trusted key signed are accepted."""

from __future__ import annotations

import base64

import boto3
import pytest

from lodbrok.settings import Settings
from lodbrok.signing import SIGNATURE_METADATA, BundleSigner, SignatureError, SigningNotConfigured

BODY = b"model bytes as stored in S3"


def another_key() -> str:
    key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    return str(key["KeyMetadata"]["Arn"])


def test_signer_verifies_what_it_signed_and_refuses_a_tampered_body(signer: BundleSigner) -> None:
    # Given a body and the metadata its signature rides in
    metadata = signer.sign(BODY)

    # When the same body, then one changed by a byte, is verified
    signer.verify(BODY, metadata)

    # Then the changed body is refused
    with pytest.raises(SignatureError, match="modified or signed by another key"):
        signer.verify(BODY + b" ", metadata)


def test_signer_refuses_a_key_it_does_not_trust_until_the_key_is_trusted(signing_key: str) -> None:
    # Given a body signed by another key than this deployment's
    other = another_key()
    metadata = BundleSigner(other).sign(BODY)

    # When a signer of this deployment's key verifies it, without and then with the other key trusted
    # Then it is refused, then accepted (a key rotation)
    with pytest.raises(SignatureError, match="no trusted signing key"):
        BundleSigner(signing_key).verify(BODY, metadata)
    BundleSigner(signing_key, trusted_key_ids=[other]).verify(BODY, metadata)


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({}, "not signed"),
        ({SIGNATURE_METADATA: ""}, "not signed"),
        ({SIGNATURE_METADATA: "not base64!"}, "not valid base64"),
        ({SIGNATURE_METADATA: base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()}, "no trusted"),
    ],
    ids=["no signature", "empty signature", "not base64", "a signature of nothing"],
)
def test_signer_refuses_a_missing_or_malformed_signature(
    signer: BundleSigner, metadata: dict[str, str], says: str
) -> None:
    with pytest.raises(SignatureError, match=says):
        signer.verify(BODY, metadata)


def test_signer_needs_a_key() -> None:
    with pytest.raises(SigningNotConfigured, match="MODEL_SIGNING_KEY"):
        BundleSigner("", kms=object())


def test_signer_from_settings_trusts_the_signing_key_first_then_each_listed_key_once() -> None:
    # Given a signing key, and a trusted list with spaces, an empty entry and the signing key again
    settings = Settings.from_env(
        {"MODEL_SIGNING_KEY": "arn:new", "MODEL_TRUSTED_SIGNING_KEYS": " arn:old , ,arn:new,arn:older"}
    )

    # When a signer is built from them
    signer = BundleSigner.from_settings(settings, kms=object())

    # Then it signs with the signing key and verifies with it first, then the previous keys
    assert signer.key_id == "arn:new"
    assert signer.trusted_key_ids == ["arn:new", "arn:old", "arn:older"]
