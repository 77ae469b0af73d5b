"""`make bench-quality`: Lodbrok's model against the baselines a user would pick, on messages each model never saw.

Protocol: the demo data, deduplicated, in repeated stratified k-fold (FOLDS x REPEATS; an input and its
duplicates always fall in one fold). On every fold, in the same run, each contender trains on the other
folds and is scored on the held-out one:

- Lodbrok: the base recipe of `lodbrok train` (`fit_base_model`: the decision rule from inner
  out-of-fold scores of the training folds, then the network on all of them). `lodbrok train` itself also
  keeps 20% back as the gate set for retraining; here every contender sees the same training folds.
- char_wb TF-IDF (2-5, sublinear) + LinearSVC, at its default threshold (margin 0) and with the
  threshold chosen on 5-fold out-of-fold margins of the training folds (F1-optimal, as Lodbrok's).
- word + char_wb TF-IDF + LogisticRegression(C=30), threshold chosen the same way.

Reported: mean and standard deviation over the folds of spam F1, precision, recall and PR-AUC (average
precision). Then out of domain: every contender trained on all the SMS data and scored on the YouTube
comments file (`--youtube`, default ../shared/data/youtube-comments-3-videos.csv; skipped with a message
when absent). Then the model variants the chosen one was compared with, on the first repeat's folds, by
PR-AUC and spam F1 at the argmax (no rule: thresholds would cost an inner cross-validation per variant).
`--quick PART...` runs only that last section, for the chosen configuration and the variants whose names
contain a PART, and writes quality-quick.json: a development run on one repeat, not the published numbers.

scikit-learn is a bench-only dependency (`pip install -e '.[bench]'`). `run(report)` fills
`report["quality"]`; bench.py calls it. No result is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from lodbrok.model.data import DataError, LabelledItem, deduplicate, load_dataset, load_demo_dataset, stratified_folds
from lodbrok.model.evaluation import average_precision, compute_metrics
from lodbrok.model.features import FeaturizerConfig
from lodbrok.training.network import NetworkConfig
from lodbrok.training.trainer import TrainingConfig
from scripts.benchlib import (
    DEFAULT_YOUTUBE,
    FOLDS,
    LABELS,
    LINEAR_NETWORK,
    LINEAR_TRAINING,
    POSITIVE,
    REPEATS,
    Contender,
    char_svc,
    lodbrok_contender,
    sklearn_contender,
    word_char_logreg,
    write_results,
)


@dataclass(frozen=True)
class Variant:
    name: str
    config: TrainingConfig


def baseline_contenders() -> dict[str, Contender]:
    return {
        "char_wb TF-IDF + LinearSVC, default threshold": sklearn_contender(char_svc, tuned=False),
        "char_wb TF-IDF + LinearSVC, out-of-fold threshold": sklearn_contender(char_svc, tuned=True),
        "word+char TF-IDF + LogisticRegression(C=30), out-of-fold threshold": sklearn_contender(
            word_char_logreg, tuned=True
        ),
    }


def scores_of(truth: Sequence[str], spam_scores: np.ndarray, decided: Sequence[str]) -> dict[str, float]:
    metrics = compute_metrics(LABELS, truth, decided).per_label[POSITIVE]
    return {
        "f1": metrics.f1,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "pr_auc": average_precision(spam_scores, [label == POSITIVE for label in truth]),
    }


def summarize(per_fold: list[dict[str, float]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"folds": len(per_fold)}
    for name in per_fold[0]:
        values = [fold[name] for fold in per_fold]
        summary[name] = {"mean": round(statistics.mean(values), 4), "std": round(statistics.pstdev(values), 4)}
    return summary


def cross_validate(
    items: list[LabelledItem], contenders: dict[str, Contender], repeats: int = REPEATS
) -> dict[str, Any]:
    per_fold: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    seconds: dict[str, float] = dict.fromkeys(contenders, 0.0)
    for repeat in range(repeats):
        for number, (train, held_out) in enumerate(stratified_folds(items, FOLDS, salt=f"bench-{repeat}"), 1):
            truth = [item.label for item in held_out]
            for name, contender in contenders.items():
                started = time.perf_counter()
                spam_scores, decided = contender(train)(held_out)
                seconds[name] += time.perf_counter() - started
                per_fold[name].append(scores_of(truth, spam_scores, decided))
            print(f"  repeat {repeat + 1}/{repeats}, fold {number}/{FOLDS} done", file=sys.stderr, flush=True)
    return {
        name: {**summarize(per_fold[name]), "train_seconds_per_fold": round(seconds[name] / len(per_fold[name]), 1)}
        for name in contenders
    }


def out_of_domain(items: list[LabelledItem], contenders: dict[str, Contender], path: Path) -> dict[str, Any]:
    try:
        comments, _ = deduplicate(load_dataset(path, labels=LABELS))
    except DataError as error:
        print(f"\nout-of-domain check skipped: {error}", file=sys.stderr)
        return {"skipped": str(error).splitlines()[0]}
    truth = [item.label for item in comments]
    results: dict[str, Any] = {"data": path.name, "items": len(comments)}
    for name, contender in contenders.items():
        spam_scores, decided = contender(items)(comments)
        results[name] = {key: round(value, 4) for key, value in scores_of(truth, spam_scores, decided).items()}
    return results


def variants() -> list[Variant]:
    """The chosen configuration and the alternatives it was compared with (argmax, no inner folds)."""

    def argmax(**changes: Any) -> TrainingConfig:
        return TrainingConfig(threshold_folds=0, **changes)

    def linear(**changes: Any) -> TrainingConfig:
        """The linear network trained as the joint-retrain designs of `make bench-learning` train it."""
        training = {"optimizer": LINEAR_TRAINING.optimizer, "learning_rate": LINEAR_TRAINING.learning_rate}
        return argmax(network=LINEAR_NETWORK, **training, **changes)

    legacy_featurizer = FeaturizerConfig(version=1, max_tokens=384, char_ngram_min=3)
    return [
        Variant("chosen: featurizer v3, length power 0.75, 5 epochs", argmax()),
        Variant(
            "featurizer v2: a URL is only <url> + domain (else as chosen)",
            argmax(featurizer=FeaturizerConfig(version=2)),
        ),
        Variant(
            "previous model: featurizer v1, mean pooling, 10 epochs",
            argmax(featurizer=legacy_featurizer, network=NetworkConfig(length_power=1.0), epochs=10),
        ),
        Variant("featurizer v1 (else as chosen)", argmax(featurizer=legacy_featurizer)),
        Variant("mean pooling (length power 1)", argmax(network=NetworkConfig(length_power=1.0))),
        Variant("sqrt-n pooling (length power 0.5)", argmax(network=NetworkConfig(length_power=0.5))),
        Variant("10 epochs", argmax(epochs=10)),
        Variant("2^18 buckets", argmax(featurizer=FeaturizerConfig(num_buckets=2**18))),
        # The linear network of the joint-retrain designs in `make bench-learning` (issue 30, step 3).
        Variant("linear: L2-normalised bag, squared hinge, Adagrad 0.2", linear()),
        Variant(
            "linear: L2-normalised bag, squared hinge, Adagrad 0.2, 1,024 tokens",
            linear(featurizer=FeaturizerConfig(max_tokens=1024)),
        ),
    ]


def run(report: dict[str, Any], *, youtube: Path = DEFAULT_YOUTUBE, with_variants: bool = True) -> None:
    items, dedup = deduplicate(load_demo_dataset())
    contenders = {"Lodbrok (thresholds from inner folds)": lodbrok_contender(TrainingConfig())}
    contenders.update(baseline_contenders())
    print(f"\n== quality: {FOLDS}-fold x {REPEATS} on {len(items)} deduplicated demo messages ==", file=sys.stderr)
    quality: dict[str, Any] = {
        "protocol": f"stratified {FOLDS}-fold x {REPEATS} repeats, duplicates removed first "
        f"({dedup.duplicates_removed}), mean and std over folds",
        "items": len(items),
        "cross_validation": cross_validate(items, contenders),
    }
    print_cross_validation(f"spam on held-out folds ({quality['protocol']})", quality["cross_validation"])
    quality["out_of_domain"] = out_of_domain(items, contenders, youtube)
    print_out_of_domain(quality["out_of_domain"])
    if with_variants:
        quality["variants"] = cross_validate(
            items, {variant.name: lodbrok_contender(variant.config) for variant in variants()}, repeats=1
        )
        print_cross_validation(
            "model variants on the first repeat's folds (label = argmax, no decision rule)", quality["variants"]
        )
    report["quality"] = quality


def run_quick(report: dict[str, Any], parts: Sequence[str]) -> None:
    """The chosen configuration and the variants named by `parts`, on the first repeat's folds only."""
    items, _ = deduplicate(load_demo_dataset())
    chosen = [
        variant for index, variant in enumerate(variants()) if index == 0 or any(p in variant.name for p in parts)
    ]
    results = cross_validate(items, {variant.name: lodbrok_contender(variant.config) for variant in chosen}, repeats=1)
    print_cross_validation("development run: model variants on the first repeat's folds (argmax)", results)
    report["quality"] = {"variants": results}


HEADER = f"{'model':<68} {'spam F1':<15} {'precision':<15} {'recall':<15} {'PR-AUC':<15} train/fold"


def print_cross_validation(title: str, results: dict[str, Any]) -> None:
    print(f"\n== {title} ==")
    print(HEADER)
    for name, result in results.items():
        cells = " ".join(
            f"{result[key]['mean']:.4f} ± {result[key]['std']:.4f}" for key in ("f1", "precision", "recall", "pr_auc")
        )
        print(f"{name:<68} {cells}  {result['train_seconds_per_fold']:>6.1f}s", flush=True)


def print_out_of_domain(domain: dict[str, Any]) -> None:
    print("\n== out of domain: trained on all SMS, scored on YouTube comments ==")
    if "skipped" in domain:
        print(f"skipped: {domain['skipped']}")
        return
    print(f"{'model':<68} {'spam F1':>8} {'precision':>10} {'recall':>8} {'PR-AUC':>8}")
    for name, result in domain.items():
        if isinstance(result, dict):
            print(
                f"{name:<68} {result['f1']:>8.4f} {result['precision']:>10.4f} "
                f"{result['recall']:>8.4f} {result['pr_auc']:>8.4f}",
                flush=True,
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--youtube", type=Path, default=DEFAULT_YOUTUBE, help="YouTube comments CSV (label,text,...)")
    parser.add_argument("--no-variants", action="store_true", help="skip the comparison of model variants")
    parser.add_argument(
        "--quick",
        nargs="+",
        metavar="PART",
        help="development run: only the chosen configuration and the variants whose names contain a PART, "
        "on one repeat (quality-quick.json, never the published numbers)",
    )
    arguments = parser.parse_args(argv)
    report: dict[str, Any] = {}
    if arguments.quick:
        run_quick(report, arguments.quick)
        write_results("quality-quick", report["quality"])
        return 0
    run(report, youtube=arguments.youtube, with_variants=not arguments.no_variants)
    write_results("quality", report["quality"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
