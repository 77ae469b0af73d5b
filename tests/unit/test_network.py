"""The Keras network (lodbrok.training.network): its configuration, and pooling by (token count) ** length_power."""

from __future__ import annotations

import numpy as np
import pytest

from lodbrok.model.features import FeaturizerConfig
from lodbrok.training.network import NetworkConfig, build_network, custom_objects


@pytest.mark.parametrize("power", [-0.1, 1.01])
def test_network_config_refuses_a_length_power_outside_zero_to_one(power: float) -> None:
    with pytest.raises(ValueError, match="length_power must be between 0 and 1"):
        NetworkConfig(length_power=power)


def test_network_config_round_trips_and_a_config_from_before_length_power_keeps_the_mean() -> None:
    # Given a configuration as stored today, and one stored before pooling was configurable (with a key it no
    # longer knows)
    config = NetworkConfig(embedding_dim=8, length_power=0.5)
    legacy = {"embedding_dim": 8, "hidden_units": 0, "dropout": 0.0, "retired_option": True}

    # When both are read back
    # Then today's comes back unchanged, and the old one gets the mean (power 1) it was trained with
    assert NetworkConfig.from_dict(config.to_dict()) == config
    assert NetworkConfig.from_dict(legacy) == NetworkConfig(embedding_dim=8, length_power=1.0)


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
