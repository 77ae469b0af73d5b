"""`make bench-learning`: does the learning loop learn from verdicts, keep what it knew, and refuse lies?

Every candidate here comes from `lodbrok.learning.proposal.propose`, the path of the retrain function and
`lodbrok finetune`: screening, probes, candidate (a fine-tune by default, or a joint retrain), the real gate.

1. Domain shift, leave one video out (YouTube comments, `--youtube`; skipped with a message when the
   file is absent): the demo model gets the comments of two videos as verdicts; spam F1 on the third
   video and on the SMS test split, and whether the gate promotes it, for each learning design in
   `DESIGNS`. In the same run, the baselines a user would pick instead, retrained from scratch on the SMS
   training split plus the two videos: the same network with its full recipe, char_wb and word+char
   TF-IDF + LinearSVC, the latter at margin 0 and with an out-of-fold threshold, and the calibrated
   word+char LinearSVC with an out-of-fold threshold (`BASELINE`, the one to beat; scikit-learn is a
   bench-only extra).
2. Lies: 40 prize-spam texts labelled ham and 40 everyday chat texts labelled spam, as one batch.
3. Forgetting: hold one spam family out of base training, send 50 of its messages as verdicts, and
   compare the rest of the family and the original test split before/after; then the same draws by
   joint retrain, and fine-tuned without the weight anchor.
4. Cost: one batch through `propose` (time and peak memory, a fresh subprocess per measurement, because
   TensorFlow allocates outside Python's heap) for 100, 1,000 and 5,000 verdicts, by fine-tune and by retrain.
5. The retrain handler end to end, in-process against moto: 100 verdicts archived, screened, learned,
   gated, promoted.

`--quick` runs section 1 only and writes learning-quick.json: a development run, not the published numbers.
`run(report)` fills `report["learning"]` and prints tables; `make bench` calls it through bench.py, or
run it alone. No result is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

from devstack.gateway import LambdaContext

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lodbrok.learning.proposal import LearningConfig, Proposal, propose
from lodbrok.model.bundle import Bundle
from lodbrok.model.data import LabelledItem, deduplicate, items_from_jsonl, load_demo_dataset
from lodbrok.model.evaluation import Metrics, compute_metrics
from lodbrok.model.features import FeaturizerConfig, canonical_key
from lodbrok.model.predictor import Predictor
from lodbrok.training.trainer import (
    FinetuneConfig,
    RetrainConfig,
    TrainingConfig,
    evaluate,
    train_bundle,
)
from scripts.benchlib import (
    DEFAULT_YOUTUBE,
    LINEAR_NETWORK,
    LINEAR_TRAINING,
    Contender,
    calibrated_word_char_svc,
    char_svc,
    lodbrok_contender,
    sklearn_contender,
    word_char_svc,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
RETRAIN_APP = ROOT / "functions" / "retrain" / "app.py"
DOMAIN_TARGET_F1 = 0.93  # mean held-out-video spam F1 the learning loop aims for (issue 30)
DOMAIN_SMS_DROP_LIMIT = 0.01  # with SMS spam F1 dropping no more than this

# The adult chat / dating-line spam family of the SMS demo set (92 messages). It is one recognisable
# campaign family, and the hardest one for a model that never saw it: its wording ("babe", "chat",
# "lonely", "luv", "wife") is also everyday personal ham, so the base model misses about 1 in 5 of them
# while it still catches prize/claim, ringtone and premium-number spam held out the same way (measured:
# recall 0.94-1.0 for those), which would leave nothing to learn. 92 >= 60: 50 verdicts + 42 to measure.
CAMPAIGN = re.compile(
    r"\b(sex|sexy|horny|xxx|porn|dogging|naked|babe|lonely|laid|cum|luv|wife|hubby|girls|dating|chat|gay"
    r"|knickers|flirt|fancies|admirer)\b",
    re.IGNORECASE,
)
CAMPAIGN_VERDICTS = 50
DRAW_SEEDS = (7, 11, 23)
FORGETTING_LIMIT = 0.01  # largest allowed drop of a test-split F1 (macro or spam) in any draw
TEST_F1_METRICS = ("test_macro_f1", "test_spam_f1")
COST_SIZES = {"finetune": (100, 1_000, 5_000), "retrain": (100, 1_000, 5_000)}
HANDLER_VERDICTS = 100


# The learning designs measured on the domain shift, each through `propose` (the production path). The last
# is LearningConfig()'s default: what the retrain function and `lodbrok finetune` run.
DESIGNS: dict[str, LearningConfig] = {
    "Lodbrok joint retrain": LearningConfig(method="retrain"),
    "Lodbrok joint retrain, verdicts weigh 3": LearningConfig(
        method="retrain", retrain=RetrainConfig(verdict_weight=3.0)
    ),
    "Lodbrok joint retrain, rule from 5-fold out-of-fold scores": LearningConfig(
        method="retrain", retrain=RetrainConfig(threshold_folds=5)
    ),
    # Step 3 of issue 30, the evidence of a tuned linear model in the same network: the binary bag
    # L2-normalised (sum / sqrt(count)) and a linear SVM's squared hinge loss on the softmax's log-odds
    # (lodbrok.training.network); then the same with room for 1,024 tokens per text instead of 512 (a long
    # comment's character n-grams are cut at 512: a fifth of one video's spam).
    "Lodbrok joint retrain, linear (L2-normalised bag, squared hinge)": LearningConfig(
        method="retrain", retrain=RetrainConfig(network=LINEAR_NETWORK)
    ),
    "Lodbrok joint retrain, linear (L2-normalised bag, squared hinge), 1,024 tokens": LearningConfig(
        method="retrain", retrain=RetrainConfig(network=LINEAR_NETWORK, featurizer=FeaturizerConfig(max_tokens=1024))
    ),
    # The same two trained with Adagrad (TrainingConfig.optimizer) instead of Adam.
    "Lodbrok joint retrain, linear, Adagrad": LearningConfig(
        method="retrain", retrain=RetrainConfig(network=LINEAR_NETWORK, training=LINEAR_TRAINING)
    ),
    "Lodbrok joint retrain, linear, Adagrad, 1,024 tokens": LearningConfig(
        method="retrain",
        retrain=RetrainConfig(
            network=LINEAR_NETWORK, featurizer=FeaturizerConfig(max_tokens=1024), training=LINEAR_TRAINING
        ),
    ),
    # The last again from another training seed (shuffling, initial weights): how far chance alone moves a row.
    "Lodbrok joint retrain, linear, Adagrad, 1,024 tokens, training seed 8": LearningConfig(
        method="retrain",
        retrain=RetrainConfig(
            network=LINEAR_NETWORK,
            featurizer=FeaturizerConfig(max_tokens=1024),
            training=replace(LINEAR_TRAINING, seed=8),
        ),
    ),
    "Lodbrok fine-tune (the default)": LearningConfig(),
}
BASELINE = "calibrated word+char TF-IDF + LinearSVC, out-of-fold threshold, retrained on SMS + the two videos"


def run(
    report: dict[str, Any], *, youtube: Path = DEFAULT_YOUTUBE, quick: bool = False, designs: list[str] | None = None
) -> None:
    """Every section; `quick` (a development run, never the published numbers) stops after the domain shift,
    and measures only the designs whose names contain one of `designs` (all without)."""
    items, _ = deduplicate(load_demo_dataset())
    learning: dict[str, Any] = {}
    demo_model = train_bundle(items).bundle
    chosen = {name: config for name, config in DESIGNS.items() if not designs or any(part in name for part in designs)}
    learning["domain_shift"] = domain_shift(demo_model, youtube, chosen)
    if quick:
        report["learning"] = learning
        print_domain_shift(learning["domain_shift"])
        return
    learning["lies"] = lies_experiment(demo_model)

    campaign = [
        item for item in items if item.label == "spam" and isinstance(item.input, str) and CAMPAIGN.search(item.input)
    ]
    campaign_keys = {canonical_key(item.input) for item in campaign}
    base_items = [item for item in items if canonical_key(item.input) not in campaign_keys]
    started = time.perf_counter()
    base = train_bundle(base_items).bundle
    learning["base_training_seconds"] = round(time.perf_counter() - started, 1)
    learning["forgetting"] = forgetting_experiment(base, campaign, LearningConfig())
    learning["forgetting_retrain"] = forgetting_experiment(base, campaign, LearningConfig(method="retrain"))
    learning["forgetting_without_anchor"] = forgetting_experiment(
        base, campaign, LearningConfig(method="finetune", finetune=FinetuneConfig(anchor_strength=0.0))
    )
    with tempfile.TemporaryDirectory() as workdir:
        base_path = Path(workdir) / "base.lbk"
        base.write(str(base_path))
        learning["cost"] = [
            measure_in_subprocess(base_path, size, method) for method, sizes in COST_SIZES.items() for size in sizes
        ]
    learning["handler"] = handler_path(base, base_items, HANDLER_VERDICTS)
    report["learning"] = learning
    print_tables(learning)


# --- 1. domain shift: leave one video out ---------------------------------------------------------------------


def read_videos(path: Path) -> dict[str, list[LabelledItem]]:
    """The YouTube comments by video (columns label, text, video), deduplicated within the file."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    unique, _ = deduplicate(LabelledItem(row["text"], row["label"], item_id=row["video"]) for row in rows)
    videos: dict[str, list[LabelledItem]] = {}
    for item in unique:
        videos.setdefault(str(item.item_id), []).append(LabelledItem(item.input, item.label))
    return videos


def domain_shift(base: Bundle, path: Path, designs: dict[str, LearningConfig] = DESIGNS) -> dict[str, Any]:
    if not path.is_file():
        print(f"\ndomain-shift experiment skipped: {path} not found", file=sys.stderr)
        return {"skipped": f"{path} not found"}
    videos = read_videos(path)
    sms_train, sms_test = items_from_jsonl(base.rehearsal), items_from_jsonl(base.gate)
    base_predictor = Predictor(base)
    baselines: dict[str, Contender] = {
        "same network, retrained from scratch on SMS + the two videos": lodbrok_contender(TrainingConfig()),
        "char_wb TF-IDF + LinearSVC, retrained on SMS + the two videos": sklearn_contender(char_svc, tuned=False),
        "word+char TF-IDF + LinearSVC, retrained on SMS + the two videos": sklearn_contender(
            word_char_svc, tuned=False
        ),
        "word+char TF-IDF + LinearSVC, out-of-fold threshold, retrained on SMS + the two videos": sklearn_contender(
            word_char_svc, tuned=True
        ),
        BASELINE: sklearn_contender(calibrated_word_char_svc, tuned=True),
    }
    sms_before = {name: round(_spam_f1(contender(sms_train), sms_test), 4) for name, contender in baselines.items()}
    rows = []
    for held_video in sorted(videos):
        verdicts = [item for video, comments in sorted(videos.items()) if video != held_video for item in comments]
        held = videos[held_video]
        results: dict[str, Any] = {}
        held_for_review = 0
        for name, config in designs.items():
            proposal = propose(base, verdicts, config)
            held_for_review = len(proposal.screening.held)
            results[name] = _design_result(base_predictor, proposal, held, sms_test)
        for name, contender in baselines.items():
            started = time.perf_counter()
            scorer = contender(sms_train + verdicts)
            results[name] = {
                "video_f1": round(_spam_f1(scorer, held), 4),
                "sms_f1": [sms_before[name], round(_spam_f1(scorer, sms_test), 4)],
                "seconds": round(time.perf_counter() - started, 1),
            }
        row = {
            "held_video": held_video,
            "verdicts": len(verdicts),
            "held_for_review": held_for_review,
            "results": results,
        }
        rows.append(row)
        print(f"  held out {held_video}: {json.dumps(row)}", file=sys.stderr, flush=True)
    names = [*designs, *baselines]
    mean = {
        name: {
            "video_f1": round(sum(_after(row["results"][name]["video_f1"]) for row in rows) / len(rows), 4),
            "sms_f1_drop": round(sum(_drop(row["results"][name]) for row in rows) / len(rows), 4),
            "largest_sms_f1_drop": round(max(_drop(row["results"][name]) for row in rows), 4),
        }
        for name in names
    }
    for name in designs:
        mean[name]["all_promoted"] = all(row["results"][name]["promoted"] for row in rows)
    return {
        "data": path.name,
        "videos": {video: len(comments) for video, comments in videos.items()},
        "rows": rows,
        "mean": mean,
    }


def _design_result(
    base: Predictor, proposal: Proposal, held: list[LabelledItem], sms_test: list[LabelledItem]
) -> dict[str, Any]:
    """A learning design's candidate against the base model, on the held-out video and the SMS test split."""
    candidate = Predictor(proposal.candidate) if proposal.candidate else base
    return {
        "video_f1": [round(evaluate(base, held).f1("spam"), 4), round(evaluate(candidate, held).f1("spam"), 4)],
        "sms_f1": [round(evaluate(base, sms_test).f1("spam"), 4), round(evaluate(candidate, sms_test).f1("spam"), 4)],
        "promoted": bool(proposal.decision and proposal.decision.promote),
        "gate": proposal.decision.reason if proposal.decision else "no candidate",
        "seconds": round(proposal.seconds, 1),
    }


def _spam_f1(scorer: Any, items: list[LabelledItem]) -> float:
    _, decided = scorer(items)
    return compute_metrics(["ham", "spam"], [item.label for item in items], decided).f1("spam")


def _after(value: Any) -> float:
    return value[1] if isinstance(value, list) else value


def _drop(result: dict[str, Any]) -> float:
    before, after = result["sms_f1"]
    return before - after


# --- 2. lies ----------------------------------------------------------------------------------------------------


def make_lies(count: int = 40, seed: int = 5) -> list[LabelledItem]:
    """`count` prize-spam texts labelled ham and `count` everyday chat texts labelled spam."""
    rng = random.Random(seed)
    prizes = ["£1000 cash", "£2000 prize", "$500 voucher", "holiday to Tenerife", "brand new mobile"]
    chats = [
        "ok see you at home later",
        "are you coming to dinner tonight?",
        "sorry i'll call you later, in a meeting",
        "can you pick up some milk on the way",
        "haha that's so funny, see you tomorrow",
        "just got home, going to bed now",
        "where are you? we're waiting at the station",
    ]
    spam = [
        f"URGENT! You have won a {rng.choice(prizes)}! Call 0906{rng.randint(1000000, 9999999)} to claim. T&C apply"
        for _ in range(count)
    ]
    chat = [f"{rng.choice(chats)} {rng.choice(['x', 'love you', 'mate', ':)', ''])}".strip() for _ in range(count)]
    return [LabelledItem(text, "ham") for text in spam] + [LabelledItem(text, "spam") for text in chat]


def lies_experiment(base: Bundle) -> dict[str, Any]:
    lies = make_lies()
    proposal = propose(base, lies, LearningConfig())
    return {
        "verdicts": len(lies),
        "unique": len(proposal.screening.learn) + len(proposal.screening.held),
        "held_for_review": len(proposal.screening.held),
        "learned": len(proposal.screening.learn),
        "promoted": bool(proposal.decision and proposal.decision.promote),
        "gate": proposal.decision.reason if proposal.decision else "no candidate (nothing left to learn)",
    }


# --- 3. forgetting -------------------------------------------------------------------------------------------


def forgetting_experiment(base: Bundle, campaign: list[LabelledItem], config: LearningConfig) -> dict[str, Any]:
    gate = items_from_jsonl(base.gate)
    base_predictor = Predictor(base)
    draws = []
    for seed in DRAW_SEEDS:
        shuffled = random.Random(seed).sample(campaign, len(campaign))
        verdicts, held_out = shuffled[:CAMPAIGN_VERDICTS], shuffled[CAMPAIGN_VERDICTS:]
        proposal: Proposal = propose(base, verdicts, config, version="v2")
        candidate_predictor = Predictor(proposal.candidate) if proposal.candidate else base_predictor
        before_slice, after_slice = evaluate(base_predictor, held_out), evaluate(candidate_predictor, held_out)
        before_gate, after_gate = evaluate(base_predictor, gate), evaluate(candidate_predictor, gate)
        draws.append(
            {
                "seed": seed,
                "seconds": round(proposal.seconds, 2),
                "held_for_review": len(proposal.screening.held),
                "slice_recall": [
                    round(before_slice.per_label["spam"].recall, 4),
                    round(after_slice.per_label["spam"].recall, 4),
                ],
                "slice_f1": [round(before_slice.f1("spam"), 4), round(after_slice.f1("spam"), 4)],
                "slice_missed": [_missed(before_slice), _missed(after_slice)],
                "test_accuracy": [round(before_gate.accuracy, 4), round(after_gate.accuracy, 4)],
                "test_macro_f1": [round(before_gate.macro_f1, 4), round(after_gate.macro_f1, 4)],
                "test_spam_f1": [round(before_gate.f1("spam"), 4), round(after_gate.f1("spam"), 4)],
                "gate_would_promote": bool(proposal.decision and proposal.decision.promote),
                "gate": proposal.decision.reason if proposal.decision else "no candidate",
            }
        )
    mean = {
        name: [round(sum(draw[name][side] for draw in draws) / len(draws), 4) for side in (0, 1)]
        for name in ("slice_recall", "slice_f1", "test_accuracy", "test_macro_f1", "test_spam_f1")
    }
    return {
        "campaign": "adult chat / dating-line spam",
        "method": config.method,
        "anchor_strength": config.finetune.anchor_strength if config.method == "finetune" else None,
        "campaign_size": len(campaign),
        "verdicts": CAMPAIGN_VERDICTS,
        "held_out": len(campaign) - CAMPAIGN_VERDICTS,
        "test_size": len(gate),
        "draws": draws,
        "mean": mean,
        "largest_test_drop": round(max(draw[name][0] - draw[name][1] for draw in draws for name in TEST_F1_METRICS), 4),
    }


def _missed(metrics: Metrics) -> int:
    return metrics.count - sum(row[index] for index, row in enumerate(metrics.confusion_matrix))


# --- 4. learning cost (one subprocess per measurement) ---------------------------------------------------------


def measure_in_subprocess(base_path: Path, size: int, method: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", str(base_path), str(size), method],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _measure(base_path: str, size: int, method: str) -> None:
    """Child process: propose a candidate from `size` labelled demo messages with `method` (screening, probes,
    candidate, gate: the whole retrain of one batch); print one JSON line."""
    import tensorflow  # noqa: F401  (counted in the baseline, as in a warm Lambda container)

    base = Bundle.read(base_path)
    items, _ = deduplicate(load_demo_dataset())
    verdicts = random.Random(size).sample(items, min(size, len(items)))
    baseline_mb = _max_rss_mb()
    started = time.perf_counter()
    proposal = propose(base, verdicts, replace(LearningConfig(), method=method), version="v2")
    finished = time.perf_counter()
    print(
        json.dumps(
            {
                "method": method,
                "verdicts": len(verdicts),
                "learned": len(proposal.screening.learn),
                "propose_seconds": round(finished - started, 2),
                "promoted": bool(proposal.decision and proposal.decision.promote),
                "peak_rss_mb": round(_max_rss_mb()),
                "rss_before_mb": round(baseline_mb),
            }
        )
    )


def _max_rss_mb() -> float:
    """Peak resident memory of this process image.

    Linux carries the parent's peak into ru_maxrss across fork+exec, so a child's ru_maxrss is never below
    its parent's; /proc/self/status VmHWM is reset by exec. Fall back to ru_maxrss elsewhere.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


# --- 5. the retrain handler, in-process against moto -----------------------------------------------------------


def _retrain_context() -> LambdaContext:
    return LambdaContext("lodbrok-retrain-bench", memory_limit_in_mb=3008, timeout_seconds=900)


def handler_path(base: Bundle, items: list[LabelledItem], size: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from lodbrok.observability import logger
    from lodbrok.registry.signing import BundleSigner
    from lodbrok.registry.store import ModelStore
    from lodbrok.settings import get_settings

    bucket, table = "lodbrok-bench-models", "lodbrok-bench-idempotency"
    gate_keys = {canonical_key(item.input) for item in items_from_jsonl(base.gate)}
    verdicts = random.Random(size).sample([item for item in items if canonical_key(item.input) not in gate_keys], size)
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODEL_BUCKET": bucket,
        "IDEMPOTENCY_TABLE": table,
        "MIN_VERDICTS_TO_TRAIN": str(size),
    }
    with mock.patch.dict(os.environ, environment), mock_aws():
        os.environ.pop("AWS_ENDPOINT_URL", None)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        boto3.client("dynamodb").create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        key = boto3.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        os.environ["MODEL_SIGNING_KEY"] = key
        store = ModelStore(bucket, signer=BundleSigner(key), s3=s3)
        parent = store.publish(base, expected=None)
        get_settings.cache_clear()
        app = _load_retrain_app()
        event = _sqs_event(verdicts, per_message=10)
        level = logger.log_level
        logger.setLevel("WARNING")
        try:
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                response = app.lambda_handler(event, _retrain_context())
            seconds = time.perf_counter() - started
        finally:
            logger.setLevel(level)
            get_settings.cache_clear()
        active = store.load().bundle()
        learning = active.metadata.get("learning", {})
        promoted = store.head() != parent
        candidates = store.candidates()
    return {
        "verdicts": size,
        "messages": len(event["Records"]),
        "batch_item_failures": len(response["batchItemFailures"]),
        "outcome": "promoted" if promoted else ("rejected" if candidates else "not trained"),
        "handler_seconds": round(seconds, 2),
        "finetune_seconds": learning.get("finetune_seconds"),
        "reason": learning.get("decision", {}).get("reason")
        if promoted
        else (candidates[0].reason if candidates else ""),
    }


def _load_retrain_app() -> Any:
    """functions/retrain/app.py imported as Lambda would (by its file), with a fresh container state."""
    from devstack.template import load_handler_module

    module = load_handler_module("bench_retrain_app", RETRAIN_APP)
    module.get_learning_loop.cache_clear()  # built against this run's bucket and settings
    return module


def _sqs_event(verdicts: list[LabelledItem], per_message: int) -> dict[str, Any]:
    import hashlib

    records = []
    sent = int(time.time() * 1000)
    for start in range(0, len(verdicts), per_message):
        body = json.dumps(
            [
                {"id": f"bench-{start + offset}", "text": item.input, "label": item.label, "source": "bench"}
                if isinstance(item.input, str)
                else {"id": f"bench-{start + offset}", "fields": dict(item.input), "label": item.label}
                for offset, item in enumerate(verdicts[start : start + per_message])
            ]
        )
        message_id = f"00000000-0000-4000-8000-{start:012d}"
        records.append(
            {
                "messageId": message_id,
                "receiptHandle": f"bench-{message_id}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(sent + start),
                    "SenderId": "bench",
                    "ApproximateFirstReceiveTimestamp": str(sent + start + 5),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:lodbrok-verdicts",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


# --- output ------------------------------------------------------------------------------------------------------


def print_tables(learning: dict[str, Any]) -> None:
    print_domain_shift(learning["domain_shift"])
    lies = learning["lies"]
    print("\n== learning: a batch of lies (prize spam labelled ham, chat labelled spam) ==")
    print(
        f"{lies['verdicts']} verdicts ({lies['unique']} distinct): {lies['held_for_review']} held for review, "
        f"{lies['learned']} learned; promoted: {lies['promoted']}; gate: {lies['gate']}"
    )
    forgetting = learning["forgetting"]
    print("\n== learning: forgetting experiment ==")
    print(
        f"campaign: {forgetting['campaign']} ({forgetting['campaign_size']} messages held out of base training; "
        f"{forgetting['verdicts']} as verdicts, {forgetting['held_out']} measured; "
        f"test split {forgetting['test_size']})"
    )
    print(
        f"{'draw':>6}{'slice recall':>22}{'slice F1':>22}{'missed':>10}{'test acc':>22}{'test macro F1':>22}"
        f"{'test spam F1':>22}  gate"
    )
    for draw in forgetting["draws"]:
        print(
            f"{draw['seed']:>6}{_pair(draw['slice_recall']):>22}{_pair(draw['slice_f1']):>22}"
            f"{'{} -> {}'.format(*draw['slice_missed']):>10}{_pair(draw['test_accuracy']):>22}"
            f"{_pair(draw['test_macro_f1']):>22}{_pair(draw['test_spam_f1']):>22}"
            f"  {'promote' if draw['gate_would_promote'] else 'reject'}"
        )
    _print_mean("mean", forgetting)
    _print_verdict(forgetting)
    for key, title in (
        ("forgetting_retrain", "the same draws, by joint retrain"),
        ("forgetting_without_anchor", "the same draws, fine-tuned without the weight anchor (anchor_strength=0)"),
    ):
        print(f"\n{title}:")
        _print_mean("mean", learning[key])
        _print_verdict(learning[key])
    print("\n== learning: cost of one batch through propose (fresh process each; 5,000 is capped at the demo set) ==")
    print(f"{'method':>10}{'verdicts':>10}{'learned':>10}{'seconds':>10}{'peak RSS MB':>14}{'RSS before MB':>16}  gate")
    for row in learning["cost"]:
        print(
            f"{row['method']:>10}{row['verdicts']:>10}{row['learned']:>10}{row['propose_seconds']:>10}"
            f"{row['peak_rss_mb']:>14}{row['rss_before_mb']:>16}  {'promoted' if row['promoted'] else 'rejected'}"
        )
    handler = learning["handler"]
    print("\n== learning: retrain handler in-process (moto) ==")
    print(
        f"{handler['verdicts']} verdicts in {handler['messages']} messages: {handler['outcome']} in "
        f"{handler['handler_seconds']} s (propose {handler['finetune_seconds']} s), "
        f"{handler['batch_item_failures']} item failures"
    )
    print(f"gate: {handler['reason']}")


def print_domain_shift(domain: dict[str, Any]) -> None:
    print("\n== learning: a new domain from verdicts (YouTube comments, leave one video out) ==")
    if "skipped" in domain:
        print(f"skipped: {domain['skipped']}")
        return
    print(f"{'held-out video':<16}{'model':<92}{'video spam F1':>18}{'SMS spam F1':>18}  gate")
    for row in domain["rows"]:
        for name, result in row["results"].items():
            video = result["video_f1"]
            video_text = _pair(video) if isinstance(video, list) else f"{video:.4f}"
            gate = ("promoted" if result["promoted"] else "REJECTED") if "promoted" in result else ""
            print(f"{row['held_video']:<16}{name:<92}{video_text:>18}{_pair(result['sms_f1']):>18}  {gate}")
        print(f"{'':<16}({row['held_for_review']} of {row['verdicts']} verdicts held for review)")
    print("mean:")
    for name, mean in domain["mean"].items():
        print(
            f"  {name:<92} held-out video spam F1 {mean['video_f1']:.4f}, SMS spam F1 drop {mean['sms_f1_drop']:+.4f} "
            f"(largest {mean['largest_sms_f1_drop']:+.4f})"
        )
    baseline = domain["mean"][BASELINE]["video_f1"]
    for name in (name for name in domain["mean"] if name in DESIGNS):
        design = domain["mean"][name]
        met = (
            design["video_f1"] >= max(DOMAIN_TARGET_F1, baseline)
            and design["largest_sms_f1_drop"] <= DOMAIN_SMS_DROP_LIMIT
            and design["all_promoted"]
        )
        print(
            f"target for {name} (mean video F1 >= {DOMAIN_TARGET_F1} and >= the calibrated LinearSVC's {baseline:.4f}, "
            f"largest SMS drop <= {DOMAIN_SMS_DROP_LIMIT}, every candidate promoted): {'met' if met else 'NOT met'}"
        )


def _print_mean(title: str, forgetting: dict[str, Any]) -> None:
    mean = forgetting["mean"]
    print(
        f"{title:>6}{_pair(mean['slice_recall']):>22}{_pair(mean['slice_f1']):>22}{'':>10}"
        f"{_pair(mean['test_accuracy']):>22}{_pair(mean['test_macro_f1']):>22}{_pair(mean['test_spam_f1']):>22}"
    )


def _print_verdict(forgetting: dict[str, Any]) -> None:
    drop = forgetting["largest_test_drop"]
    within = "within" if drop <= FORGETTING_LIMIT else "OVER"
    seconds = sum(draw["seconds"] for draw in forgetting["draws"]) / len(forgetting["draws"])
    print(
        f"largest test-split F1 drop in any draw (macro or spam): {drop:.4f}, {within} the {FORGETTING_LIMIT} limit; "
        f"{seconds:.1f} s per draw (screening, probes, candidate, gate)"
    )


def _pair(values: list[float]) -> str:
    return f"{values[0]:.4f} -> {values[1]:.4f}"


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "--measure":
        _measure(argv[1], int(argv[2]), argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--youtube", type=Path, default=DEFAULT_YOUTUBE, help="YouTube comments CSV (label,text,video)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="development run: the domain shift only, written to learning-quick.json (never the published numbers)",
    )
    parser.add_argument(
        "--designs",
        nargs="+",
        metavar="PART",
        help="with --quick: only the designs whose names contain one of these (results: learning-quick-designs.json)",
    )
    arguments = parser.parse_args(argv)
    if arguments.designs and not arguments.quick:
        parser.error("--designs needs --quick: the published run measures every design")
    report: dict[str, Any] = {}
    run(report, youtube=arguments.youtube, quick=arguments.quick, designs=arguments.designs)
    name = "learning" if not arguments.quick else "learning-quick-designs" if arguments.designs else "learning-quick"
    write_results(name, report["learning"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
