"""What the benchmark modules share: timing (repeated calls, reported as p50/p99 in milliseconds), where results
go, the quality protocol's folds and labels, and the contenders every quality comparison trains (Lodbrok's
base recipe and the scikit-learn baselines; scikit-learn is a bench-only dependency, imported when used)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lodbrok.clock import utc_iso
from lodbrok.model.data import LabelledItem
from lodbrok.model.decision import DecisionRule, choose_labels, fit_rule
from lodbrok.training.network import NetworkConfig
from lodbrok.training.trainer import TrainingConfig, fit_base_model, keras_probabilities

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
DEFAULT_YOUTUBE = ROOT.parent / "shared" / "data" / "youtube-comments-3-videos.csv"
FOLDS = 5
REPEATS = 2
INNER_FOLDS = 5
POSITIVE = "spam"
LABELS = ["ham", "spam"]
# The linear network (issue 30, step 3): the binary bag L2-normalised (sum / sqrt(count)), a linear SVM's
# squared hinge loss on the softmax's log-odds, trained with Adagrad (LINEAR_TRAINING's optimizer and rate).
LINEAR_NETWORK = NetworkConfig(length_power=0.5, loss="squared_hinge")
LINEAR_TRAINING = TrainingConfig(optimizer="adagrad", learning_rate=0.2)

# Each contender: training items -> a scorer of held-out texts returning (spam scores, decided labels).
Scorer = Callable[[Sequence[LabelledItem]], tuple[np.ndarray, list[str]]]
Contender = Callable[[Sequence[LabelledItem]], Scorer]


def lodbrok_contender(config: TrainingConfig) -> Contender:
    def train(items: Sequence[LabelledItem]) -> Scorer:
        model, rule = fit_base_model(items, LABELS, config)

        def score(held_out: Sequence[LabelledItem]) -> tuple[np.ndarray, list[str]]:
            probabilities = keras_probabilities(model, config.featurizer, held_out)
            return probabilities[:, 1], [LABELS[index] for index in choose_labels(rule, LABELS, probabilities)]

        return score

    return train


def sklearn_contender(make_pipeline: Callable[[], Any], *, tuned: bool) -> Contender:
    """A scikit-learn text pipeline; `tuned` picks its threshold on inner out-of-fold scores."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    def margins(pipeline: Any, texts: list[str]) -> np.ndarray:
        if _has_margins(pipeline):
            return np.asarray(pipeline.decision_function(texts), dtype=np.float64)
        return _log_odds(pipeline.predict_proba(texts))

    def train(items: Sequence[LabelledItem]) -> Scorer:
        texts, truth = [str(item.input) for item in items], [item.label for item in items]
        pipeline = make_pipeline().fit(texts, truth)
        rule: DecisionRule | None = None
        if tuned:
            inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=0)
            fresh = make_pipeline()
            method = "decision_function" if _has_margins(fresh) else "predict_proba"
            oof = cross_val_predict(fresh, texts, truth, cv=inner, method=method)
            oof_margins = np.asarray(oof, dtype=np.float64) if _has_margins(fresh) else _log_odds(oof)
            rule = fit_rule(LABELS, _as_probabilities(oof_margins), truth, scores_from="inner out-of-fold")

        def score(held_out: Sequence[LabelledItem]) -> tuple[np.ndarray, list[str]]:
            probabilities = _as_probabilities(margins(pipeline, [str(item.input) for item in held_out]))
            return probabilities[:, 1], [LABELS[index] for index in choose_labels(rule, LABELS, probabilities)]

        return score

    return train


def _has_margins(pipeline: Any) -> bool:
    """A calibrated classifier answers probabilities only (no decision_function)."""
    return hasattr(pipeline, "decision_function")


def _log_odds(probabilities: Any) -> np.ndarray:
    """Calibrated spam probabilities as margins, so `_as_probabilities` gives them back unchanged."""
    spam = np.clip(np.asarray(probabilities, dtype=np.float64)[:, 1], 1e-9, 1 - 1e-9)
    return np.log(spam / (1 - spam))


def _as_probabilities(margins: np.ndarray) -> np.ndarray:
    """A monotone squash of margins into [0, 1], so one threshold search serves every contender."""
    spam = 1 / (1 + np.exp(-margins))
    return np.stack([1 - spam, spam], axis=1)


def char_svc() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    return make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True), LinearSVC())


def word_char_logreg() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(_word_char_features(), LogisticRegression(C=30, max_iter=2000))


def word_char_svc() -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    return make_pipeline(_word_char_features(), LinearSVC())


def calibrated_word_char_svc() -> Any:
    """The quick study's baseline (issue 30): word + char_wb TF-IDF, LinearSVC(C=1), sigmoid calibration."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    return make_pipeline(_word_char_features(), CalibratedClassifierCV(LinearSVC(C=1.0), method="sigmoid", cv=5))


def _word_char_features() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
    )


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
    }


def time_calls(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    """p50/p99 of `repeats` calls after one warm-up call."""
    call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def write_results(section: str, data: Any) -> Path:
    """One benchmark section's raw numbers as `bench-results/<section>.json`, with the run they come from.

    The docs render every quoted figure from these files, so each carries its date, commit and machine: a
    reader sees beside each table which run measured it.
    """
    path = RESULTS / f"{section}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"run": run_metadata(), "results": data}, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path


def parse_no_arguments(description: str | None) -> None:
    """A bench script's command line: `--help` prints its description (and runs nothing); it takes no argument."""
    argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()


def run_metadata() -> dict[str, Any]:
    """When, from which commit and on what machine a section was measured; the load average as the section ends
    says how busy the machine was while it ran."""
    return {
        "date": utc_iso(precision="seconds"),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "system": f"{platform.system()} {platform.machine()}",
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
    }


def _commit() -> str:
    """The checked-out commit, `-dirty` when the worktree has uncommitted changes (so a number is never
    credited to a commit that did not produce it)."""

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
