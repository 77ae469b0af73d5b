"""The drift signals of one prediction request (lodbrok.serving.drift): what they count, and what they emit."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lodbrok.observability import metrics
from lodbrok.serving.drift import DriftSignals, TokenNovelty
from support import emitted_metric_values

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def emitted(signals: DriftSignals, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str | None, float]]:
    """(metric, its `label` dimension, value) of everything `signals` emits, as the handler flushes it."""
    capsys.readouterr()
    signals.emit()
    metrics.flush_metrics()
    return sorted(
        (name, blob.get("label"), value) for name, blob, value in emitted_metric_values(capsys.readouterr().out)
    )


def test_token_novelty_counts_present_tokens_and_those_in_untrained_buckets() -> None:
    # Given two featurized rows padded with id 0, and a model that trained buckets 3 and 5 only
    token_ids = np.array([[3, 5, 0, 0], [5, 7, 9, 0]], dtype=np.int32)
    trained = np.zeros(10, dtype=bool)
    trained[[3, 5]] = True

    # When their novelty is measured
    novelty = TokenNovelty.of(token_ids, trained)

    # Then padding is not a token, and each occurrence of an untrained bucket counts as unseen
    assert novelty == TokenNovelty(tokens=5, unseen=2)


def test_token_novelty_of_padding_only_is_zero() -> None:
    assert TokenNovelty.of(np.zeros((2, 4), dtype=np.int32), np.ones(10, dtype=bool)) == TokenNovelty(0, 0)


def test_drift_signals_emit_every_count_and_one_labelled_metric_per_label(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the signals of a request: 3 spam and 1 ham served, 2 in the band, 40 tokens of which 6 unseen
    signals = DriftSignals(
        labels=Counter({"spam": 3, "ham": 1}), in_review_band=2, novelty=TokenNovelty(tokens=40, unseen=6)
    )

    # When they are emitted and flushed
    # Then each count is a metric, and the label mix is PredictedLabel with a label dimension per label
    assert emitted(signals, capsys) == [
        ("InputTokens", None, 40.0),
        ("PredictedLabel", "ham", 1.0),
        ("PredictedLabel", "spam", 3.0),
        ("ReviewBandItems", None, 2.0),
        ("UnseenInputTokens", None, 6.0),
    ]


def test_drift_signals_without_a_band_or_computed_tokens_emit_the_label_mix_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a request answered from the cache on a stack without a review band (zero in the band is not "no band")
    signals = DriftSignals(labels=Counter({"ham": 2}), in_review_band=None, novelty=None)
    with_band = DriftSignals(labels=Counter({"ham": 2}), in_review_band=0, novelty=None)

    # When they are emitted
    # Then nothing is said about a band or tokens, while a configured band reports its zero
    assert emitted(signals, capsys) == [("PredictedLabel", "ham", 2.0)]
    assert emitted(with_band, capsys) == [("PredictedLabel", "ham", 2.0), ("ReviewBandItems", None, 0.0)]
