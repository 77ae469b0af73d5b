"""The Keras network (lodbrok.training.network): its configuration, pooling by (token count) ** length_power, and
its training loss."""

from __future__ import annotations

import numpy as np
import pytest

from lodbrok.model.features import FeaturizerConfig
from lodbrok.training.network import NetworkConfig, build_network, custom_objects, training_loss


@pytest.mark.parametrize("power", [-0.1, 1.01])
def test_network_config_refuses_a_length_power_outside_zero_to_one(power: float) -> None:
    with pytest.raises(ValueError, match="length_power must be between 0 and 1"):
        NetworkConfig(length_power=power)


def test_network_config_round_trips_and_a_config_from_before_length_power_keeps_the_mean() -> None:
    # Given a configuration as stored today, and one stored before pooling was configurable (with a key it no
    # longer knows)
    config = NetworkConfig(embedding_dim=8, length_power=0.5, loss="squared_hinge")
    legacy = {"embedding_dim": 8, "hidden_units": 0, "dropout": 0.0, "retired_option": True}

    # When both are read back
    # Then today's comes back unchanged, and the old one gets the mean (power 1) and the cross-entropy it was
    # trained with
    assert NetworkConfig.from_dict(config.to_dict()) == config
    assert NetworkConfig.from_dict(legacy) == NetworkConfig(embedding_dim=8, length_power=1.0, loss="crossentropy")


def test_pooling_divides_the_sum_of_present_tokens_by_their_count_to_the_power() -> None:
    # Given embedded rows of 4 and 1 real tokens, and a row of padding only
    pooling = custom_objects()["LengthNormalizedSum"](0.5)
    token_ids = np.array([[4, 9, 2, 7], [3, 0, 0, 0], [0, 0, 0, 0]], dtype=np.int32)
    embedded = np.ones((3, 4, 2), dtype=np.float32)
    embedded[1, 1:] = 100.0  # the padding positions' embeddings must not count

    # When they are pooled with length_power 0.5
    pooled = np.asarray(pooling(embedded, token_ids))

    # Then each row is sum / count ** 0.5, padding ignored, and an empty row pools to zero rather than NaN
    np.testing.assert_allclose(pooled, [[4 / 2, 4 / 2], [1.0, 1.0], [0.0, 0.0]], rtol=1e-6)


@pytest.mark.parametrize(("power", "layer"), [(1.0, "GlobalAveragePooling1D"), (0.75, "LengthNormalizedSum")])
def test_build_network_pools_with_the_mean_only_at_power_one(power: float, layer: str) -> None:
    featurizer = FeaturizerConfig(num_buckets=64, max_tokens=8)
    model = build_network(featurizer, ["ham", "spam"], NetworkConfig(length_power=power))
    assert [type(each).__name__ for each in model.layers][2] == layer
    assert model.output_shape == (None, 2)


def test_network_config_refuses_an_unknown_loss() -> None:
    with pytest.raises(ValueError, match="loss must be crossentropy or squared_hinge"):
        NetworkConfig(loss="hinge")  # type: ignore[arg-type]


def test_squared_hinge_loss_is_a_margin_loss_on_the_softmax_log_odds() -> None:
    # Given two-label probabilities whose log-odds of "spam" are 2, 0.5 and -1
    log_odds = np.array([2.0, 0.5, -1.0])
    spam = 1 / (1 + np.exp(-log_odds))
    probabilities = np.stack([1 - spam, spam], axis=1).astype(np.float32)
    loss = training_loss(NetworkConfig(loss="squared_hinge"), ["ham", "spam"])

    # When they are scored against spam targets, then against ham targets
    as_spam = np.asarray(loss(np.array([1, 1, 1]), probabilities))
    as_ham = np.asarray(loss(np.array([0, 0, 0]), probabilities))

    # Then only margins under 1 cost, quadratically: (1 - y * log-odds)^2 for y = +1 and y = -1
    np.testing.assert_allclose(as_spam, [0.0, 0.25, 4.0], atol=1e-5)
    np.testing.assert_allclose(as_ham, [9.0, 2.25, 0.0], atol=1e-5)


def test_squared_hinge_loss_needs_two_labels_and_cross_entropy_is_keras_own() -> None:
    assert training_loss(NetworkConfig(), ["a", "b", "c"]) == "sparse_categorical_crossentropy"
    with pytest.raises(ValueError, match="needs two labels"):
        training_loss(NetworkConfig(loss="squared_hinge"), ["a", "b", "c"])
