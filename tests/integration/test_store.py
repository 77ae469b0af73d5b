"""The S3 model registry and the CLI commands on top of it, against moto."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from lodbrok.model.bundle import Bundle
from lodbrok.registry.lineage import Lineage
from lodbrok.registry.signing import SIGNATURE_METADATA, Approval, BundleSigner, SignatureError
from lodbrok.registry.store import (
    BucketNotFound,
    ConcurrentUpdate,
    ModelRef,
    ModelStore,
    ModelStoreError,
    NoActiveModel,
    UnknownVersion,
    VersioningDisabled,
)
from lodbrok.settings import get_settings
from lodbrok_cli.main import main
from support import same_model

BUCKET = "lodbrok-models-test"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_store_publish_first_model_then_head_and_load(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given an empty bucket
    assert model_store.head() is None
    # When the first model is published
    ref = model_store.publish(tiny_bundle, expected=None)
    # Then it is the active version and loads back intact
    assert model_store.head() == ref
    loaded = model_store.load()
    assert loaded.ref == ref
    assert loaded.bundle().metadata["version"] == tiny_bundle.version


def test_store_publish_with_stale_expectation_is_a_concurrent_update(
    model_store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given a writer that read version 1 while another writer published version 2
    first = model_store.publish(tiny_bundle, expected=None)
    model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=first)
    # When the first writer publishes based on what it read
    # Then the write is refused, and so is a second "first publish"
    with pytest.raises(ConcurrentUpdate):
        model_store.publish(tiny_bundle.with_metadata(version="v3"), expected=first)
    with pytest.raises(ConcurrentUpdate):
        model_store.publish(tiny_bundle, expected=None)
    assert [info.label for info in model_store.versions()] == ["v2", "v1"]


def test_store_rollback_restores_exact_bytes_and_keeps_history(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given v1 and then v2 published
    v1 = model_store.publish(tiny_bundle, expected=None)
    v2 = model_store.publish(tiny_bundle.with_metadata(version="v2", parent_version="v1"), expected=v1)
    original = model_store.load(v1.version_id).data
    # When rolling back to v1
    restored = model_store.rollback(v1.version_id)
    # Then the active bundle is v1's model byte for byte (only the write stamp in the metadata differs),
    # history has all three, and the restore is recorded
    assert same_model(model_store.load().data, original)
    assert sha(model_store.load().data) != sha(original)
    active = Bundle.from_bytes(model_store.load().data)
    assert active.metadata["stored"]["action"] == "rollback"
    assert active.metadata["stored"]["restored_from"] == v1.version_id
    versions = model_store.versions()
    assert [info.version_id for info in versions] == [restored.version_id, v2.version_id, v1.version_id]
    assert versions[0].is_active and versions[0].action == "rollback"
    assert versions[0].restored_from == v1.version_id and versions[0].label == "v1"
    assert model_store.next_version_label() == "v3"
    # And once the lifecycle rule expired v2, the next label is still v3: a label is never given twice
    model_store.s3.delete_object(Bucket=model_store.bucket, Key=model_store.active_key, VersionId=v2.version_id)
    assert model_store.next_version_label() == "v3"


def test_store_publish_prepared_before_a_rollback_is_refused(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given a retrain that read v1, then v2 published and an operator rolling back to v1 (same model bytes)
    v1 = model_store.publish(tiny_bundle, expected=None)
    read_by_retrain = model_store.head()
    v2 = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=v1)
    model_store.rollback(v1.version_id)

    # When the retrain publishes on what it read
    # Then it is a conflict: the rollback was a new write with its own ETag, not v1's again (ABA)
    assert read_by_retrain == v1 and model_store.head() not in (v1, v2)
    with pytest.raises(ConcurrentUpdate):
        model_store.publish(tiny_bundle.with_metadata(version="v3"), expected=read_by_retrain)
    assert model_store.versions()[0].action == "rollback"


def test_store_errors_are_explained(signer: BundleSigner, tiny_bundle: Bundle) -> None:
    s3 = boto3.client("s3")
    # Given a bucket without versioning, and a bucket that does not exist
    s3.create_bucket(Bucket="plain-bucket")
    # Then each failure says what is wrong
    with pytest.raises(VersioningDisabled, match="put-bucket-versioning"):
        ModelStore("plain-bucket", signer=signer, s3=s3).publish(tiny_bundle, expected=None)
    with pytest.raises(BucketNotFound):
        ModelStore("no-such-bucket", signer=signer, s3=s3).head()
    with pytest.raises(NoActiveModel, match="lodbrok publish"):
        ModelStore("plain-bucket", signer=signer, s3=s3).load()


def test_store_unknown_version_and_rollback_to_active(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    ref = model_store.publish(tiny_bundle, expected=None)
    with pytest.raises(UnknownVersion):
        model_store.load("not-a-version")
    with pytest.raises(ModelStoreError, match="already the active"):
        model_store.rollback(ref.version_id)


def test_store_candidate_can_be_promoted_by_hand(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given an active model and a rejected candidate
    model_store.publish(tiny_bundle, expected=None)
    key = model_store.save_candidate(tiny_bundle.with_metadata(version="v2"), "gate: accuracy dropped 0.05")
    # When an operator lists and promotes it
    candidates = model_store.candidates()
    ref = model_store.promote_candidate(key.rsplit("/", 1)[-1])
    # Then it is the active model, recorded as a manual promotion
    assert candidates[0].reason == "gate: accuracy dropped 0.05" and candidates[0].label == "v2"
    assert model_store.head() == ref
    assert model_store.versions()[0].action == "manual-promote"
    with pytest.raises(UnknownVersion):
        model_store.promote_candidate("missing.lbk")


def test_cli_publish_versions_rollback(
    model_store: ModelStore,
    signing_key: str,
    tiny_bundle: Bundle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a bundle file, and the bucket and signing key in the environment
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_SIGNING_KEY", signing_key)
    get_settings.cache_clear()
    path = tmp_path / "model.lbk"
    tiny_bundle.write(str(path))
    # When publishing twice, listing, and rolling back to the first
    assert main(["publish", str(path)]) == 0
    assert main(["publish", str(path)]) == 0
    capsys.readouterr()
    assert main(["versions", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert main(["rollback", "--to", versions[-1]["version_id"]]) == 0
    # Then labels were assigned in order and the rollback is the active version
    assert [version["label"] for version in versions] == ["v2", "v1"]
    latest = model_store.versions()[0]
    assert latest.is_active and latest.restored_from == versions[-1]["version_id"]
    assert main(["rollback", "--to", "nope"]) == 2
    get_settings.cache_clear()


def test_store_resolve_a_label_means_the_version_first_stored_with_it(
    model_store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given v1, v2, and a rollback that stored v1 again
    first = model_store.publish(tiny_bundle.with_metadata(version="v1"), expected=None)
    second = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=first)
    copy = model_store.rollback(first.version_id)
    # When labels and ids are resolved
    # Then a label names the version first stored with it, not its copy, and an id names itself
    assert model_store.resolve("v1") == first.version_id and model_store.resolve("v2") == second.version_id
    assert model_store.resolve(copy.version_id) == copy.version_id
    assert [(info.label, info.is_copy) for info in model_store.versions()] == [
        ("v1", True),
        ("v2", False),
        ("v1", False),
    ]
    with pytest.raises(UnknownVersion, match="no version id or label 'v3'"):
        model_store.resolve("v3")


@pytest.fixture(scope="module")
def desk_bundle() -> Bundle:
    """A real four-label model (a support desk's), trained in a few seconds."""
    from lodbrok.training.trainer import TrainingConfig, train_bundle
    from support import TINY_FEATURIZER, make_support_desk_dataset

    config = TrainingConfig(featurizer=TINY_FEATURIZER, epochs=4, threshold_folds=0)
    return train_bundle(make_support_desk_dataset(), config).bundle


@pytest.fixture
def cli_store(model_store: ModelStore, signing_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelStore]:
    """The store, with its bucket, signing key and a 60 s model refresh in the environment, as the CLI reads them."""
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_SIGNING_KEY", signing_key)
    monkeypatch.setenv("MODEL_REFRESH_SECONDS", "60")
    get_settings.cache_clear()
    yield model_store
    get_settings.cache_clear()


def test_cli_rollback_to_a_label_and_versions_mark_the_copies(
    cli_store: ModelStore, tiny_bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given v1 and v2 published with the CLI
    path = tmp_path / "model.lbk"
    tiny_bundle.write(str(path))
    assert main(["publish", str(path)]) == 0 and main(["publish", str(path)]) == 0
    published = capsys.readouterr().out
    first = cli_store.versions()[-1]
    # When the operator rolls back to v1 by its label
    assert main(["rollback", "--to", "v1"]) == 0
    rolled_back = capsys.readouterr().out
    # Then v1's model is active again, and both commands said when the API serves the new model
    assert cli_store.versions()[0].restored_from == first.version_id
    assert f"restored v1 (version id {first.version_id})" in rolled_back
    assert published.count("the API serves it within 60 s") == 2 and "within 60 s" in rolled_back
    # And `versions` shows the copy's label in brackets, with a note, so one row only says v1
    assert main(["versions"]) == 0
    listing = capsys.readouterr()
    rows = listing.out.splitlines()[1:]
    assert [row[40:48].strip() for row in rows] == ["(v1)", "v2", "v1"]
    assert "(vN) = the model vN stored again" in listing.err
    # When v1 is asked for again, it is refused as already active; v2 by label restores v2's own version
    assert main(["rollback", "--to", "v1"]) == 2
    assert "v1 is already the active model" in capsys.readouterr().err
    assert main(["rollback", "--to", "v2"]) == 0
    assert cli_store.versions()[0].restored_from == cli_store.resolve("v2")


def test_cli_publish_of_other_labels_needs_force(
    cli_store: ModelStore,
    tiny_bundle: Bundle,
    desk_bundle: Bundle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an active two-label model, and a four-label bundle
    tiny_bundle.write(str(tmp_path / "spam.lbk"))
    desk_bundle.write(str(tmp_path / "desk.lbk"))
    assert main(["publish", str(tmp_path / "spam.lbk")]) == 0
    capsys.readouterr()
    # When the four-label bundle is published without --force
    assert main(["publish", str(tmp_path / "desk.lbk")]) == 2
    # Then it is refused, naming both label sets, and the active model is unchanged
    refused = capsys.readouterr().err
    assert "pass --force" in refused and str(sorted(desk_bundle.labels)) in refused
    assert len(cli_store.versions()) == 1
    # When it is published with --force, it is active, with a warning
    assert main(["publish", str(tmp_path / "desk.lbk"), "--force"]) == 0
    assert capsys.readouterr().err.startswith("warning: the active model v1 answers the labels")
    assert cli_store.load().bundle().labels == desk_bundle.labels


def test_store_only_later_versions_can_expire_and_keep_exempts_one(
    model_store: ModelStore, tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a seed, a promotion and a rollback to the seed
    seed = model_store.publish(tiny_bundle, expected=None)
    promoted = model_store.publish(tiny_bundle, expected=seed, action="promote")
    restored = model_store.rollback(seed.version_id)

    # Then the seed version carries no expirable tag, every later write does (the lifecycle rule's filter)
    assert model_store.is_kept(seed.version_id)
    assert not model_store.is_kept(promoted.version_id) and not model_store.is_kept(restored.version_id)

    # When an operator keeps the promoted version (pinned with MODEL_VERSION), with the CLI
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    get_settings.cache_clear()
    try:
        assert main(["keep", promoted.version_id]) == 0
    finally:
        get_settings.cache_clear()

    # Then it can no longer expire either, and the model history is unchanged
    assert model_store.is_kept(promoted.version_id)
    assert "lifecycle rule will never expire it" in capsys.readouterr().out
    assert [version.version_id for version in model_store.versions()] == [
        restored.version_id,
        promoted.version_id,
        seed.version_id,
    ]


# --- signatures -------------------------------------------------------------------------------------------------


def test_store_signs_each_write_and_verifies_each_read(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given a published model
    ref = model_store.publish(tiny_bundle, expected=None)
    # Then it reads back verified, and its S3 metadata names the KMS key that signed it
    assert model_store.load().bundle().labels == tiny_bundle.labels
    metadata = model_store.s3.head_object(Bucket=BUCKET, Key=model_store.active_key, VersionId=ref.version_id)[
        "Metadata"
    ]
    assert metadata["signing-key"] == model_store.signer.key_id and metadata["signature"]


@pytest.mark.parametrize("forgery", ["unsigned", "modified", "other key"])
def test_store_refuses_bundles_a_trusted_key_did_not_sign(
    model_store: ModelStore, tiny_bundle: Bundle, forgery: str
) -> None:
    # Given a published model, then an active version written around the store
    first = model_store.publish(tiny_bundle, expected=None)
    swapped = Bundle(**{**tiny_bundle.__dict__, "labels": list(reversed(tiny_bundle.labels))}).to_bytes()
    signed = model_store.s3.head_object(Bucket=BUCKET, Key=model_store.active_key)["Metadata"]
    other_key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    body, metadata = {
        "unsigned": (swapped, {}),
        "modified": (swapped, signed),  # labels swapped, manifest rebuilt, the real model's signature kept
        "other key": (
            swapped,
            BundleSigner(other_key).sign(
                Approval(sha(swapped), "active", model_store.active_key, "v1", 1, first.version_id)
            ),
        ),
    }[forgery]
    forged = model_store.s3.put_object(Bucket=BUCKET, Key=model_store.active_key, Body=body, Metadata=metadata)[
        "VersionId"
    ]

    # Then reading it raises SignatureError (a BundleError, which every loader refuses)
    with pytest.raises(SignatureError):
        model_store.load().bundle()
    # And once a signed model is published over it, a rollback cannot launder it into a freshly signed version
    model_store.publish(tiny_bundle, expected=model_store.head())
    with pytest.raises(SignatureError):
        model_store.rollback(forged)


def test_store_accepts_versions_of_a_previous_key_after_rotation(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given a model signed with the old key, then a rotation: a new signing key, the old one still trusted
    old = model_store.publish(tiny_bundle, expected=None)
    new_key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    rotated = ModelStore(BUCKET, signer=BundleSigner(new_key, [model_store.signer.key_id]), s3=model_store.s3)
    # When the rotated store promotes a new version
    promoted = rotated.publish(tiny_bundle, expected=old, action="promote")
    # Then both versions verify under the rotated trust, and the new one is signed by the new key only
    assert rotated.load(old.version_id).bundle() and rotated.load(promoted.version_id).bundle()
    with pytest.raises(SignatureError):
        model_store.load(promoted.version_id).bundle()
    # And once the old key is no longer trusted, its versions are refused
    with pytest.raises(SignatureError):
        ModelStore(BUCKET, signer=BundleSigner(new_key), s3=model_store.s3).load(old.version_id).bundle()


def test_store_rollback_restores_exact_bytes_and_lists_every_version(
    base_ref: ModelRef, store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given a second version on top of the first
    original = store.load(base_ref.version_id).data
    second = store.publish(tiny_bundle.with_metadata(version="v2"), expected=base_ref, action="promote")

    # When the operator rolls back to the first
    restored = store.rollback(base_ref.version_id)

    # Then the active object holds the earlier model byte for byte (but for its write stamp), as a new version
    current = boto3.client("s3").get_object(Bucket=store.bucket, Key=store.active_key)["Body"].read()
    assert same_model(current, original)
    # And the history lists all three versions, newest first, with only the restore active
    history = store.versions()
    assert [info.version_id for info in history] == [restored.version_id, second.version_id, base_ref.version_id]
    assert [info.is_active for info in history] == [True, False, False]
    assert history[0].action == "rollback" and history[0].restored_from == base_ref.version_id


# --- approvals: what a signature approves, and where ---------------------------------------------------------------


def test_store_refuses_a_candidate_copied_over_the_active_key(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given an active model and a gate-rejected candidate, saved and signed by the store itself
    model_store.publish(tiny_bundle, expected=None)
    key = model_store.save_candidate(tiny_bundle.with_metadata(version="v99-rejected"), "gate: accuracy dropped")
    source = {"Bucket": BUCKET, "Key": key}

    # When someone who can write models/* copies it over the active key, with its metadata, then with its role
    # rewritten to "active"
    model_store.s3.copy_object(Bucket=BUCKET, Key=model_store.active_key, CopySource=source)
    # Then it is refused: it is approved as a candidate, at another key
    with pytest.raises(SignatureError, match="approved as a candidate model"):
        model_store.load().bundle()
    metadata = {**model_store.s3.head_object(Bucket=BUCKET, Key=key)["Metadata"], "approved-role": "active"}
    model_store.s3.copy_object(
        Bucket=BUCKET, Key=model_store.active_key, CopySource=source, Metadata=metadata, MetadataDirective="REPLACE"
    )
    with pytest.raises(SignatureError, match="modified or signed by another key"):
        model_store.load().bundle()


@pytest.mark.parametrize("replayed", ["older", "current"])
def test_store_refuses_an_active_version_replayed_over_the_active_key(
    model_store: ModelStore, tiny_bundle: Bundle, replayed: str
) -> None:
    # Given v1, then v2 promoted over it
    v1 = model_store.publish(tiny_bundle, expected=None)
    v2 = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=v1, action="promote")
    # When an earlier version (a downgrade), or the current one again, is copied on top with its metadata
    source = {"Bucket": BUCKET, "Key": model_store.active_key}
    source["VersionId"] = (v1 if replayed == "older" else v2).version_id
    model_store.s3.copy_object(Bucket=BUCKET, Key=model_store.active_key, CopySource=source)
    # Then it is refused: it was approved to replace another version than the one now before it
    with pytest.raises(SignatureError, match="replace another version"):
        model_store.load().bundle()
    # And the versions themselves still read back in their place in the chain
    assert model_store.load(v2.version_id).bundle().version == "v2"
    assert model_store.load(v1.version_id).bundle().version == "v1"


def test_store_chain_holds_through_publishes_promotions_rollbacks_and_manual_promotions(
    model_store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given every kind of write of the active model, one after another
    v1 = model_store.publish(tiny_bundle, expected=None)
    v2 = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=v1, action="promote")
    model_store.rollback(v1.version_id)
    key = model_store.save_candidate(tiny_bundle.with_metadata(version="v3"), "gate: accuracy dropped")
    model_store.promote_candidate(key)
    model_store.publish(
        tiny_bundle.with_metadata(version=model_store.next_version_label()), expected=model_store.head()
    )
    model_store.rollback(v2.version_id)

    # Then every version reads back approved, each replacing the one before it, with a sequence that never falls
    history = [info.version_id for info in model_store.versions()]
    assert len(history) == 6
    for newer, older in zip(history, [*history[1:], ""], strict=True):
        stored = model_store.load(newer)
        stored.bundle()
        assert stored.metadata["approved-replaces"] == older and stored.metadata["approved-role"] == "active"
    sequences = [int(model_store.load(version).metadata["approved-sequence"]) for version in history]
    assert sequences == sorted(sequences, reverse=True) and sequences[0] == 4
    assert model_store.load().bundle().version == "v2"


def test_store_rollback_reapproves_the_restored_version_and_cuts_its_lineage(
    model_store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given a seed, a promotion, and a rollback to the seed
    seed = model_store.publish(tiny_bundle, expected=None)
    promoted = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=seed, action="promote")
    restored = model_store.rollback(seed.version_id)

    # Then the restored model is approved as the active one, replacing the promotion it undoes
    stored = model_store.load()
    assert stored.ref == restored and stored.metadata["approved-replaces"] == promoted.version_id
    bundle = stored.bundle()
    # And its lineage is the seed's up to the time the seed was stored, then from the rollback on
    seed_stored_at = model_store.load(seed.version_id).bundle().metadata["stored"]["at"]
    rolled_back_at = bundle.metadata["stored"]["at"]
    assert bundle.metadata["stored"]["lineage"] == [[None, seed_stored_at], [rolled_back_at, None]]
    assert Lineage.parse(stored.metadata["lineage"]) == Lineage.of(bundle.metadata["stored"])
    # And a later promotion carries that lineage forward
    model_store.publish(tiny_bundle.with_metadata(version="v3"), expected=restored, action="promote")
    assert model_store.load().bundle().metadata["stored"]["lineage"] == bundle.metadata["stored"]["lineage"]


def _legacy_signed(model_store: ModelStore, body: bytes, key_id: str) -> dict[str, str]:
    """S3 metadata as stores wrote it before approvals: a signature of the object's sha256 alone."""
    signature = boto3.client("kms").sign(
        KeyId=key_id, Message=hashlib.sha256(body).digest(), MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256"
    )["Signature"]
    return {SIGNATURE_METADATA: base64.b64encode(signature).decode(), "version": "v1"}


@pytest.fixture
def cli_env(model_store: ModelStore, signing_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bucket and signing key in the environment, as an operator's shell has them for `lodbrok`."""
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_SIGNING_KEY", signing_key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_approve_reapproves_an_active_version_signed_before_approvals_once(
    model_store: ModelStore,
    signing_key: str,
    tiny_bundle: Bundle,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an active model stored and signed before approvals existed: refused like an unsigned one
    body = tiny_bundle.to_bytes()
    metadata = _legacy_signed(model_store, body, signing_key)
    model_store.s3.put_object(Bucket=BUCKET, Key=model_store.active_key, Body=body, Metadata=metadata)
    with pytest.raises(SignatureError, match="lodbrok approve"):
        model_store.load().bundle()
    # When the operator approves it after upgrading, then tries again
    assert main(["approve"]) == 0
    approved = model_store.load()
    assert main(["approve"]) == 2
    # Then the same model is now approved as the active one, and a second approval is refused as needless
    assert same_model(approved.data, body) and approved.bundle().version == "v1"
    assert "already approved" in capsys.readouterr().err


def test_store_approve_refuses_what_no_trusted_key_signed(model_store: ModelStore, tiny_bundle: Bundle) -> None:
    # Given an active model signed the old way by a key this deployment does not trust
    other = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    body = tiny_bundle.to_bytes()
    model_store.s3.put_object(
        Bucket=BUCKET, Key=model_store.active_key, Body=body, Metadata=_legacy_signed(model_store, body, other)
    )
    # When it is approved, then it is refused and nothing is written
    with pytest.raises(SignatureError, match="no trusted signing key"):
        model_store.approve()
    assert len(model_store.versions()) == 1


def test_store_approve_cannot_launder_a_version_replayed_over_the_active_key(
    model_store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given v2 promoted over v1, then v1 copied on top (a downgrade)
    v1 = model_store.publish(tiny_bundle, expected=None)
    model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=v1, action="promote")
    source = {"Bucket": BUCKET, "Key": model_store.active_key, "VersionId": v1.version_id}
    model_store.s3.copy_object(Bucket=BUCKET, Key=model_store.active_key, CopySource=source)
    # When an operator runs approve on it
    # Then it is refused: its signature approves a statement, not the bytes alone, so it is no pre-upgrade model
    with pytest.raises(SignatureError, match="no trusted signing key"):
        model_store.approve()
    assert len(model_store.versions()) == 3


def test_cli_publish_refuses_a_bundle_whose_shapes_disagree(
    model_store: ModelStore, tiny_bundle: Bundle, tmp_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a real bundle file whose featurizer says 2**20 buckets over a smaller embedding
    mismatched = dataclasses.replace(
        tiny_bundle, featurizer=dataclasses.replace(tiny_bundle.featurizer, num_buckets=2**20)
    )
    path = tmp_path / "mismatched.lbk"
    mismatched.write(str(path))
    # When an operator publishes it
    status = main(["publish", str(path)])
    # Then it is refused with the reason, and nothing was published
    assert status == 2 and "embedding table" in capsys.readouterr().err
    assert model_store.head() is None
