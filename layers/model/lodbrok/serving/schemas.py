"""Request and response models of the predict API, and the typed errors its requests can cause.

The models check the shape of a request (types, unknown fields, empty texts, flat records). Limits that
come from the settings (MAX_ITEMS, MAX_TEXT_CHARS, MAX_BODY_BYTES) and duplicate ids are checked by
`PredictRequest.to_inputs` and `parse_json_body`, which raise `RequestRejected` subclasses; the handler
turns every error into the one error body shape, `ErrorResponse`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema, model_serializer, model_validator

from lodbrok.model.items import LIMIT_KEYWORD, ItemInput, ModelInput, Text, exactly_one_of, input_chars, total_chars
from lodbrok.verdicts.verdict import Verdict

# --- errors ---------------------------------------------------------------------------------------------------


class RequestRejected(Exception):
    """A request the API refuses; `details` name each offending item (index, id, field)."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidJson(RequestRejected):
    """The body is not a JSON document."""


class BodyTooLarge(RequestRejected):
    """The body is larger than MAX_BODY_BYTES."""


class LimitExceeded(RequestRejected):
    """More items than MAX_ITEMS, or an input longer than MAX_TEXT_CHARS."""


class DuplicateIds(RequestRejected):
    """Two or more items of one request share an id."""


class ExplainBudgetExceeded(RequestRejected):
    """An explained request with more items than EXPLAIN_MAX_ITEMS or more characters than EXPLAIN_MAX_CHARS."""


def parse_json_body(body: str, *, max_bytes: int) -> Any:
    """The request body as JSON, refusing oversized bodies before parsing them."""
    if len(body) > max_bytes or (len(body) * 4 > max_bytes and _utf8_size(body) > max_bytes):
        raise BodyTooLarge(f"the request body is larger than {max_bytes} bytes")
    try:
        return json.loads(body)
    except ValueError as error:  # JSONDecodeError, and integers longer than Python's digit limit
        position = {"position": error.pos} if isinstance(error, json.JSONDecodeError) else {}
        raise InvalidJson("the request body is not valid JSON", [{"field": "body", **position}]) from error
    except RecursionError as error:
        raise InvalidJson("the request body is nested too deeply", [{"field": "body"}]) from error


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


EchoedInput = str | dict[str, str | int | float | bool | None]

# With `explain`, at most EXPLAIN_MAX_ITEMS items (the characters, summed, JSON Schema cannot bound).
_EXPLAIN_ITEMS = {
    "if": {"required": ["explain"], "properties": {"explain": {"const": True}}},
    "then": {"properties": {name: {LIMIT_KEYWORD: "explain_items"} for name in ("texts", "items")}},
}
# An item's id is given for every item of `items` or for none, so a position can never be another item's id.
_HAS_ID = {"required": ["id"], "properties": {"id": {"type": "string"}}}
IDS_FOR_ALL_OR_NONE = {"anyOf": [{"items": _HAS_ID}, {"items": {"not": _HAS_ID}}]}


# --- POST /predict and GET /predict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionInput:
    """One item to classify, with its id (given by the client or its position)."""

    id: str
    input: ModelInput


class PredictItem(ItemInput):
    """One item of `items`: an optional id and exactly one of `text` or `fields`."""


class PredictRequest(BaseModel):
    """Exactly one of `text`, `texts` or `items`, plus options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **exactly_one_of("text", "texts", "items"),
            **_EXPLAIN_ITEMS,
            "examples": [
                {"text": "WINNER!! Claim your prize now"},
                {"texts": ["Lunch at noon?", "FREE ipod, text CLAIM"], "skip_cache": True},
                {"items": [{"id": "e1", "fields": {"subject": "Hi", "body": "Call me"}}, {"id": "e2", "text": "..."}]},
            ],
        },
    )

    text: Text | None = None
    texts: list[Text] | None = Field(
        None,
        min_length=1,
        description="several texts; ids are their positions",
        json_schema_extra={LIMIT_KEYWORD: "items"},
    )
    items: list[PredictItem] | None = Field(
        None,
        min_length=1,
        description="texts or records; either every item has an id, unique in the request, or none has and the "
        "ids are the positions",
        json_schema_extra={LIMIT_KEYWORD: "items", "allOf": [IDS_FOR_ALL_OR_NONE]},
    )
    skip_cache: StrictBool = Field(False, description="do not read the cache (answers are still written to it)")
    echo_input: StrictBool = Field(False, description="repeat each input in its prediction")
    explain: StrictBool = Field(
        False,
        description="also say which pieces of each input pushed it most towards and away from its label (the "
        "served model scored again without each piece). An explained request may hold at most EXPLAIN_MAX_ITEMS "
        "items and EXPLAIN_MAX_CHARS characters in all (a text's, or a record's string values; 422 "
        "explain_budget_exceeded). Explained requests neither read nor write the prediction cache",
    )

    review: StrictBool = Field(
        False,
        description="queue every item answered with the decision `review` for people to label (the review queue "
        "of the reviewer's console; the one place that keeps inputs: encrypted, expired after a TTL, never logged)",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [name for name in ("text", "texts", "items") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `text`, `texts` or `items`")
        if self.items is not None and len({item.id is None for item in self.items}) > 1:
            raise ValueError("give an id to every item of `items` or to none (then the ids are the positions)")
        return self

    def to_inputs(self, *, max_items: int, max_text_chars: int) -> list[PredictionInput]:
        """The items in request order; raise LimitExceeded or DuplicateIds naming every offending item."""
        if self.text is not None:
            entries = [("text", None, self.text)]
        elif self.texts is not None:
            entries = [(f"texts.{index}", None, text) for index, text in enumerate(self.texts)]
        else:
            entries = [
                (f"items.{index}.{'text' if item.text is not None else 'fields'}", item.id, item.input)
                for index, item in enumerate(self.items or [])
            ]
        if len(entries) > max_items:
            raise LimitExceeded(
                f"at most {max_items} items per request, got {len(entries)}",
                [{"field": "items" if self.items is not None else "texts", "count": len(entries), "max": max_items}],
            )
        inputs = [
            PredictionInput(id=item_id or str(index), input=item) for index, (_, item_id, item) in enumerate(entries)
        ]
        too_long = [
            {"index": index, "id": inputs[index].id, "field": field, "chars": size, "max": max_text_chars}
            for index, (field, _, item) in enumerate(entries)
            if (size := input_chars(item)) > max_text_chars
        ]
        if too_long:
            raise LimitExceeded(f"inputs may have at most {max_text_chars} characters", too_long)
        positions: dict[str, list[int]] = defaultdict(list)
        for index, entry in enumerate(inputs):
            positions[entry.id].append(index)
        duplicates = [{"id": item_id, "indexes": where} for item_id, where in positions.items() if len(where) > 1]
        if duplicates:
            names = ", ".join(repr(duplicate["id"]) for duplicate in duplicates[:10])
            raise DuplicateIds(f"item ids must be unique within a request; repeated: {names}", duplicates)
        return inputs


def check_explain_budget(inputs: list[PredictionInput], *, max_items: int, max_chars: int) -> None:
    """Raise ExplainBudgetExceeded naming both limits when an explained request is over either."""
    chars = sum(total_chars(entry.input) for entry in inputs)
    if len(inputs) > max_items or chars > max_chars:
        raise ExplainBudgetExceeded(
            f"an explained request may hold at most {max_items} items and {max_chars} characters in all, got "
            f"{len(inputs)} items and {chars} characters; send fewer, or without `explain`",
            [
                {
                    "field": "explain",
                    "items": len(inputs),
                    "max_items": max_items,
                    "chars": chars,
                    "max_chars": max_chars,
                }
            ],
        )


class VerdictSource(BaseModel):
    id: str | None = Field(
        description="the id of the verdict that answered, when you sent it; null for a reviewer's verdict (which "
        "answers every client) sent by another client"
    )
    at: str = Field(description="when the API accepted that verdict (UTC, ISO 8601)")


class PieceWeight(BaseModel):
    piece: str = Field(description="a word, URL, value, or a shape of the whole text such as <phone> or <bang>")
    field: str | None = Field(None, description="the record field the piece came from (records only)")
    weight: float = Field(
        description="the label's log-odds minus its log-odds with the piece removed: positive pushed the item "
        "towards the label, negative away from it (+0.69 doubled the label's odds)"
    )

    @model_serializer(mode="wrap")
    def _omit_field_for_texts(self, serialize: Any) -> dict[str, Any]:
        data = serialize(self)
        if data.get("field") is None:
            data.pop("field", None)
        return data


class ExplanationInfo(BaseModel):
    label: str = Field(description="the label whose probability the weights move (the item's `label`)")
    towards: list[PieceWeight] = Field(description="the pieces that pushed most towards the label, strongest first")
    away: list[PieceWeight] = Field(description="the pieces that pushed most away from the label, strongest first")
    pieces: int = Field(description="how many pieces of the input were scored")


class ItemPrediction(BaseModel):
    id: str
    label: str = Field(
        description="the decided label: the model's decision rule (per-label thresholds, see GET /model) applied "
        "to the probabilities; the most probable label for a model without a rule"
    )
    decision: str = Field(
        description="`review` when a probability lies in its label's review band (this deployment's REVIEW_BAND, "
        "shown by GET /model): too close to call, for a person to decide; otherwise the label",
        json_schema_extra={LIMIT_KEYWORD: "decision"},
    )
    probabilities: dict[str, float] = Field(description="probability of every label of the model")
    from_cache: bool = Field(description="answered from the prediction cache instead of the model")
    source: Literal["model", "cache", "verdict"] = Field(
        description="what answered: the model, the prediction cache, or a client's verdict on this exact input "
        "(the verdict memory), which wins until a promoted model answers the input the same way"
    )
    verdict: VerdictSource | None = Field(None, description="the verdict that answered, when `source` is verdict")
    input: EchoedInput | None = Field(None, description="the input, only present when `echo_input` was set")
    explanation: ExplanationInfo | None = Field(
        None, description="only with `explain`, for items the model answered (a verdict's answer has none)"
    )

    @model_serializer(mode="wrap")
    def _omit_input_unless_echoed(self, serialize: Any) -> dict[str, Any]:
        data = serialize(self)
        for optional in ("input", "verdict", "explanation"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return data


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_version: str = Field(description="S3 version id of the model that answered")
    model_label: str = Field(description="the model's own version label, e.g. v3")
    predictions: list[ItemPrediction] = Field(description="one per input, in input order")


# --- GET /model --------------------------------------------------------------------------------------------------


class DecisionInfo(BaseModel):
    thresholds: dict[str, float] = Field(
        description="per label; with two labels the positive label is answered when its probability reaches its "
        "threshold, with more the label with the largest probability / threshold"
    )
    positive_label: str | None = Field(description="the rarer label of a two-label model, whose threshold was tuned")
    method: str = Field(description="how the thresholds were chosen")
    min_precision: float | None = Field(description="the precision target the thresholds were chosen for, if any")
    scores_from: str = Field(description="which held-out scores the thresholds were chosen on")
    scored_items: int = Field(description="how many held-out items were scored")
    expected: dict[str, Any] = Field(description="what the rule achieved on those scores")


class ReviewBandInfo(BaseModel):
    low: float = Field(description="lowest probability of the label that is sent for review (included)")
    high: float = Field(description="highest probability of the label that is sent for review (included)")


class ModelInfo(BaseModel):
    version: str = Field(description="S3 version id of the active bundle")
    label: str = Field(description="the bundle's version label")
    parent: str | None = Field(description="label of the model this one was fine-tuned from")
    created_at: str | None
    labels: list[str]
    metrics: dict[str, Any] = Field(description="gate-set metrics recorded when the bundle was made")
    architecture: dict[str, Any] = Field(description="network layers, shapes and parameter counts")
    network: dict[str, Any] = Field(description="network configuration the bundle was trained with")
    featurizer: dict[str, int]
    decision: DecisionInfo | None = Field(
        description="how probabilities become a label; null for a bundle without a rule (argmax)"
    )
    pinned: bool = Field(description="true when MODEL_VERSION pins this version (no refresh)")
    review_band: dict[str, ReviewBandInfo] = Field(
        description="per label, the probabilities answered with the decision `review` (REVIEW_BAND); empty: none"
    )


# --- POST /verdicts ----------------------------------------------------------------------------------------------

VerdictItem = Annotated[Any, WithJsonSchema(Verdict.model_json_schema())]


class VerdictsRequest(BaseModel):
    """Verdicts are checked one by one after this envelope, so a 400 can name every bad item."""

    model_config = ConfigDict(extra="forbid")

    verdicts: list[VerdictItem] = Field(
        min_length=1, description="verdicts to queue for retraining", json_schema_extra={LIMIT_KEYWORD: "items"}
    )


class VerdictsAccepted(BaseModel):
    queued: int
    message_ids: list[str] = Field(description="SQS message id of each verdict, in request order")


# --- GET /calls/recent -------------------------------------------------------------------------------------------


class CallPrediction(BaseModel):
    id: str
    label: str


class CallRecord(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    at: str = Field(description="when the request was answered (UTC, ISO 8601)")
    request_id: str
    item_count: int
    cache_hits: int
    model_version: str
    model_label: str
    predictions: list[CallPrediction] = Field(description="id and label of each item (inputs are not stored)")
    truncated: bool = Field(description="true when only the first predictions were kept")


class RecentCalls(BaseModel):
    caller: str = Field(description="the API key id, or the source IP for calls without a key")
    calls: list[CallRecord] = Field(description="newest first")
    next_token: str | None = Field(description="pass as `next_token` for the next page; null on the last page")


# --- the review queue and held verdicts (the reviewer's console) ----------------------------------------------

ReviewKind = Literal["review", "held"]


class ReviewItem(BaseModel):
    kind: ReviewKind = Field(
        description="`review`: answered too close to call and queued by a client; `held`: a verdict screening held "
        "back from learning"
    )
    id: str = Field(description="the queue entry's id, or the held verdict's key; what the label/held routes take")
    input: EchoedInput = Field(description="the text or record")
    label: str = Field(description="the model's label (review), or the label the verdict claims (held)")
    probabilities: dict[str, float] = Field(
        default_factory=dict, description="the model's scores when it was queued (held: the model's, if recorded)"
    )
    explanation: ExplanationInfo | None = Field(None, description="why the model answered so, when it was explained")
    reason: str | None = Field(None, description="held: why screening held the verdict")
    seen: int = Field(1, description="how many requests asked for this input to be reviewed")
    queued_at: str = Field(description="when it was first queued or held (UTC, ISO 8601)")


class ReviewItems(BaseModel):
    items: list[ReviewItem] = Field(description="most uncertain first (skipped ones last); held: oldest first")
    remaining: int = Field(description="how many items of this kind wait, these included")


class ReviewLabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64, description="the queue entry's id")]
    label: Annotated[str, Field(min_length=1, max_length=256, description="a label of the active model")]


class ReviewSkipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64, description="the queue entry's id")]


class ReviewDone(BaseModel):
    id: str
    remaining: int = Field(description="how many review items still wait")
    message_id: str | None = Field(
        None, description="a label: the SQS message id of the trusted verdict it became (as POST /verdicts)"
    )


class HeldReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, Field(min_length=1, max_length=1024, description="the held verdict's key (its `id`)")]
    decision: Literal["accept", "reject"]
    note: Annotated[str | None, Field(None, max_length=1000, description="why, for the record")] = None


class HeldReviewed(BaseModel):
    key: str
    status: Literal["accepted", "rejected"]
    answers_at_once: bool = Field(description="accepted and now answering its exact input for every client")
    remaining: int = Field(description="how many held verdicts still wait")


class ModelVersion(BaseModel):
    version_id: str
    label: str
    created_at: str
    stored_at: str
    parent: str
    action: str = Field(description="how this version became active: publish, promote, rollback, approve")
    restored_from: str = Field(description="for a rollback, the version id it restored")
    verdict_count: int
    metrics: dict[str, Any] = Field(description="gate-set metrics")
    is_active: bool


class ModelVersions(BaseModel):
    versions: list[ModelVersion] = Field(description="newest first; parent and restored_from give the lineage")
    rollback: bool = Field(
        False, description="whether POST /model/rollback may roll back on this stack (its ApiRollback parameter)"
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[str, Field(min_length=1, max_length=1024, description="the S3 version id to restore")]


class RolledBack(BaseModel):
    restored: str = Field(description="the version id that was restored")
    version_id: str = Field(description="the new active version (the restore is itself a version)")


# --- errors on the wire ------------------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable error code")
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list, description="one entry per offending item/field")


class ErrorResponse(BaseModel):
    error: ErrorInfo


class GatewayResponse(BaseModel):
    """What API Gateway itself answers before the function runs: 403 for a missing or unknown API key (or an
    undeclared method), 429 when the key's throttle or quota is exhausted."""

    message: str
