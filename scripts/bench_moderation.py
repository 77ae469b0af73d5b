"""`make bench-moderation`: explanations (faithful? how costly?) and the review band, on messages each model never saw.

Protocol: the deduplicated demo data in the repeated stratified k-fold of `bench_quality` (same folds). On
every fold the recipe of `lodbrok train` (`fit_base_model`: the decision rule from inner folds, then the
network) trains on the other folds and is exported to LiteRT, the served model; then, on the held-out fold:

- **faithfulness**: for a sample of held-out messages, the explainer ranks every piece by its weight; removing
  the top k pieces together (their tokens set to padding, as the explainer removes one) must lower the
  probability of the answered label more than removing k pieces drawn at random from the same message.
  Reported: mean drop of the label's probability for both, and their ratio, for k = 1, 3, 5 (messages with at
  least k pieces).
- **cost**: the same 100 held-out messages predicted plainly and with explanations, in the same process
  (ms per item, p50 of repeated calls, and the ratio).
- **the band table**: for each band of spam probabilities, the share of held-out messages inside it (sent for
  review) and the accuracy and spam F1 of the decided rest, mean ± std over the folds; the row without a band
  is the model as it answers today. An integrator picks REVIEW_BAND from it.

`run(report)` fills `report["moderation"]`; bench.py calls it. No result is asserted.
"""

from __future__ import annotations

import random
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from lodbrok.model.data import LabelledItem, deduplicate, load_demo_dataset, stratified_folds
from lodbrok.model.evaluation import compute_metrics
from lodbrok.model.explanation import Occlusion, explain
from lodbrok.model.predictor import Predictor
from lodbrok.training.trainer import TrainingConfig, export_bundle, fit_base_model
from scripts.benchlib import FOLDS, LABELS, POSITIVE, REPEATS, parse_no_arguments, time_calls, write_results

BANDS = [(0.4, 0.6), (0.3, 0.7), (0.2, 0.8), (0.1, 0.9), (0.05, 0.95), (0.02, 0.98)]
TOP_KS = (1, 3, 5)
EXPLAINED_PER_FOLD = 100  # held-out messages whose explanations are checked, per fold
COST_BATCH = 100
COST_REPEATS = 20


def served_model(train: Sequence[LabelledItem], held_out: Sequence[LabelledItem]) -> Predictor:
    """The recipe of `lodbrok train` on the training folds, as the predict function serves it (LiteRT)."""
    config = TrainingConfig()
    model, rule = fit_base_model(train, LABELS, config)
    metadata = {"network": config.network.to_dict(), "decision": rule.to_dict() if rule else None}
    bundle, _ = export_bundle(model, config.featurizer, LABELS, train, held_out[:256], metadata)
    return Predictor(bundle)


def removal_drops(
    predictor: Predictor, texts: Sequence[str], rng: random.Random
) -> dict[int, list[tuple[float, float]]]:
    """Per k: (drop after removing the top k pieces, drop after removing k random pieces) of each text."""
    drops: dict[int, list[tuple[float, float]]] = {k: [] for k in TOP_KS}
    for text, result in zip(texts, explain(predictor, texts, top=predictor.featurizer.config.max_tokens), strict=True):
        occlusion = Occlusion(predictor.featurizer, text)
        label = predictor.labels.index(result.explanation.label)
        ranked = [(entry.field, entry.piece) for entry in result.explanation.towards]
        ranked += [piece for piece in occlusion.pieces if piece not in ranked and piece not in _away(result)]
        ranked += _away(result)
        for k in TOP_KS:
            if len(occlusion.pieces) < k:
                continue
            rows = occlusion.rows_without([(), ranked[:k], rng.sample(occlusion.pieces, k)])
            whole, without_top, without_random = predictor.predict_ids(rows)[:, label]
            drops[k].append((float(whole - without_top), float(whole - without_random)))
    return drops


def _away(result: Any) -> list[tuple[str | None, str]]:
    """Pieces that pushed away from the label, least negative first: ranked last."""
    return [(entry.field, entry.piece) for entry in reversed(result.explanation.away)]


def band_rows(truth: Sequence[str], spam: np.ndarray, decided: Sequence[str]) -> dict[str, dict[str, float]]:
    rows = {"no band": _decided_rest(truth, decided, np.zeros(len(truth), dtype=bool))}
    for low, high in BANDS:
        rows[f"[{low}, {high}]"] = _decided_rest(truth, decided, (spam >= low) & (spam <= high))
    return rows


def _decided_rest(truth: Sequence[str], decided: Sequence[str], in_band: np.ndarray) -> dict[str, float]:
    kept = [index for index in range(len(truth)) if not in_band[index]]
    metrics = compute_metrics(LABELS, [truth[i] for i in kept], [decided[i] for i in kept])
    errors = [i for i in range(len(truth)) if truth[i] != decided[i]]
    return {
        "in_band": float(in_band.mean()),
        "accuracy_of_rest": metrics.accuracy,
        "spam_f1_of_rest": metrics.per_label[POSITIVE].f1,
        "errors_in_band": sum(bool(in_band[i]) for i in errors) / len(errors) if errors else 0.0,
    }


def run(report: dict[str, Any]) -> None:
    items, _ = deduplicate(load_demo_dataset())
    rng = random.Random(17)
    drops: dict[int, list[tuple[float, float]]] = {k: [] for k in TOP_KS}
    bands: dict[str, list[dict[str, float]]] = {}
    costs: list[dict[str, Any]] = []
    pieces: list[int] = []
    print(f"\n== moderation: {FOLDS}-fold x {REPEATS} on {len(items)} deduplicated demo messages ==", file=sys.stderr)
    for repeat in range(REPEATS):
        for number, (train, held_out) in enumerate(stratified_folds(items, FOLDS, salt=f"bench-{repeat}"), 1):
            predictor = served_model(train, held_out)
            texts = [str(item.input) for item in held_out]
            probabilities = predictor.predict_proba(texts)
            decided = [prediction.label for prediction in predictor.predict(texts)]
            for name, row in band_rows([item.label for item in held_out], probabilities[:, 1], decided).items():
                bands.setdefault(name, []).append(row)
            sample = rng.sample(texts, EXPLAINED_PER_FOLD)
            for k, pairs in removal_drops(predictor, sample, rng).items():
                drops[k].extend(pairs)
            pieces.extend(len(Occlusion(predictor.featurizer, text).pieces) for text in sample)
            costs.append(_cost_of(predictor, texts[:COST_BATCH]))
            print(f"  repeat {repeat + 1}/{REPEATS}, fold {number}/{FOLDS} done", file=sys.stderr, flush=True)
    report["moderation"] = {
        "protocol": f"stratified {FOLDS}-fold x {REPEATS} repeats of the deduplicated demo data ({len(items)}), "
        "the `lodbrok train` recipe per fold, exported to LiteRT; everything measured on the held-out fold",
        "faithfulness": _faithfulness(drops, pieces),
        "cost": _cost(costs),
        "review_band": {name: _mean_std(rows) for name, rows in bands.items()},
    }
    print_report(report["moderation"])


def _cost_of(predictor: Predictor, batch: list[str]) -> dict[str, float]:
    plain = time_calls(lambda: predictor.predict(batch), COST_REPEATS)
    explained = time_calls(lambda: explain(predictor, batch), COST_REPEATS)
    return {
        "plain_ms_per_item": plain["p50_ms"] / len(batch),
        "explain_ms_per_item": explained["p50_ms"] / len(batch),
    }


def _faithfulness(drops: dict[int, list[tuple[float, float]]], pieces: list[int]) -> dict[str, Any]:
    result: dict[str, Any] = {"messages": len(pieces), "pieces_per_message_median": statistics.median(pieces)}
    for k, pairs in drops.items():
        top = statistics.mean(pair[0] for pair in pairs)
        chance = statistics.mean(pair[1] for pair in pairs)
        result[f"top{k}"] = {
            "messages": len(pairs),
            "drop_top": round(top, 4),
            "drop_random": round(chance, 4),
            "ratio": round(top / chance, 1) if chance > 0 else None,
            "top_beats_random_share": round(sum(pair[0] > pair[1] for pair in pairs) / len(pairs), 3),
        }
    return result


def _cost(costs: list[dict[str, Any]]) -> dict[str, Any]:
    plain = statistics.median(cost["plain_ms_per_item"] for cost in costs)
    explained = statistics.median(cost["explain_ms_per_item"] for cost in costs)
    return {
        "batch": COST_BATCH,
        "plain_ms_per_item": round(plain, 4),
        "explain_ms_per_item": round(explained, 4),
        "ratio": round(explained / plain, 1),
        "note": "median over the folds of the p50 of repeated calls, same process and batch",
    }


def _mean_std(rows: list[dict[str, float]]) -> dict[str, Any]:
    return {
        name: {
            "mean": round(statistics.mean(row[name] for row in rows), 4),
            "std": round(statistics.pstdev(row[name] for row in rows), 4),
        }
        for name in rows[0]
    }


def print_report(moderation: dict[str, Any]) -> None:
    faithfulness = moderation["faithfulness"]
    median = faithfulness["pieces_per_message_median"]
    print(f"\n== explanations on held-out messages ({faithfulness['messages']}; median {median} pieces) ==")
    print(f"{'removed':<10} {'messages':>8} {'drop top-k':>11} {'drop random k':>14} {'ratio':>6} {'top > random':>13}")
    for k in TOP_KS:
        row = faithfulness[f"top{k}"]
        print(
            f"{k:<10} {row['messages']:>8} {row['drop_top']:>11.4f} {row['drop_random']:>14.4f} "
            f"{row['ratio']!s:>6} {row['top_beats_random_share']:>13.3f}"
        )
    cost = moderation["cost"]
    print(
        f"\ncost per item (batch of {cost['batch']}): plain {cost['plain_ms_per_item']:.4f} ms, "
        f"explained {cost['explain_ms_per_item']:.4f} ms ({cost['ratio']}x)"
    )
    print("\n== review band (spam probability) on held-out folds: mean ± std ==")
    print(f"{'band':<14} {'in band':<17} {'accuracy of rest':<17} {'spam F1 of rest':<17} errors in band")
    for name, row in moderation["review_band"].items():
        cells = "  ".join(
            f"{row[key]['mean']:.4f} ± {row[key]['std']:.4f}"
            for key in ("in_band", "accuracy_of_rest", "spam_f1_of_rest", "errors_in_band")
        )
        print(f"{name:<14} {cells}", flush=True)


def main() -> int:
    parse_no_arguments(__doc__)
    report: dict[str, Any] = {}
    run(report)
    write_results("moderation", report["moderation"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
