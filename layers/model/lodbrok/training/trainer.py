"""Training, fine-tuning and export. The only module that imports TensorFlow, and only when called.

`train_bundle` builds a base model from a labelled dataset and chooses its decision rule from
out-of-fold scores on the training split (`lodbrok.model.decision`). A `Finetuner` continues training an
existing bundle on verdicts without forgetting what it knew: it rehearses the data the parent was trained
on, keeps the label mix of that data, and anchors the weights that data depends on (elastic weight
consolidation); the learning loop (`lodbrok.learning.proposal`) uses it for probes and the candidate. Both export
through `export_bundle`, which converts to LiteRT and refuses an export whose served probabilities differ
from Keras by more than `PARITY_TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lodbrok.clock import utc_iso
from lodbrok.model.bundle import Bundle, BundleError, next_version_label
from lodbrok.model.data import (
    DedupReport,
    LabelledItem,
    dataset_fingerprint,
    deduplicate,
    items_from_jsonl,
    items_to_jsonl,
    stratified_folds,
    stratified_split,
)
from lodbrok.model.decision import DecisionError, DecisionRule, fit_rule, fit_rule_keeping
from lodbrok.model.evaluation import Metrics, compute_metrics
from lodbrok.model.features import Featurizer, FeaturizerConfig, canonical_key
from lodbrok.model.predictor import Predictor
from lodbrok.training.network import (
    NetworkConfig,
    architecture_summary,
    build_network,
    custom_objects,
    training_loss,
)

if TYPE_CHECKING:
    import keras

PARITY_TOLERANCE = 1e-5
PARITY_ROWS = 256
FISHER_CHUNK = 500

Progress = Callable[[str, int, int], None]


class TrainingError(RuntimeError):
    """Training or export could not produce a valid bundle."""


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults chosen on repeated k-fold of the demo data (`make bench-quality`).

    `threshold_folds` models are trained on parts of the training split to score the rest; the decision
    rule is chosen on those scores (0 or 1: no rule, the label is the argmax). `min_precision` asks for
    the rule with the highest recall of the rarer label whose out-of-fold precision reaches it.
    `optimizer` "adagrad" suits the linear network (`NetworkConfig.loss` "squared_hinge"): Adam scales every
    embedding row's step alike, so a token seen in a handful of texts moves as far as a common one and the
    model leans on rare tokens; Adagrad's steps shrink with a row's accumulated gradients, as a linear
    model's regularised weights do (`make bench-learning`).
    """

    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 0.005
    optimizer: Literal["adam", "adagrad"] = "adam"
    test_fraction: float = 0.2
    seed: int = 7
    threshold_folds: int = 5
    min_precision: float | None = None


@dataclass(frozen=True)
class FinetuneConfig:
    """Few epochs on verdicts mixed with rehearsed earlier data, with the parent's important weights anchored.

    The defaults were chosen with `make bench-learning` (a new domain, leave one video out, and the
    forgetting experiment). `anchor_strength` scales the elastic-weight-consolidation penalty: 0 turns it
    off, higher values forget less and learn less.
    """

    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 0.006
    verdict_repeats: int = 20
    max_verdict_rows: int = 20_000  # fewer repeats for big batches, so a fine-tune's cost stays bounded
    rehearsal_per_verdict: int = 10
    min_rehearsal: int = 5_000
    rehearsal_limit: int = 50_000
    anchor_strength: float = 100.0
    anchor_sample: int = 4_000
    seed: int = 7


@dataclass(frozen=True)
class RetrainConfig:
    """A new network on the parent's stored training data plus the verdicts, with the parent's featurizer
    and network; the recipe is the base one (`TrainingConfig`'s epochs, batch and learning rate).

    Every verdict (the new ones and those earlier fine-tunes or retrains added to the rehearsal data) weighs
    `verdict_weight` base items. `featurizer` and `network` build the new network another way than the
    parent (a retrain starts from nothing, so it may); the candidate bundle stores them and later learning
    from it uses them. `threshold_folds` >= 2 chooses the decision rule on out-of-fold scores of
    the joint data, as `train_bundle` does; 0 chooses it as a fine-tune does (the probes' scores of the
    verdicts, keeping the gate set within tolerance).
    """

    verdict_weight: float = 1.0
    threshold_folds: int = 0
    rehearsal_limit: int = 50_000
    featurizer: FeaturizerConfig | None = None  # None: the parent's
    network: NetworkConfig | None = None  # None: the parent's
    training: TrainingConfig = field(default_factory=TrainingConfig)


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    metrics: Metrics
    dedup: DedupReport
    train_size: int
    test_size: int


def train_bundle(
    items: Sequence[LabelledItem],
    config: TrainingConfig | None = None,
    *,
    version: str = "v1",
    progress: Progress | None = None,
) -> TrainResult:
    """Deduplicate, split (stratified; the test split is the gate set), train and export a base model."""
    config = config or TrainingConfig()
    unique, dedup = deduplicate(items)
    labels = sorted({item.label for item in unique})
    if len(labels) < 2:
        raise TrainingError(f"training needs at least two labels, the data has {labels}")
    if config.min_precision is not None and len(labels) != 2:
        raise DecisionError(f"a precision target needs two labels (it applies to the rarer one), the data has {labels}")
    train_items, gate_items = stratified_split(unique, config.test_fraction)
    model, decision = fit_base_model(train_items, labels, config, progress)
    metadata = {
        "version": version,
        "parent_version": None,
        "created_at": utc_iso(precision="seconds"),
        "training": {
            "kind": "base",
            "data_fingerprint": dataset_fingerprint(unique),
            "data_size": len(unique),
            "train_size": len(train_items),
            "gate_size": len(gate_items),
            "duplicates_removed": dedup.duplicates_removed,
            "label_conflicts": dedup.conflicts,
            "epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "seed": config.seed,
            "rehearsal_base_size": len(train_items),
        },
        "network": config.network.to_dict(),
        "decision": decision.to_dict() if decision else None,
    }
    bundle, metrics = export_bundle(model, config.featurizer, labels, train_items, gate_items, metadata)
    return TrainResult(bundle, metrics, dedup, len(train_items), len(gate_items))


def fit_base_model(
    items: Sequence[LabelledItem], labels: list[str], config: TrainingConfig, progress: Progress | None = None
) -> tuple[keras.Model, DecisionRule | None]:
    """The base recipe on `items`: the decision rule from out-of-fold scores, then the model on all of them."""
    decision = choose_decision_rule(items, labels, config, progress)
    return _train_network(items, labels, config, config.seed, progress), decision


def _train_network(
    items: Sequence[LabelledItem],
    labels: list[str],
    config: TrainingConfig,
    seed: int,
    progress: Progress | None,
    sample_weights: np.ndarray | None = None,
) -> keras.Model:
    """A new network trained on `items` with `config`, from `seed`."""
    _seed_everything(seed)
    model = build_network(config.featurizer, labels, config.network)
    _fit(
        model,
        config.featurizer,
        labels,
        items,
        config.epochs,
        config.batch_size,
        config.learning_rate,
        progress,
        loss=training_loss(config.network, labels),
        optimizer=config.optimizer,
        sample_weights=sample_weights,
    )
    return model


class Learner:
    """What fine-tuning and retraining share: one parent bundle, its stored training data (the rehearsal
    sample: the base sample, then the verdicts learned since), and the export of a candidate. Both are
    prepared once per parent, so the learning loop can fit several models from one parent (probes on
    parts of a batch, then the candidate)."""

    kind = ""

    def __init__(self, parent: Bundle, rehearsal_limit: int, progress: Progress | None = None) -> None:
        self.parent = parent
        self.rehearsal_limit = rehearsal_limit  # rows of stored training data a candidate keeps
        self.progress = progress
        self.rehearsal = items_from_jsonl(parent.rehearsal)
        self.base_size = int(parent.metadata.get("training", {}).get("rehearsal_base_size", len(self.rehearsal)))
        # What the candidate is made of: the parent's, unless a retrain builds its network another way.
        self.featurizer = parent.featurizer
        self.network = NetworkConfig.from_dict(parent.metadata.get("network", {}))

    def fit(self, verdicts: Sequence[LabelledItem]) -> keras.Model:
        raise NotImplementedError

    def export(
        self,
        model: keras.Model,
        verdicts: Sequence[LabelledItem],
        *,
        verdict_scores: np.ndarray | None = None,
        keep_within: float | None = None,
        version: str | None = None,
        parent_version: str | None = None,
    ) -> tuple[Bundle, Metrics]:
        """The candidate bundle: `verdicts` join its rehearsal data, its rule is chosen by `_decision_rule`."""
        parent = self.parent
        verdicts = self._checked(verdicts)
        rehearsal = self._rehearsal_without(verdicts)
        gate_items = items_from_jsonl(parent.gate)
        decision = self._decision_rule(model, gate_items, verdicts, verdict_scores, keep_within)
        kept_rehearsal = _bounded_rehearsal(rehearsal + list(verdicts), self.base_size, self.rehearsal_limit)
        metadata = {
            "version": version or next_version_label(parent.version),
            "parent_version": parent_version or parent.version,
            "created_at": utc_iso(precision="seconds"),
            "training": {
                "kind": self.kind,
                "data_fingerprint": dataset_fingerprint(verdicts),
                "verdict_count": len(verdicts),
                **self._recipe(len(verdicts)),
                "rehearsal_base_size": min(self.base_size, len(kept_rehearsal)),
            },
            "network": self.network.to_dict(),
            "decision": decision.to_dict() if decision else None,
        }
        return export_bundle(model, self.featurizer, parent.labels, kept_rehearsal, gate_items, metadata)

    def _decision_rule(
        self,
        model: keras.Model,
        gate_items: Sequence[LabelledItem],
        verdicts: Sequence[LabelledItem],
        verdict_scores: np.ndarray | None,
        keep_within: float | None,
    ) -> DecisionRule | None:
        """With `verdict_scores` (out-of-sample probabilities of the verdicts, from models that did not see
        them) the threshold is the best for the verdicts that keeps the gate set within `keep_within`."""
        return _fine_tuned_decision_rule(
            model, self.parent, self.featurizer, gate_items, verdicts, verdict_scores, keep_within
        )

    def _recipe(self, verdict_count: int) -> dict[str, Any]:
        raise NotImplementedError

    def _rehearsal_without(self, verdicts: Sequence[LabelledItem]) -> list[LabelledItem]:
        """The stored training data less the inputs the verdicts (re)label."""
        verdict_keys = {canonical_key(item.input) for item in verdicts}
        return [item for item in self.rehearsal if canonical_key(item.input) not in verdict_keys]

    def _checked(self, verdicts: Sequence[LabelledItem]) -> list[LabelledItem]:
        """One item per input (the latest verdict wins), in the given order (so `verdict_scores` rows stay
        aligned with their verdicts), every label one of the model's."""
        unique, _ = deduplicate(reversed(verdicts))
        unique.reverse()
        if not unique:
            raise TrainingError("learning needs at least one verdict")
        unknown = sorted({item.label for item in unique} - set(self.parent.labels))
        if unknown:
            raise TrainingError(f"verdict labels {unknown} are not labels of the model ({self.parent.labels})")
        return unique


class Finetuner(Learner):
    """Continues training the parent on verdicts, rehearsing a sample of its stored training data, with the
    weights that data depends on anchored."""

    kind = "finetune"

    def __init__(self, parent: Bundle, config: FinetuneConfig | None = None, progress: Progress | None = None) -> None:
        self.config = config or FinetuneConfig()
        super().__init__(parent, self.config.rehearsal_limit, progress)
        self._importance: list[np.ndarray] | None = None

    def fit(self, verdicts: Sequence[LabelledItem]) -> keras.Model:
        """A Keras model: the parent trained on `verdicts` mixed with rehearsed earlier data."""
        config = self.config
        verdicts = self._checked(verdicts)
        rehearsal = self._rehearsal_without(verdicts)
        rng = random.Random(config.seed)
        sample_size = min(len(rehearsal), max(config.min_rehearsal, config.rehearsal_per_verdict * len(verdicts)))
        mixture = list(verdicts) * self._repeats(len(verdicts)) + rng.sample(rehearsal, sample_size)
        _seed_everything(config.seed)
        model = load_keras_model(self.parent)
        if config.anchor_strength and self.rehearsal:
            _anchor_weights(model, self._anchor_importance(model), config.anchor_strength)
        _fit(
            model,
            self.featurizer,
            self.parent.labels,
            mixture,
            config.epochs,
            config.batch_size,
            config.learning_rate,
            self.progress,
            loss=training_loss(self.network, self.parent.labels),
            sample_weights=label_balance_weights(mixture, rehearsal + list(verdicts)),
        )
        return model

    def _recipe(self, verdict_count: int) -> dict[str, Any]:
        config = self.config
        return {
            "verdict_repeats": self._repeats(verdict_count),
            "anchor_strength": config.anchor_strength,
            "epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "seed": config.seed,
        }

    def _repeats(self, verdict_count: int) -> int:
        """How often each verdict appears in the mixture: `verdict_repeats`, fewer for big batches."""
        return max(1, min(self.config.verdict_repeats, self.config.max_verdict_rows // verdict_count))

    def _anchor_importance(self, model: keras.Model) -> list[np.ndarray]:
        if self._importance is None:
            sample = self.rehearsal[: self.config.anchor_sample]
            token_ids = Featurizer(self.parent.featurizer).transform([item.input for item in sample])
            self._importance = fisher_information(model, token_ids, self.progress)
        return self._importance


class Retrainer(Learner):
    """A joint retrain: a new network, with the parent's featurizer and network, trained from scratch on the
    parent's stored training data plus the verdicts (`RetrainConfig`). It learns a new domain as a model
    trained on it does, where a fine-tune ranks it as the parent's features allow; nothing to anchor,
    because the old data is in the training set itself."""

    kind = "retrain"

    def __init__(self, parent: Bundle, config: RetrainConfig | None = None, progress: Progress | None = None) -> None:
        self.config = config or RetrainConfig()
        super().__init__(parent, self.config.rehearsal_limit, progress)
        self.featurizer = self.config.featurizer or self.featurizer
        self.network = self.config.network or self.network
        self.training = replace(
            self.config.training,
            featurizer=self.featurizer,
            network=self.network,
            threshold_folds=self.config.threshold_folds,
        )

    def fit(self, verdicts: Sequence[LabelledItem]) -> keras.Model:
        """A new Keras model trained on the stored training data and `verdicts`, verdicts weighted."""
        items, weights = self._joint(self._checked(verdicts))
        return _train_network(
            items, self.parent.labels, self.training, self.training.seed, self.progress, sample_weights=weights
        )

    def _joint(self, verdicts: list[LabelledItem]) -> tuple[list[LabelledItem], np.ndarray]:
        """The stored training data then the verdicts; every verdict (new, or learned since the base sample)
        weighs `verdict_weight`, scaled so the mean weight is 1 and the learning rate keeps its meaning."""
        base_keys = {canonical_key(item.input) for item in self.rehearsal[: self.base_size]}
        items = self._rehearsal_without(verdicts) + verdicts
        weights = np.array(
            [1.0 if canonical_key(item.input) in base_keys else self.config.verdict_weight for item in items],
            dtype=np.float32,
        )
        return items, weights * (len(weights) / weights.sum())

    def _decision_rule(
        self,
        model: keras.Model,
        gate_items: Sequence[LabelledItem],
        verdicts: Sequence[LabelledItem],
        verdict_scores: np.ndarray | None,
        keep_within: float | None,
    ) -> DecisionRule | None:
        """With `threshold_folds`, the rule of the base recipe on the joint data, weighted alike; otherwise a
        fine-tune's (`Learner._decision_rule`)."""
        if self.config.threshold_folds < 2:
            return super()._decision_rule(model, gate_items, verdicts, verdict_scores, keep_within)
        items, weights = self._joint(list(verdicts))
        weight_of = dict(zip((canonical_key(item.input) for item in items), weights, strict=True))
        return choose_decision_rule(items, self.parent.labels, self.training, self.progress, weight_of=weight_of)

    def _recipe(self, verdict_count: int) -> dict[str, Any]:
        training = self.training
        return {
            "verdict_weight": self.config.verdict_weight,
            "threshold_folds": self.config.threshold_folds,
            "epochs": training.epochs,
            "learning_rate": training.learning_rate,
            "optimizer": training.optimizer,
            "seed": training.seed,
        }


def finetune_bundle(
    parent: Bundle,
    verdicts: Sequence[LabelledItem],
    config: FinetuneConfig | None = None,
    *,
    version: str | None = None,
    parent_version: str | None = None,
    progress: Progress | None = None,
) -> tuple[Bundle, Metrics]:
    """Fine-tune `parent` on `verdicts` and export it (no screening, no gate: see `lodbrok.learning.proposal`)."""
    finetuner = Finetuner(parent, config, progress)
    return finetuner.export(finetuner.fit(verdicts), verdicts, version=version, parent_version=parent_version)


def choose_decision_rule(
    items: Sequence[LabelledItem],
    labels: list[str],
    config: TrainingConfig,
    progress: Progress | None = None,
    *,
    weight_of: dict[str, float] | None = None,
) -> DecisionRule | None:
    """The decision rule from out-of-fold probabilities: each fold's model scores items it never saw.

    Fewer folds are used when a label has fewer distinct items than `threshold_folds`; with fewer than
    two there is no out-of-fold score to learn from and the model answers the argmax.
    """
    smallest_label = min(Counter(item.label for item in items).values())
    folds = min(config.threshold_folds, smallest_label)
    if folds < 2:
        return None
    out_of_fold_labels: list[str] = []
    scores = []
    for number, (fold_train, fold_scored) in enumerate(stratified_folds(items, folds), 1):
        weights = (
            np.array([weight_of[canonical_key(item.input)] for item in fold_train], dtype=np.float32)
            if weight_of
            else None
        )
        model = _train_network(fold_train, labels, config, config.seed + number, None, sample_weights=weights)
        scores.append(keras_probabilities(model, config.featurizer, fold_scored))
        out_of_fold_labels.extend(item.label for item in fold_scored)
        if progress:
            progress("threshold folds", number, folds)
    return fit_rule(
        labels,
        np.concatenate(scores),
        out_of_fold_labels,
        min_precision=config.min_precision,
        scores_from=f"{folds}-fold out-of-fold scores of the training split",
    )


def _fine_tuned_decision_rule(
    model: keras.Model,
    parent: Bundle,
    featurizer: FeaturizerConfig,
    gate: Sequence[LabelledItem],
    verdicts: Sequence[LabelledItem],
    verdict_scores: np.ndarray | None,
    keep_within: float | None,
) -> DecisionRule | None:
    """A fine-tuned model's rule; the positive label and precision target are always the parent's.

    With out-of-sample verdict scores, two labels and no precision target, the threshold is the best one
    for the verdicts among those that keep every label's gate-set precision and recall within `keep_within`
    of the parent's (`fit_rule_keeping`). Otherwise, or when no threshold keeps them, it is chosen on the
    gate set alone. The parent's rule is kept when the gate set lacks a label.
    """
    parent_rule = DecisionRule.from_metadata(parent.metadata, parent.labels)
    if {item.label for item in gate} != set(parent.labels):
        return parent_rule
    gate_scores = keras_probabilities(model, featurizer, gate)
    gate_truth = [item.label for item in gate]
    if (
        verdict_scores is not None
        and len(verdict_scores)
        and keep_within is not None
        and parent_rule is not None
        and parent_rule.positive_label is not None
        and parent_rule.min_precision is None
    ):
        parent_gate = evaluate(Predictor(parent), gate)
        floors = {
            label: (scores.precision - keep_within, scores.recall - keep_within)
            for label, scores in parent_gate.per_label.items()
            if scores.support
        }
        rule = fit_rule_keeping(
            parent.labels,
            verdict_scores,
            [item.label for item in verdicts],
            reference_probabilities=gate_scores,
            reference_truth=gate_truth,
            floors=floors,
            positive_label=parent_rule.positive_label,
            scores_from=f"out-of-sample scores of {len(verdicts)} verdicts and the gate set after fine-tuning",
        )
        if rule is not None:
            return rule
    return fit_rule(
        parent.labels,
        gate_scores,
        gate_truth,
        min_precision=parent_rule.min_precision if parent_rule else None,
        positive_label=parent_rule.positive_label if parent_rule else None,
        scores_from="the gate set after fine-tuning",
    )


def keras_probabilities(model: keras.Model, featurizer: FeaturizerConfig, items: Sequence[LabelledItem]) -> np.ndarray:
    token_ids = Featurizer(featurizer).transform([item.input for item in items])
    return np.asarray(model.predict(token_ids, batch_size=512, verbose=0))


def export_bundle(
    model: keras.Model,
    featurizer: FeaturizerConfig,
    labels: list[str],
    rehearsal: Sequence[LabelledItem],
    gate: Sequence[LabelledItem],
    metadata: dict[str, Any],
) -> tuple[Bundle, Metrics]:
    """Convert to LiteRT, check parity with Keras, evaluate on the gate set through the served path."""
    import tensorflow as tf

    # A freshly built network holding the trained weights saves without the optimizer state (Adam's two
    # moment tables would triple the file); fine-tuning starts a new optimizer anyway.
    weights_only = build_network(featurizer, labels, NetworkConfig.from_dict(metadata["network"]))
    weights_only.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory() as workdir:
        keras_path = os.path.join(workdir, "model.keras")
        weights_only.save(keras_path)
        with open(keras_path, "rb") as handle:
            keras_bytes = handle.read()
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its traced signature
        tflite_bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    draft = Bundle(
        keras_model=keras_bytes,
        tflite_model=tflite_bytes,
        featurizer=featurizer,
        labels=labels,
        rehearsal=items_to_jsonl(rehearsal),
        gate=items_to_jsonl(gate),
        metadata=metadata,
    )
    predictor = Predictor(draft)
    parity_inputs = [item.input for item in (list(gate) or list(rehearsal))[:PARITY_ROWS]]
    parity = check_parity(model, predictor, parity_inputs)
    metrics = evaluate(predictor, gate)
    bundle = draft.with_metadata(
        metrics={"gate": metrics.summary()},
        parity_max_abs_diff=parity,
        architecture=architecture_summary(model),
        tflite_bytes=len(tflite_bytes),
    )
    return bundle, metrics


def check_parity(model: keras.Model, predictor: Predictor, inputs: Sequence[Any]) -> float:
    token_ids = predictor.featurizer.transform(inputs)
    keras_rows = np.asarray(model(token_ids, training=False))
    served_rows = predictor.predict_ids(token_ids)
    difference = float(np.max(np.abs(keras_rows - served_rows))) if len(inputs) else 0.0
    if not difference <= PARITY_TOLERANCE:  # also catches NaN
        raise TrainingError(f"LiteRT export differs from Keras by {difference:.2e} (> {PARITY_TOLERANCE:.0e})")
    return difference


def evaluate(predictor: Predictor, items: Sequence[LabelledItem]) -> Metrics:
    predictions = predictor.predict([item.input for item in items]) if items else []
    unknown = sorted({item.label for item in items} - set(predictor.labels))
    if unknown:
        raise TrainingError(f"labels {unknown} in the data are not labels of the model ({predictor.labels})")
    return compute_metrics(predictor.labels, [item.label for item in items], [p.label for p in predictions])


def load_keras_model(bundle: Bundle) -> keras.Model:
    """Rebuild the trainable Keras model from a bundle, in Keras safe mode (no arbitrary code).

    Raises BundleError when its shapes disagree with the featurizer: a token id past the embedding's rows
    would fail training, as it fails serving (`Predictor` checks the .tflite the same way)."""
    import keras

    with tempfile.TemporaryDirectory() as workdir:
        keras_path = os.path.join(workdir, "model.keras")
        with open(keras_path, "wb") as handle:
            handle.write(bundle.keras_model)
        model = keras.saving.load_model(keras_path, custom_objects=custom_objects(), compile=False, safe_mode=True)
    featurizer = bundle.featurizer
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    if len(embeddings) != 1 or embeddings[0].input_dim != featurizer.num_buckets:
        rows = [layer.input_dim for layer in embeddings]
        raise BundleError(
            f"model.keras has embedding rows {rows} but the featurizer hashes into {featurizer.num_buckets}"
        )
    if model.inputs[0].shape[-1] != featurizer.max_tokens:
        raise BundleError(
            f"model.keras takes {model.inputs[0].shape[-1]} token ids but the featurizer makes {featurizer.max_tokens}"
        )
    return model


def check_shapes(bundle: Bundle) -> None:
    """Raise BundleError unless the featurizer, the Keras model and the .tflite agree on every shape."""
    Predictor(bundle)
    load_keras_model(bundle)


def label_balance_weights(mixture: Sequence[LabelledItem], reference: Sequence[LabelledItem]) -> np.ndarray:
    """Per-item weights that give each label the share of the total weight it has in `reference`.

    Verdicts usually come from one label (missed spam, say); trained on as they are, they move the whole
    model towards that label and borderline items of the other labels flip. Weighting restores the label
    mix of the data the model already knows while the verdicts still teach their tokens.
    """
    reference_counts = Counter(item.label for item in reference)
    mixture_counts = Counter(item.label for item in mixture)
    shares = {label: reference_counts[label] / len(reference) for label in mixture_counts}
    scale = len(mixture) / sum(shares.values())
    return np.array([shares[item.label] * scale / mixture_counts[item.label] for item in mixture], dtype=np.float32)


def _anchor_weights(model: keras.Model, importance: list[np.ndarray], strength: float) -> None:
    """Elastic weight consolidation: penalise moving each weight in proportion to its importance.

    Importance is the diagonal Fisher information of the parent on rehearsed items, so the weights of
    tokens the parent's decisions rest on stay put and tokens it never relied on learn freely.
    """
    import keras

    class AnchorPenalty(keras.regularizers.Regularizer):
        def __init__(self, anchor: np.ndarray, importance: np.ndarray) -> None:
            self.anchor = keras.ops.convert_to_tensor(anchor)
            self.importance = keras.ops.convert_to_tensor(importance)

        def __call__(self, weights: Any) -> Any:
            return strength * keras.ops.sum(self.importance * keras.ops.square(weights - self.anchor))

    for variable, weight_importance in zip(model.trainable_weights, importance, strict=True):
        variable.regularizer = AnchorPenalty(np.array(variable.numpy()), weight_importance)


def fisher_information(model: keras.Model, token_ids: np.ndarray, progress: Progress | None) -> list[np.ndarray]:
    """Diagonal Fisher information of every trainable weight, averaged over items (labels drawn from the model).

    Items are looped over inside the graph, a chunk per call: a Python call per item costs more than the
    item's gradients do.
    """
    import tensorflow as tf

    weights = model.trainable_weights
    totals = [tf.Variable(tf.zeros(weight.shape)) for weight in weights]

    @tf.function(input_signature=[tf.TensorSpec([None, token_ids.shape[1]], tf.int32)])
    def accumulate(rows: Any) -> None:
        for position in tf.range(tf.shape(rows)[0]):
            with tf.GradientTape(persistent=True) as tape:
                probabilities = model(rows[position][None, :], training=False)[0]
                # Unstacked inside the tape so each label's log-probability is a recorded target.
                log_probabilities = tf.unstack(tf.math.log(tf.maximum(probabilities, 1e-12)))  # softmax can round to 0
            for label, log_probability in enumerate(log_probabilities):
                label_probability = tf.stop_gradient(probabilities[label])
                for total, gradient in zip(totals, tape.gradient(log_probability, weights), strict=True):
                    if isinstance(gradient, tf.IndexedSlices):  # embedding rows: sum repeated tokens, then square
                        rows_hit, slot = tf.unique(gradient.indices)
                        per_row = tf.math.unsorted_segment_sum(gradient.values, slot, tf.shape(rows_hit)[0])
                        total.scatter_nd_add(rows_hit[:, None], label_probability * tf.square(per_row))
                    else:
                        total.assign_add(label_probability * tf.square(gradient))

    for start in range(0, len(token_ids), FISHER_CHUNK):
        accumulate(tf.constant(token_ids[start : start + FISHER_CHUNK], dtype=tf.int32))
        if progress:
            progress("anchoring weights", min(start + FISHER_CHUNK, len(token_ids)), len(token_ids))
    return [total.numpy() / max(len(token_ids), 1) for total in totals]


def _bounded_rehearsal(items: list[LabelledItem], base_size: int, limit: int) -> list[LabelledItem]:
    """Keep the base sample and the newest verdicts within `limit` rows."""
    if len(items) <= limit:
        return items
    base = items[: min(base_size, limit)]
    return base + items[len(items) - (limit - len(base)) :] if limit > len(base) else base


def _fit(
    model: keras.Model,
    featurizer: FeaturizerConfig,
    labels: list[str],
    items: Sequence[LabelledItem],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    progress: Progress | None,
    *,
    loss: Any,
    optimizer: str = "adam",
    sample_weights: np.ndarray | None = None,
) -> None:
    import keras

    label_index = {label: position for position, label in enumerate(labels)}
    features = Featurizer(featurizer).transform([item.input for item in items])
    targets = np.array([label_index[item.label] for item in items], dtype=np.int32)
    optimizers = {"adam": keras.optimizers.Adam, "adagrad": keras.optimizers.Adagrad}
    model.compile(optimizer=optimizers[optimizer](learning_rate), loss=loss)
    callbacks = [_progress_callback(progress, epochs)] if progress else []
    model.fit(
        features,
        targets,
        sample_weight=sample_weights,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _progress_callback(progress: Progress, epochs: int) -> Any:
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            progress("epoch", epoch + 1, epochs)

    return ProgressCallback()
