"""The artifact bundle: one zip file per model version.

Members: the Keras model (for fine-tuning), the `.tflite` (for serving), the featurizer config,
the labels, the rehearsal sample and gate set the model was trained with (so retraining can use
them later), and `metadata.json`, which records the sha256 of every other member. Loading checks
every digest and refuses anything corrupt, tampered, truncated or oversized. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

from lodbrok.model.features import FeaturizerConfig

BUNDLE_FORMAT = "lodbrok-bundle/1"
KERAS_MEMBER = "model.keras"
TFLITE_MEMBER = "model.tflite"
FEATURIZER_MEMBER = "featurizer.json"
LABELS_MEMBER = "labels.json"
REHEARSAL_MEMBER = "rehearsal.jsonl"
GATE_MEMBER = "gate.jsonl"
METADATA_MEMBER = "metadata.json"
CONTENT_MEMBERS = (
    KERAS_MEMBER,
    TFLITE_MEMBER,
    FEATURIZER_MEMBER,
    LABELS_MEMBER,
    REHEARSAL_MEMBER,
    GATE_MEMBER,
)
MAX_UNPACKED_BYTES = 1 << 30


class BundleError(ValueError):
    """The bytes are not a valid, intact Lodbrok bundle."""


_NUMBERED_LABEL = re.compile(r"v(\d+)")


def version_number(label: str) -> int | None:
    """N of a version label `vN` (v1, v2, ... as the model store numbers them); None for any other label."""
    match = _NUMBERED_LABEL.fullmatch(label)
    return int(match.group(1)) if match else None


def next_version_label(version: str) -> str:
    """The label after `version`: `v<N+1>` after `vN`, `<version>+1` after any other label. The one rule for
    numbering versions; the model store applies it to the highest number it ever stored."""
    number = version_number(version)
    return f"v{number + 1}" if number is not None else f"{version}+1"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Bundle:
    keras_model: bytes
    tflite_model: bytes
    featurizer: FeaturizerConfig
    labels: list[str]
    rehearsal: bytes
    gate: bytes
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unversioned"))

    def with_metadata(self, **changes: Any) -> Bundle:
        return replace(self, metadata={**self.metadata, **changes})

    def to_bytes(self) -> bytes:
        members = {
            KERAS_MEMBER: self.keras_model,
            TFLITE_MEMBER: self.tflite_model,
            FEATURIZER_MEMBER: _json_bytes(self.featurizer.to_dict()),
            LABELS_MEMBER: _json_bytes(self.labels),
            REHEARSAL_MEMBER: self.rehearsal,
            GATE_MEMBER: self.gate,
        }
        metadata = {
            **self.metadata,
            "format": BUNDLE_FORMAT,
            "labels": self.labels,
            "featurizer": self.featurizer.to_dict(),
            "members": {name: {"sha256": sha256_hex(data), "bytes": len(data)} for name, data in members.items()},
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for name, data in {METADATA_MEMBER: _json_bytes(metadata), **members}.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        members = _read_members(data)
        metadata = _parse_json(members[METADATA_MEMBER], METADATA_MEMBER)
        if not isinstance(metadata, dict):
            raise BundleError("metadata.json is not a JSON object")
        if metadata.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a {BUNDLE_FORMAT} bundle (metadata.format is {metadata.get('format')!r})")
        manifest = metadata.get("members")
        if not isinstance(manifest, dict) or set(manifest) != set(CONTENT_MEMBERS):
            raise BundleError("metadata.json does not list the checksums of every bundle member")
        for name in CONTENT_MEMBERS:
            expected = manifest[name].get("sha256") if isinstance(manifest[name], dict) else None
            if sha256_hex(members[name]) != expected:
                raise BundleError(f"checksum mismatch for {name}: the bundle is corrupt or was modified")
        try:
            featurizer = FeaturizerConfig.from_dict(_parse_json(members[FEATURIZER_MEMBER], FEATURIZER_MEMBER))
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"invalid featurizer config: {error}") from error
        labels = _parse_json(members[LABELS_MEMBER], LABELS_MEMBER)
        if (
            not isinstance(labels, list)
            or len(labels) < 2
            or not all(isinstance(label, str) for label in labels)
            or len(set(labels)) != len(labels)
        ):
            raise BundleError("labels.json must be a list of at least two distinct label names")
        return cls(
            keras_model=members[KERAS_MEMBER],
            tflite_model=members[TFLITE_MEMBER],
            featurizer=featurizer,
            labels=labels,
            rehearsal=members[REHEARSAL_MEMBER],
            gate=members[GATE_MEMBER],
            metadata=metadata,
        )

    @classmethod
    def read(cls, path: str) -> Bundle:
        with open(path, "rb") as handle:
            return cls.from_bytes(handle.read())

    def write(self, path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(self.to_bytes())


def _read_members(data: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = {info.filename for info in infos}
            expected = {METADATA_MEMBER, *CONTENT_MEMBERS}
            if names != expected or len(infos) != len(expected):
                missing, unexpected = sorted(expected - names), sorted(names - expected)
                raise BundleError(f"bundle members differ from the format: missing {missing}, unexpected {unexpected}")
            if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
                raise BundleError("bundle unpacks to more than 1 GiB")
            return {info.filename: archive.read(info) for info in infos}
    except BundleError:
        raise
    # A damaged central directory surfaces as any of these from zipfile/zlib.
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        ValueError,
    ) as error:
        raise BundleError(f"not a readable bundle archive: {error}") from error


def _parse_json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{name} is not valid JSON: {error}") from error


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()
