"""The model provider (lodbrok.serving.model_provider): the active model loaded from the store, refreshed, pinned, and
a bad bundle refused while the good one keeps serving.

Driven through the predict handler with the events of `events/`, against moto, like test_predict_api.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from lodbrok.model.bundle import Bundle
from lodbrok.registry.store import ModelRef, ModelStore
from support import assert_error, load_event, predict_texts

if TYPE_CHECKING:
    from conftest import Api, FakeClock

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def test_predict_switches_to_new_version_after_refresh_interval(
    api: Api, published_model: ModelRef, model_store: ModelStore, tiny_bundle: Bundle, clock: FakeClock
) -> None:
    # Given a text answered (and cached) by v1, then v2 published
    before = predict_texts(api, ["Are we still on for dinner"])
    v2 = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=published_model)

    # When a request comes within the refresh interval, and another after it
    within = predict_texts(api, ["Are we still on for dinner"])
    clock.advance(61)
    after = predict_texts(api, ["Are we still on for dinner"])

    # Then v1 answers until the interval passes, then v2, which does not reuse v1's cached answer
    assert before.body["model_version"] == within.body["model_version"] == published_model.version_id
    assert within.body["predictions"][0]["from_cache"] is True
    assert (after.body["model_version"], after.body["model_label"]) == (v2.version_id, "v2")
    assert after.body["predictions"][0]["from_cache"] is False


def test_predict_pinned_model_version_never_refreshes(
    api: Api,
    published_model: ModelRef,
    model_store: ModelStore,
    tiny_bundle: Bundle,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given MODEL_VERSION pins v1, and v2 is published afterwards
    monkeypatch.setenv("MODEL_VERSION", published_model.version_id)
    api.rebuild()
    model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=published_model)

    # When requests come long after the refresh interval
    clock.advance(3600)
    response = predict_texts(api, ["Pinned?"])
    info = api.call(load_event("model_get.json"))

    # Then the pinned version keeps answering
    assert response.body["model_version"] == published_model.version_id
    assert (info.body["version"], info.body["label"], info.body["pinned"]) == (published_model.version_id, "v1", True)


def test_predict_pinned_unknown_version_is_503(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MODEL_VERSION names a version that does not exist
    monkeypatch.setenv("MODEL_VERSION", "no-such-version")
    api.rebuild()

    # When a prediction is requested
    response = api.call(load_event("predict_single.json"))

    # Then the API says the model is unavailable and why
    error = assert_error(response, 503, "model_unavailable")
    assert "no-such-version" in error["message"]


def test_predict_without_published_model_is_503_with_publish_hint(api: Api) -> None:
    # Given an empty model bucket
    # When a prediction is requested
    response = api.call(load_event("predict_single.json"))

    # Then 503 explains how to publish a model
    error = assert_error(response, 503, "model_unavailable")
    assert "lodbrok publish" in error["message"]


def test_predict_first_request_after_publish_loads_model(
    api: Api, model_store: ModelStore, tiny_bundle: Bundle
) -> None:
    # Given a request failed because nothing was published
    assert api.call(load_event("predict_single.json")).status == 503

    # When a model is published and the next request comes (no refresh wait)
    ref = model_store.publish(tiny_bundle, expected=None)
    response = api.call(load_event("predict_single.json"))

    # Then it is answered by the new model
    assert response.status == 200
    assert response.body["model_version"] == ref.version_id


def test_predict_corrupt_bundle_after_good_one_keeps_serving_good(
    api: Api,
    published_model: ModelRef,
    model_store: ModelStore,
    tiny_bundle_bytes: bytes,
    clock: FakeClock,
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given the good model is serving, then a truncated bundle becomes the active S3 version
    assert predict_texts(api, ["hello"]).status == 200
    boto3.client("s3").put_object(
        Bucket=model_store.bucket, Key=model_store.active_key, Body=tiny_bundle_bytes[: len(tiny_bundle_bytes) // 2]
    )
    read_metrics()

    # When requests come after two refresh intervals
    clock.advance(61)
    first = predict_texts(api, ["hello again"])
    clock.advance(61)
    second = predict_texts(api, ["hello once more"])

    # Then the good model keeps answering, and the corrupt bundle was refused (and counted) once
    assert (first.status, second.status) == (200, 200)
    assert first.body["model_version"] == second.body["model_version"] == published_model.version_id
    counted = read_metrics()
    assert counted["ModelLoadFailed"] == 1
    assert "ModelLoaded" not in counted


def test_predict_refuses_a_forged_bundle_and_keeps_serving_the_signed_one(
    api: Api,
    published_model: ModelRef,
    model_store: ModelStore,
    tiny_bundle: Bundle,
    clock: FakeClock,
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given the signed model is serving
    before = predict_texts(api, ["WINNER! claim your prize now"])
    # When someone with write access to the bucket stores a bundle with its labels swapped and its manifest
    # rebuilt (every checksum matches), keeping the signature metadata of the real model
    forged = Bundle(**{**tiny_bundle.__dict__, "labels": list(reversed(tiny_bundle.labels))}).to_bytes()
    signed = boto3.client("s3").head_object(Bucket=model_store.bucket, Key=model_store.active_key)["Metadata"]
    boto3.client("s3").put_object(Bucket=model_store.bucket, Key=model_store.active_key, Body=forged, Metadata=signed)
    read_metrics()
    clock.advance(61)
    after = predict_texts(api, ["WINNER! claim your prize now"])

    # Then the forged bundle is refused and counted, and the signed model keeps answering the same
    assert after.status == 200 and after.body["model_version"] == published_model.version_id
    assert after.body["predictions"][0]["label"] == before.body["predictions"][0]["label"]
    assert read_metrics()["ModelLoadFailed"] == 1


@pytest.mark.parametrize(("service", "operation"), [("s3", "get_object"), ("kms", "verify")])
def test_predict_aws_down_during_model_load_is_503_then_the_model_loads(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch, service: str, operation: str
) -> None:
    # Given S3 (the bundle) or KMS (its signature) cannot be reached when a fresh container loads the model
    from botocore.exceptions import EndpointConnectionError

    client = boto3.client(service)
    real_call = getattr(client, operation)

    def unreachable(**_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url=f"https://{service}.us-east-1.amazonaws.com")

    monkeypatch.setattr(client, operation, unreachable)
    api.rebuild(**{service: client})
    # Then the request is a 503 to retry, never a 500, and the model is not refused for good
    assert assert_error(api.call(load_event("predict_single.json")), 503, "model_unavailable")
    # And once the service answers again, the same model version is served
    monkeypatch.setattr(client, operation, real_call)
    response = api.call(load_event("predict_single.json"))
    assert response.status == 200 and response.body["model_version"] == published_model.version_id


def test_predict_tampered_model_with_no_previous_model_is_503(
    api: Api, model_store: ModelStore, tiny_bundle: Bundle, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given the only published bundle has checksums that match but a model.tflite that does not load
    model_store.publish(Bundle(**{**tiny_bundle.__dict__, "tflite_model": b"not a flatbuffer"}), expected=None)

    # When predictions are requested twice
    first = api.call(load_event("predict_single.json"))
    second = api.call(load_event("predict_single.json"))

    # Then both are 503 saying the bundle is corrupt, and it was downloaded and refused only once
    for response in (first, second):
        error = assert_error(response, 503, "model_unavailable")
        assert "corrupt" in error["message"]
    assert read_metrics()["ModelLoadFailed"] == 1


def test_predict_missing_bucket_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MODEL_BUCKET is not configured
    monkeypatch.setenv("MODEL_BUCKET", "")
    api.rebuild()

    # When a prediction is requested
    response = api.call(load_event("predict_single.json"))

    # Then the API answers 503 naming the missing setting
    error = assert_error(response, 503, "model_unavailable")
    assert "MODEL_BUCKET" in error["message"]


@pytest.mark.parametrize("copied", ["candidate", "older version"])
def test_predict_refuses_a_model_copied_over_the_active_key_and_keeps_serving_the_approved_one(
    api: Api,
    published_model: ModelRef,
    model_store: ModelStore,
    tiny_bundle: Bundle,
    clock: FakeClock,
    read_metrics: Callable[[], dict[str, float]],
    copied: str,
) -> None:
    # Given v2 serving, promoted over v1
    v2 = model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=published_model, action="promote")
    clock.advance(61)
    assert predict_texts(api, ["hello"]).body["model_version"] == v2.version_id
    # When someone who can write models/* copies a gate-rejected candidate, or v1 (a downgrade), over the active key
    source = {"Bucket": model_store.bucket, "Key": model_store.active_key, "VersionId": published_model.version_id}
    if copied == "candidate":
        key = model_store.save_candidate(tiny_bundle.with_metadata(version="v99-rejected"), "gate: rejected")
        source = {"Bucket": model_store.bucket, "Key": key}
    boto3.client("s3").copy_object(Bucket=model_store.bucket, Key=model_store.active_key, CopySource=source)
    read_metrics()
    clock.advance(61)
    after = predict_texts(api, ["hello again"])

    # Then the copy is refused and counted, and v2 keeps answering
    assert after.status == 200 and after.body["model_version"] == v2.version_id
    assert read_metrics()["ModelLoadFailed"] == 1
