"""The review band: REVIEW_BAND parsed and checked, and the decision it gives."""

from __future__ import annotations

import pydantic
import pytest

from lodbrok.model.review_band import REVIEW_DECISION, ReviewBand, ReviewBandError
from lodbrok.settings import Settings


def test_review_band_parses_labels_and_bounds() -> None:
    band = ReviewBand.parse('{"spam": [0.35, 0.65], "ham": [0, 1]}')
    assert band.bands == {"spam": (0.35, 0.65), "ham": (0.0, 1.0)}


def test_review_band_empty_means_none() -> None:
    assert ReviewBand.parse("  ").bands == {}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("spam: 0.3-0.7", "not JSON"),
        ("[0.3, 0.7]", "JSON object"),
        ('{"spam": [0.7, 0.3]}', "0 <= low < high <= 1"),
        ('{"spam": [0.3, 0.3]}', "0 <= low < high <= 1"),
        ('{"spam": [-0.1, 0.5]}', "0 <= low < high <= 1"),
        ('{"spam": [0.5, 1.5]}', "0 <= low < high <= 1"),
        ('{"spam": [0.3]}', "0 <= low < high <= 1"),
        ('{"spam": ["0.3", "0.7"]}', "0 <= low < high <= 1"),
        ('{"spam": [false, true]}', "0 <= low < high <= 1"),
        ('{"spam": {"low": 0.3, "high": 0.7}}', "0 <= low < high <= 1"),
    ],
)
def test_review_band_refuses_a_bad_band_with_a_clear_error(raw: str, says: str) -> None:
    with pytest.raises(ReviewBandError, match=says):
        ReviewBand.parse(raw)


def test_settings_refuse_a_bad_review_band_at_load() -> None:
    with pytest.raises(pydantic.ValidationError, match="REVIEW_BAND"):
        Settings.from_env({"REVIEW_BAND": '{"spam": [0.9, 0.1]}'})


def test_review_band_must_name_the_model_labels() -> None:
    band = ReviewBand.parse('{"spam": [0.4, 0.6]}')
    band.check_labels(["ham", "spam"])
    with pytest.raises(ReviewBandError, match="does not have"):
        band.check_labels(["billing", "bug"])
    with pytest.raises(ReviewBandError, match="label called 'review'"):
        ReviewBand.parse('{"spam": [0.4, 0.6]}').check_labels(["spam", "review"])


@pytest.mark.parametrize(
    ("spam", "decision"),
    [(0.34, "ham"), (0.35, REVIEW_DECISION), (0.5, REVIEW_DECISION), (0.65, REVIEW_DECISION), (0.66, "spam")],
)
def test_review_band_decision_inside_the_band_bounds_included(spam: float, decision: str) -> None:
    # Given a band on spam and an answer whose label the model's rule chose
    band = ReviewBand.parse('{"spam": [0.35, 0.65]}')
    label = "spam" if spam >= 0.5 else "ham"

    # Then an answer inside the band (bounds included) is for review, any other keeps its label
    assert band.decision(label, {"ham": 1 - spam, "spam": spam}) == decision


def test_review_band_of_any_banded_label_sends_for_review() -> None:
    band = ReviewBand.parse('{"bug": [0.3, 0.6], "billing": [0.4, 0.5]}')
    assert band.decision("account", {"account": 0.5, "bug": 0.35, "billing": 0.15}) == REVIEW_DECISION
    assert band.decision("account", {"account": 0.8, "bug": 0.1, "billing": 0.1}) == "account"
    assert ReviewBand().decision("account", {"account": 0.4, "bug": 0.3, "billing": 0.3}) == "account"
