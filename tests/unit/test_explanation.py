"""Explanations: occlusion on the served LiteRT model, checked against the model itself."""

from __future__ import annotations

import numpy as np
import pytest

from lodbrok.model.bundle import Bundle
from lodbrok.model.explanation import Occlusion, explain
from lodbrok.model.predictor import Predictor
from lodbrok.training.trainer import TrainingConfig, train_bundle
from support import TINY_FEATURIZER, make_support_desk_dataset

SPAM = "WINNER!! You have won a holiday. Call 09012345678 now to claim, T&C apply"


@pytest.fixture(scope="module")
def predictor(tiny_bundle: Bundle) -> Predictor:
    return Predictor(tiny_bundle)


def test_explain_gives_the_plain_prediction(predictor: Predictor) -> None:
    # Given texts and a record
    items = [SPAM, "Are we still meeting for lunch at noon?", {"subject": "You won", "body": "Call now"}]

    # When they are explained
    explained = explain(predictor, items)

    # Then each answer is the one a plain prediction gives, with the label the explanation is about
    for result, plain in zip(explained, predictor.predict(items), strict=True):
        assert result.prediction.label == plain.label == result.explanation.label
        for label, probability in plain.probabilities.items():
            assert result.prediction.probabilities[label] == pytest.approx(probability, abs=1e-6)


def test_explain_top_piece_really_moves_the_label_probability(predictor: Predictor) -> None:
    # Given a spam text and its explanation
    result = explain(predictor, [SPAM])[0]
    top = result.explanation.towards[0]
    assert result.explanation.label == "spam"

    # When the text is written again without the top piece's word (not the explainer's own masking)
    words = [word for word in SPAM.split() if top.piece not in word.casefold()]
    without = predictor.predict([" ".join(words)])[0]

    # Then the served model is less sure of spam, and the towards list is ordered strongest first
    assert without.probabilities["spam"] < result.prediction.probabilities["spam"]
    weights = [entry.weight for entry in result.explanation.towards]
    assert weights == sorted(weights, reverse=True) and all(weight > 0 for weight in weights)
    assert all(entry.weight < 0 for entry in result.explanation.away)


def test_explain_weights_are_the_log_odds_drop_of_each_removal(predictor: Predictor) -> None:
    # Given a text's pieces and the row the model sees
    occlusion = Occlusion(predictor.featurizer, SPAM)
    result = explain(predictor, [SPAM], top=len(occlusion.pieces))[0]

    # When each reported piece is masked by hand and scored
    spam = predictor.labels.index("spam")
    for entry in result.explanation.towards + result.explanation.away:
        whole, masked = predictor.predict_ids(occlusion.rows_without([[], [(entry.field, entry.piece)]])).astype(float)

        # Then its weight is exactly the drop in the label's log-odds
        expected = np.log(whole[spam] / whole[1 - spam]) - np.log(masked[spam] / masked[1 - spam])
        assert entry.weight == pytest.approx(expected, abs=1e-4)
    assert result.explanation.pieces == len(occlusion.pieces)


def test_explain_names_the_record_field_of_each_piece(predictor: Predictor) -> None:
    # Given a record whose text fields carry the evidence
    record = {"sender": "prizes", "subject": "WINNER!! Call 09012345678 to claim your holiday"}

    # When it is explained
    explanation = explain(predictor, [record])[0].explanation

    # Then every piece says which field it came from
    pieces = explanation.towards + explanation.away
    assert pieces and all(entry.field in {"sender", "subject"} for entry in pieces)


def test_explain_works_for_a_four_label_model() -> None:
    # Given a model of four support-desk labels
    dataset = make_support_desk_dataset()
    bundle = train_bundle(dataset, TrainingConfig(featurizer=TINY_FEATURIZER, epochs=8, threshold_folds=0)).bundle
    predictor = Predictor(bundle)
    text = "the app crashes when I open the dashboard"

    # When a ticket is explained
    result = explain(predictor, [text])[0]

    # Then the explanation is about its label, and removing the top piece lowers that label's probability
    assert result.explanation.label == result.prediction.label == "bug"
    top = result.explanation.towards[0]
    occlusion = Occlusion(predictor.featurizer, text)
    bug = predictor.labels.index("bug")
    without = predictor.predict_ids(occlusion.rows_without([[(top.field, top.piece)]]))[0, bug]
    assert without < result.prediction.probabilities["bug"]


def test_explain_of_nothing_is_empty(predictor: Predictor) -> None:
    assert explain(predictor, []) == []


def test_trained_buckets_are_the_buckets_training_texts_hit(predictor: Predictor) -> None:
    # Given the served model's trained buckets
    trained = predictor.trained_buckets
    assert trained is not None and trained.shape == (TINY_FEATURIZER.num_buckets,)

    # Then every token of a training-like text is trained, padding is not, and most buckets are untouched
    ids = np.array(predictor.featurizer.token_ids("Are we still meeting for lunch at noon? I'll bring the milk"))
    assert trained[ids].all()
    assert not trained[0]
    assert trained.mean() < 0.5
