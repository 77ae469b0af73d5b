"""Signed approvals (lodbrok.registry.signing) against moto: only what a trusted key approved, where it approved it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import boto3
import pytest

from lodbrok.registry.signing import SIGNATURE_METADATA, Approval, BundleSigner, SignatureError, SigningNotConfigured
from lodbrok.settings import Settings

BODY = b"model bytes as stored in S3"
KEY = "models/default/active.lbk"
APPROVAL = Approval(
    sha256=hashlib.sha256(BODY).hexdigest(), role="active", key=KEY, version="v2", sequence=2, replaces="version-1"
)


def another_key() -> str:
    key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    return str(key["KeyMetadata"]["Arn"])


def test_signer_verifies_what_it_signed_and_refuses_a_tampered_body(signer: BundleSigner) -> None:
    # Given a body and the metadata its signature rides in
    metadata = signer.sign(APPROVAL)

    # When the same body, then one changed by a byte, is verified
    assert signer.verify(BODY, KEY, metadata) == APPROVAL

    # Then the changed body is refused
    with pytest.raises(SignatureError, match="modified or signed by another key"):
        signer.verify(BODY + b" ", KEY, metadata)


@pytest.mark.parametrize(
    ("field", "value"),
    [("role", "candidate"), ("version", "v99"), ("sequence", "3"), ("replaces", "version-0")],
)
def test_signer_refuses_a_statement_changed_in_any_field(signer: BundleSigner, field: str, value: str) -> None:
    # Given an approval of the body as the active v2, and its metadata with one statement field changed
    metadata = signer.sign(APPROVAL)
    name = {"role": "approved-role", "version": "approved-version"}.get(field, f"approved-{field}")
    changed = {**metadata, name: value}

    # When it is verified, then the body read from another key
    # Then both are refused: the signature covers role, version, sequence, replaces and key
    with pytest.raises(SignatureError, match="modified or signed by another key"):
        signer.verify(BODY, KEY, changed)
    with pytest.raises(SignatureError, match="modified or signed by another key"):
        signer.verify(BODY, "models/default/candidates/x.lbk", metadata)


def test_signer_refuses_a_signature_of_the_bytes_alone_but_verify_legacy_accepts_it(signer: BundleSigner) -> None:
    # Given a body signed the way models were before approvals: the sha256 of the bytes, no statement
    signature = signer.kms.sign(
        KeyId=signer.key_id,
        Message=hashlib.sha256(BODY).digest(),
        MessageType="DIGEST",
        SigningAlgorithm="ECDSA_SHA_256",
    )["Signature"]
    legacy = {SIGNATURE_METADATA: base64.b64encode(signature).decode()}

    # When it is verified as an approval, then as a legacy signature
    # Then the approval is refused like an unsigned model, and the legacy check (for `lodbrok approve`) passes
    with pytest.raises(SignatureError, match="lodbrok approve"):
        signer.verify(BODY, KEY, legacy)
    signer.verify_legacy(BODY, legacy)
    with pytest.raises(SignatureError):
        signer.verify_legacy(BODY + b" ", legacy)


def test_approval_digest_is_canonical() -> None:
    # Given two equal statements, and one that differs in its key only
    # Then equal statements sign the same digest and any difference changes it
    assert APPROVAL.digest() == dataclasses.replace(APPROVAL).digest()
    assert APPROVAL.digest() != dataclasses.replace(APPROVAL, key="models/other/active.lbk").digest()


def test_signer_refuses_a_key_it_does_not_trust_until_the_key_is_trusted(signing_key: str) -> None:
    # Given a body signed by another key than this deployment's
    other = another_key()
    metadata = BundleSigner(other).sign(APPROVAL)

    # When a signer of this deployment's key verifies it, without and then with the other key trusted
    # Then it is refused, then accepted (a key rotation)
    with pytest.raises(SignatureError, match="no trusted signing key"):
        BundleSigner(signing_key).verify(BODY, KEY, metadata)
    BundleSigner(signing_key, trusted_key_ids=[other]).verify(BODY, KEY, metadata)


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({}, "carries no approval"),
        ({**APPROVAL.metadata(), SIGNATURE_METADATA: ""}, "not signed"),
        ({**APPROVAL.metadata(), SIGNATURE_METADATA: "not base64!"}, "not valid base64"),
        (
            {
                **APPROVAL.metadata(),
                SIGNATURE_METADATA: base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(),
            },
            "no trusted",
        ),
        ({**APPROVAL.metadata(), "approved-role": "everything"}, "carries no approval"),
    ],
    ids=["no approval", "empty signature", "not base64", "a signature of nothing", "unknown role"],
)
def test_signer_refuses_a_missing_or_malformed_signature(
    signer: BundleSigner, metadata: dict[str, str], says: str
) -> None:
    with pytest.raises(SignatureError, match=says):
        signer.verify(BODY, KEY, metadata)


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
