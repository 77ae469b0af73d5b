"""Train -> export -> serve -> fine-tune on real (small) models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lodbrok.model.bundle import Bundle, BundleError
from lodbrok.model.data import LabelledItem, items_from_jsonl, load_demo_dataset
from lodbrok.model.features import Featurizer, FeaturizerConfig, canonical_key
from lodbrok.model.predictor import Predictor
from lodbrok.training.network import NetworkConfig
from lodbrok.training.trainer import (
    PARITY_TOLERANCE,
    FinetuneConfig,
    Finetuner,
    RetrainConfig,
    Retrainer,
    TrainingConfig,
    TrainingError,
    check_parity,
    check_shapes,
    evaluate,
    finetune_bundle,
    fisher_information,
    label_balance_weights,
    load_keras_model,
    train_bundle,
)
from support import TINY_FEATURIZER, make_support_desk_dataset, make_tiny_dataset

NEW_CAMPAIGN = [
    "zorblax crypto airdrop: connect your wallet at zorblax to receive 500 tokens",
    "last chance for the zorblax airdrop, wallet verification closes tonight",
    "your zorblax wallet qualifies for a bonus airdrop, verify now",
    "zorblax airdrop round two is live, claim tokens with your wallet",
]


def test_train_bundle_tiny_dataset_serves_with_parity(tiny_bundle: Bundle) -> None:
    # Given a model trained on the synthetic dataset
    predictor = Predictor(Bundle.from_bytes(tiny_bundle.to_bytes()))
    # When it serves the held-out gate set through LiteRT
    metrics = evaluate(predictor, items_from_jsonl(tiny_bundle.gate))
    # Then it separates the classes, and the export matched Keras within the tolerance
    assert metrics.accuracy >= 0.95
    assert tiny_bundle.metadata["parity_max_abs_diff"] <= PARITY_TOLERANCE
    assert predictor.predict(["WINNER!! claim your free holiday, call 09012345678"])[0].label == "spam"
    assert predictor.predict(["are we still on for dinner at 7pm?"])[0].label == "ham"


def test_train_bundle_gate_and_rehearsal_never_share_a_text(tiny_bundle: Bundle) -> None:
    # Given the stored training sample and gate set
    rehearsal = {canonical_key(item.input) for item in items_from_jsonl(tiny_bundle.rehearsal)}
    gate = {canonical_key(item.input) for item in items_from_jsonl(tiny_bundle.gate)}
    # Then they are disjoint and non-empty
    assert rehearsal and gate and not rehearsal & gate


def test_check_parity_keras_and_litert_agree_on_records(tiny_bundle: Bundle) -> None:
    # Given the Keras model reloaded in safe mode and the served predictor
    model = load_keras_model(tiny_bundle)
    predictor = Predictor(tiny_bundle)
    inputs = [{"name": "Bob", "bio": "free prize call now", "area": None, "member_since": "2024-05-01T10:00:00Z"}]
    # When both score texts and records
    difference = check_parity(model, predictor, [*inputs, "hello there", ""])
    # Then the served probabilities match Keras
    assert difference <= PARITY_TOLERANCE


def test_train_bundle_same_data_and_seed_is_reproducible(tiny_bundle: Bundle) -> None:
    # Given the same data, config and seed as the session model
    again = train_bundle(make_tiny_dataset(), TrainingConfig(featurizer=TINY_FEATURIZER, epochs=8)).bundle
    # Then the served model produces the same probabilities
    texts = [item.input for item in items_from_jsonl(tiny_bundle.gate)]
    assert np.allclose(Predictor(again).predict_proba(texts), Predictor(tiny_bundle).predict_proba(texts), atol=1e-6)


def test_finetune_bundle_learns_unseen_tokens_without_forgetting(tiny_bundle: Bundle) -> None:
    # Given verdicts about a campaign whose words the base model never saw, labelled spam
    verdicts = [LabelledItem(text, "spam") for text in NEW_CAMPAIGN]
    probe = "zorblax airdrop: verify your wallet for free tokens"
    before = Predictor(tiny_bundle).predict([probe])[0].probabilities["spam"]
    # When the model is fine-tuned on them
    candidate, metrics = finetune_bundle(tiny_bundle, verdicts, FinetuneConfig(epochs=6))
    # Then the new vocabulary is learned, the gate set still passes, and lineage is recorded
    after = Predictor(candidate).predict([probe])[0].probabilities["spam"]
    assert after > 0.5 > before or after > before + 0.3
    assert metrics.accuracy >= 0.95
    assert candidate.metadata["parent_version"] == tiny_bundle.version
    assert candidate.metadata["version"] == "v2"
    assert candidate.metadata["training"]["verdict_count"] == len(NEW_CAMPAIGN)
    rehearsal = {canonical_key(item.input) for item in items_from_jsonl(candidate.rehearsal)}
    assert all(canonical_key(text) in rehearsal for text in NEW_CAMPAIGN)


def test_finetune_bundle_anchor_keeps_known_behaviour_while_new_tokens_learn(tiny_bundle: Bundle) -> None:
    # Given verdicts that mix the unseen campaign with everyday ham wording labelled spam
    verdicts = [LabelledItem(text, "spam") for text in NEW_CAMPAIGN]
    verdicts += [LabelledItem(f"see you at dinner tonight, {name}", "spam") for name in ("Ann", "Bob", "Cy", "Di")]
    gate_texts = [item.input for item in items_from_jsonl(tiny_bundle.gate)]
    parent = Predictor(tiny_bundle).predict_proba(gate_texts)
    probe = "zorblax airdrop: verify your wallet for free tokens"

    def finetuned(anchor_strength: float) -> Predictor:
        config = FinetuneConfig(epochs=6, anchor_strength=anchor_strength)
        return Predictor(finetune_bundle(tiny_bundle, verdicts, config)[0])

    # When the model is fine-tuned without and with the anchor
    free, anchored = finetuned(0.0), finetuned(1_000.0)
    # Then the anchored model moves less on the data it knew, and still learns the unseen campaign
    drift_free = np.abs(free.predict_proba(gate_texts) - parent).mean()
    drift_anchored = np.abs(anchored.predict_proba(gate_texts) - parent).mean()
    assert drift_anchored < 0.5 * drift_free
    assert anchored.predict([probe])[0].probabilities["spam"] > 0.5


def test_fisher_information_matches_per_item_gradients(tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    # Given the parent model and rehearsed items spread over three chunks, the last one partial
    monkeypatch.setattr("lodbrok.training.trainer.FISHER_CHUNK", 25)
    model = load_keras_model(tiny_bundle)
    rows = Featurizer(tiny_bundle.featurizer).transform(
        [item.input for item in items_from_jsonl(tiny_bundle.rehearsal)[:60]]
    )
    # When the diagonal Fisher information is computed, and again one item at a time with dense gradients
    fisher = fisher_information(model, rows, None)
    expected = [np.zeros(weight.shape) for weight in model.trainable_weights]
    for row in rows:
        with tf.GradientTape(persistent=True) as tape:
            probabilities = model(row[None, :], training=False)[0]
            log_probabilities = [tf.math.log(probabilities[label]) for label in range(len(tiny_bundle.labels))]
        for label, log_probability in enumerate(log_probabilities):
            for total, gradient in zip(expected, tape.gradient(log_probability, model.trainable_weights), strict=True):
                total += float(probabilities[label]) * np.square(tf.convert_to_tensor(gradient).numpy()) / len(rows)
    # Then both agree on every weight, and the embedding rows the items use carry importance
    for computed, reference in zip(fisher, expected, strict=True):
        np.testing.assert_allclose(computed, reference, rtol=1e-4, atol=1e-9)
    assert np.count_nonzero(fisher[0].sum(axis=1)) > 0


def test_label_balance_weights_restore_the_reference_label_mix() -> None:
    # Given a mixture skewed to spam by verdicts, and a reference set that is 25% spam
    mixture = [LabelledItem(f"s{index}", "spam") for index in range(6)] + [LabelledItem("h", "ham")] * 4
    reference = [LabelledItem("s", "spam")] + [LabelledItem(f"h{index}", "ham") for index in range(3)]
    # When the weights are computed
    weights = label_balance_weights(mixture, reference)
    # Then the labels carry the reference shares of the total weight, which is unchanged
    assert weights[:6].sum() == pytest.approx(0.25 * len(mixture))
    assert weights[6:].sum() == pytest.approx(0.75 * len(mixture))


def test_finetune_bundle_rejects_unknown_label(tiny_bundle: Bundle) -> None:
    # Given a verdict with a label the model does not have
    # Then fine-tuning refuses it with the label named
    with pytest.raises(TrainingError, match="phishing"):
        finetune_bundle(tiny_bundle, [LabelledItem("some text", "phishing")])


def test_train_bundle_stores_a_decision_rule_from_out_of_fold_scores(tiny_bundle: Bundle) -> None:
    # Given a model trained with the default threshold folds
    decision = tiny_bundle.metadata["decision"]

    # Then the rule names the rarer label, its threshold, and where the scores came from
    assert decision["positive_label"] == "spam"
    assert 0 < decision["thresholds"]["spam"] < 1
    assert decision["thresholds"]["spam"] + decision["thresholds"]["ham"] == pytest.approx(1.0)
    assert decision["scores_from"] == "5-fold out-of-fold scores of the training split"
    assert decision["scored_items"] == tiny_bundle.metadata["training"]["train_size"]
    assert Predictor(tiny_bundle).decision is not None


def test_bundle_from_before_decision_rules_still_loads_predicts_and_finetunes(tiny_bundle: Bundle) -> None:
    # Given a bundle as written before this change: featurizer v1, mean pooling, no rule, no length_power
    legacy_config = TrainingConfig(
        featurizer=FeaturizerConfig(version=1, num_buckets=2**12, max_tokens=96, char_ngram_min=3),
        network=NetworkConfig(length_power=1.0),
        epochs=8,
        threshold_folds=0,
    )
    trained = train_bundle(make_tiny_dataset(), legacy_config).bundle
    network = {key: value for key, value in trained.metadata["network"].items() if key != "length_power"}
    metadata = {key: value for key, value in trained.metadata.items() if key != "decision"}
    legacy = Bundle.from_bytes(dataclasses.replace(trained, metadata={**metadata, "network": network}).to_bytes())
    assert "decision" not in legacy.metadata

    # When it is served and fine-tuned
    predictor = Predictor(legacy)
    probabilities = predictor.predict_proba(["WINNER!! claim your free holiday, call 09012345678"])
    child, metrics = finetune_bundle(legacy, [LabelledItem(text, "spam") for text in NEW_CAMPAIGN])

    # Then it answers the argmax, and its child keeps the v1 featurizer and the mean, with a rule from the gate
    assert predictor.decision is None
    assert predictor.predict(["WINNER!! claim your free holiday, call 09012345678"])[0].label == (
        "spam" if probabilities[0][1] > probabilities[0][0] else "ham"
    )
    assert child.featurizer.version == 1
    assert [layer["type"] for layer in child.metadata["architecture"]["layers"]][2] == "GlobalAveragePooling1D"
    assert child.metadata["decision"]["scores_from"] == "the gate set after fine-tuning"
    assert metrics.accuracy >= 0.95


def test_finetune_bundle_rechooses_the_threshold_on_the_gate_set(tiny_bundle: Bundle) -> None:
    # Given a model whose rule came from out-of-fold scores
    # When it is fine-tuned on verdicts
    child, metrics = finetune_bundle(tiny_bundle, [LabelledItem(text, "spam") for text in NEW_CAMPAIGN])

    # Then the child's rule was chosen on the gate set (never on the verdicts) and the gate metrics use it
    decision = child.metadata["decision"]
    assert decision["scores_from"] == "the gate set after fine-tuning"
    assert decision["scored_items"] == len(items_from_jsonl(tiny_bundle.gate))
    assert metrics.f1("spam") == pytest.approx(decision["expected"]["f1"], abs=1e-6)


def test_train_bundle_min_precision_is_the_rule_target(tiny_bundle: Bundle) -> None:
    # Given a precision target
    config = TrainingConfig(featurizer=TINY_FEATURIZER, epochs=8, min_precision=0.99)

    # When a model is trained with it
    decision = train_bundle(make_tiny_dataset(), config).bundle.metadata["decision"]

    # Then the rule records the target and reaches it on the out-of-fold scores
    assert decision["min_precision"] == 0.99
    assert decision["expected"]["precision"] >= 0.99


def test_more_than_two_labels_train_predict_and_finetune() -> None:
    # Given a four-label support-desk dataset
    items = make_support_desk_dataset()
    config = TrainingConfig(featurizer=TINY_FEATURIZER, epochs=8)

    # When a model is trained, used and fine-tuned on a ticket of a new kind
    result = train_bundle(items, config)
    predictor = Predictor(result.bundle)
    child, child_metrics = finetune_bundle(
        result.bundle, [LabelledItem("the export to pdf button does nothing #new", "bug")] * 1
    )

    # Then every label has a threshold, the tickets are told apart, and the child keeps working
    decision = result.bundle.metadata["decision"]
    assert result.bundle.labels == ["account", "billing", "bug", "praise"]
    assert set(decision["thresholds"]) == set(result.bundle.labels) and decision["positive_label"] is None
    assert result.metrics.macro_f1 >= 0.9
    assert predictor.predict(["I was charged twice for premium, please refund"])[0].label == "billing"
    assert predictor.predict(["the app crashes when I open checkout"])[0].label == "bug"
    assert set(child.metadata["decision"]["thresholds"]) == set(result.bundle.labels)
    assert child_metrics.macro_f1 >= 0.9


@pytest.mark.slow
def test_train_bundle_demo_data_meets_quality_bar(demo_bundle: Bundle) -> None:
    # Given `train_bundle` on the SMS spam demo data (the local stack's seed model, trained once per version of the
    # code that decides it): deduplicated, then split stratified into training and a 20% held-out gate set
    training, gate = demo_bundle.metadata["training"], demo_bundle.metadata["metrics"]["gate"]
    # Then every distinct row is in exactly one of the two
    assert training["data_size"] + training["duplicates_removed"] == len(load_demo_dataset())
    assert training["data_size"] == training["train_size"] + training["gate_size"]
    # And spam F1 and accuracy on the held-out split meet the product bar
    assert gate["f1"]["spam"] >= 0.95
    assert gate["accuracy"] >= 0.985


def test_finetune_export_keeps_verdict_scores_aligned_with_their_verdicts(tiny_bundle: Bundle) -> None:
    # Given two verdicts and out-of-sample scores that rank each one right (spam high, ham low)
    verdicts = [LabelledItem("zorblax airdrop claim tokens", "spam"), LabelledItem("see you at the cafe", "ham")]
    spam = tiny_bundle.labels.index("spam")
    scores = np.zeros((2, 2))
    scores[0, spam], scores[0, 1 - spam] = 0.9, 0.1
    scores[1, spam], scores[1, 1 - spam] = 0.1, 0.9
    finetuner = Finetuner(tiny_bundle, FinetuneConfig(epochs=1))

    # When the candidate's rule is chosen from them
    candidate, _ = finetuner.export(finetuner.fit(verdicts), verdicts, verdict_scores=scores, keep_within=0.01)

    # Then each score was read with its own verdict's label: the verdicts are separated perfectly
    assert candidate.metadata["decision"]["expected"]["verdicts_f1"] == 1.0


@pytest.mark.parametrize(
    ("change", "says"),
    [({"num_buckets": 2**20}, "embedding"), ({"max_tokens": TINY_FEATURIZER.max_tokens - 1}, "token ids")],
    ids=["buckets", "tokens"],
)
def test_load_keras_model_refuses_shapes_the_featurizer_disagrees_with(
    tiny_bundle: Bundle, change: dict[str, int], says: str
) -> None:
    # Given a real bundle whose featurizer disagrees with its Keras model
    mismatched = dataclasses.replace(tiny_bundle, featurizer=dataclasses.replace(tiny_bundle.featurizer, **change))
    # When its shapes are checked (as `lodbrok publish` does), or its Keras model is loaded to fine-tune
    # Then it is refused, naming the disagreement; the intact bundle passes
    with pytest.raises(BundleError, match=says):
        check_shapes(mismatched)
    with pytest.raises(BundleError, match=r"model\.keras"):
        load_keras_model(mismatched)
    check_shapes(tiny_bundle)


def test_retrainer_learns_a_campaign_from_scratch_and_keeps_the_base_data(tiny_bundle: Bundle) -> None:
    # Given a campaign the tiny model calls ham, as verdicts
    verdicts = [LabelledItem(text, "spam") for text in NEW_CAMPAIGN]
    retrainer = Retrainer(tiny_bundle, RetrainConfig(verdict_weight=3.0, training=TrainingConfig(epochs=8)))

    # When a new network is trained on the parent's stored training data plus the verdicts
    candidate, metrics = retrainer.export(retrainer.fit(verdicts), verdicts, version="v2")

    # Then it calls the campaign spam, still separates the gate set, and stores the verdicts after the base sample
    assert [p.label for p in Predictor(candidate).predict(NEW_CAMPAIGN)] == ["spam"] * len(NEW_CAMPAIGN)
    assert metrics.accuracy >= 0.95
    training = candidate.metadata["training"]
    assert training["kind"] == "retrain" and training["verdict_weight"] == 3.0
    assert training["rehearsal_base_size"] == tiny_bundle.metadata["training"]["rehearsal_base_size"]
    assert items_from_jsonl(candidate.rehearsal)[-len(verdicts) :] == verdicts


def test_retrainer_builds_the_network_its_config_asks_for_and_learning_from_the_candidate_keeps_it(
    tiny_bundle: Bundle,
) -> None:
    # Given a retrain into the linear network (L2-normalised bag, squared hinge, Adagrad) with room for more tokens
    verdicts = [LabelledItem(text, "spam") for text in NEW_CAMPAIGN]
    linear = NetworkConfig(length_power=0.5, loss="squared_hinge")
    wider = dataclasses.replace(tiny_bundle.featurizer, max_tokens=tiny_bundle.featurizer.max_tokens * 2)
    training = TrainingConfig(epochs=8, optimizer="adagrad", learning_rate=0.2)
    retrainer = Retrainer(tiny_bundle, RetrainConfig(network=linear, featurizer=wider, training=training))

    # When the candidate is exported, and a fine-tune and a plain retrain learn from it in turn
    candidate, metrics = retrainer.export(retrainer.fit(verdicts), verdicts, version="v2")
    finetuned, _ = finetune_bundle(candidate, [LabelledItem(NEW_CAMPAIGN[0], "spam")], FinetuneConfig(epochs=1))
    successor = Retrainer(candidate, RetrainConfig(training=TrainingConfig(epochs=1)))

    # Then the candidate stores and serves that network and featurizer (LiteRT agreeing with Keras), calls the
    # campaign spam, and what learns from it keeps both
    assert NetworkConfig.from_dict(candidate.metadata["network"]) == linear
    assert candidate.metadata["training"]["optimizer"] == "adagrad"
    assert candidate.featurizer == wider
    check_shapes(candidate)
    assert candidate.metadata["parity_max_abs_diff"] <= PARITY_TOLERANCE
    assert [p.label for p in Predictor(candidate).predict(NEW_CAMPAIGN)] == ["spam"] * len(NEW_CAMPAIGN)
    assert metrics.accuracy >= 0.95
    assert NetworkConfig.from_dict(finetuned.metadata["network"]) == linear and finetuned.featurizer == wider
    assert successor.network == linear and successor.featurizer == wider


BUNDLE_BEFORE_THE_LINEAR_NETWORK = Path(__file__).parent / "fixtures" / "bundle-before-the-linear-network.lbk"


def test_bundle_saved_before_the_linear_network_loads_serves_and_learns_either_way() -> None:
    # Given a tiny bundle written by the code before the network had a loss setting (commit bf15520)
    old = Bundle.read(str(BUNDLE_BEFORE_THE_LINEAR_NETWORK))
    verdicts = [LabelledItem(text, "spam") for text in NEW_CAMPAIGN]

    # When it is served, fine-tuned, and retrained into the linear network
    served = Predictor(old).predict(["win a free prize now", "see you at lunch"])
    finetuned, _ = finetune_bundle(old, verdicts, FinetuneConfig(epochs=1))
    linear = NetworkConfig(length_power=0.5, loss="squared_hinge")
    retrainer = Retrainer(old, RetrainConfig(network=linear, training=TrainingConfig(epochs=8)))
    retrained, _ = retrainer.export(retrainer.fit(verdicts), verdicts)

    # Then it serves with its own network (cross-entropy, as trained), the fine-tune keeps that network, and
    # the retrain stores the linear one
    assert old.metadata["network"] == {"embedding_dim": 16, "hidden_units": 0, "dropout": 0.0, "length_power": 0.75}
    assert [prediction.label for prediction in served] == ["spam", "ham"]
    check_shapes(old)
    assert NetworkConfig.from_dict(finetuned.metadata["network"]) == NetworkConfig(length_power=0.75)
    assert NetworkConfig.from_dict(retrained.metadata["network"]) == linear
    assert [p.label for p in Predictor(retrained).predict(NEW_CAMPAIGN)] == ["spam"] * len(NEW_CAMPAIGN)


def test_retrainer_with_threshold_folds_chooses_its_rule_on_the_joint_data(tiny_bundle: Bundle) -> None:
    # Given a retrain whose rule comes from 3-fold out-of-fold scores of the joint data
    verdicts = [LabelledItem(text, "spam") for text in NEW_CAMPAIGN]
    retrainer = Retrainer(tiny_bundle, RetrainConfig(threshold_folds=3, training=TrainingConfig(epochs=8)))

    # When the candidate is exported
    candidate, _ = retrainer.export(retrainer.fit(verdicts), verdicts)

    # Then its rule says where its scores came from: out-of-fold scores, not the gate set
    assert "3-fold out-of-fold" in candidate.metadata["decision"]["scores_from"]
