"""Serving: a bundle's `.tflite` run by the LiteRT interpreter. numpy + ai-edge-litert only.

This module must never import TensorFlow or Keras (a test enforces it): the predict Lambda ships
without them and cold-starts in a fraction of the time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from lodbrok.model.bundle import Bundle, BundleError
from lodbrok.model.decision import DecisionError, DecisionRule, choose_labels
from lodbrok.model.features import Featurizer
from lodbrok.model.items import ModelInput

# Rows per interpreter pass: an explanation scores one row per piece, and the embedded batch
# (rows x max_tokens x embedding dim floats) must stay a few megabytes.
MAX_BATCH_ROWS = 256


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


class Predictor:
    """Loads a bundle once and predicts batches; safe to share between threads.

    `label` follows the bundle's decision rule (`lodbrok.model.decision`); probabilities are the model's own.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.labels = list(bundle.labels)
        self.featurizer = Featurizer(bundle.featurizer)
        try:
            self.decision = DecisionRule.from_metadata(bundle.metadata, self.labels)
        except DecisionError as error:
            raise BundleError(str(error)) from error
        try:
            self._interpreter = Interpreter(model_content=bundle.tflite_model, num_threads=1)
            input_details = self._interpreter.get_input_details()[0]
            output_details = self._interpreter.get_output_details()[0]
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise BundleError(f"the bundle's model.tflite cannot be loaded: {error}") from error
        self._input_index, self._output_index = input_details["index"], output_details["index"]
        output_width = output_details["shape"][-1]
        if output_width != len(self.labels):
            raise BundleError(f"model.tflite has {output_width} outputs but the bundle has {len(self.labels)} labels")
        input_width = input_details["shape"][-1]
        if input_width != bundle.featurizer.max_tokens:
            raise BundleError(
                f"model.tflite takes {input_width} token ids but the featurizer makes {bundle.featurizer.max_tokens}"
            )
        self._embedding_index = self._embedding_table(bundle.featurizer.num_buckets)
        self._batch_size = int(input_details["shape"][0])
        self._lock = threading.Lock()

    def _embedding_table(self, num_buckets: int) -> int:
        """The tensor index of the embedding table: the params of the graph's one GATHER, with a row per bucket.

        A featurizer that hashes into more buckets than the table has rows would pass every other check and
        then fail each prediction (gather index out of bounds), so such a bundle is refused at load."""
        # LiteRT lists a graph's ops only through this underscored method (it has no public one); the test of
        # this check fails if a LiteRT upgrade takes it away.
        gathers = [op for op in self._interpreter._get_ops_details() if op["op_name"] == "GATHER"]
        if len(gathers) != 1:
            raise BundleError(f"model.tflite should look its token ids up in one embedding table, not {len(gathers)}")
        table = self._interpreter.get_tensor_details()[int(gathers[0]["inputs"][0])]
        rows = int(table["shape"][0]) if len(table["shape"]) == 2 else -1
        if rows != num_buckets:
            raise BundleError(
                f"model.tflite's embedding table has {rows} rows but the featurizer hashes into {num_buckets} buckets"
            )
        return int(table["index"])

    @classmethod
    def from_bytes(cls, data: bytes) -> Predictor:
        return cls(Bundle.from_bytes(data))

    @property
    def version(self) -> str:
        return self.bundle.version

    def predict_proba(self, items: Sequence[ModelInput]) -> np.ndarray:
        return self.predict_ids(self.featurizer.transform(items))

    def predict_ids(self, token_ids: np.ndarray) -> np.ndarray:
        """Probabilities for already featurized rows (shape: n x max_tokens), at most MAX_BATCH_ROWS per pass."""
        if not len(token_ids):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        chunks = range(0, len(token_ids), MAX_BATCH_ROWS)
        return np.concatenate([self._invoke(token_ids[start : start + MAX_BATCH_ROWS]) for start in chunks])

    def _invoke(self, token_ids: np.ndarray) -> np.ndarray:
        with self._lock:
            if token_ids.shape[0] != self._batch_size:
                self._interpreter.resize_tensor_input(self._input_index, list(token_ids.shape))
                self._interpreter.allocate_tensors()
                self._batch_size = token_ids.shape[0]
            self._interpreter.set_tensor(self._input_index, token_ids)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output_index))

    @cached_property
    def trained_buckets(self) -> np.ndarray | None:
        """Which hash buckets training touched: the rows of the embedding table that are not all zero.

        Embeddings start at zero and a bucket no training text hit never gets a gradient, so a zero row is a
        bucket the model never saw. Read from the served .tflite's embedding table, so every bundle has it;
        None if that table is not stored as float32 (a quantized model).
        """
        if self._interpreter.get_tensor_details()[self._embedding_index]["dtype"] != np.float32:
            return None
        with self._lock:
            table = self._interpreter.get_tensor(self._embedding_index)
        return np.any(table != 0, axis=1)

    def predict(self, items: Sequence[ModelInput]) -> list[Prediction]:
        return self.predict_featurized(self.featurizer.transform(items))

    def predict_featurized(self, token_ids: np.ndarray) -> list[Prediction]:
        """Predictions for rows of `featurizer.transform`."""
        probabilities = self.predict_ids(token_ids)
        chosen = choose_labels(self.decision, self.labels, probabilities)
        return [
            Prediction(
                label=self.labels[int(index)],
                probabilities={label: float(value) for label, value in zip(self.labels, row, strict=True)},
            )
            for index, row in zip(chosen, probabilities, strict=True)
        ]
