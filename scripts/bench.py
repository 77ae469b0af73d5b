"""`make bench`: every performance and quality number the README quotes, measured in one run.

Speed is reported as ratios against a baseline measured in the same process run (Keras
`model.predict`, the path a user would otherwise ship), never as absolute pass/fail thresholds.
Writes one `bench-results/<section>.json` per section (its own: `reference.json`; then quality, moderation,
predict_api, learning, retrain_image), each with the run's date, commit and machine, and prints readable tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from lodbrok.model.bundle import Bundle
from lodbrok.model.data import items_from_jsonl, load_demo_dataset
from lodbrok.model.decision import choose_labels
from lodbrok.model.evaluation import compute_metrics
from lodbrok.model.features import Featurizer
from lodbrok.model.predictor import Predictor
from lodbrok.training.trainer import load_keras_model, train_bundle
from scripts.benchlib import parse_no_arguments, time_calls, write_results

SPEED_REPEATS = 200
COLD_START_RUNS = 3


def train_reference_bundle(report: dict[str, Any], bundle_path: Path) -> Bundle:
    """The bundle `lodbrok train` makes from the demo data, for the export, speed and cold-start sections.

    Its gate-split numbers are shown for reference only: quality claims come from `bench_quality`'s folds.
    """
    started = time.perf_counter()
    result = train_bundle(load_demo_dataset())
    seconds = time.perf_counter() - started
    result.bundle.write(str(bundle_path))
    report["reference_bundle"] = {
        "dataset": "SMS spam demo data, deduplicated, stratified 20% gate split (not used for model choices)",
        "rows_after_dedup": result.dedup.kept,
        "duplicates_removed": result.dedup.duplicates_removed,
        "train_rows": result.train_size,
        "gate_rows": result.test_size,
        "gate_spam_f1": round(result.metrics.f1("spam"), 4),
        "gate_spam_precision": round(result.metrics.per_label["spam"].precision, 4),
        "gate_spam_recall": round(result.metrics.per_label["spam"].recall, 4),
        "decision": result.bundle.metadata["decision"],
        "train_seconds_2_cores": round(seconds, 1),
        "bundle_mb": round(bundle_path.stat().st_size / 1e6, 2),
        "tflite_mb": round(len(result.bundle.tflite_model) / 1e6, 2),
        "parameters": result.bundle.metadata["architecture"]["parameters"],
        "buckets_used_by_training": bucket_occupancy(result.bundle),
    }
    print("\n== reference bundle (`lodbrok train` on the demo data; its gate split) ==")
    print(result.metrics.table())
    print(json.dumps({key: value for key, value in report["reference_bundle"].items() if key != "decision"}))
    return result.bundle


def bucket_occupancy(bundle: Bundle) -> float:
    """Share of hash buckets the training data already uses: the chance a verdict's new token collides."""
    featurizer = Featurizer(bundle.featurizer)
    used = {token for item in items_from_jsonl(bundle.rehearsal) for token in featurizer.token_ids(item.input)}
    return round(len(used) / bundle.featurizer.num_buckets, 3)


def bench_quantization(report: dict[str, Any], bundle: Bundle) -> None:
    """Size, parity and quality of float16 and dynamic-range exports against the float32 one."""
    import tensorflow as tf

    model = load_keras_model(bundle)
    gate = items_from_jsonl(bundle.gate)
    token_ids = Predictor(bundle).featurizer.transform([item.input for item in gate])
    reference = np.asarray(model(token_ids, training=False))
    variants: dict[str, dict[str, Any]] = {}
    for name, configure in {
        "float32": lambda converter: None,
        "float16": lambda converter: (
            setattr(converter, "optimizations", [tf.lite.Optimize.DEFAULT]),
            setattr(converter.target_spec, "supported_types", [tf.float16]),
        ),
        "dynamic_range_int8": lambda converter: setattr(converter, "optimizations", [tf.lite.Optimize.DEFAULT]),
    }.items():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        configure(converter)
        with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its traced signature
            tflite = converter.convert()
        predictor = Predictor(dataclasses.replace(bundle, tflite_model=tflite))
        served = predictor.predict_ids(token_ids)
        predicted = [bundle.labels[int(index)] for index in choose_labels(predictor.decision, bundle.labels, served)]
        metrics = compute_metrics(bundle.labels, [item.label for item in gate], predicted)
        variants[name] = {
            "tflite_mb": round(len(tflite) / 1e6, 2),
            "max_abs_diff_vs_keras": float(np.max(np.abs(served - reference))),
            "accuracy": round(metrics.accuracy, 4),
            "spam_f1": round(metrics.f1("spam"), 4),
        }
    report["quantization"] = variants
    print("\n== LiteRT export variants (gate set) ==")
    for name, row in variants.items():
        print(f"{name:<20} {json.dumps(row)}")


def bench_serving_speed(report: dict[str, Any], bundle: Bundle) -> None:
    predictor = Predictor(bundle)
    model = load_keras_model(bundle)
    texts = [item.input for item in items_from_jsonl(bundle.gate)][:100]
    rows: dict[str, Any] = {}
    for batch in (1, 100):
        inputs = texts[:batch]
        litert = time_calls(lambda inputs=inputs: predictor.predict(inputs), SPEED_REPEATS)
        keras_predict = time_calls(
            lambda inputs=inputs: model.predict(predictor.featurizer.transform(inputs), verbose=0), SPEED_REPEATS // 4
        )
        rows[f"batch_{batch}"] = {
            "litert_predictor": litert,
            "keras_model_predict": keras_predict,
            "speedup_p50": round(keras_predict["p50_ms"] / litert["p50_ms"], 1),
            "speedup_p99": round(keras_predict["p99_ms"] / litert["p99_ms"], 1),
        }
    featurize = time_calls(lambda: predictor.featurizer.transform(texts[:1]), SPEED_REPEATS)
    rows["featurize_single_text"] = featurize
    report["serving_speed"] = rows
    print("\n== serving speed: Predictor (LiteRT) vs Keras model.predict, same texts ==")
    for name, row in rows.items():
        print(f"{name:<24} {json.dumps(row)}")


COLD_LITERT = """
import sys, time
started = time.perf_counter()
from lodbrok.model.bundle import Bundle
from lodbrok.model.predictor import Predictor
predictor = Predictor(Bundle.read(sys.argv[1]))
predictor.predict(["is this spam?"])
print(time.perf_counter() - started)
print("tensorflow" in sys.modules)
"""

COLD_KERAS = """
import sys, time
started = time.perf_counter()
import tensorflow
from lodbrok.model.bundle import Bundle
from lodbrok.model.features import Featurizer
from lodbrok.training.trainer import load_keras_model
bundle = Bundle.read(sys.argv[1])
model = load_keras_model(bundle)
model.predict(Featurizer(bundle.featurizer).transform(["is this spam?"]), verbose=0)
print(time.perf_counter() - started)
print("tensorflow" in sys.modules)
"""


def bench_cold_start(report: dict[str, Any], bundle_path: Path) -> None:
    def run(script: str) -> tuple[float, bool]:
        output = subprocess.run(
            [sys.executable, "-c", script, str(bundle_path)], capture_output=True, text=True, check=True
        ).stdout.split()
        return float(output[-2]), output[-1] == "True"

    litert_runs = [run(COLD_LITERT) for _ in range(COLD_START_RUNS)]
    keras_runs = [run(COLD_KERAS) for _ in range(COLD_START_RUNS)]
    litert = statistics.median(seconds for seconds, _ in litert_runs)
    keras = statistics.median(seconds for seconds, _ in keras_runs)
    report["cold_start"] = {
        "what": "new process: imports + load bundle + first prediction (median of 3)",
        "litert_seconds": round(litert, 3),
        "litert_imported_tensorflow": any(imported for _, imported in litert_runs),
        "tensorflow_keras_seconds": round(keras, 3),
        "speedup": round(keras / litert, 1),
    }
    print("\n== cold start ==")
    print(json.dumps(report["cold_start"], indent=2))


# Each module's `run` fills the report key its section file is named after.
SECTIONS = {
    "bench_quality": "quality",
    "bench_moderation": "moderation",
    "bench_predict": "predict_api",
    "bench_learning": "learning",
    "bench_retrain_image": "retrain_image",
}


def main() -> int:
    parse_no_arguments(__doc__)
    reference: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        bundle_path = Path(workdir) / "bench-model.lbk"
        bundle = train_reference_bundle(reference, bundle_path)
        bench_quantization(reference, bundle)
        bench_serving_speed(reference, bundle)
        bench_cold_start(reference, bundle_path)
    write_results("reference", reference)
    for module_name, section in SECTIONS.items():
        report: dict[str, Any] = {}
        importlib.import_module(f"scripts.{module_name}").run(report)
        write_results(section, report[section])  # after every section, so a run that fails late keeps the rest
    return 0


if __name__ == "__main__":
    sys.exit(main())
