"""The Keras network: hashed-token embedding bag -> pooled -> softmax (fastText-style).

Pooling divides the sum of the token vectors by (token count) ** `length_power`. The mean (power 1)
dilutes a long text's evidence by its length and a plain sum (power 0) lets long texts dominate; a power
in between won on repeated k-fold of the demo data (`make bench-quality`). Bundles from before it was
configurable keep their mean.

`loss` is the training objective only; the served graph is the same softmax either way. "squared_hinge"
(two labels) is a linear SVM's loss on the log-odds of the softmax (the margin between the two logits), so
with the pooled bag L2-normalised (`length_power` 0.5: tokens count once, so sum / sqrt(count) is the L2
norm of the binary bag) the network is a LinearSVC over hashed tokens, the evidence the issue-30 study's
linear baselines used; `make bench-learning` measures it as a joint-retrain design.

Only builtin LiteRT ops (gather, mul, sum, div, sqrt, fully connected, softmax) are used, so the
graph converts without Select TF ops. Embeddings start at zero so buckets that no training text
ever hit stay exactly zero: they compress to nothing in the bundle, and a token first seen during
fine-tuning starts from a neutral vector. Keras/TensorFlow are imported lazily: the serving path
never loads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import keras

from lodbrok.model.features import FeaturizerConfig


@dataclass(frozen=True)
class NetworkConfig:
    embedding_dim: int = 16
    hidden_units: int = 0
    dropout: float = 0.0
    length_power: float = 0.75
    loss: Literal["crossentropy", "squared_hinge"] = "crossentropy"

    def __post_init__(self) -> None:
        if not 0.0 <= self.length_power <= 1.0:
            raise ValueError(f"length_power must be between 0 and 1, got {self.length_power}")
        if self.loss not in ("crossentropy", "squared_hinge"):
            raise ValueError(f"loss must be crossentropy or squared_hinge, got {self.loss!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NetworkConfig:
        """Bundles written before pooling was configurable used the mean."""
        return cls(**{"length_power": 1.0, **{key: raw[key] for key in cls.__dataclass_fields__ if key in raw}})


def build_network(featurizer: FeaturizerConfig, labels: list[str], config: NetworkConfig) -> keras.Model:
    import keras

    token_ids = keras.Input(shape=(featurizer.max_tokens,), dtype="int32", name="token_ids")
    embedded = keras.layers.Embedding(
        featurizer.num_buckets,
        config.embedding_dim,
        mask_zero=config.length_power == 1.0,
        # Zero start keeps untouched buckets at exactly zero; a ReLU hidden layer would never get a
        # gradient through all-zero inputs, so that variant starts from small random values instead.
        embeddings_initializer="uniform" if config.hidden_units else "zeros",
        name="token_embedding",
    )(token_ids)
    if config.length_power == 1.0:
        pooled = keras.layers.GlobalAveragePooling1D(name="mean_of_tokens")(embedded)
    else:
        pooled = _pooling_class()(config.length_power, name="pooled_tokens")(embedded, token_ids)
    if config.dropout:
        pooled = keras.layers.Dropout(config.dropout, name="dropout")(pooled)
    if config.hidden_units:
        pooled = keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(pooled)
    probabilities = keras.layers.Dense(len(labels), activation="softmax", name="label_probabilities")(pooled)
    return keras.Model(token_ids, probabilities, name="lodbrok_hashed_bag")


def training_loss(config: NetworkConfig, labels: list[str]) -> Any:
    """The Keras loss for `config`: targets are label indices, the model's outputs softmax probabilities."""
    if config.loss == "crossentropy":
        return "sparse_categorical_crossentropy"
    if len(labels) != 2:
        raise ValueError(f"the squared hinge loss needs two labels, the model has {len(labels)}")
    import keras

    def squared_hinge(targets: Any, probabilities: Any) -> Any:
        # Log-odds of the second label; clipped so that a saturated softmax still has a finite margin.
        clipped = keras.ops.clip(probabilities, 1e-7, 1.0)
        margin = keras.ops.log(clipped[:, 1]) - keras.ops.log(clipped[:, 0])
        sign = keras.ops.cast(keras.ops.reshape(targets, (-1,)), margin.dtype) * 2.0 - 1.0
        return keras.ops.square(keras.ops.relu(1.0 - sign * margin))

    return squared_hinge


@cache
def _pooling_class() -> type:
    """Defined on first use so that importing this module never imports Keras."""
    import keras

    class LengthNormalizedSum(keras.layers.Layer):
        """Sum of the embeddings of the non-padding tokens divided by (their count) ** power.

        Padding (id 0) is excluded here rather than by a Keras mask; its embedding row gets no gradient.
        """

        def __init__(self, power: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.power = float(power)

        def call(self, embedded: Any, token_ids: Any) -> Any:
            present = keras.ops.expand_dims(keras.ops.cast(keras.ops.greater(token_ids, 0), embedded.dtype), -1)
            total = keras.ops.sum(embedded * present, axis=1)
            return total / keras.ops.power(keras.ops.maximum(keras.ops.sum(present, axis=1), 1.0), self.power)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "power": self.power}

    return LengthNormalizedSum


def custom_objects() -> dict[str, type]:
    """The project's own layers, for loading a saved model in Keras safe mode."""
    return {"LengthNormalizedSum": _pooling_class()}


def architecture_summary(model: keras.Model) -> dict[str, Any]:
    """The network configuration as JSON: layer types, shapes and parameter counts."""
    return {
        "name": model.name,
        "parameters": int(model.count_params()),
        "layers": [
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": list(layer.output.shape) if hasattr(layer, "output") else None,
                "parameters": int(layer.count_params()),
            }
            for layer in model.layers
        ],
    }
