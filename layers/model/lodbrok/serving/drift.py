"""Drift signals: per prediction request, metrics that show the traffic moving away from the training data.

- `ReviewBandItems` (with `PredictionsServed`, the share too close to call): more unsure answers mean inputs
  unlike the ones the model learned to separate. Emitted only where a review band is configured.
- `UnseenInputTokens` of `InputTokens`: the hashed tokens (words, word pairs, character n-grams, shapes) of
  the inputs the model computed that fall in a bucket no training text hit. Embeddings start at zero and only
  training moves them, so such a token carries no evidence at all (`Predictor.trained_buckets`). Measured on
  model-computed items only: a cache hit is not featurized again, and was counted when it was computed.
- `PredictedLabel` with a `label` dimension: the label mix, counted per label over every served item.

Counts rather than ratios, so CloudWatch can weigh every item alike: the alarms and the dashboard divide
sums over a period (metric math), where an average of per-request ratios would let a one-item request
count as much as a hundred-item one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from aws_lambda_powertools.metrics import single_metric

from lodbrok.observability import METRICS_NAMESPACE, SERVICE, MetricUnit, metrics


@dataclass(frozen=True)
class TokenNovelty:
    tokens: int
    unseen: int

    @classmethod
    def of(cls, token_ids: np.ndarray, trained_buckets: np.ndarray) -> TokenNovelty:
        present = token_ids[token_ids > 0]
        return cls(tokens=int(present.size), unseen=int(np.count_nonzero(~trained_buckets[present])))


@dataclass(frozen=True)
class DriftSignals:
    labels: Counter[str]  # served items per label
    in_review_band: int | None  # None when no review band is configured
    novelty: TokenNovelty | None  # None when the model computed nothing, or its trained buckets are unknown

    def emit(self) -> None:
        if self.in_review_band is not None:
            metrics.add_metric(name="ReviewBandItems", unit=MetricUnit.Count, value=self.in_review_band)
        if self.novelty is not None:
            metrics.add_metric(name="InputTokens", unit=MetricUnit.Count, value=self.novelty.tokens)
            metrics.add_metric(name="UnseenInputTokens", unit=MetricUnit.Count, value=self.novelty.unseen)
        for label, count in sorted(self.labels.items()):
            # A metric of its own: the function-wide metrics share one dimension set, and this one adds `label`.
            with single_metric(
                name="PredictedLabel",
                unit=MetricUnit.Count,
                value=count,
                namespace=METRICS_NAMESPACE,
                default_dimensions={"service": SERVICE},
            ) as metric:
                metric.add_dimension(name="label", value=label)
