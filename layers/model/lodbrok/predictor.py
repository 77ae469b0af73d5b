"""Serving: a bundle's `.tflite` run by the LiteRT interpreter. numpy + ai-edge-litert only.

This module must never import TensorFlow or Keras (a test enforces it): the predict Lambda ships
without them and cold-starts in a fraction of the time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from lodbrok.bundle import Bundle, BundleError
from lodbrok.decision import DecisionError, DecisionRule, choose_labels
from lodbrok.features import Featurizer, ModelInput


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


class Predictor:
    """Loads a bundle once and predicts batches; safe to share between threads.

    `label` follows the bundle's decision rule (`lodbrok.decision`); probabilities are the model's own.
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
        self._batch_size = int(input_details["shape"][0])
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, data: bytes) -> Predictor:
        return cls(Bundle.from_bytes(data))

    @property
    def version(self) -> str:
        return self.bundle.version

    def predict_proba(self, items: Sequence[ModelInput]) -> np.ndarray:
        if not items:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.predict_ids(self.featurizer.transform(items))

    def predict_ids(self, token_ids: np.ndarray) -> np.ndarray:
        """Probabilities for already featurized rows (shape: n x max_tokens)."""
        with self._lock:
            if token_ids.shape[0] != self._batch_size:
                self._interpreter.resize_tensor_input(self._input_index, list(token_ids.shape))
                self._interpreter.allocate_tensors()
                self._batch_size = token_ids.shape[0]
            self._interpreter.set_tensor(self._input_index, token_ids)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output_index))

    def predict(self, items: Sequence[ModelInput]) -> list[Prediction]:
        probabilities = self.predict_proba(items)
        chosen = choose_labels(self.decision, self.labels, probabilities)
        return [
            Prediction(
                label=self.labels[int(index)],
                probabilities={label: float(value) for label, value in zip(self.labels, row, strict=True)},
            )
            for index, row in zip(chosen, probabilities, strict=True)
        ]
