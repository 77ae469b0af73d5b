"""Test data made on the fly (never copied from a dataset) and small shared helpers."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lodbrok.model.bundle import Bundle
from lodbrok.model.data import LabelledItem
from lodbrok.model.features import FeaturizerConfig

if TYPE_CHECKING:
    from conftest import Api, ApiResponse  # tests/integration/conftest.py

    from lodbrok.learning.loop import LearningLoop
    from lodbrok.registry.store import ModelStore


TINY_FEATURIZER = FeaturizerConfig(num_buckets=2**12, max_tokens=96)
EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

_SPAM_TEMPLATES = [
    "WINNER!! You have won a {prize}. Call {number} now to claim, T&C apply",
    "FREE {prize} for you! Text CLAIM to {short} before midnight. Cost 150p/msg",
    "Urgent: your mobile number won {money} in our draw. Call {number} to collect",
    "Congratulations! Claim your {prize} today, reply YES to {short}. Stop? txt STOP",
]
_HAM_TEMPLATES = [
    "Are we still meeting for {meal} at {time}? I'll bring the {thing}",
    "Sorry I missed your call, I was at {place}. Talk later?",
    "Can you pick up some {thing} on the way home from {place}",
    "Mum says {meal} is at {time}, don't be late again",
]
_SLOTS = {
    "prize": ["holiday", "camera phone", "ipod", "voucher", "car"],
    "money": ["£1000", "£2000 cash", "$500", "£250"],
    "meal": ["lunch", "dinner", "breakfast", "coffee"],
    "time": ["noon", "7pm", "half six", "eight"],
    "thing": ["milk", "bread", "charger", "umbrella", "tickets"],
    "place": ["the gym", "work", "uni", "the station", "grandma's"],
}


def make_tiny_dataset(size: int = 240, seed: int = 3) -> list[LabelledItem]:
    """A small, clearly separable spam/ham dataset with varied wording."""
    rng = random.Random(seed)
    items = []
    for index in range(size):
        label = "spam" if index % 3 == 0 else "ham"
        template = rng.choice(_SPAM_TEMPLATES if label == "spam" else _HAM_TEMPLATES)
        values = {name: rng.choice(choices) for name, choices in _SLOTS.items()}
        values["number"] = "09" + "".join(rng.choice("0123456789") for _ in range(9))
        values["short"] = str(rng.randint(80000, 89999))
        items.append(LabelledItem(f"{template.format(**values)} #{index}", label))
    return items


def emitted_metric_values(stdout: str) -> Iterator[tuple[str, dict[str, Any], float]]:
    """(metric name, its EMF blob with the dimension values, the sum of its values) for every EMF metric that
    Powertools Metrics printed in `stdout`."""
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                yield metric["Name"], blob, float(sum(value) if isinstance(value, list) else value)


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


_DESK_TEMPLATES = {
    "billing": ["I was charged twice for {plan}, please refund", "my invoice for {plan} shows the wrong amount"],
    "bug": ["the app crashes when I open {screen}", "{screen} shows an error after the update"],
    "account": ["I cannot log in to my account since {day}", "please reset my password, locked out since {day}"],
    "praise": ["thanks, the new {screen} is great", "love the {plan} plan, support was quick"],
}
_DESK_SLOTS = {
    "plan": ["the family plan", "premium", "the yearly plan", "basic"],
    "screen": ["settings", "the dashboard", "checkout", "the inbox"],
    "day": ["monday", "yesterday", "last week", "friday"],
}


def make_support_desk_dataset(size: int = 200, seed: int = 5) -> list[LabelledItem]:
    """Four labels, unevenly frequent, like the tickets of a support desk."""
    rng = random.Random(seed)
    shares = ["billing"] * 2 + ["bug"] * 4 + ["account"] * 3 + ["praise"]
    items = []
    for index in range(size):
        label = shares[index % len(shares)]
        values = {name: rng.choice(choices) for name, choices in _DESK_SLOTS.items()}
        items.append(LabelledItem(f"{rng.choice(_DESK_TEMPLATES[label]).format(**values)} #{index}", label))
    return items


def same_model(stored: bytes, original: bytes) -> bool:
    """Two stored bundles hold the same model: every member byte for byte, and the metadata but for the
    unique write stamp (`stored`) that the model store adds to each write."""
    first, second = Bundle.from_bytes(stored), Bundle.from_bytes(original)
    members = ("keras_model", "tflite_model", "featurizer", "labels", "rehearsal", "gate")
    return all(getattr(first, name) == getattr(second, name) for name in members) and {
        **first.metadata,
        "stored": None,
    } == {**second.metadata, "stored": None}


# --- IAM: what each function's role may do ---------------------------------------------------------------------

# Actions the Lambda platform performs with a role, not the function's code: log delivery, X-Ray
# segments (Tracing: Active), and the SQS event source mapping polling the verdict queue.
PLATFORM_ACTIONS = {
    "PredictFunctionRole": {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        # DynamoDB uses the review queue's own key on the function's behalf (kms:ViaService)
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "kms:DescribeKey",
    },
    "RetrainFunctionRole": {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    },
}
# Actions the functions' code needs; the integration tests record the calls each function makes and
# compare them with these, and the template test compares these with the roles in the translated template.
CODE_ACTIONS = {
    "PredictFunctionRole": {
        "s3:ListBucket",  # to tell a missing model from a missing bucket, under models/ only
        "s3:ListBucketVersions",  # the version before the active one, which its approval must replace
        "s3:GetObject",
        "s3:GetObjectVersion",  # a pinned MODEL_VERSION, or the version a HEAD named
        "kms:Verify",
        "kms:GenerateMac",  # attests the verdicts it queues
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:GetItem",  # the caller's role
        "dynamodb:PutItem",
        "dynamodb:Query",
        "sqs:SendMessage",
        # the reviewer's console: the review queue, held verdicts judged (and accepted ones remembered), versions
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "s3:PutObject",  # held verdicts only; under models/ only with API_ROLLBACK_ACTIONS
        "s3:GetBucketVersioning",
    },
    "RetrainFunctionRole": {
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetBucketVersioning",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObject",
        "s3:PutObjectTagging",
        "kms:Sign",
        "kms:Verify",
        "kms:VerifyMac",  # who sent a queued verdict
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    },
}
# What the predict role gains, on the model signing key and models/ only, where the stack's ApiRollback is "true":
# an admin's rollback through the API signs and writes the active model (template.yaml, RollbackSign/RollbackWrite).
API_ROLLBACK_ACTIONS = {"kms:Sign", "s3:PutObject", "s3:PutObjectTagging"}
_ACTION_OF_OPERATION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}


def iam_actions(service: str, operation: str, parameters: dict[str, Any]) -> set[str]:
    """The IAM actions one AWS API call needs."""
    action = _ACTION_OF_OPERATION.get(f"{service}:{operation}", f"{service}:{operation}")
    if action == "s3:GetObject" and parameters.get("VersionId"):
        action = "s3:GetObjectVersion"
    actions = {action}
    if action == "s3:PutObject" and parameters.get("Tagging"):
        actions.add("s3:PutObjectTagging")
    return actions


class RecordedActions(set[str]):
    """IAM actions, and the Prefix of each S3 listing (what an `s3:prefix` condition sees; None: no prefix)."""

    def __init__(self) -> None:
        super().__init__()
        self.list_prefixes: list[str | None] = []


@contextlib.contextmanager
def recorded_aws_actions() -> Iterator[RecordedActions]:
    """Every IAM action the clients of `aws.client` need while the block runs (create clients inside)."""
    from lodbrok import aws

    actions = RecordedActions()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        needed = iam_actions(model.service_model.endpoint_prefix, model.name, params)
        if needed & {"s3:ListBucket", "s3:ListBucketVersions"}:
            actions.list_prefixes.append(params.get("Prefix"))
        actions.update(needed)

    session = aws.session()
    session.events.register("before-parameter-build", record)
    try:
        yield actions
    finally:
        session.events.unregister("before-parameter-build", record)


# --- the predict function against moto (tests/integration) -----------------------------------------------------

CACHE_TABLE = "lodbrok-predictions-test"
CALL_LOG_TABLE = "lodbrok-calls-test"
MEMORY_TABLE = "lodbrok-verdict-memory-test"
REVIEW_QUEUE_TABLE = "lodbrok-review-queue-test"
CLIENTS_TABLE = "lodbrok-clients-test"
EVENT_KEY_ID = "k7x2mq9zb1"  # the API key id of the events/ files: an admin's in the tests' clients table


def predict_texts(api: Api, texts: list[str], **options: Any) -> ApiResponse:
    """POST /predict of `texts` (and any request options) through the handler."""
    return api.call(load_event("predict_batch.json"), body={"texts": texts, **options})


def verdicts_event(verdicts: list[Any]) -> dict[str, Any]:
    """The POST /verdicts event with `verdicts` as its body."""
    return {**load_event("verdicts_post.json"), "body": json.dumps({"verdicts": verdicts})}


def assert_error(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    """`response` is the API's one error body with this status and code; its `error` object."""
    assert response.status == status, response.body
    assert set(response.body) == {"error"}
    assert set(response.error) == {"code", "message", "details"}
    assert response.error["code"] == code
    assert isinstance(response.error["message"], str) and response.error["message"]
    assert isinstance(response.error["details"], list)
    return response.error


def cache_item_count() -> int:
    """How many items the prediction cache table holds (moto)."""
    import boto3

    return boto3.client("dynamodb").scan(TableName=CACHE_TABLE, Select="COUNT")["Count"]


# --- the retrain function against moto (tests/integration) ----------------------------------------------------

RETRAIN_BUCKET = "lodbrok-retrain-test"
PROBE = "zorblax crypto airdrop for everyone who replies today"  # in no verdict and no training text
# What events/retrain_sqs.json holds: the ids of its valid verdicts, and its messages that can never be valid.
VALID_IDS = {"sms-1001", "sms-1002", "sms-1003", "sms-1004", "ticket-88"}
INVALID_MESSAGES = {  # message id suffix -> what the quarantine reason must mention
    "a05": "not JSON",
    "a06": "unknown label 'phishing'",
    "a07": "exactly one of `text` or `fields`",
}


def fresh_container() -> None:
    """Forget the settings, clients and learning loop, as a new Lambda container would."""
    from lodbrok import aws as aws_clients
    from lodbrok.settings import get_settings
    from retrain import app

    get_settings.cache_clear()
    aws_clients.clear_clients()
    app.get_learning_loop.cache_clear()


def learning_loop() -> LearningLoop:
    """The retrain function's learning loop (the warm container's)."""
    from retrain import app

    return app.get_learning_loop()


def archived_records(loop: LearningLoop) -> list[Any]:
    """Every verdict in the archive, oldest first."""
    from lodbrok.verdicts.archive import ArchiveCursor

    return loop.archive.read(loop.archive.pending(ArchiveCursor()).keys)


def active_bundle(store: ModelStore) -> Bundle:
    return store.load().bundle()


def zorblax_verdicts(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Verdicts that teach a spam campaign the tiny model has never seen (the word "zorblax")."""
    openers = ["hey", "psst", "good news", "friends", "attention", "today only", "hurry", "last call"]
    return [
        {
            "id": f"zb-{start + index}",
            "text": f"{openers[index % len(openers)]}: zorblax crypto airdrop, free tokens #{start + index}",
            "label": "spam",
            "source": "moderator-3",
        }
        for index in range(count)
    ]


def flipped_template_spam(count: int, source: str = "mallory") -> list[dict[str, Any]]:
    """Obvious spam, worded like the model's trusted training data, labelled ham: a lie."""
    spam = [item for item in make_tiny_dataset(size=4 * count, seed=99) if item.label == "spam"][:count]
    return [
        {"id": f"bad-{index}", "text": item.input, "label": "ham", "source": source} for index, item in enumerate(spam)
    ]


_EVERYDAY_CHAT = [
    "what time does the film start tonight",
    "can you grab some bread on your way back",
    "running ten minutes late, save me a seat",
    "did you feed the cat this morning",
    "happy birthday! have a lovely day",
    "the train is delayed again, home by eight",
    "are you free for lunch on thursday",
    "thanks for dinner last night, it was great",
    "i left my keys at yours, can i pop round",
    "see you at the gym after work",
    "mum wants to know if you're coming sunday",
    "just landed, will call you from the taxi",
    "can you send me the photos from the weekend",
]
_PRIZES = ["£1000 cash", "£2000 prize", "$500 voucher", "holiday to Tenerife", "brand new mobile", "£500 Tesco voucher"]


def lying_batch(source: str = "mallory", seed: int = 5) -> list[dict[str, Any]]:
    """53 distinct lies from one sender: 40 prize-spam texts labelled ham, 13 everyday chat texts labelled spam."""
    rng = random.Random(seed)
    spam: list[str] = []
    while len(spam) < 40:
        number = rng.randint(1_000_000, 9_999_999)
        text = f"URGENT! You have won a {rng.choice(_PRIZES)}! Call 0906{number} to claim. T&C apply"
        if text not in spam:
            spam.append(text)
    lies = [(text, "ham") for text in spam] + [(text, "spam") for text in _EVERYDAY_CHAT]
    return [
        {"id": f"lie-{index}", "text": text, "label": label, "source": source}
        for index, (text, label) in enumerate(lies)
    ]


def attested(
    verdicts: list[dict[str, Any]],
    *,
    sender: str = "moderator-key",
    role: str = "reviewer",
    received_at: str = "2026-12-01T10:00:00.000Z",
) -> str:
    """A queue message as POST /verdicts sends it: the verdicts in an envelope attested with the environment's
    VERDICT_ATTESTATION_KEY, for `sender` with `role` at `received_at`."""
    import os

    from lodbrok.access.roles import Role
    from lodbrok.serving.verdict_queue import envelope_body, verdict_json
    from lodbrok.verdicts.attestation import Attester, Provenance
    from lodbrok.verdicts.verdict import Verdict

    parsed = [Verdict.model_validate({**verdict, "received_at": received_at}) for verdict in verdicts]
    provenance = Provenance(sender=sender, role=Role(role), received_at=received_at)
    attestation = Attester(os.environ["VERDICT_ATTESTATION_KEY"]).attest(provenance, parsed)
    return envelope_body([verdict_json(verdict) for verdict in parsed], attestation)


def hold_verdict(archive: Any, text: str, label: str, reason: str = "contradicts trusted data") -> str:
    """Archive a verdict and hold it for review as screening does; the held record's key."""
    from lodbrok.verdicts.verdict import Verdict

    verdict = Verdict(id=f"held-{abs(hash(text)) % 10**8}", text=text, label=label, source="test")
    key = archive.write(verdict, message_id="m-held", sent_at=None)
    (record,) = archive.read([key])
    return str(archive.hold(record, reason, {"model_label": "ham", "verdict_label_probability": 0.01}))
