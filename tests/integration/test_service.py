"""The prediction core (lodbrok.serving.service), through the predict handler against moto: a remembered verdict
answers first, then the cache, then the model; a failing shared read of the two tables skips both; each distinct
input is computed once; an explained answer never meets the cache; the review band decides every answer as it is
served and must fit the model's labels; the drift signals count what applies to each request.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
import pytest

from lodbrok.model.features import canonical_key
from lodbrok.registry.store import ModelRef, ModelStore
from support import (
    EVENT_KEY_ID,
    MEMORY_TABLE,
    cache_item_count,
    emitted_metric_values,
    load_event,
    make_tiny_dataset,
    predict_texts,
    recorded_aws_actions,
)

if TYPE_CHECKING:
    from conftest import Api, ApiResponse, FakeClock

    from lodbrok.model.bundle import Bundle

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

SPAM = "WINNER!! You have won a camera phone. Call 09061701461 now to claim, T&C apply"
HAM = "Are we still meeting for lunch at noon? I'll bring the bread"


def predict(api: Api, body: dict[str, object]) -> ApiResponse:
    return api.call(load_event("predict_batch.json"), body=body)


def test_predict_answers_a_remembered_verdict_over_the_cache_until_it_is_forgotten(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    from lodbrok.access.roles import Role
    from lodbrok.verdicts.attestation import Provenance
    from lodbrok.verdicts.memory import VerdictMemory, entry_key
    from lodbrok.verdicts.verdict import Verdict

    # Given a text the model answers (and has cached), then the caller's own verdict on it, remembered by retrain
    text = "WINNER!! claim your free holiday, call 09012345678"
    before = predict_texts(api, [text, "see you at dinner"]).body["predictions"]
    flipped = "ham" if before[0]["label"] == "spam" else "spam"
    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    verdict = Verdict(id="fix-1", text=text, label=flipped)
    memory.remember([(verdict, Provenance(EVENT_KEY_ID, Role.FEEDBACK, "2026-01-01T00:00:00.000Z"))])
    read_metrics()

    # When the same texts are predicted again
    after = predict_texts(api, [text, "see you at dinner"]).body["predictions"]

    # Then the corrected one is answered by the verdict (over the cached answer), the other one by the cache
    assert after[0]["label"] == flipped and after[0]["source"] == "verdict"
    assert after[0]["verdict"] == {"id": "fix-1", "at": "2026-01-01T00:00:00.000Z"}
    assert after[0]["probabilities"][flipped] == 1.0 and after[0]["from_cache"] is False
    assert after[1]["source"] == "cache" and "verdict" not in after[1]
    assert read_metrics()["VerdictMemoryHits"] == 1
    # And once the entry is forgotten (a promoted model agrees), the model answers it again
    memory.forget_learned([(entry_key(canonical_key(text), everyone=False, sender=EVENT_KEY_ID), verdict)])
    assert predict_texts(api, [text]).body["predictions"][0]["source"] == "cache"


def test_predict_after_a_rollback_ignores_memory_entries_made_under_the_versions_it_undid(
    api: Api,
    published_model: ModelRef,
    model_store: ModelStore,
    tiny_bundle: Bundle,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lodbrok.access.roles import Role
    from lodbrok.clock import utc_iso
    from lodbrok.settings import get_settings
    from lodbrok.verdicts.attestation import Provenance
    from lodbrok.verdicts.memory import VerdictMemory
    from lodbrok.verdicts.verdict import Verdict
    from lodbrok_cli.main import main

    def remember(verdict_id: str, text: str, received_at: str) -> None:
        verdict = Verdict(id=verdict_id, text=text, label="spam")
        memory.remember([(verdict, Provenance("reviewer-key", Role.REVIEWER, received_at))])

    # Given an entry decided before v1 was stored, then v2 promoted and an entry decided while v2 was active
    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    kept, undone, later = "lunch at noon today", "see you at the station", "the parcel arrived"
    remember("kept", kept, "2026-01-01T00:00:00.000Z")
    model_store.publish(tiny_bundle.with_metadata(version="v2"), expected=published_model, action="promote")
    remember("undone", undone, utc_iso())
    clock.advance(61)
    assert [p["source"] for p in predict_texts(api, [kept, undone]).body["predictions"]] == ["verdict", "verdict"]

    # When an operator rolls back to v1 with the CLI, with no verdict memory table named anywhere
    monkeypatch.delenv("VERDICT_MEMORY_TABLE")
    get_settings.cache_clear()
    with recorded_aws_actions() as used:
        assert main(["rollback", "--bucket", model_store.bucket, "--to", published_model.version_id]) == 0
    remember("later", later, utc_iso())
    clock.advance(61)
    response = predict_texts(api, [kept, undone, later])

    # Then the rollback touched no table (no scan), the restored model answers, and the entry made under v2
    # no longer does, while the ones decided before v1 was stored and after the rollback still answer
    assert not [action for action in used if action.startswith("dynamodb:")]
    assert response.body["model_version"] == model_store.head().version_id != published_model.version_id
    assert [p["source"] for p in response.body["predictions"]] == ["verdict", "model", "verdict"]


def test_predict_with_the_verdict_memory_unavailable_answers_from_the_model(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given the verdict memory table does not exist (deleted, or a wrong name)
    monkeypatch.setenv("VERDICT_MEMORY_TABLE", "no-such-table")
    api.rebuild()
    read_metrics()
    # When texts are predicted, twice
    responses = [predict_texts(api, ["hello there", "FREE prize"]) for _ in range(2)]
    # Then every answer comes from the model (the shared read failed, so the cache is skipped too), never a 5xx
    assert [response.status for response in responses] == [200, 200]
    assert {p["source"] for response in responses for p in response.body["predictions"]} == {"model"}
    counted = read_metrics()
    assert counted["VerdictMemoryErrors"] == 2 and counted["CacheErrors"] == 2


def test_predict_duplicates_in_one_request_computed_once(
    api: Api, published_model: ModelRef, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a request whose texts are the same after normalization
    texts = ["Call me when you land", "  call ME when you   land ", "Call me when you land"]

    # When it is sent
    response = predict_texts(api, texts)

    # Then one distinct input was looked up and computed, and every item got the same answer
    assert response.status == 200
    predictions = response.body["predictions"]
    assert len({json.dumps(p["probabilities"], sort_keys=True) for p in predictions}) == 1
    counted = read_metrics()
    assert (counted["CacheMisses"], counted["PredictionsServed"]) == (1, 3)
    assert cache_item_count() == 1


# --- explanations --------------------------------------------------------------------------------------------


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


def test_predict_explain_past_its_budget_is_refused_naming_the_limits(
    api: Api, published_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an explain budget of 2 items and 100 characters
    monkeypatch.setenv("EXPLAIN_MAX_ITEMS", "2")
    monkeypatch.setenv("EXPLAIN_MAX_CHARS", "100")
    api.rebuild()

    # When three texts, then one record of 120 characters, are explained, and three texts are asked plainly
    too_many = predict(api, {"texts": [HAM, SPAM, HAM], "explain": True})
    too_long = predict(api, {"items": [{"fields": {"subject": "x" * 60, "body": "y" * 60}}], "explain": True})
    plain = predict(api, {"texts": [HAM, SPAM, HAM]})

    # Then both explained requests get 422 explain_budget_exceeded naming both limits; the plain one is answered
    for response, items, chars in ((too_many, 3, 2 * len(HAM) + len(SPAM)), (too_long, 1, 120)):
        assert response.status == 422 and response.body["error"]["code"] == "explain_budget_exceeded"
        assert response.body["error"]["details"] == [
            {"field": "explain", "items": items, "max_items": 2, "chars": chars, "max_chars": 100}
        ]
    assert plain.status == 200


# --- the review band -----------------------------------------------------------------------------------------


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


# --- drift signals -------------------------------------------------------------------------------------------

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
