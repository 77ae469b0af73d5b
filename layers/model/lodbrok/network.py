"""The Keras network: hashed-token embedding bag -> masked mean -> softmax (fastText-style).

Only builtin LiteRT ops (gather, mul, sum, div, fully connected, softmax) are used, so the
graph converts without Select TF ops. Embeddings start at zero so buckets that no training text
ever hit stay exactly zero: they compress to nothing in the bundle, and a token first seen during
fine-tuning starts from a neutral vector. Keras/TensorFlow are imported lazily: the serving path
never loads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

from lodbrok.features import FeaturizerConfig


@dataclass(frozen=True)
class NetworkConfig:
    embedding_dim: int = 16
    hidden_units: int = 0
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_network(featurizer: FeaturizerConfig, labels: list[str], config: NetworkConfig) -> keras.Model:
    import keras

    token_ids = keras.Input(shape=(featurizer.max_tokens,), dtype="int32", name="token_ids")
    embedded = keras.layers.Embedding(
        featurizer.num_buckets,
        config.embedding_dim,
        mask_zero=True,
        # Zero start keeps untouched buckets at exactly zero; a ReLU hidden layer would never get a
        # gradient through all-zero inputs, so that variant starts from small random values instead.
        embeddings_initializer="uniform" if config.hidden_units else "zeros",
        name="token_embedding",
    )(token_ids)
    pooled = keras.layers.GlobalAveragePooling1D(name="mean_of_tokens")(embedded)
    if config.dropout:
        pooled = keras.layers.Dropout(config.dropout, name="dropout")(pooled)
    if config.hidden_units:
        pooled = keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(pooled)
    probabilities = keras.layers.Dense(len(labels), activation="softmax", name="label_probabilities")(pooled)
    return keras.Model(token_ids, probabilities, name="lodbrok_hashed_bag")


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
