"""The predict function end to end: events/*.json through the Powertools handler against moto."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

import lodbrok
from lodbrok import calllog, prediction_cache
from lodbrok.bundle import Bundle
from lodbrok.features import canonical_key
from lodbrok.observability import logger
from lodbrok.settings import Settings
from lodbrok.store import ModelRef, ModelStore
from lodbrok.verdicts import parse_message_body
from predict import app as predict_app
from support import CODE_ACTIONS, load_event, recorded_aws_actions

if TYPE_CHECKING:
    from conftest import Api, ApiResponse, FakeClock

CACHE_TABLE = "lodbrok-predictions-test"
CALL_LOG_TABLE = "lodbrok-calls-test"
MEMORY_TABLE = "lodbrok-verdict-memory-test"

ROOT = Path(__file__).resolve().parents[2]

# The app silences this Powertools warning for routes without business metrics; pytest resets warning filters.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def predict_texts(api: Api, texts: list[str], **options: Any) -> ApiResponse:
    return api.call(load_event("predict_batch.json"), body={"texts": texts, **options})


def cache_item_count() -> int:
    return boto3.client("dynamodb").scan(TableName=CACHE_TABLE, Select="COUNT")["Count"]


def assert_error(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert set(response.body) == {"error"}
    assert set(response.error) == {"code", "message", "details"}
    assert response.error["code"] == code
    assert isinstance(response.error["message"], str) and response.error["message"]
    assert isinstance(response.error["details"], list)
    return response.error


# --- import hygiene --------------------------------------------------------------------------------------------


def test_predict_app_import_loads_neither_tensorflow_nor_keras_nor_clients() -> None:
    # Given a fresh interpreter with the layer and function directories on the path (as Lambda has them)
    code = (
        "import json, sys\n"
        "import predict.app as app\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print(json.dumps({'heavy': heavy, 'service': app.get_service.cache_info().currsize > 0}))\n"
    )
    directories = [ROOT / "layers" / "model", ROOT / "functions", ROOT / "functions" / "predict"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(directory) for directory in directories)}

    # When the handler module is imported
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )

    # Then neither TensorFlow nor Keras is loaded, and nothing (clients, model) was built at import
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "service": False}


def test_template_wires_the_handler_environment_and_tables_the_code_uses(template_resources: dict[str, Any]) -> None:
    # Given the predict function and tables as template.yaml declares them
    function = template_resources["PredictFunction"]["Properties"]
    aliases = {field.alias for field in Settings.model_fields.values()}

    # When they are compared with the code
    # Then the handler is this module's lambda_handler, every variable is a setting, and the key schemas and
    # TTL attributes are the ones the cache and call log read and write (and create in the benchmark)
    assert (function["CodeUri"].rstrip("/"), function["Handler"]) == ("functions/predict", "app.lambda_handler")
    assert callable(predict_app.lambda_handler)
    assert set(function["Environment"]["Variables"]) <= aliases
    for logical_id, module in (("CacheTable", prediction_cache), ("CallLogTable", calllog)):
        table = template_resources[logical_id]["Properties"]
        definition = module.table_definition("any")
        assert table["KeySchema"] == definition["KeySchema"]
        assert table["AttributeDefinitions"] == definition["AttributeDefinitions"]
        assert table["TimeToLiveSpecification"] == {"AttributeName": module.TTL_ATTRIBUTE, "Enabled": True}


# --- each event file -------------------------------------------------------------------------------------------


def test_predict_single_event_answers_label_and_probabilities(api: Api, published_model: ModelRef) -> None:
    # Given a published model
    # When the single-text event is sent
    response = api.call(load_event("predict_single.json"))

    # Then the spam text is classified by the active S3 version, with a probability per label
    assert response.status == 200, response.body
    assert response.body["model_version"] == published_model.version_id
    assert response.body["model_label"] == "v1"
    [prediction] = response.body["predictions"]
    assert prediction["id"] == "0"
    assert prediction["label"] == "spam"
    assert set(prediction["probabilities"]) == {"ham", "spam"}
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction["from_cache"] is False
    assert "input" not in prediction


def test_predict_batch_event_answers_in_input_order(api: Api, published_model: ModelRef) -> None:
    # Given a published model
    # When the batch event (ham, spam, ham) is sent
    response = api.call(load_event("predict_batch.json"))

    # Then there is one prediction per text, in order, with positional ids
    assert response.status == 200, response.body
    predictions = response.body["predictions"]
    assert [p["id"] for p in predictions] == ["0", "1", "2"]
    assert [p["label"] for p in predictions] == ["ham", "spam", "ham"]


def test_predict_records_event_echoes_inputs_with_given_ids(api: Api, published_model: ModelRef) -> None:
    # Given the records event (a record and a text, echo_input set)
    event = load_event("predict_records.json")
    sent = json.loads(event["body"])["items"]

    # When it is sent
    response = api.call(event)

    # Then the given ids come back in order, each with its input echoed unchanged
    assert response.status == 200, response.body
    predictions = response.body["predictions"]
    assert [p["id"] for p in predictions] == ["e1", "e2"]
    assert predictions[0]["input"] == sent[0]["fields"]
    assert predictions[1]["input"] == sent[1]["text"]
    assert all(p["label"] in p["probabilities"] for p in predictions)


def test_predict_get_event_classifies_query_text(api: Api, published_model: ModelRef) -> None:
    # Given a published model
    # When the GET event with ?text= is sent
    response = api.call(load_event("predict_get.json"))

    # Then that one text is classified
    assert response.status == 200, response.body
    [prediction] = response.body["predictions"]
    assert prediction["label"] == "ham"
    assert prediction["id"] == "0"


def test_predict_get_echo_input_and_skip_cache_from_query(api: Api, published_model: ModelRef) -> None:
    # Given a text that was predicted (so it is cached)
    event = load_event("predict_get.json")
    text = event["queryStringParameters"]["text"]
    api.call(event)

    # When it is asked again with skip_cache and echo_input in the query string
    response = api.call(event, query={"text": text, "skip_cache": "true", "echo_input": "1"})

    # Then the cache was not read and the input is echoed
    assert response.status == 200, response.body
    [prediction] = response.body["predictions"]
    assert prediction["from_cache"] is False
    assert prediction["input"] == text


def test_predict_bad_input_event_names_each_offending_item(api: Api, published_model: ModelRef) -> None:
    # Given the bad-input event: a blank text, a nested record value and an unknown field
    # When it is sent
    response = api.call(load_event("predict_bad_input.json"))

    # Then a 422 names each problem by field, index and id
    error = assert_error(response, 422, "validation_error")
    by_field = {detail["field"]: detail for detail in error["details"]}
    assert set(by_field) == {"items.0.text", "items.1.fields.subject", "colour"}
    assert (by_field["items.0.text"]["index"], by_field["items.0.text"]["id"]) == (0, "e1")
    assert (by_field["items.1.fields.subject"]["index"], by_field["items.1.fields.subject"]["id"]) == (1, "e2")
    assert by_field["colour"]["type"] == "extra_forbidden"
    assert all(set(detail) >= {"location", "field", "type", "message"} for detail in error["details"])


def test_model_get_event_describes_active_model(api: Api, published_model: ModelRef, tiny_bundle: Bundle) -> None:
    # Given a published model
    # When GET /model is sent
    response = api.call(load_event("model_get.json"))

    # Then its version, lineage, labels, metrics, architecture and featurizer are described
    assert response.status == 200, response.body
    info = response.body
    assert info["version"] == published_model.version_id
    assert info["label"] == "v1"
    assert info["parent"] is None
    assert info["created_at"] == tiny_bundle.metadata["created_at"]
    assert info["labels"] == ["ham", "spam"]
    assert info["metrics"] == tiny_bundle.metadata["metrics"]
    assert info["architecture"]["layers"] and info["architecture"]["parameters"] > 0
    assert info["network"] == tiny_bundle.metadata["network"]
    assert info["featurizer"] == tiny_bundle.featurizer.to_dict()
    assert info["pinned"] is False
    # And the decision rule that turns its probabilities into labels
    stored = tiny_bundle.metadata["decision"]
    assert info["decision"]["thresholds"] == stored["thresholds"]
    assert info["decision"]["positive_label"] == "spam"
    assert info["decision"]["scores_from"] == stored["scores_from"]
    assert info["decision"]["expected"] == stored["expected"]


def test_openapi_get_event_serves_the_spec(api: Api) -> None:
    # Given the API (no model needed)
    # When GET /openapi.json is sent
    response = api.call(load_event("openapi_get.json"))

    # Then it is a valid OpenAPI document with every route and the shared error shape
    assert response.status == 200
    spec = response.body
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["version"] == lodbrok.__version__
    assert set(spec["paths"]) == {"/predict", "/model", "/verdicts", "/calls/recent"}
    assert set(spec["paths"]["/predict"]) == {"get", "post"}
    assert "202" in spec["paths"]["/verdicts"]["post"]["responses"]
    error_ref = spec["paths"]["/predict"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error_ref == {"$ref": "#/components/schemas/ErrorResponse"}


def test_openapi_states_the_deployments_limits_labels_and_one_of_rules(
    api: Api, published_model: ModelRef, tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment with its own limits and a published model
    monkeypatch.setenv("MAX_ITEMS", "7")
    monkeypatch.setenv("MAX_TEXT_CHARS", "321")
    api.rebuild()
    # When the document is fetched
    spec = api.call(load_event("openapi_get.json")).body
    schemas = spec["components"]["schemas"]
    request = schemas["PredictRequest"]
    verdict = schemas["VerdictsRequest"]["properties"]["verdicts"]
    # Then exactly-one rules, limits and the model's labels are in the schemas, with no marker left over
    assert [rule["required"] for rule in request["oneOf"]] == [["text"], ["texts"], ["items"]]
    assert request["properties"]["texts"]["maxItems"] == 7 and verdict["maxItems"] == 7
    assert request["properties"]["text"]["anyOf"][0]["maxLength"] == 321
    assert verdict["items"]["properties"]["label"]["enum"] == tiny_bundle.labels
    assert [rule["required"] for rule in verdict["items"]["oneOf"]] == [["text"], ["fields"]]
    assert "x-lodbrok-limit" not in json.dumps(spec)
    # And every route is declared to need the API key, as API Gateway enforces
    assert spec["security"] == [{"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}


def test_swagger_ui_is_served(api: Api) -> None:
    # Given the API
    # When the Swagger UI path is requested
    response = api.call(load_event("openapi_get.json"), path="/swagger")

    # Then an HTML page embedding the spec comes back
    assert response.status == 200
    assert "swagger" in response.body.lower() and "/predict" in response.body


def test_verdicts_post_event_queues_one_message_per_verdict(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given a published model (its labels decide which verdicts are valid)
    event = load_event("verdicts_post.json")

    # When the verdicts event is sent
    response = api.call(event)

    # Then 202 with one message id per verdict, and the messages parse back with received_at set
    assert response.status == 202, response.body
    assert response.body["queued"] == 2
    assert len(response.body["message_ids"]) == 2
    verdicts = [
        verdict for body in queued_messages() for verdict in parse_message_body(body, max_text_chars=5000, labels=None)
    ]
    assert sorted((v.id, v.label) for v in verdicts) == [("e1", "spam"), ("e2", "ham")]
    assert all(v.received_at and v.received_at.endswith("Z") for v in verdicts)
    assert {v.source for v in verdicts} == {"moderator-42"}


def test_calls_recent_get_event_lists_the_callers_calls(api: Api, published_model: ModelRef) -> None:
    # Given one prediction request by the caller of the event
    api.call(load_event("predict_single.json"))

    # When the calls event is sent
    response = api.call(load_event("calls_recent_get.json"))

    # Then the caller sees that request, with ids and labels but no input
    assert response.status == 200, response.body
    assert response.body["caller"] == "key#k7x2mq9zb1"
    [call] = response.body["calls"]
    assert call["request_id"] == load_event("predict_single.json")["requestContext"]["requestId"]
    assert call["item_count"] == 1
    assert call["predictions"] == [{"id": "0", "label": "spam"}]
    assert call["model_version"] == published_model.version_id
    assert response.body["next_token"] is None


# --- cache -----------------------------------------------------------------------------------------------------


def test_predict_answers_a_remembered_verdict_over_the_cache_until_it_is_forgotten(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    from lodbrok.verdict_memory import VerdictMemory
    from lodbrok.verdicts import Verdict

    # Given a text the model answers (and has cached), then a client's verdict on it, remembered by retrain
    text = "WINNER!! claim your free holiday, call 09012345678"
    before = predict_texts(api, [text, "see you at dinner"]).body["predictions"]
    flipped = "ham" if before[0]["label"] == "spam" else "spam"
    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    verdict = Verdict(id="fix-1", text=text, label=flipped, received_at="2026-01-01T00:00:00.000Z")
    memory.remember([verdict])
    read_metrics()

    # When the same texts are predicted again
    after = predict_texts(api, [text, "see you at dinner"]).body["predictions"]

    # Then the corrected one is answered by the verdict (over the cached answer), the other one by the cache
    assert after[0]["label"] == flipped and after[0]["source"] == "verdict"
    assert after[0]["verdict"] == {"id": "fix-1", "at": "2026-01-01T00:00:00.000Z"}
    assert after[0]["probabilities"][flipped] == 1.0 and after[0]["from_cache"] is False
    assert after[1]["source"] == "cache" and "verdict" not in after[1]
    assert read_metrics()["VerdictMemoryHits"] == 1
    # And once the entry is forgotten (a promoted model agrees), the model answers it again
    memory.forget_learned([(canonical_key(text), verdict)])
    assert predict_texts(api, [text]).body["predictions"][0]["source"] == "cache"


def test_predict_with_the_verdict_memory_unavailable_answers_from_the_model(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given the verdict memory table does not exist (deleted, or a wrong name)
    monkeypatch.setenv("VERDICT_MEMORY_TABLE", "no-such-table")
    api.rebuild()
    read_metrics()
    # When texts are predicted, twice
    responses = [predict_texts(api, ["hello there", "FREE prize"]) for _ in range(2)]
    # Then every answer comes from the model (the shared read failed, so the cache is skipped too), never a 5xx
    assert [response.status for response in responses] == [200, 200]
    assert {p["source"] for response in responses for p in response.body["predictions"]} == {"model"}
    counted = read_metrics()
    assert counted["VerdictMemoryErrors"] == 2 and counted["CacheErrors"] == 2


def test_predict_batch_partial_cache_hits(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given two of three texts were predicted before
    texts = json.loads(load_event("predict_batch.json")["body"])["texts"]
    first = predict_texts(api, texts[:2])
    read_metrics()

    # When all three are predicted
    response = predict_texts(api, texts)

    # Then the first two come from the cache with the same answers, the third from the model
    assert response.status == 200
    predictions = response.body["predictions"]
    assert [p["from_cache"] for p in predictions] == [True, True, False]
    assert predictions[:2] == [{**p, "from_cache": True, "source": "cache"} for p in first.body["predictions"]]
    assert [p["source"] for p in predictions] == ["cache", "cache", "model"]
    counted = read_metrics()
    assert (counted["CacheHits"], counted["CacheMisses"], counted["PredictionsServed"]) == (2, 1, 3)


def test_predict_duplicates_in_one_request_computed_once(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a request whose texts are the same after normalization
    texts = ["Call me when you land", "  call ME when you   land ", "Call me when you land"]

    # When it is sent
    response = predict_texts(api, texts)

    # Then one distinct input was looked up and computed, and every item got the same answer
    assert response.status == 200
    predictions = response.body["predictions"]
    assert len({json.dumps(p["probabilities"], sort_keys=True) for p in predictions}) == 1
    counted = read_metrics()
    assert (counted["CacheMisses"], counted["PredictionsServed"]) == (1, 3)
    assert cache_item_count() == 1


def test_predict_skip_cache_bypasses_reads_but_still_writes(api: Api, published_model: ModelRef) -> None:
    # Given a text predicted with skip_cache (nothing cached before)
    first = predict_texts(api, ["See you at the station"], skip_cache=True)

    # When it is predicted again with skip_cache, then without
    again = predict_texts(api, ["See you at the station"], skip_cache=True)
    cached = predict_texts(api, ["See you at the station"])

    # Then skip_cache never reads, but its answer was written and serves the normal request
    assert [p["from_cache"] for p in first.body["predictions"] + again.body["predictions"]] == [False, False]
    assert cached.body["predictions"][0]["from_cache"] is True


def test_predict_expired_cache_entry_is_a_miss(api: Api, published_model: ModelRef, clock: FakeClock) -> None:
    # Given a cached answer (moto never deletes expired items)
    predict_texts(api, ["Expiring text"])

    # When more than CACHE_TTL_SECONDS (default one day) pass
    clock.advance(86_400 + 1)
    response = predict_texts(api, ["Expiring text"])

    # Then the expired item is not served
    assert response.body["predictions"][0]["from_cache"] is False


def test_predict_cache_table_gone_still_answers_and_counts_cache_errors(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given the cache table has disappeared
    boto3.client("dynamodb").delete_table(TableName=CACHE_TABLE)

    # When texts are predicted
    response = predict_texts(api, ["Dinner at eight?", "WIN a FREE ipod now"])

    # Then the model answers, and the failed read and write are counted
    assert response.status == 200, response.body
    assert [p["from_cache"] for p in response.body["predictions"]] == [False, False]
    assert read_metrics()["CacheErrors"] == 2


class FailingDynamoDB:
    """A DynamoDB client whose every call is throttled."""

    def __getattr__(self, name: str) -> Any:
        def fail(**_: Any) -> Any:
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, name)

        return fail


def test_predict_cache_throttled_still_answers(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a DynamoDB that throttles every call
    api.rebuild(dynamodb=FailingDynamoDB())

    # When a text is predicted
    response = predict_texts(api, ["Running late, save me a seat"])

    # Then it is answered by the model and the cache errors are counted
    assert response.status == 200, response.body
    assert response.body["predictions"][0]["from_cache"] is False
    assert read_metrics()["CacheErrors"] == 2


class FlakyDynamoDB:
    """A real (moto) client whose first batch read and first batch write each process nothing."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb")
        self.calls: dict[str, int] = {"batch_get_item": 0, "batch_write_item": 0}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["batch_get_item"] += 1
        if self.calls["batch_get_item"] == 1:
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        return self.client.batch_get_item(RequestItems=RequestItems)

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["batch_write_item"] += 1
        if self.calls["batch_write_item"] == 1:
            return {"UnprocessedItems": RequestItems}
        return self.client.batch_write_item(RequestItems=RequestItems)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_predict_cache_retries_unprocessed_keys_and_items(api: Api, published_model: ModelRef) -> None:
    # Given DynamoDB leaves the first batch read and the first batch write unprocessed
    flaky = FlakyDynamoDB()
    api.rebuild(dynamodb=flaky)

    # When texts are predicted twice
    first = predict_texts(api, ["Bring the umbrella", "Claim your FREE voucher"])
    second = predict_texts(api, ["Bring the umbrella", "Claim your FREE voucher"])

    # Then the unprocessed write was retried (so the second request hits), and the reads were retried too
    assert [p["from_cache"] for p in first.body["predictions"]] == [False, False]
    assert [p["from_cache"] for p in second.body["predictions"]] == [True, True]
    assert flaky.calls == {"batch_get_item": 3, "batch_write_item": 2}


def test_predict_more_than_a_batch_of_keys_round_trips(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a limit above DynamoDB's 100 keys per BatchGetItem
    monkeypatch.setenv("MAX_ITEMS", "150")
    api.rebuild()
    texts = [f"Message number {index} about lunch" for index in range(150)]

    # When 150 distinct texts are predicted twice
    predict_texts(api, texts)
    response = predict_texts(api, texts)

    # Then all 150 were written (6 write batches) and all are read back (2 read batches)
    assert all(p["from_cache"] for p in response.body["predictions"])
    assert cache_item_count() == 150


def test_predict_without_cache_table_works_uncached(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given CACHE_TABLE is empty (cache disabled)
    monkeypatch.setenv("CACHE_TABLE", "")
    api.rebuild()

    # When a text is predicted twice
    predict_texts(api, ["No cache here"])
    response = predict_texts(api, ["No cache here"])

    # Then it is never served from a cache and nothing is written
    assert response.body["predictions"][0]["from_cache"] is False
    assert cache_item_count() == 0


# --- model lifecycle -------------------------------------------------------------------------------------------


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


# --- verdicts --------------------------------------------------------------------------------------------------


def verdicts_event(verdicts: list[Any]) -> dict[str, Any]:
    return {**load_event("verdicts_post.json"), "body": json.dumps({"verdicts": verdicts})}


def test_verdicts_invalid_items_are_named_and_nothing_is_queued(
    api: Api,
    published_model: ModelRef,
    queued_messages: Callable[[], list[str]],
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given one valid verdict and three invalid ones
    verdicts = [
        {"id": "ok", "text": "fine", "label": "ham"},
        {"id": "no-label", "text": "missing its label"},
        {"id": "both", "text": "x", "fields": {"a": "b"}, "label": "spam"},
        "not an object",
    ]

    # When they are sent
    response = api.call(verdicts_event(verdicts))

    # Then 400 names each bad verdict by index and id, and the valid one was not queued either
    error = assert_error(response, 400, "invalid_verdicts")
    assert [(d["index"], d["id"]) for d in error["details"]] == [(1, "no-label"), (2, "both"), (3, None)]
    assert "label" in error["details"][0]["error"]
    assert queued_messages() == []
    assert read_metrics()["VerdictsRejected"] == 3


def test_verdicts_lone_surrogate_is_refused_before_queueing(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given a verdict whose text holds a lone surrogate (valid as a JSON escape, never as UTF-8)
    verdicts = [{"id": "bad", "text": "free prize \ud800", "label": "spam"}]

    # When it is sent
    response = api.call(verdicts_event(verdicts))

    # Then it is refused with a 4xx naming it, and nothing is queued to fail on every receive later
    error = assert_error(response, 400, "invalid_verdicts")
    assert [(d["index"], d["id"]) for d in error["details"]] == [(0, "bad")]
    assert "lone surrogate" in error["details"][0]["error"]
    assert queued_messages() == []


def test_verdicts_unknown_label_is_rejected(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given a verdict with a label the model does not have, after a valid one
    verdicts = [{"id": "a", "text": "fine", "label": "ham"}, {"id": "b", "text": "eggs", "label": "eggs"}]

    # When they are sent
    response = api.call(verdicts_event(verdicts))

    # Then the unknown label is named (with its original index) and nothing is queued
    error = assert_error(response, 400, "invalid_verdicts")
    assert [(d["index"], d["id"]) for d in error["details"]] == [(1, "b")]
    assert "eggs" in error["details"][0]["error"] and "ham" in error["details"][0]["error"]
    assert queued_messages() == []


def test_verdicts_limits_apply(api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MAX_ITEMS=3 and MAX_TEXT_CHARS=20
    monkeypatch.setenv("MAX_ITEMS", "3")
    monkeypatch.setenv("MAX_TEXT_CHARS", "20")
    api.rebuild()

    # When four verdicts, and then one over-long verdict, are sent
    too_many = api.call(verdicts_event([{"id": str(i), "text": "t", "label": "ham"} for i in range(4)]))
    too_long = api.call(verdicts_event([{"id": "long", "text": "x" * 21, "label": "ham"}]))

    # Then both are refused, naming the limit and the item
    assert assert_error(too_many, 422, "limit_exceeded")["details"][0]["max"] == 3
    assert [(d["index"], d["id"]) for d in assert_error(too_long, 400, "invalid_verdicts")["details"]] == [(0, "long")]


def test_verdicts_more_than_ten_are_sent_in_batches_of_ten(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given an SQS client that records its batch sizes
    sizes: list[int] = []
    sqs = boto3.client("sqs")
    original = sqs.send_message_batch

    def recording(**arguments: Any) -> Any:
        sizes.append(len(arguments["Entries"]))
        return original(**arguments)

    sqs.send_message_batch = recording
    api.rebuild(sqs=sqs)

    # When 23 verdicts are sent
    response = api.call(verdicts_event([{"id": f"v{i}", "text": f"text {i}", "label": "ham"} for i in range(23)]))

    # Then they went out as 10 + 10 + 3, and all 23 are on the queue in the order of their message ids
    assert response.status == 202, response.body
    assert sizes == [10, 10, 3]
    assert response.body["queued"] == 23 and len(set(response.body["message_ids"])) == 23
    assert sorted(
        v.id for body in queued_messages() for v in parse_message_body(body, max_text_chars=5000, labels=None)
    ) == sorted(f"v{i}" for i in range(23))


class PartlyFailingSqs:
    """Wraps a real SQS client; entries whose verdict id is in `fail_ids` fail `failures` times each."""

    def __init__(self, fail_ids: set[str], failures: int) -> None:
        self.client = boto3.client("sqs")
        self.fail_ids = fail_ids
        self.remaining = dict.fromkeys(fail_ids, failures)
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        failing, passing = [], []
        for entry in Entries:
            verdict_id = json.loads(entry["MessageBody"])["id"]
            if self.remaining.get(verdict_id, 0) > 0:
                self.remaining[verdict_id] -= 1
                failing.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "x"})
            else:
                passing.append(entry)
        response = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=passing) if passing else {}
        return {"Successful": response.get("Successful", []), "Failed": failing}


def test_verdicts_failed_entries_are_retried(
    api: Api, published_model: ModelRef, queued_messages: Callable[[], list[str]]
) -> None:
    # Given SQS fails one entry twice before accepting it
    sqs = PartlyFailingSqs({"e2"}, failures=2)
    api.rebuild(sqs=sqs)

    # When the verdicts event is sent
    response = api.call(load_event("verdicts_post.json"))

    # Then the entry was retried until queued, and 202 reports both
    assert response.status == 202, response.body
    assert sqs.calls == 3
    assert sorted(
        v.id for body in queued_messages() for v in parse_message_body(body, max_text_chars=5000, labels=None)
    ) == ["e1", "e2"]


def test_verdicts_that_still_fail_are_named_in_a_503(
    api: Api,
    published_model: ModelRef,
    queued_messages: Callable[[], list[str]],
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given SQS keeps failing one entry
    api.rebuild(sqs=PartlyFailingSqs({"e2"}, failures=100))

    # When the verdicts event is sent
    response = api.call(load_event("verdicts_post.json"))

    # Then 503 names exactly the verdict that was not queued, and only the other one is on the queue
    error = assert_error(response, 503, "verdicts_not_queued")
    assert [(d["index"], d["id"], d["queued"]) for d in error["details"]] == [(1, "e2", False)]
    assert [v.id for body in queued_messages() for v in parse_message_body(body, max_text_chars=5000, labels=None)] == [
        "e1"
    ]
    counted = read_metrics()
    assert (counted["VerdictsAccepted"], counted["VerdictsNotQueued"]) == (1, 1)


def test_verdicts_without_queue_configured_is_503(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no VERDICT_QUEUE_URL
    monkeypatch.setenv("VERDICT_QUEUE_URL", "")
    api.rebuild()

    # When verdicts are sent
    response = api.call(load_event("verdicts_post.json"))

    # Then they are refused with 503 rather than silently dropped
    assert_error(response, 503, "queue_not_configured")


# --- call log --------------------------------------------------------------------------------------------------


def test_calls_recent_pages_own_calls_newest_first(api: Api, published_model: ModelRef, clock: FakeClock) -> None:
    # Given five prediction requests by this caller, one second apart, and one by another caller
    single = load_event("predict_single.json")
    for number in range(5):
        api.call(single, request_id=f"request-{number}")
        clock.advance(1)
    api.call(single, identity={"apiKeyId": "someone-else"})

    # When the caller pages through its calls two at a time
    pages, token = [], None
    calls_event = load_event("calls_recent_get.json")
    for _ in range(5):
        params = {"limit": "2", **({"next_token": token} if token else {})}
        response = api.call(calls_event, query=params)
        assert response.status == 200, response.body
        pages.append([call["request_id"] for call in response.body["calls"]])
        token = response.body["next_token"]
        if token is None:
            break

    # Then it sees only its own five calls, newest first, 2 + 2 + 1
    assert pages == [["request-4", "request-3"], ["request-2", "request-1"], ["request-0"]]


def test_calls_recent_without_api_key_uses_source_ip(api: Api, published_model: ModelRef) -> None:
    # Given a request without an API key
    api.call(load_event("predict_single.json"), identity={"apiKeyId": None})

    # When the same source IP asks for its calls without a key
    response = api.call(load_event("calls_recent_get.json"), identity={"apiKeyId": None})

    # Then that IP's call is listed, and the keyed caller's log is separate
    assert response.body["caller"] == "ip#203.0.113.7"
    assert len(response.body["calls"]) == 1
    assert api.call(load_event("calls_recent_get.json")).body["calls"] == []


def test_calls_recent_expired_entries_are_hidden(api: Api, published_model: ModelRef, clock: FakeClock) -> None:
    # Given a call logged more than CALL_LOG_TTL_SECONDS (default 7 days) ago
    api.call(load_event("predict_single.json"))
    clock.advance(7 * 86_400 + 1)

    # When the caller lists its calls
    response = api.call(load_event("calls_recent_get.json"))

    # Then the expired entry is not shown even though DynamoDB (moto) has not deleted it
    assert response.body["calls"] == []


def test_calls_recent_token_is_only_a_position_in_the_callers_own_log(
    api: Api, published_model: ModelRef, clock: FakeClock
) -> None:
    # Given two calls by this caller and one by another
    single = load_event("predict_single.json")
    api.call(single, request_id="mine-1")
    clock.advance(1)
    api.call(single, request_id="mine-2")
    api.call(single, identity={"apiKeyId": "someone-else"})
    calls = load_event("calls_recent_get.json")

    # When tokens the API never issued are used: one after every sort key, one before all of them
    after_all = api.call(calls, query={"next_token": "~"})
    before_all = api.call(calls, query={"next_token": "0"})

    # Then each is just a position in the caller's own log: everything older than it, never another's calls
    assert [call["request_id"] for call in after_all.body["calls"]] == ["mine-2", "mine-1"]
    assert before_all.status == 200 and before_all.body["calls"] == []
    # And an empty or overlong token breaks the documented schema: 422
    for token in ("", "x" * 257):
        assert_error(api.call(calls, query={"next_token": token}), 422, "validation_error")


def test_calls_recent_when_disabled_is_404(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the call log is disabled
    monkeypatch.setenv("CALL_LOG_ENABLED", "false")
    api.rebuild()
    api.call(load_event("predict_single.json"))

    # When the calls endpoint is asked
    response = api.call(load_event("calls_recent_get.json"))

    # Then it answers 404 with a JSON error, and predicting wrote nothing to the log
    assert_error(response, 404, "call_log_disabled")
    assert boto3.client("dynamodb").scan(TableName=CALL_LOG_TABLE, Select="COUNT")["Count"] == 0


# --- bad input: always a 4xx with the error body, never a 500 --------------------------------------------------

BAD_BODIES: list[tuple[str, Any, int, str, str | None]] = [
    # (case, body, status, code, a field named in details)
    ("empty text", {"text": ""}, 422, "validation_error", "text"),
    ("blank text", {"text": " \n\t"}, 422, "validation_error", "text"),
    ("missing input", {"skip_cache": True}, 422, "validation_error", None),
    ("text and texts", {"text": "a", "texts": ["b"]}, 422, "validation_error", None),
    ("text not a string", {"text": 42}, 422, "validation_error", "text"),
    ("texts not a list", {"texts": "abc"}, 422, "validation_error", "texts"),
    ("empty texts", {"texts": []}, 422, "validation_error", "texts"),
    ("blank text in texts", {"texts": ["ok", ""]}, 422, "validation_error", "texts.1"),
    ("unknown field", {"text": "a", "colour": "red"}, 422, "validation_error", "colour"),
    ("unknown item field", {"items": [{"id": "a", "text": "b", "x": 1}]}, 422, "validation_error", "items.0.x"),
    ("option not a bool", {"text": "a", "skip_cache": "yes"}, 422, "validation_error", "skip_cache"),
    ("item with text and fields", {"items": [{"text": "a", "fields": {"b": "c"}}]}, 422, "validation_error", "items.0"),
    ("item with neither", {"items": [{"id": "a"}]}, 422, "validation_error", "items.0"),
    ("empty id", {"items": [{"id": "", "text": "a"}]}, 422, "validation_error", "items.0.id"),
    ("nested record", {"items": [{"fields": {"a": [1, 2]}}]}, 422, "validation_error", "items.0.fields.a"),
    ("empty record", {"items": [{"fields": {}}]}, 422, "validation_error", "items.0.fields"),
    ("record of nulls", {"items": [{"fields": {"a": None, "b": " "}}]}, 422, "validation_error", "items.0.fields"),
    ("too many fields", {"items": [{"fields": {f"f{i}": i for i in range(65)}}]}, 422, "validation_error", None),
    ("body is a list", [{"text": "a"}], 422, "validation_error", None),
    ("body is null", None, 422, "validation_error", None),
    ("duplicate ids", {"items": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, 422, "duplicate_ids", None),
    ("not JSON", "{'text': 'single quotes'}", 400, "invalid_json", "body"),
    ("deeply nested", "[" * 100_000 + "]" * 100_000, 400, "invalid_json", "body"),
    ("huge integer", '{"text": ' + "9" * 5000 + "}", 400, "invalid_json", "body"),
    ("NaN in record", '{"items": [{"fields": {"a": NaN}}]}', 422, "validation_error", "items.0.fields.a"),
]


@pytest.mark.parametrize(("case", "body", "status", "code", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_predict_bad_input_is_a_clear_4xx(
    api: Api, published_model: ModelRef, case: str, body: Any, status: int, code: str, field: str | None
) -> None:
    # Given a malformed request body
    event = load_event("predict_single.json")

    # When it is sent
    response = api.call(event, body=body if body is not None else "null")

    # Then it is refused with the expected status and code, naming the offending field
    error = assert_error(response, status, code)
    if field is not None:
        assert field in [detail.get("field") for detail in error["details"]], error["details"]


def test_predict_duplicate_ids_are_named(api: Api, published_model: ModelRef) -> None:
    # Given items with repeated ids (an explicit id may also collide with a position)
    items = [{"id": "a", "text": "x"}, {"text": "y"}, {"id": "a", "text": "z"}, {"id": "1", "text": "w"}]

    # When they are sent
    response = api.call(load_event("predict_records.json"), body={"items": items})

    # Then each repeated id is named with the positions that use it
    error = assert_error(response, 422, "duplicate_ids")
    assert error["details"] == [{"id": "a", "indexes": [0, 2]}, {"id": "1", "indexes": [1, 3]}]


def test_predict_batch_over_max_items_is_refused(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_ITEMS=3
    monkeypatch.setenv("MAX_ITEMS", "3")
    api.rebuild()

    # When four texts are sent
    response = predict_texts(api, ["a", "b", "c", "d"])

    # Then 422 states the limit
    error = assert_error(response, 422, "limit_exceeded")
    assert error["details"] == [{"field": "texts", "count": 4, "max": 3}]


def test_predict_text_over_max_text_chars_is_refused(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_TEXT_CHARS=50
    monkeypatch.setenv("MAX_TEXT_CHARS", "50")
    api.rebuild()
    items = [{"id": "short", "text": "fine"}, {"id": "long", "fields": {"body": "x" * 60}}]

    # When a request holds one input over the limit, and a GET holds another
    response = api.call(load_event("predict_records.json"), body={"items": items})
    query = api.call(load_event("predict_get.json"), query={"text": "y" * 51})

    # Then each names the offending item
    [detail] = assert_error(response, 422, "limit_exceeded")["details"]
    assert (detail["index"], detail["id"], detail["field"], detail["max"]) == (1, "long", "items.1.fields", 50)
    assert assert_error(query, 422, "limit_exceeded")["details"][0]["field"] == "text"


def test_predict_body_over_max_body_bytes_is_413(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_BODY_BYTES=2048
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")
    api.rebuild()

    # When a 2049-byte body (multi-byte characters) is sent
    body = json.dumps({"text": "é" * 1100}, ensure_ascii=False)
    assert len(body.encode()) > 2048 > len(body)
    response = api.call(load_event("predict_single.json"), body=body)

    # Then 413 before any parsing
    assert_error(response, 413, "body_too_large")


@pytest.mark.parametrize(
    ("query", "field"),
    [({}, "text"), ({"text": "  "}, "text"), ({"text": "ok", "skip_cache": "perhaps"}, "skip_cache")],
    ids=["missing text", "blank text", "bad bool"],
)
def test_predict_get_bad_query_is_422(api: Api, published_model: ModelRef, query: dict[str, str], field: str) -> None:
    # Given a GET /predict with a bad query string
    event = load_event("predict_get.json")

    # When it is sent
    response = api.call(event, query=query)

    # Then 422 names the query parameter
    error = assert_error(response, 422, "validation_error")
    assert [(d["location"], d["field"]) for d in error["details"]] == [("query", field)]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded; charset=utf-8"]
)
def test_predict_non_json_content_type_is_415(api: Api, content_type: str) -> None:
    # Given a JSON body sent as another media type (a form type without its boundary, too)
    event = load_event("predict_single.json")

    # When it is sent
    response = api.call(event, content_type=content_type)

    # Then 415 with the error body, never a 500
    assert_error(response, 415, "unsupported_media_type")


def test_predict_binary_body_that_is_not_utf8_is_400(api: Api) -> None:
    # Given a body API Gateway passed base64-encoded (binary) whose bytes are not UTF-8
    event = load_event("predict_single.json")
    event["isBase64Encoded"] = True

    # When it is sent, then it is refused as not JSON, never a 500
    assert_error(api.call(event, body=base64.b64encode(b"\xff\xfe{").decode()), 400, "invalid_json")


def test_unknown_route_is_404_json(api: Api) -> None:
    # Given a path the API does not have
    event = load_event("model_get.json")

    # When it is requested
    response = api.call(event, path="/nope")

    # Then 404 with the error body
    assert_error(response, 404, "not_found")


class ExplodingService:
    def answer(self, *_: Any) -> Any:
        raise RuntimeError("secret internals at /var/task/thing.py")


def test_unexpected_error_is_json_500_without_internals(api: Api) -> None:
    # Given a service failing with an unexpected exception
    api.use_service(ExplodingService())

    # When a prediction is requested
    response = api.call(load_event("predict_single.json"))

    # Then the client gets a JSON 500 that does not leak the exception
    assert_error(response, 500, "internal_error")
    assert "secret" not in json.dumps(response.body) and "RuntimeError" not in json.dumps(response.body)


def test_logs_never_contain_user_text(
    api: Api, published_model: ModelRef, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the structured log captured, a text with a recognizable marker, and a bad request carrying another
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    marker, bad_marker = "ZEBRA-CROSSING-7781", "OKAPI-5532"

    # When both are sent
    predict_texts(api, [f"meet at the {marker}"])
    api.call(load_event("predict_single.json"), body={"text": bad_marker, "colour": bad_marker})

    # Then the requests were logged, but neither text appears in anything the function wrote
    output = stream.getvalue() + capsys.readouterr().out
    assert '"message":"predictions served"' in output
    assert marker not in output
    assert bad_marker not in output


def test_predict_function_calls_exactly_what_its_role_allows(
    api: Api, model_store: ModelStore, tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When a fresh container (its clients created inside the recording) goes through every route: no model
    # yet, a model, a repeated request, model info, verdicts, the call log, then a pinned version
    with recorded_aws_actions() as used:
        api.rebuild()
        assert api.call(load_event("predict_single.json")).status == 503
        ref = model_store.publish(tiny_bundle, expected=None)
        for _ in range(2):
            assert api.call(load_event("predict_single.json")).status == 200
        assert api.call(load_event("model_get.json")).status == 200
        assert api.call(load_event("verdicts_post.json")).status == 202
        assert api.call(load_event("calls_recent_get.json")).status == 200
        monkeypatch.setenv("MODEL_VERSION", ref.version_id)
        api.rebuild()
        assert api.call(load_event("predict_single.json")).status == 200
    # Then it needed exactly the actions of its role (template.yaml, checked in tests/unit/test_template.py)
    assert used == CODE_ACTIONS["PredictFunctionRole"]
