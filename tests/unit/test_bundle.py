from __future__ import annotations

import hashlib
import io
import json
import random
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import lodbrok.model.bundle as bundle_module
from lodbrok.model.bundle import (
    BUNDLE_FORMAT,
    CONTENT_MEMBERS,
    FEATURIZER_MEMBER,
    GATE_MEMBER,
    KERAS_MEMBER,
    LABELS_MEMBER,
    METADATA_MEMBER,
    REHEARSAL_MEMBER,
    TFLITE_MEMBER,
    Bundle,
    BundleError,
    next_version_label,
    version_number,
)
from lodbrok.model.features import FeaturizerConfig


def make_bundle(**changes: object) -> Bundle:
    fields: dict[str, object] = {
        "keras_model": b"PK-not-really-keras\x00\x01\x02" * 20,
        "tflite_model": bytes(range(256)) * 4,
        "featurizer": FeaturizerConfig(num_buckets=4096, max_tokens=64),
        "labels": ["ham", "spam"],
        "rehearsal": b'{"input": "hello", "label": "ham"}\n',
        "gate": b'{"input": "WIN", "label": "spam"}\n',
        "metadata": {"version": "v3", "parent_version": "v2", "metrics": {"gate": {"accuracy": 0.97}}},
    }
    fields.update(changes)
    return Bundle(**fields)  # type: ignore[arg-type]


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_zip(members: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def rebuild(
    data: bytes,
    changes: dict[str, bytes] | None = None,
    *,
    drop: tuple[str, ...] = (),
    edit_metadata: Callable[[dict[str, object]], object] | None = None,
    reseal: bool = False,
) -> bytes:
    """A valid zip with some members replaced/dropped; `reseal` recomputes the metadata checksums."""
    members = read_zip(data)
    members.update(changes or {})
    for name in drop:
        del members[name]
    if reseal or edit_metadata:
        metadata = json.loads(members[METADATA_MEMBER])
        if reseal:
            metadata["members"] = {
                name: {"sha256": hashlib.sha256(members[name]).hexdigest(), "bytes": len(members[name])}
                for name in CONTENT_MEMBERS
            }
        edited = edit_metadata(metadata) if edit_metadata else metadata
        members[METADATA_MEMBER] = json.dumps(metadata if edited is None else edited).encode()
    return write_zip(members)


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


# --- round trip ------------------------------------------------------------------------------------


def test_bundle_round_trip_through_bytes() -> None:
    # Given a bundle whose members are arbitrary (non-UTF-8, empty) bytes
    original = make_bundle(rehearsal=b"", gate=b"\xff\xfe\x00binary")

    # When it is serialized and loaded back
    loaded = Bundle.from_bytes(original.to_bytes())

    # Then every member and setting survives unchanged
    assert loaded.keras_model == original.keras_model
    assert loaded.tflite_model == original.tflite_model
    assert loaded.featurizer == original.featurizer
    assert loaded.labels == original.labels
    assert loaded.rehearsal == b""
    assert loaded.gate == b"\xff\xfe\x00binary"
    assert loaded.version == "v3"
    assert loaded.metadata["parent_version"] == "v2"
    assert loaded.metadata["metrics"] == {"gate": {"accuracy": 0.97}}


def test_bundle_round_trip_reserializes_to_identical_bytes() -> None:
    # Given the bytes of a bundle
    data = make_bundle().to_bytes()

    # When it is loaded and serialized again
    again = Bundle.from_bytes(data).to_bytes()

    # Then the bytes are identical (loading adds nothing that changes the artifact)
    assert again == data


def test_bundle_write_and_read_via_file(tmp_path: Path) -> None:
    # Given a bundle
    original = make_bundle(labels=["ham", "spam", "phishing"])
    path = tmp_path / "model.lbk"

    # When it is written to disk and read back
    original.write(str(path))
    loaded = Bundle.read(str(path))

    # Then the file holds exactly the serialized bytes and the content survives
    assert path.read_bytes() == original.to_bytes()
    assert loaded.labels == ["ham", "spam", "phishing"]
    assert loaded.tflite_model == original.tflite_model
    assert loaded.featurizer == original.featurizer


def test_bundle_read_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    # Given a path with no file
    # When it is read
    # Then the OS error surfaces (the CLI reports it as a user error)
    with pytest.raises(FileNotFoundError):
        Bundle.read(str(tmp_path / "absent.lbk"))


def test_bundle_to_bytes_is_deterministic() -> None:
    # Given two bundles with identical content built separately, metadata keys in different order
    first = make_bundle(metadata={"version": "v1", "created_at": "2024-01-01T00:00:00Z"})
    second = make_bundle(metadata={"created_at": "2024-01-01T00:00:00Z", "version": "v1"})

    # When both are serialized
    # Then the bytes are identical, and a one-byte content change changes them
    assert first.to_bytes() == second.to_bytes()
    assert first.to_bytes() == first.to_bytes()
    assert make_bundle(gate=b"other").to_bytes() != make_bundle().to_bytes()


def test_bundle_zip_members_and_metadata_fields() -> None:
    # Given a serialized bundle
    original = make_bundle()

    # When its zip is opened directly
    members = read_zip(original.to_bytes())
    metadata = json.loads(members[METADATA_MEMBER])

    # Then it holds exactly the format's members, and metadata records format, labels,
    # featurizer and a sha256 + size for every content member
    assert set(members) == {METADATA_MEMBER, *CONTENT_MEMBERS}
    assert metadata["format"] == BUNDLE_FORMAT
    assert metadata["labels"] == ["ham", "spam"]
    assert metadata["featurizer"] == original.featurizer.to_dict()
    assert metadata["version"] == "v3"
    assert set(metadata["members"]) == set(CONTENT_MEMBERS)
    for name in CONTENT_MEMBERS:
        assert metadata["members"][name] == {
            "sha256": hashlib.sha256(members[name]).hexdigest(),
            "bytes": len(members[name]),
        }
    assert members[TFLITE_MEMBER] == original.tflite_model
    assert json.loads(members[LABELS_MEMBER]) == ["ham", "spam"]
    assert json.loads(members[FEATURIZER_MEMBER]) == original.featurizer.to_dict()


def test_bundle_with_metadata_merges_and_metadata_cannot_override_format() -> None:
    # Given a bundle whose user metadata tries to claim another format and fake checksums
    original = make_bundle().with_metadata(version="v9", format="evil/1", members={})

    # When it is serialized and loaded
    loaded = Bundle.from_bytes(original.to_bytes())

    # Then the new version is kept, other keys are merged, and format/members are the real ones
    assert original.version == "v9"
    assert loaded.version == "v9"
    assert loaded.metadata["parent_version"] == "v2"
    assert loaded.metadata["format"] == BUNDLE_FORMAT
    assert set(loaded.metadata["members"]) == set(CONTENT_MEMBERS)


def test_bundle_version_defaults_to_unversioned() -> None:
    # Given a bundle without a version in its metadata
    # When its version is asked for
    # Then it is "unversioned"
    assert make_bundle(metadata={}).version == "unversioned"


# --- tamper detection ------------------------------------------------------------------------------


@pytest.mark.parametrize("member", CONTENT_MEMBERS)
def test_bundle_from_bytes_detects_changed_member_content(member: str) -> None:
    # Given a valid zip in which one member's content was altered (metadata untouched)
    data = make_bundle().to_bytes()
    original = read_zip(data)[member]
    tampered = rebuild(data, {member: original + b" "})

    # When it is loaded
    # Then the checksum mismatch names the member
    with pytest.raises(BundleError, match=f"checksum mismatch for {re.escape(member)}"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_detects_altered_metadata_checksum() -> None:
    # Given a bundle whose metadata records a wrong checksum for the tflite model
    def corrupt(metadata: dict[str, object]) -> None:
        metadata["members"][TFLITE_MEMBER]["sha256"] = "0" * 64  # type: ignore[index]

    tampered = rebuild(make_bundle().to_bytes(), edit_metadata=corrupt)

    # When it is loaded
    # Then it is refused as corrupt
    with pytest.raises(BundleError, match=f"checksum mismatch for {re.escape(TFLITE_MEMBER)}"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_detects_manifest_entry_without_checksum() -> None:
    # Given metadata whose manifest entry for a member is not an object with a sha256
    def corrupt(metadata: dict[str, object]) -> None:
        metadata["members"][GATE_MEMBER] = "trust me"  # type: ignore[index]

    tampered = rebuild(make_bundle().to_bytes(), edit_metadata=corrupt)

    # When it is loaded
    # Then it is refused naming the member
    with pytest.raises(BundleError, match=f"checksum mismatch for {re.escape(GATE_MEMBER)}"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_detects_manifest_missing_a_member() -> None:
    # Given metadata whose checksum list omits a member
    def corrupt(metadata: dict[str, object]) -> None:
        del metadata["members"][KERAS_MEMBER]  # type: ignore[attr-defined]

    tampered = rebuild(make_bundle().to_bytes(), edit_metadata=corrupt)

    # When it is loaded
    # Then it is refused because not every member is covered
    with pytest.raises(BundleError, match="does not list the checksums of every bundle member"):
        Bundle.from_bytes(tampered)


@pytest.mark.parametrize("member", [METADATA_MEMBER, *CONTENT_MEMBERS])
def test_bundle_from_bytes_detects_missing_member(member: str) -> None:
    # Given a bundle zip with one member removed
    tampered = rebuild(make_bundle().to_bytes(), drop=(member,))

    # When it is loaded
    # Then the message names the missing member
    with pytest.raises(BundleError, match=rf"missing \['{re.escape(member)}'\], unexpected \[\]"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_detects_extra_member() -> None:
    # Given a bundle zip with an additional member
    tampered = rebuild(make_bundle().to_bytes(), {"payload.py": b"import os"})

    # When it is loaded
    # Then the message names the unexpected member
    with pytest.raises(BundleError, match=r"missing \[\], unexpected \['payload\.py'\]"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_detects_duplicate_member() -> None:
    # Given a bundle zip where one member name appears twice (the second copy would shadow the first)
    members = list(read_zip(make_bundle().to_bytes()).items())
    with pytest.warns(UserWarning, match="Duplicate name"):
        tampered = write_zip([*members, (TFLITE_MEMBER, b"shadow")])

    # When it is loaded
    # Then it is refused as not matching the format
    with pytest.raises(BundleError, match="bundle members differ from the format"):
        Bundle.from_bytes(tampered)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99], ids=lambda keep: f"keep{keep}")
def test_bundle_from_bytes_rejects_truncated_bytes(keep: float) -> None:
    # Given a bundle cut short
    data = make_bundle().to_bytes()
    truncated = data[: int(len(data) * keep)]

    # When it is loaded
    # Then it is refused as unreadable
    with pytest.raises(BundleError, match="not a readable bundle archive"):
        Bundle.from_bytes(truncated)


@pytest.mark.parametrize("size", [1, 64, 4096])
def test_bundle_from_bytes_rejects_random_bytes(size: int) -> None:
    # Given random bytes
    data = random.Random(size).randbytes(size)

    # When they are loaded as a bundle
    # Then they are refused as unreadable
    with pytest.raises(BundleError, match="not a readable bundle archive"):
        Bundle.from_bytes(data)


def test_bundle_from_bytes_byte_flips_raise_only_bundle_error() -> None:
    # Given every single-byte corruption of a valid bundle
    data = make_bundle().to_bytes()
    original = Bundle.from_bytes(data)
    leaks: list[str] = []

    # When each corrupted copy is loaded
    for position in range(len(data)):
        corrupted = bytearray(data)
        corrupted[position] ^= 0xFF
        try:
            loaded = Bundle.from_bytes(bytes(corrupted))
        except BundleError:
            continue
        except Exception as error:
            leaks.append(f"offset {position}: {type(error).__name__}: {error}")
            continue
        # (a flip in zip bookkeeping no digest covers, e.g. a timestamp, may still load)
        assert (loaded.keras_model, loaded.tflite_model, loaded.rehearsal, loaded.gate) == (
            original.keras_model,
            original.tflite_model,
            original.rehearsal,
            original.gate,
        ), f"offset {position}: a corrupted bundle loaded with different content"
        assert (loaded.labels, loaded.featurizer) == (original.labels, original.featurizer)

    # Then corruption is always reported as BundleError, never as another exception
    assert not leaks, f"corruption escaped as a non-BundleError: {leaks[:3]} ({len(leaks)} offsets)"


def test_bundle_from_bytes_rejects_metadata_not_json() -> None:
    # Given a bundle whose metadata.json is not JSON
    tampered = rebuild(make_bundle().to_bytes(), {METADATA_MEMBER: b"{not json"})

    # When it is loaded
    # Then the message names metadata.json
    with pytest.raises(BundleError, match=r"metadata\.json is not valid JSON"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_rejects_metadata_not_utf8() -> None:
    # Given a bundle whose metadata.json is binary garbage
    tampered = rebuild(make_bundle().to_bytes(), {METADATA_MEMBER: b"\xff\xfe\x00\x81"})

    # When it is loaded
    # Then the message names metadata.json
    with pytest.raises(BundleError, match=r"metadata\.json is not valid JSON"):
        Bundle.from_bytes(tampered)


@pytest.mark.parametrize("metadata", [b"[]", b"null", b'"lodbrok-bundle/1"', b"42"])
def test_bundle_from_bytes_rejects_metadata_not_an_object(metadata: bytes) -> None:
    # Given a bundle whose metadata.json is JSON but not an object
    tampered = rebuild(make_bundle().to_bytes(), {METADATA_MEMBER: metadata})

    # When it is loaded
    # Then it is refused as not a bundle
    with pytest.raises(BundleError, match=r"metadata\.json is not a JSON object"):
        Bundle.from_bytes(tampered)


@pytest.mark.parametrize("fmt", ["lodbrok-bundle/2", "", None], ids=["v2", "empty", "absent"])
def test_bundle_from_bytes_rejects_wrong_format(fmt: str | None) -> None:
    # Given a bundle whose metadata declares another (or no) format
    def corrupt(metadata: dict[str, object]) -> None:
        if fmt is None:
            del metadata["format"]
        else:
            metadata["format"] = fmt

    tampered = rebuild(make_bundle().to_bytes(), edit_metadata=corrupt)

    # When it is loaded
    # Then the message names the expected and the found format
    with pytest.raises(BundleError, match=rf"not a lodbrok-bundle/1 bundle \(metadata.format is {fmt!r}\)"):
        Bundle.from_bytes(tampered)


@pytest.mark.parametrize(
    "labels",
    [
        json_bytes(["spam"]),
        json_bytes([]),
        json_bytes(["ham", 2]),
        json_bytes({"ham": 0, "spam": 1}),
        b'"ham"',
        json_bytes(["ham", "ham"]),
    ],
    ids=["one-label", "no-labels", "non-string", "object", "string", "duplicates"],
)
def test_bundle_from_bytes_rejects_bad_labels(labels: bytes) -> None:
    # Given a correctly checksummed bundle whose labels.json is not a list of >= 2 names
    tampered = rebuild(make_bundle().to_bytes(), {LABELS_MEMBER: labels}, reseal=True)

    # When it is loaded
    # Then the message says what labels.json must be
    with pytest.raises(BundleError, match=r"labels\.json must be a list of at least two distinct label names"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_rejects_labels_not_json() -> None:
    # Given a correctly checksummed bundle whose labels.json is not JSON
    tampered = rebuild(make_bundle().to_bytes(), {LABELS_MEMBER: b"ham,spam"}, reseal=True)

    # When it is loaded
    # Then the message names labels.json
    with pytest.raises(BundleError, match=r"labels\.json is not valid JSON"):
        Bundle.from_bytes(tampered)


@pytest.mark.parametrize(
    ("featurizer", "message"),
    [
        (json_bytes({**FeaturizerConfig().to_dict(), "version": 99}), "featurizer version 99 is not supported"),
        (json_bytes({"version": 1, "max_tokens": 64}), "num_buckets"),
        (json_bytes({**FeaturizerConfig().to_dict(), "max_tokens": "many"}), "invalid literal"),
        (json_bytes([1, 2, 3]), "invalid featurizer config"),
        (json_bytes(None), "invalid featurizer config"),
    ],
    ids=["other-version", "missing-field", "non-integer", "list", "null"],
)
def test_bundle_from_bytes_rejects_bad_featurizer_config(featurizer: bytes, message: str) -> None:
    # Given a correctly checksummed bundle with an unusable featurizer config
    tampered = rebuild(make_bundle().to_bytes(), {FEATURIZER_MEMBER: featurizer}, reseal=True)

    # When it is loaded
    # Then it is refused as an invalid featurizer config saying why
    with pytest.raises(BundleError, match="invalid featurizer config") as raised:
        Bundle.from_bytes(tampered)
    assert message in str(raised.value)


def test_bundle_from_bytes_rejects_featurizer_not_json() -> None:
    # Given a correctly checksummed bundle whose featurizer.json is not JSON
    tampered = rebuild(make_bundle().to_bytes(), {FEATURIZER_MEMBER: b"num_buckets=5"}, reseal=True)

    # When it is loaded
    # Then the message names featurizer.json
    with pytest.raises(BundleError, match=r"featurizer\.json is not valid JSON"):
        Bundle.from_bytes(tampered)


def test_bundle_from_bytes_rejects_oversized_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a size limit smaller than the bundle unpacks to
    data = make_bundle().to_bytes()
    monkeypatch.setattr(bundle_module, "MAX_UNPACKED_BYTES", 100)

    # When it is loaded
    # Then it is refused before the members are decompressed
    with pytest.raises(BundleError, match="bundle unpacks to more than"):
        Bundle.from_bytes(data)


def test_bundle_rebuild_helper_keeps_a_valid_bundle_valid() -> None:
    # Given a bundle rebuilt with the test helper but without any change
    data = make_bundle().to_bytes()

    # When it is loaded
    loaded = Bundle.from_bytes(rebuild(data, reseal=True))

    # Then it is accepted: the failures above come from the tampering, not from the helper
    assert loaded.labels == ["ham", "spam"]
    assert loaded.rehearsal == make_bundle().rehearsal
    assert REHEARSAL_MEMBER in loaded.metadata["members"]


@pytest.mark.parametrize(("version", "following"), [("v1", "v2"), ("v0", "v1"), ("v41", "v42"), ("seed", "seed+1")])
def test_next_version_label_numbers_vn_and_suffixes_any_other_label(version: str, following: str) -> None:
    # Given a version label; When the next one is asked for; Then vN is followed by vN+1, another label by label+1
    assert next_version_label(version) == following
    assert version_number(following) == (None if version == "seed" else version_number(version) + 1)
