"""Predict API latency, in process: the real handler against moto (`mock_aws`), no network.

Measures handler latency (p50/p99) for one text and for a batch of 100, with a cold cache (skip_cache:
every item goes through the model, answers are written) and a warm cache (every item is a hit), and the
handler's overhead over a bare `Predictor.predict` call for one text. DynamoDB is moto's in-process
emulation, so the cached numbers include moto's cost rather than a network round trip.

The worst requests the limits allow (`MAX_ITEMS` texts of `MAX_TEXT_CHARS` characters; as many records of
`MAX_FIELDS` such strings as `MAX_BODY_BYTES` admits; and explained, the largest requests the explain
budget admits) are timed through the handler too, as ratios to a plain one-text request in the same run:
what one client can make a single request cost. Their texts are distinct words, so every row is full and
an explanation has the most pieces; one more case repeats a single word in every field, so the row never
fills and every field is scanned to its end.

Run by `make bench` (scripts/bench.py calls `run(report)`), or alone: `python scripts/bench_predict.py`
(`make bench-predict`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from devstack.gateway import LambdaContext
from devstack.seed import default_seed_model, ensure_seed_model
from scripts.benchlib import parse_no_arguments, time_calls, write_results

ROOT = Path(__file__).resolve().parent.parent
SINGLE_REPEATS = 300
BATCH_REPEATS = 60
BATCH_SIZE = 100
WORST_REPEATS = 5
BUCKET, CACHE_TABLE, QUEUE = "bench-models", "bench-predictions", "bench-verdicts"
MEMORY_TABLE = "bench-verdict-memory"


def run(report: dict[str, Any]) -> None:
    import boto3

    from lodbrok.model.predictor import Predictor
    from lodbrok.serving import prediction_cache

    bundle, source = _model()
    texts = [f"Are we still meeting for lunch at noon? Bring ticket number {index}" for index in range(BATCH_SIZE)]
    single_event = _event("predict_single.json", {"text": texts[0]})
    batch_event = _event("predict_batch.json", {"texts": texts})

    with _aws_environment(), _quiet():
        app, context = _handler_with_model(bundle)
        invoke: Callable[[dict[str, Any]], Any] = lambda event: _ok(app.lambda_handler(event, context))  # noqa: E731
        cold = {"skip_cache": True}
        results = {
            "single_cold_cache": time_calls(lambda: invoke(_with(single_event, cold)), SINGLE_REPEATS),
            "single_warm_cache": time_calls(lambda: invoke(single_event), SINGLE_REPEATS),
            "batch100_cold_cache": time_calls(lambda: invoke(_with(batch_event, cold)), BATCH_REPEATS),
            "batch100_warm_cache": time_calls(lambda: invoke(batch_event), BATCH_REPEATS),
        }
        # The verdict memory is read in the cache's BatchGetItem call: the same warm-cache requests with it on.
        boto3.client("dynamodb").create_table(**prediction_cache.table_definition(MEMORY_TABLE))
        _use_settings(app, VERDICT_MEMORY_TABLE=MEMORY_TABLE)
        results["single_warm_cache_with_memory"] = time_calls(lambda: invoke(single_event), SINGLE_REPEATS)
        results["batch100_warm_cache_with_memory"] = time_calls(lambda: invoke(batch_event), BATCH_REPEATS)
        _use_settings(app, VERDICT_MEMORY_TABLE="")
        _use_settings(app, CACHE_TABLE="")
        results["single_no_cache"] = time_calls(lambda: invoke(single_event), SINGLE_REPEATS)
        worst = _worst_requests(app.get_service().settings)
        for name, body in worst.items():
            results[name] = time_calls(lambda body=body: invoke(_event("predict_batch.json", body)), WORST_REPEATS)
        predictor = Predictor(bundle)
        results["predictor_single"] = time_calls(lambda: predictor.predict([texts[0]]), SINGLE_REPEATS)
        results["predictor_batch100"] = time_calls(lambda: predictor.predict(texts), BATCH_REPEATS)
        app.get_service.cache_clear()

    overhead = results["single_no_cache"]["p50_ms"] - results["predictor_single"]["p50_ms"]
    report["predict_api"] = {
        "model": source,
        "single_repeats": SINGLE_REPEATS,
        "batch_repeats": BATCH_REPEATS,
        **results,
        "handler_overhead_single_ms": round(overhead, 4),
        "handler_over_predictor_single_ratio": round(
            results["single_no_cache"]["p50_ms"] / results["predictor_single"]["p50_ms"], 2
        ),
        "memory_over_cache_only_single_ratio": round(
            results["single_warm_cache_with_memory"]["p50_ms"] / results["single_warm_cache"]["p50_ms"], 2
        ),
        "memory_over_cache_only_batch100_ratio": round(
            results["batch100_warm_cache_with_memory"]["p50_ms"] / results["batch100_warm_cache"]["p50_ms"], 2
        ),
        "worst_requests": {name: _shape(body) for name, body in worst.items()},
        "worst_over_single_no_cache_ratio": {
            name: round(results[name]["p50_ms"] / results["single_no_cache"]["p50_ms"], 1) for name in worst
        },
        "note": "in-process handler; DynamoDB is moto (mock_aws), so cache costs are emulation, not network",
    }
    _print_table(report["predict_api"])


# --- the worst allowed requests ---------------------------------------------------------------------------------


def _worst_requests(settings: Any) -> dict[str, dict[str, Any]]:
    """The largest requests each limit admits, plain and explained (all within MAX_BODY_BYTES)."""
    from lodbrok.model.items import MAX_FIELDS

    chars, budget = settings.max_text_chars, settings.explain_max_chars
    words = iter(_distinct_words())

    def text(size: int) -> str:
        out = ""
        while len(out) < size:
            out += next(words) + " "
        return out[:size].strip().ljust(size, "x")

    record_bytes = MAX_FIELDS * (chars + 16)
    records = min(settings.max_items, (settings.max_body_bytes - 1000) // record_bytes)
    explained_texts = min(settings.explain_max_items, budget // chars)
    field_chars = budget // MAX_FIELDS
    return {
        "worst_texts_plain": {"texts": [text(chars) for _ in range(settings.max_items)], "skip_cache": True},
        "worst_records_plain": {
            "items": [{"fields": {f"f{n}": text(chars) for n in range(MAX_FIELDS)}} for _ in range(records)],
            "skip_cache": True,
        },
        # A row that never fills: every field of every record is scanned to its end.
        "worst_repeated_records_plain": {
            "items": [
                {"fields": {f"f{n}": ("ab " * chars)[:chars] for n in range(MAX_FIELDS)}} for _ in range(records)
            ],
            "skip_cache": True,
        },
        "worst_texts_explained": {"texts": [text(chars) for _ in range(explained_texts)], "explain": True},
        "worst_short_texts_explained": {
            "texts": [text(budget // settings.explain_max_items) for _ in range(settings.explain_max_items)],
            "explain": True,
        },
        "worst_record_explained": {
            "items": [{"fields": {f"f{n}": text(field_chars) for n in range(MAX_FIELDS)}}],
            "explain": True,
        },
    }


def _distinct_words() -> Iterator[str]:
    """Pronounceable words that never repeat, so each text fills its row with distinct tokens."""
    consonants, vowels = "bcdfghjklmnprstvz", "aeiou"
    for index in itertools.count():
        letters, rest = [], index
        while rest or not letters:
            rest, consonant = divmod(rest, len(consonants))
            rest, vowel = divmod(rest, len(vowels))
            letters += [consonants[consonant], vowels[vowel]]
        yield "".join(letters)


def _shape(body: dict[str, Any]) -> str:
    inputs = body.get("texts") or [item["fields"] for item in body["items"]]
    values = [value for entry in inputs for value in ([entry] if isinstance(entry, str) else entry.values())]
    kind = "texts" if "texts" in body else f"records x {len(inputs[0])} fields"
    kind += " (one word)" if len(set(" ".join(values).split())) == 1 else ""
    longest = max(map(len, values))
    return f"{len(inputs)} {kind} x {longest} chars{', explain' if body.get('explain') else ''}"


# --- setup -------------------------------------------------------------------------------------------------------


def _model() -> tuple[Any, str]:
    from lodbrok.model.bundle import Bundle

    seed = ensure_seed_model(default_seed_model())
    return Bundle.read(str(seed)), f"seed ({seed.relative_to(ROOT)})"


@contextlib.contextmanager
def _aws_environment() -> Iterator[None]:
    """Fake credentials, moto, the function's environment; everything restored afterwards."""
    from moto import mock_aws

    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MODEL_BUCKET": BUCKET,
            "CACHE_TABLE": CACHE_TABLE,
            "CALL_LOG_ENABLED": "false",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        with mock_aws():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from lodbrok.settings import get_settings

        get_settings.cache_clear()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep per-request logs and EMF metrics off the terminal while timing."""
    from lodbrok.observability import logger

    level = logger.log_level
    logger.setLevel("WARNING")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _handler_with_model(bundle: Any) -> tuple[ModuleType, LambdaContext]:
    import boto3

    from lodbrok.registry.signing import BundleSigner
    from lodbrok.registry.store import ModelStore
    from lodbrok.serving import prediction_cache

    key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    os.environ["MODEL_SIGNING_KEY"] = key
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("dynamodb").create_table(**prediction_cache.table_definition(CACHE_TABLE))
    ModelStore(BUCKET, signer=BundleSigner(key)).publish(bundle, expected=None)
    app = _load_handler_module()
    _use_settings(app)
    context = LambdaContext("lodbrok-bench")
    _ok(app.lambda_handler(_event("model_get.json"), context))  # load the model outside the timings
    return app, context


def _load_handler_module() -> ModuleType:
    """functions/predict/app.py, imported from its file as the Lambda runtime would (it is not a package here)."""
    from devstack.template import load_handler_module

    return load_handler_module("bench_predict_app", ROOT / "functions" / "predict" / "app.py")


def _use_settings(app: ModuleType, **environment: str) -> None:
    """Apply environment changes and give the handler a fresh service built from them (the model is reloaded)."""
    from lodbrok.settings import get_settings

    os.environ.update(environment)
    get_settings.cache_clear()
    app.get_service.cache_clear()
    app.get_service().models.current()


# --- events and timing -------------------------------------------------------------------------------------------


def _event(name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / name).read_text())
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def _with(event: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    return {**event, "body": json.dumps({**json.loads(event["body"]), **options})}


def _ok(response: Any) -> Any:
    if isinstance(response, dict) and "statusCode" in response and response["statusCode"] != 200:
        raise RuntimeError(f"benchmark request failed with {response['statusCode']}: {response['body'][:300]}")
    return response


def _print_table(results: dict[str, Any]) -> None:
    rows = [
        ("handler, 1 text, cold cache (skip_cache)", "single_cold_cache"),
        ("handler, 1 text, warm cache (hit)", "single_warm_cache"),
        ("handler, 100 texts, cold cache (skip_cache)", "batch100_cold_cache"),
        ("handler, 100 texts, warm cache (hits)", "batch100_warm_cache"),
        ("handler, 1 text, warm cache + verdict memory", "single_warm_cache_with_memory"),
        ("handler, 100 texts, warm cache + verdict memory", "batch100_warm_cache_with_memory"),
        ("handler, 1 text, cache disabled", "single_no_cache"),
        ("Predictor.predict, 1 text", "predictor_single"),
        ("Predictor.predict, 100 texts", "predictor_batch100"),
    ]
    print(f"\npredict API latency, in process against moto ({results['model']})")
    print(f"  {'case':<46} {'p50 ms':>9} {'p99 ms':>9}")
    for label, key in rows:
        print(f"  {label:<46} {results[key]['p50_ms']:>9.3f} {results[key]['p99_ms']:>9.3f}")
    print(
        f"  handler overhead over Predictor.predict (1 text, p50): {results['handler_overhead_single_ms']:.3f} ms "
        f"({results['handler_over_predictor_single_ratio']}x)"
    )
    print(
        f"  verdict memory on / off, warm cache (p50): 1 text {results['memory_over_cache_only_single_ratio']}x, "
        f"100 texts {results['memory_over_cache_only_batch100_ratio']}x"
    )
    print("  the worst allowed requests, against a plain one-text request (cache disabled, p50):")
    for name, shape in results["worst_requests"].items():
        ratio = results["worst_over_single_no_cache_ratio"][name]
        print(f"    {shape:<46} {results[name]['p50_ms']:>9.1f} ms {ratio:>8}x")


if __name__ == "__main__":
    parse_no_arguments(__doc__)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    report: dict[str, Any] = {}
    run(report)
    write_results("predict_api", report["predict_api"])
