"""The model registry: bundles in a versioned S3 bucket.

One object key holds the active model; every write to it (publish, promotion, rollback) is a new S3
version, so the history is S3's version list and a rollback writes an earlier version's model back on
top (history kept). Writes are conditional on the ETag the writer last read (`If-Match`), so two
writers racing cannot silently overwrite each other's promotion. Every write stamps the bundle's
metadata with a unique write id, so no two writes share an ETag: a rollback to v1 after v2 gets a new
ETag, and a retrain that read v1 before v2 cannot publish over the rollback (ABA). A summary of each bundle's
metadata rides along as S3 user metadata, so listing versions needs no bundle downloads; so does the highest
version number written so far, so the next label (`vN`) takes one HEAD and is never given twice, even after
the lifecycle rule expired the version that had it.

Every object the store writes carries a signed approval (`lodbrok.registry.signing.Approval`): role "active" with
the VersionId of the version it replaces, or role "candidate", and the key it was written to. Every bundle
read back is verified before use (`StoredModel.bundle`): the signature, the role its key demands, and for
the active key the chain: its `replaces` must be the version just before it in the key's S3 version list
(delete markers skipped; one ListObjectVersions call per load, and a model is loaded only when its version
changed). So a candidate copied over the active key, or an older active version replayed on top, is
refused, and a rollback or a manual promotion cannot launder a modified bundle into a freshly signed
version. A rollback re-approves the version it restores with the operator's key; `approve` re-approves,
once, an active version signed before approvals existed.

Every write of the active model also records its lineage (`lodbrok.registry.lineage`): publishing and promoting
carry the current one forward, a rollback cuts the restored version's lineage at the time it was stored.

Every write of the active model except the first carries the tag `EXPIRABLE_TAG`, the only versions the
bucket's lifecycle rule may expire; the first version (the seed) and any version `keep` untags (one pinned
with MODEL_VERSION) stay for good.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lodbrok import aws
from lodbrok.clock import key_stamp, utc_iso
from lodbrok.model.bundle import Bundle, next_version_label, sha256_hex, version_number
from lodbrok.registry.lineage import LINEAGE_METADATA, Lineage
from lodbrok.registry.signing import Approval, BundleSigner, Role, SignatureError, SigningNotConfigured

EXPIRABLE_TAG = "lodbrok-history=expirable"  # template.yaml's lifecycle rule filters on this tag; `keep` sets =kept
HIGHEST_NUMBER = "highest-version-number"  # user metadata: the highest vN written to the active key so far


class ModelStoreError(Exception):
    """Base class of every model store failure that a caller can explain to a user."""


class BucketNotFound(ModelStoreError):
    pass


class VersioningDisabled(ModelStoreError):
    pass


class NoActiveModel(ModelStoreError):
    pass


class UnknownVersion(ModelStoreError):
    pass


class ConcurrentUpdate(ModelStoreError):
    """The active model changed since it was read; re-read and retry."""


@dataclass(frozen=True)
class ModelRef:
    """One S3 version of the active key."""

    version_id: str
    etag: str


@dataclass(frozen=True)
class StoredModel:
    ref: ModelRef
    data: bytes
    metadata: Mapping[str, str]
    signer: BundleSigner | None
    key: str
    role: Role
    previous: str | None = None  # the VersionId listed just before this one ("" if none); None: chain not checked

    def bundle(self) -> Bundle:
        """The bundle, once its approval and checksums are verified (SignatureError, BundleError)."""
        claimed = Approval.read(self.data, self.key, self.metadata).role  # named first: the clearer refusal
        if claimed != self.role:
            raise SignatureError(f"the stored model is approved as a {claimed} model, not as the {self.role} one")
        approval = _required(self.signer).verify(self.data, self.key, self.metadata)
        if self.previous is not None and approval.replaces != self.previous:
            raise SignatureError(
                "the stored model was approved to replace another version than the one before it: "
                "an older or copied version is not approved as the active model"
            )
        bundle = Bundle.from_bytes(self.data)
        if approval.version != _ascii(bundle.version):
            raise SignatureError("the stored model's approval names another version label than its bundle")
        return bundle


# Actions that store an earlier model again as a new version: its label is the earlier one's, it is not a new model.
COPY_ACTIONS = frozenset({"rollback", "approve"})


@dataclass(frozen=True)
class VersionInfo:
    version_id: str
    label: str
    created_at: str
    stored_at: str
    parent: str
    action: str
    restored_from: str
    verdict_count: int
    metrics: dict[str, Any]
    size: int
    is_active: bool

    @property
    def is_copy(self) -> bool:
        """A version that stores an earlier model again (rollback, approve): the label names that model."""
        return self.action in COPY_ACTIONS


@dataclass(frozen=True)
class CandidateInfo:
    key: str
    label: str
    stored_at: str
    reason: str
    metrics: dict[str, Any]


class ModelStore:
    def __init__(
        self, bucket: str, model_name: str = "default", *, signer: BundleSigner | None, s3: Any = None
    ) -> None:
        """`signer=None` gives a store that can list and tag versions but never read or write a bundle."""
        if not bucket:
            raise BucketNotFound("no model bucket given (flag --bucket, env MODEL_BUCKET, or a deployed stack)")
        self.bucket = bucket
        self.model_name = model_name
        self.active_key = f"models/{model_name}/active.lbk"
        self.candidate_prefix = f"models/{model_name}/candidates/"
        self.signer = signer
        self.s3 = s3 or aws.client("s3")
        self._versioning_checked = False

    def head(self) -> ModelRef | None:
        """The current active version, with one cheap HEAD request; None if nothing was published."""
        response = self._head_active()
        return None if response is None else ModelRef(response.get("VersionId") or "null", response["ETag"])

    def load(self, version_id: str | None = None, *, chained: bool = True) -> StoredModel:
        """A version of the active model (the current one by default), to verify with `bundle()`.

        `chained` also checks that its approval replaces the version listed just before it; only a version
        the operator names (a rollback's source, a pinned MODEL_VERSION) is read without, as its
        predecessor may have expired."""
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.active_key}
        if version_id:
            arguments["VersionId"] = version_id
        try:
            response = self.s3.get_object(**arguments)
        except ClientError as error:
            code = aws.error_code(error)
            if version_id and code in {"NoSuchVersion", "InvalidArgument", "404", "400"}:
                raise UnknownVersion(f"model version {version_id!r} does not exist in s3://{self.bucket}") from error
            if code in {"NoSuchKey", "404"}:
                self._raise_if_bucket_missing()
                raise NoActiveModel(self._no_model_message()) from error
            raise self._translate(error) from error
        stored = self._stored(response, self.active_key, "active")
        if not chained:
            return stored
        return dataclasses.replace(stored, previous=self._version_before(stored.ref.version_id))

    def _version_before(self, version_id: str) -> str:
        """The VersionId listed just before `version_id` on the active key ("" for the first; S3 lists newest first)."""
        listed: list[str] = []
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.active_key):
            listed.extend(entry["VersionId"] for entry in page.get("Versions", []) if entry["Key"] == self.active_key)
            if version_id in listed[:-1]:
                break
        if version_id not in listed:
            raise UnknownVersion(f"model version {version_id!r} is not in the version list of s3://{self.bucket}")
        position = listed.index(version_id)
        return listed[position + 1] if position + 1 < len(listed) else ""

    def publish(
        self, bundle: Bundle, *, expected: ModelRef | None, action: str = "publish", verdict_count: int = 0
    ) -> ModelRef:
        """Make `bundle` the active model as a new S3 version, only if `expected` is still the active one.

        `expected=None` means "only if no model was published yet". A lost race raises ConcurrentUpdate.
        """
        return self._put_active(bundle, expected=expected, action=action, verdict_count=verdict_count)

    def resolve(self, version: str) -> str:
        """The version id `version` names: a version id as listed, or a label (`v1`), which means the version
        first stored with it, never a later copy of it (a rollback or approval stores the model again)."""
        listed = self.versions()
        if any(info.version_id == version for info in listed):
            return version
        originals = [info for info in reversed(listed) if info.label == version]  # oldest first
        if not originals:
            raise UnknownVersion(f"no version id or label {version!r} in s3://{self.bucket}; see `lodbrok versions`")
        return next((info for info in originals if not info.is_copy), originals[0]).version_id

    def rollback(self, version_id: str) -> ModelRef:
        """Restore an earlier version as the active model, re-approved; the restore is itself a new version.

        Its lineage is the restored version's cut at the time that version was stored, plus from now on."""
        current = self.head()
        if current and current.version_id == version_id:
            raise ModelStoreError(f"version {version_id} is already the active model")
        earlier = self.load(version_id, chained=False).bundle()
        stored = earlier.metadata.get("stored") or {}
        restored_at = utc_iso()
        lineage = Lineage.of(stored).restored(str(stored.get("at") or restored_at), restored_at)
        return self._put_active(
            earlier, expected=current, action="rollback", restored_from=version_id, lineage=lineage, at=restored_at
        )

    def approve(self) -> ModelRef:
        """Re-approve the active version once after an upgrade: it must carry a trusted key's signature of its
        bytes (as stored before approvals existed); the approved copy is a new version, with the same model."""
        stored = self.load()
        try:
            stored.bundle()
        except SignatureError:
            _required(self.signer).verify_legacy(stored.data, stored.metadata)
        else:
            raise ModelStoreError(f"the active model (version {stored.ref.version_id}) is already approved")
        return self._put_active(Bundle.from_bytes(stored.data), expected=stored.ref, action="approve")

    def versions(self) -> list[VersionInfo]:
        """Every version of the active key, newest first."""
        self.ensure_versioning()
        entries: list[dict[str, Any]] = []
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.active_key):
            entries.extend(entry for entry in page.get("Versions", []) if entry["Key"] == self.active_key)
        entries.sort(key=lambda entry: entry["LastModified"], reverse=True)
        infos = []
        for entry in entries:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.active_key, VersionId=entry["VersionId"])
            infos.append(_version_info(entry, head.get("Metadata", {})))
        return infos

    def next_version_label(self) -> str:
        """The label after the highest `vN` ever stored, so labels stay unique across rollbacks and expiries."""
        return next_version_label(f"v{self._highest_number(self._head_active())}")

    def _head_active(self) -> dict[str, Any] | None:
        """The HEAD response of the active version; None if nothing was published."""
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=self.active_key)
        except ClientError as error:
            if aws.error_code(error) in {"404", "NoSuchKey", "NotFound"}:
                self._raise_if_bucket_missing()
                return None
            raise self._translate(error) from error

    def _highest_number(self, active_head: Mapping[str, Any] | None) -> int:
        """The highest `vN` stored so far: carried in the active version's metadata by every write, so it is
        there even after the lifecycle rule expired that version; versions written before it are listed."""
        if active_head is None:
            return 0
        metadata = active_head.get("Metadata", {})
        if HIGHEST_NUMBER in metadata:
            return int(metadata[HIGHEST_NUMBER])
        numbers = [number for info in self.versions() if (number := version_number(info.label)) is not None]
        return max(numbers, default=0)

    def save_candidate(self, bundle: Bundle, reason: str) -> str:
        """Keep a candidate that was not promoted, with why, for inspection or a manual promotion."""
        key = f"{self.candidate_prefix}{key_stamp()}-{bundle.version}.lbk"
        body = bundle.to_bytes()
        approval = Approval(
            sha256=sha256_hex(body),
            role="candidate",
            key=key,
            version=_ascii(bundle.version),
            sequence=version_number(bundle.version) or 0,
            replaces="",
        )
        metadata = {
            **_summary_metadata(bundle),
            "reason": _ascii(reason)[:512],
            **_required(self.signer).sign(approval),
        }
        self._call("put_object", Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)
        return key

    def candidates(self) -> list[CandidateInfo]:
        found: list[CandidateInfo] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.candidate_prefix):
            for entry in page.get("Contents", []):
                metadata = self.s3.head_object(Bucket=self.bucket, Key=entry["Key"]).get("Metadata", {})
                found.append(
                    CandidateInfo(
                        key=entry["Key"],
                        label=metadata.get("version", ""),
                        stored_at=entry["LastModified"].isoformat(),
                        reason=metadata.get("reason", ""),
                        metrics=_json_or_empty(metadata.get("metrics")),
                    )
                )
        return sorted(found, key=lambda candidate: candidate.stored_at, reverse=True)

    def promote_candidate(self, key: str) -> ModelRef:
        """Promote a stored candidate by hand (an operator overriding the gate)."""
        if not key.startswith(self.candidate_prefix):
            key = self.candidate_prefix + key
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if aws.error_code(error) in {"NoSuchKey", "404"}:
                raise UnknownVersion(f"no candidate {key!r} in s3://{self.bucket}") from error
            raise self._translate(error) from error
        candidate = self._stored(response, key, "candidate").bundle()
        return self._put_active(candidate, expected=self.head(), action="manual-promote")

    def keep(self, version_id: str) -> None:
        """Exempt one version from the bucket's lifecycle expiry (a version pinned with MODEL_VERSION)."""
        self._call(
            "put_object_tagging",
            Bucket=self.bucket,
            Key=self.active_key,
            VersionId=version_id,
            Tagging={"TagSet": [{"Key": "lodbrok-history", "Value": "kept"}]},
        )

    def is_kept(self, version_id: str) -> bool:
        """True if the lifecycle rule can never expire this version (it carries no expirable tag)."""
        tags = self._call("get_object_tagging", Bucket=self.bucket, Key=self.active_key, VersionId=version_id)
        return EXPIRABLE_TAG not in {f"{tag['Key']}={tag['Value']}" for tag in tags.get("TagSet", [])}

    def ensure_versioning(self) -> None:
        if self._versioning_checked:
            return
        status = self._call("get_bucket_versioning", Bucket=self.bucket).get("Status")
        if status != "Enabled":
            raise VersioningDisabled(
                f"bucket {self.bucket} does not have versioning enabled, so model history and rollback would be "
                f"lost; enable it: aws s3api put-bucket-versioning --bucket {self.bucket} "
                "--versioning-configuration Status=Enabled"
            )
        self._versioning_checked = True

    def _put_active(
        self,
        bundle: Bundle,
        *,
        expected: ModelRef | None,
        action: str,
        restored_from: str = "",
        verdict_count: int = 0,
        lineage: Lineage | None = None,
        at: str | None = None,
    ) -> ModelRef:
        """Write `bundle` as the active model, approved to replace `expected`, stamped as stored `at` (now by default);
        `lineage` defaults to the one of the version it replaces (carried forward)."""
        self.ensure_versioning()
        stored_at = at or utc_iso()
        # The write is conditional on `expected` being the active version, so the active HEAD is the one it replaces.
        replaced = self._head_active() if expected is not None else None
        if lineage is None:
            carried = (replaced or {}).get("Metadata", {}).get(LINEAGE_METADATA)
            lineage = Lineage() if carried is None else Lineage.parse(carried)
        write = {
            "action": action,
            "at": stored_at,
            "id": uuid.uuid4().hex,
            "restored_from": restored_from or None,
            LINEAGE_METADATA: lineage.to_json(),
        }
        highest = max(version_number(bundle.version) or 0, self._highest_number(replaced))
        metadata = {
            **_summary_metadata(bundle),
            "action": action,
            "stored-at": stored_at,
            "restored-from": restored_from,
            "verdict-count": str(verdict_count or bundle.metadata.get("training", {}).get("verdict_count", 0)),
            HIGHEST_NUMBER: str(highest),
            LINEAGE_METADATA: lineage.metadata(),
        }
        body = bundle.with_metadata(stored=write).to_bytes()
        approval = Approval(
            sha256=sha256_hex(body),
            role="active",
            key=self.active_key,
            version=_ascii(bundle.version),
            sequence=highest,
            replaces=expected.version_id if expected is not None else "",
        )
        return self._write_active(body, {**metadata, **_required(self.signer).sign(approval)}, expected)

    def _write_active(self, body: bytes, metadata: dict[str, str], expected: ModelRef | None) -> ModelRef:
        """One conditional write over the active key: refused as a `ConcurrentUpdate` if `expected` is no longer
        the active version (or, for the first version, if there is one)."""
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.active_key, "Body": body, "Metadata": metadata}
        if expected is None:  # the first version (the seed) is never tagged, so it never expires
            arguments["IfNoneMatch"] = "*"
        else:
            arguments["IfMatch"] = expected.etag
            arguments["Tagging"] = EXPIRABLE_TAG
        try:
            response = self.s3.put_object(**arguments)
        except ClientError as error:
            if aws.error_code(error) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}:
                raise ConcurrentUpdate(
                    "the active model changed while this update was prepared; reload it and retry"
                ) from error
            raise self._translate(error) from error
        return ModelRef(response.get("VersionId") or "null", response["ETag"])

    def _stored(self, response: dict[str, Any], key: str, role: Role) -> StoredModel:
        ref = ModelRef(response.get("VersionId") or "null", response["ETag"])
        return StoredModel(ref, response["Body"].read(), response.get("Metadata", {}), self.signer, key, role)

    def _call(self, operation: str, **arguments: Any) -> Any:
        try:
            return getattr(self.s3, operation)(**arguments)
        except ClientError as error:
            raise self._translate(error) from error

    def _raise_if_bucket_missing(self) -> None:
        # A listing under the model's own prefix, which the predict function's s3:prefix condition allows.
        try:
            self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.active_key, MaxKeys=1)
        except ClientError as error:
            raise self._translate(error) from error

    def _translate(self, error: ClientError) -> Exception:
        if aws.error_code(error) in {"NoSuchBucket", "404"} and "Key" not in error.operation_name:
            return BucketNotFound(f"model bucket {self.bucket!r} does not exist or is not reachable")
        return error

    def _no_model_message(self) -> str:
        return (
            f"no model has been published to s3://{self.bucket}/{self.active_key} yet; train one with "
            f"`lodbrok train --out model.lbk` and publish it with `lodbrok publish model.lbk --bucket {self.bucket}`"
        )


def _required(signer: BundleSigner | None) -> BundleSigner:
    if signer is None:
        raise SigningNotConfigured(
            "reading or writing a model needs its signing key (--signing-key or MODEL_SIGNING_KEY)"
        )
    return signer


def _summary_metadata(bundle: Bundle) -> dict[str, str]:
    metadata = bundle.metadata
    return {
        "version": _ascii(bundle.version),
        "created-at": _ascii(str(metadata.get("created_at", ""))),
        "parent": _ascii(str(metadata.get("parent_version") or "")),
        # S3 user metadata holds 2 KB in all: the gate metrics get what the approval and lineage leave.
        "metrics": json.dumps(metadata.get("metrics", {}).get("gate", {}), separators=(",", ":"))[:900],
    }


def _version_info(entry: dict[str, Any], metadata: dict[str, str]) -> VersionInfo:
    return VersionInfo(
        version_id=entry["VersionId"],
        label=metadata.get("version", ""),
        created_at=metadata.get("created-at", ""),
        stored_at=entry["LastModified"].isoformat(),
        parent=metadata.get("parent", ""),
        action=metadata.get("action", ""),
        restored_from=metadata.get("restored-from", ""),
        verdict_count=int(metadata.get("verdict-count") or 0),
        metrics=_json_or_empty(metadata.get("metrics")),
        size=int(entry.get("Size", 0)),
        is_active=bool(entry.get("IsLatest")),
    )


def _json_or_empty(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _ascii(value: str) -> str:
    return value.encode("ascii", "replace").decode()
