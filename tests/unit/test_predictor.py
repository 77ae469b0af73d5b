"""Serving a bundle (lodbrok.model.predictor): refused at load when its parts disagree, labelled by its stored rule."""

from __future__ import annotations

import dataclasses

import pytest

from lodbrok.model.bundle import Bundle, BundleError
from lodbrok.model.predictor import Predictor
from support import TINY_FEATURIZER


def test_predictor_refuses_a_featurizer_wider_or_narrower_than_the_model(tiny_bundle: Bundle) -> None:
    # Given a bundle whose featurizer makes rows of another width than model.tflite takes
    mismatched = dataclasses.replace(
        tiny_bundle, featurizer=dataclasses.replace(tiny_bundle.featurizer, max_tokens=TINY_FEATURIZER.max_tokens + 1)
    )

    # When it is loaded for serving
    # Then it is refused at load, not on every request
    with pytest.raises(BundleError, match="token ids"):
        Predictor(Bundle.from_bytes(mismatched.to_bytes()))


def test_predictor_refuses_a_featurizer_hashing_into_more_buckets_than_the_embedding_has_rows(
    tiny_bundle: Bundle,
) -> None:
    # Given a real bundle whose featurizer says 2**20 buckets over the model's smaller embedding table
    mismatched = dataclasses.replace(
        tiny_bundle, featurizer=dataclasses.replace(tiny_bundle.featurizer, num_buckets=2**20)
    )
    assert Predictor(tiny_bundle).trained_buckets is not None  # the same table, read where the rows are right

    # When it is loaded for serving
    # Then it is refused at load, rather than failing every prediction with a gather index out of bounds
    with pytest.raises(BundleError, match=f"embedding table has {TINY_FEATURIZER.num_buckets} rows"):
        Predictor(Bundle.from_bytes(mismatched.to_bytes()))


def test_predictor_applies_the_stored_threshold_to_unchanged_probabilities(tiny_bundle: Bundle) -> None:
    # Given a text and its spam probability under the trained model
    text = "free tickets for the station, reply YES"
    probability = Predictor(tiny_bundle).predict([text])[0].probabilities["spam"]

    def served_with(spam_threshold: float) -> Predictor:
        thresholds = {"spam": spam_threshold, "ham": 1 - spam_threshold}
        decision = {**tiny_bundle.metadata["decision"], "thresholds": thresholds}
        return Predictor(Bundle.from_bytes(tiny_bundle.with_metadata(decision=decision).to_bytes()))

    # When the stored threshold sits just below and just above that probability
    below = served_with(probability * 0.999).predict([text])[0]
    above = served_with(min(probability * 1.001, 0.999999)).predict([text])[0]

    # Then the label follows the threshold while the probabilities stay the model's
    assert (below.label, above.label) == ("spam", "ham")
    assert below.probabilities == above.probabilities
