"""What a moderation team needs from the predict API: explanations, a review band, and drift signals.

Driven through the handler with the events of `events/`, against moto, like test_predict_api.py.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from lodbrok.store import ModelRef
from support import emitted_metric_values, load_event, make_tiny_dataset

if TYPE_CHECKING:
    from conftest import Api, ApiResponse

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

SPAM = "WINNER!! You have won a camera phone. Call 09061701461 now to claim, T&C apply"
HAM = "Are we still meeting for lunch at noon? I'll bring the bread"


def predict(api: Api, body: dict[str, object]) -> ApiResponse:
    return api.call(load_event("predict_batch.json"), body=body)


# --- explanations -------------------------------------------------------------------------------------------


def test_predict_explain_says_which_pieces_pushed_towards_and_away_from_the_label(
    api: Api, published_model: ModelRef
) -> None:
    # When a spam text and a record are predicted with explain
    response = predict(
        api,
        {
            "items": [{"id": "s", "text": SPAM}, {"id": "r", "fields": {"subject": "You won", "body": SPAM}}],
            "explain": True,
        },
    )

    # Then each answer says, for its own label, which pieces weighed most, and a record's pieces name their field
    assert response.status == 200, response.body
    text, record = response.body["predictions"]
    assert text["label"] == text["explanation"]["label"] == "spam"
    towards = text["explanation"]["towards"]
    assert towards and all(entry["weight"] > 0 and "field" not in entry for entry in towards)
    assert [entry["weight"] for entry in towards] == sorted((entry["weight"] for entry in towards), reverse=True)
    assert all(entry["weight"] < 0 for entry in text["explanation"]["away"])
    assert text["explanation"]["pieces"] >= len(towards)
    pieces = record["explanation"]["towards"] + record["explanation"]["away"]
    assert pieces and {entry["field"] for entry in pieces} <= {"subject", "body"}


def test_predict_explained_answers_are_not_cached_with_plain_ones(api: Api, published_model: ModelRef) -> None:
    # Given a text answered (and cached) without explanation
    plain = predict(api, {"texts": [HAM]}).body["predictions"][0]
    assert plain["source"] == "model" and "explanation" not in plain

    # When it is asked with explain, then for a new text with explain, then for that text plainly
    explained = predict(api, {"texts": [HAM], "explain": True}).body["predictions"][0]
    new_explained = predict(api, {"texts": [SPAM], "explain": True}).body["predictions"][0]
    new_plain = predict(api, {"texts": [SPAM]}).body["predictions"][0]

    # Then an explained answer is always computed, never the cached plain one, and never cached as plain
    assert explained["source"] == "model" and explained["from_cache"] is False and "explanation" in explained
    assert explained["probabilities"] == pytest.approx(plain["probabilities"], abs=1e-6)
    assert new_explained["source"] == "model" and "explanation" in new_explained
    assert new_plain["source"] == "model" and "explanation" not in new_plain


def test_predict_get_explains_from_the_query_string(api: Api, published_model: ModelRef) -> None:
    event = load_event("predict_get.json")
    text = event["queryStringParameters"]["text"]
    response = api.call(event, query={"text": text, "explain": "true"})
    assert response.status == 200, response.body
    assert response.body["predictions"][0]["explanation"]["label"] == response.body["predictions"][0]["label"]


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_predict_bad_explain_value_is_a_validation_error(api: Api, published_model: ModelRef, value: object) -> None:
    response = predict(api, {"texts": [HAM], "explain": value})
    assert response.status == 422, response.body
    assert response.error["code"] == "validation_error"
    assert [detail["field"] for detail in response.error["details"]] == ["explain"]


# --- the review band ------------------------------------------------------------------------------------------


def with_review_band(api: Api, monkeypatch: pytest.MonkeyPatch, band: str) -> None:
    monkeypatch.setenv("REVIEW_BAND", band)
    api.rebuild()


def test_predict_review_band_answers_review_inside_the_band_and_the_label_outside(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the spam probabilities of a few texts, and a band around the middle one
    texts = [SPAM, HAM, "Call me about the prize when you are free"]
    plain = predict(api, {"texts": texts}).body["predictions"]
    assert [p["decision"] for p in plain] == [p["label"] for p in plain]
    unsure = plain[2]["probabilities"]["spam"]
    with_review_band(api, monkeypatch, json.dumps({"spam": [unsure - 1e-6, unsure + 1e-6]}))

    # When they are asked again (answered from the cache) and GET /model is read
    again = predict(api, {"texts": texts}).body["predictions"]
    model = api.call(load_event("model_get.json")).body

    # Then only the item in the band is for review, its label and probabilities unchanged, and the band is shown
    assert [p["source"] for p in again] == ["cache"] * 3
    assert [p["decision"] for p in again] == [plain[0]["label"], plain[1]["label"], "review"]
    assert [(p["label"], p["probabilities"]) for p in again] == [(p["label"], p["probabilities"]) for p in plain]
    assert model["review_band"] == {"spam": {"low": pytest.approx(unsure - 1e-6), "high": pytest.approx(unsure + 1e-6)}}


def test_predict_review_band_for_a_label_the_model_lacks_is_refused_clearly(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_review_band(api, monkeypatch, '{"billing": [0.4, 0.6]}')
    for response in (predict(api, {"texts": [HAM]}), api.call(load_event("model_get.json"))):
        assert response.status == 503
        assert response.error["code"] == "model_unavailable"
        assert "REVIEW_BAND names labels the active model does not have: ['billing']" in response.error["message"]


def test_model_info_without_a_band_shows_none(api: Api, published_model: ModelRef) -> None:
    assert api.call(load_event("model_get.json")).body["review_band"] == {}


# --- drift signals --------------------------------------------------------------------------------------------

# Comments of the kind under a music video: links, channels, names and slang no SMS in training had.
_COMMENT_TEMPLATES = [
    "Check out my channel {link} and subscribe for more {genre} covers",
    "{singer} is the queen of {genre}, who is watching in {year}?",
    "this song never gets old, {count}M views and still counting :D",
    "Please subscribe to my {genre} channel, I upload every week {link}",
    "lol the dancing at {minute}:{second} is hilarious",
]
_COMMENT_SLOTS = {
    "link": ["https://youtu.be/xQw4", "http://www.youtube.com/user/beatzz", "youtube.com/watch?v=kf9"],
    "genre": ["kpop", "edm", "hiphop", "acoustic"],
    "singer": ["Katy", "Shakira", "Eminem", "Rihanna"],
    "year": ["2015", "2016", "2017"],
}


def youtube_like_comments(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    comments = []
    for index in range(count):
        values = {name: rng.choice(choices) for name, choices in _COMMENT_SLOTS.items()}
        values.update(count=rng.randint(100, 999), minute=rng.randint(0, 4), second=rng.randint(10, 59))
        comments.append(f"{rng.choice(_COMMENT_TEMPLATES).format(**values)} #{index}")
    return comments


def drift_counts(stdout: str) -> tuple[Counter[str], Counter[str]]:
    """Sums of the metrics in `stdout`, and of PredictedLabel per label."""
    totals: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for name, blob, value in emitted_metric_values(stdout):
        if name == "PredictedLabel":
            labels[blob["label"]] += value
        else:
            totals[name] += value
    return totals, labels


def test_drift_signals_move_when_comments_follow_sms_like_texts(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack with a review band, fed texts like the SMS the model was trained on (new ones, same kind)
    with_review_band(api, monkeypatch, '{"spam": [0.2, 0.8]}')
    sms = [item.input for item in make_tiny_dataset(size=60, seed=99)]
    capsys.readouterr()
    for start in range(0, len(sms), 20):
        assert predict(api, {"texts": sms[start : start + 20]}).status == 200
    before, labels_before = drift_counts(capsys.readouterr().out)

    # When YouTube-like comments arrive instead
    comments = youtube_like_comments(60)
    for start in range(0, len(comments), 20):
        assert predict(api, {"texts": comments[start : start + 20]}).status == 200
    after, labels_after = drift_counts(capsys.readouterr().out)

    # Then the share of unseen tokens and the share of items in the review band rise, and the label mix moves
    assert before["PredictionsServed"] == after["PredictionsServed"] == 60
    unseen_before = before["UnseenInputTokens"] / before["InputTokens"]
    unseen_after = after["UnseenInputTokens"] / after["InputTokens"]
    assert unseen_after > 3 * unseen_before and unseen_after > 0.2
    assert after["ReviewBandItems"] / 60 > before["ReviewBandItems"] / 60 + 0.2
    assert sum(labels_before.values()) == sum(labels_after.values()) == 60
    assert labels_before != labels_after


def test_drift_metrics_count_only_what_applies(
    api: Api,
    published_model: ModelRef,
    capsys: pytest.CaptureFixture[str],
    read_metrics: Callable[[], dict[str, float]],
) -> None:
    # Given a stack without a review band and a text already cached
    predict(api, {"texts": [HAM]})
    capsys.readouterr()

    # When the cached text is asked again
    predict(api, {"texts": [HAM]})
    totals, labels = drift_counts(capsys.readouterr().out)

    # Then the label is counted, but no band share (there is no band) and no tokens (nothing was computed)
    assert sum(labels.values()) == 1
    assert "ReviewBandItems" not in totals and "InputTokens" not in totals
