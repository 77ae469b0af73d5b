"""Verdicts: the right label for an item, sent by a client after the fact.

The same schema is used by `POST /verdicts` (which validates before queueing) and by the retrain
function (which validates again, because producers may also write to the queue directly). A queue
message body is one verdict object, a JSON list of them, or `{"verdicts": [...]}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lodbrok.data import LabelledItem
from lodbrok.features import ModelInput, canonical_key

MAX_ID_CHARS = 256
MAX_FIELDS = 64
MAX_VERDICTS_PER_MESSAGE = 100

FieldValue = str | int | float | bool | None


class Verdict(BaseModel):
    """One labelled item. Exactly one of `text` or `fields`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="the client's id for the item")
    text: str | None = Field(None, description="the text that was classified")
    fields: dict[str, FieldValue] | None = Field(None, description="or the record that was classified")
    label: str = Field(min_length=1, max_length=100, description="the correct label")
    source: str | None = Field(None, max_length=256, description="who decided, e.g. moderator-42")
    received_at: str | None = Field(None, description="set by the API when the verdict was accepted")

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        strings = [self.id, self.label, self.text, self.source, *(self.fields or {}), *(self.fields or {}).values()]
        if not all(_encodable(value) for value in strings if isinstance(value, str)):
            # A lone surrogate parses from a JSON escape but can never be archived as UTF-8.
            raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff) and is not valid Unicode text")
        if (self.text is None) == (self.fields is None):
            raise ValueError("give exactly one of `text` or `fields`")
        if self.text is not None and not self.text.strip():
            raise ValueError("`text` is empty")
        if self.fields is not None:
            if len(self.fields) > MAX_FIELDS:
                raise ValueError(f"`fields` has more than {MAX_FIELDS} fields")
            if all(value is None or (isinstance(value, str) and not value.strip()) for value in self.fields.values()):
                raise ValueError("`fields` has no non-empty field")
        return self

    @property
    def input(self) -> ModelInput:
        return self.text if self.text is not None else dict(self.fields or {})

    def fingerprint(self) -> str:
        """Identity for idempotency: the same id, input and label is the same verdict."""
        material = json.dumps([self.id, canonical_key(self.input), self.label], ensure_ascii=False)
        return hashlib.sha256(material.encode()).hexdigest()

    def to_labelled_item(self) -> LabelledItem:
        return LabelledItem(self.input, self.label, item_id=self.id)


class VerdictError(ValueError):
    """A message or request that holds no valid verdicts; `problems` names each bad item."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"item {p.get('index')}: {p.get('error')}" for p in problems))


def check_labels(verdicts: Sequence[Verdict], labels: Sequence[str]) -> None:
    """Raise VerdictError naming every verdict whose label the model does not know."""
    problems = [
        {"index": index, "id": verdict.id, "error": f"unknown label {verdict.label!r}; expected one of {list(labels)}"}
        for index, verdict in enumerate(verdicts)
        if verdict.label not in labels
    ]
    if problems:
        raise VerdictError(problems)


def parse_message_body(body: str) -> list[Verdict]:
    """Parse one queue message into verdicts; raise VerdictError describing every problem."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, TypeError) as error:
        raise VerdictError([{"index": None, "error": f"message body is not JSON: {error}"}]) from error
    if isinstance(payload, dict) and "verdicts" in payload:
        payload = payload["verdicts"]
    raw_items = payload if isinstance(payload, list) else [payload]
    if not raw_items:
        raise VerdictError([{"index": None, "error": "message holds no verdicts"}])
    if len(raw_items) > MAX_VERDICTS_PER_MESSAGE:
        raise VerdictError([{"index": None, "error": f"more than {MAX_VERDICTS_PER_MESSAGE} verdicts in one message"}])
    verdicts, problems = [], []
    for index, raw in enumerate(raw_items):
        try:
            verdicts.append(Verdict.model_validate(raw))
        except ValidationError as error:
            problems.append({"index": index, "id": _raw_id(raw), "error": _describe(error)})
    if problems:
        raise VerdictError(problems)
    return verdicts


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_id(raw: Any) -> Any:
    return raw.get("id") if isinstance(raw, dict) else None


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'item'}: {detail['msg']}" for detail in error.errors()
    )
