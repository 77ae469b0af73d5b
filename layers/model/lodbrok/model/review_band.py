"""The review band: probabilities too close to call, answered with `"decision": "review"` for a person to decide.

A stack may give each label a band of probabilities (`REVIEW_BAND='{"spam": [0.35, 0.65]}'`). An item whose
probability of any banded label lies inside that label's band (bounds included) is answered with the
decision `review`; every other item's decision is its label. The label and the probabilities are unchanged,
so the band lives outside the model and the cache: a cached answer gets the decision of the band in force
when it is served, and changing the band needs no new model and no cache flush. A verdict's answer is a
person's decision already and is never sent back for review.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

REVIEW_DECISION = "review"
EXAMPLE = '{"spam": [0.35, 0.65]}'


class ReviewBandError(ValueError):
    """REVIEW_BAND is not a valid band, or does not fit the active model's labels."""


@dataclass(frozen=True)
class ReviewBand:
    bands: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> ReviewBand:
        """A band from REVIEW_BAND's JSON: {label: [low, high]} with 0 <= low < high <= 1; empty means none."""
        if not raw.strip():
            return cls()
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ReviewBandError(f"REVIEW_BAND is not JSON ({error}); expected e.g. {EXAMPLE}") from error
        if not isinstance(parsed, dict):
            raise ReviewBandError(f"REVIEW_BAND must be a JSON object of label -> [low, high], e.g. {EXAMPLE}")
        bands = {}
        for label, bounds in parsed.items():
            if (
                not isinstance(bounds, list)
                or len(bounds) != 2
                or not all(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in bounds)
                or not 0.0 <= bounds[0] < bounds[1] <= 1.0
            ):
                raise ReviewBandError(
                    f"REVIEW_BAND[{label!r}] must be [low, high] with 0 <= low < high <= 1, got {json.dumps(bounds)}"
                )
            bands[label] = (float(bounds[0]), float(bounds[1]))
        return cls(bands)

    def check_labels(self, labels: Sequence[str]) -> None:
        """Refuse a band for a label the model does not have, or a model with a label called `review`."""
        unknown = sorted(set(self.bands) - set(labels))
        if unknown:
            raise ReviewBandError(
                f"REVIEW_BAND names labels the active model does not have: {unknown} (labels: {list(labels)})"
            )
        if self.bands and REVIEW_DECISION in labels:
            raise ReviewBandError(
                f"the active model has a label called {REVIEW_DECISION!r}, which a review band would hide"
            )

    def covers(self, probabilities: Mapping[str, float]) -> bool:
        return any(low <= probabilities[label] <= high for label, (low, high) in self.bands.items())

    def decision(self, label: str, probabilities: Mapping[str, float]) -> str:
        return REVIEW_DECISION if self.covers(probabilities) else label
