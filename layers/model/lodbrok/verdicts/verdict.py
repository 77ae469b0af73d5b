"""Verdicts: the right label for an item, sent by a client after the fact.

One definition of a verdict and its limits (`parse_verdicts`), used by `POST /verdicts` (which validates
before queueing), by the retrain function (which validates again, because producers may also write to the
queue directly) and by `lodbrok finetune`. A queue message body is one verdict object, a JSON list of
them, or `{"verdicts": [...]}` (with an `attestation`, as the API sends it: `lodbrok.verdicts.attestation`).

What the verdict is about, its input, is an item as `lodbrok.model.items` defines it for the whole package; the
label's bound (the model's labels) is marked with `LIMIT_KEYWORD` like the items' limits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import ConfigDict, Field, ValidationError, model_validator

from lodbrok.model.data import LabelledItem
from lodbrok.model.features import canonical_key
from lodbrok.model.items import LIMIT_KEYWORD, ItemId, ItemInput, Record, Text, input_chars
from lodbrok.model.messages import plain_message

MAX_LABEL_CHARS = 100
MAX_VERDICTS_PER_MESSAGE = 100
_NEVER = datetime.min.replace(tzinfo=UTC)

T = TypeVar("T")

Label = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_LABEL_CHARS,
        description="a label of the model",
        json_schema_extra={LIMIT_KEYWORD: "label"},
    ),
]


class Verdict(ItemInput):
    """One labelled item. Exactly one of `text` or `fields`."""

    model_config = ConfigDict(allow_inf_nan=False)

    id: ItemId
    text: Text | None = Field(None, description="the text that was classified")
    fields: Record | None = Field(None, description="or the record that was classified")
    label: Label = Field(description="the correct label: one of the model's labels")
    source: str | None = Field(None, max_length=256, description="who decided, e.g. moderator-42")
    received_at: str | None = Field(None, description="set by the API when the verdict was accepted")

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        strings = [self.id, self.label, self.text, self.source, *(self.fields or {}), *(self.fields or {}).values()]
        if not all(_encodable(value) for value in strings if isinstance(value, str)):
            # A lone surrogate parses from a JSON escape but can never be archived as UTF-8.
            raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff) and is not valid Unicode text")
        return super()._one_input()

    def fingerprint(self) -> str:
        """Identity for idempotency: the same id, input and label is the same verdict."""
        material = json.dumps([self.id, canonical_key(self.input), self.label], ensure_ascii=False)
        return hashlib.sha256(material.encode()).hexdigest()

    def to_labelled_item(self) -> LabelledItem:
        return LabelledItem(self.input, self.label, item_id=self.id)


def latest_per_input(
    entries: Sequence[T], verdict_of: Callable[[T], Verdict], not_after: Callable[[T], str | None] | None = None
) -> list[T]:
    """One entry per input: the one whose verdict was received last (`received_at`, capped at `not_after` of
    the entry when given; the later position in `entries` breaks ties), kept in the order of `entries`.
    Queues redeliver and delay messages, so arrival order says nothing about which of two verdicts on an
    input is the correction."""
    latest: dict[str, tuple[datetime, int]] = {}
    for position, entry in enumerate(entries):
        verdict = verdict_of(entry)
        moment = received_instant(verdict.received_at)
        if not_after is not None:
            moment = min(moment, received_instant(not_after(entry), missing=moment))
        key = canonical_key(verdict.input)
        if key not in latest or moment >= latest[key][0]:
            latest[key] = (moment, position)
    return [entries[position] for position in sorted(position for _, position in latest.values())]


def received_instant(stamp: str | None, *, missing: datetime = _NEVER) -> datetime:
    """An ISO 8601 stamp as an aware UTC datetime; `missing` when absent or unreadable (older than any other)."""
    try:
        moment = datetime.fromisoformat(stamp or "")
    except ValueError:
        return missing
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class VerdictError(ValueError):
    """A message or request that holds no valid verdicts; `problems` names each bad item."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"item {p.get('index')}: {p.get('error')}" for p in problems))


def parse_verdicts(raw_items: Sequence[Any], *, max_text_chars: int, labels: Sequence[str] | None) -> list[Verdict]:
    """Every raw verdict validated against the schema, the limits and (unless None) the model's labels;
    one VerdictError names every bad one."""
    verdicts, problems = [], []
    for index, raw in enumerate(raw_items):
        try:
            verdict = Verdict.model_validate(raw)
        except ValidationError as error:
            problems.append({"index": index, "id": _raw_id(raw), "error": describe(error)})
            continue
        if (size := input_chars(verdict.input)) > max_text_chars:
            error = f"input has a string of {size} characters; at most {max_text_chars} are allowed"
            problems.append({"index": index, "id": verdict.id, "error": error})
        elif labels is not None and verdict.label not in labels:
            error = f"unknown label {verdict.label!r}; expected one of {list(labels)}"
            problems.append({"index": index, "id": verdict.id, "error": error})
        else:
            verdicts.append(verdict)
    if problems:
        raise VerdictError(problems)
    return verdicts


@dataclass(frozen=True)
class QueueMessage:
    """A queue message's verdicts, and the attestation of its envelope as sent (unchecked; None if absent)."""

    verdicts: list[Verdict]
    attestation: Any = None


def parse_message_body(body: str, *, max_text_chars: int, labels: Sequence[str] | None) -> QueueMessage:
    """Parse one queue message; raise VerdictError describing every problem."""
    try:
        payload = json.loads(body)
    except (ValueError, TypeError) as error:  # JSONDecodeError, and integers longer than Python's digit limit
        raise VerdictError([{"index": None, "error": f"message body is not JSON: {error}"}]) from error
    except RecursionError as error:  # never valid, so quarantined on first sight rather than retried into the DLQ
        raise VerdictError([{"index": None, "error": "message body is nested too deeply"}]) from error
    attestation = None
    if isinstance(payload, dict) and "verdicts" in payload:
        attestation = payload.get("attestation")
        payload = payload["verdicts"]
    raw_items = payload if isinstance(payload, list) else [payload]
    if not raw_items:
        raise VerdictError([{"index": None, "error": "message holds no verdicts"}])
    if len(raw_items) > MAX_VERDICTS_PER_MESSAGE:
        raise VerdictError([{"index": None, "error": f"more than {MAX_VERDICTS_PER_MESSAGE} verdicts in one message"}])
    return QueueMessage(parse_verdicts(raw_items, max_text_chars=max_text_chars, labels=labels), attestation)


def describe(error: ValidationError) -> str:
    """Pydantic's messages with their locations, never the input values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'item'}: {plain_message(detail, Verdict)}"
        for detail in error.errors()
    )


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_id(raw: Any) -> str | int | float | bool | None:
    """The id a bad item claims, if it is a scalar: a nested one must not make the quarantine record unwritable."""
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str | int | float | bool) else None
