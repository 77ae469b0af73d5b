"""Verdicts: the right label for an item, sent by a client after the fact.

One definition of a verdict and its limits (`parse_verdicts`), used by `POST /verdicts` (which validates
before queueing), by the retrain function (which validates again, because producers may also write to the
queue directly) and by `lodbrok finetune`. A queue message body is one verdict object, a JSON list of
them, or `{"verdicts": [...]}`. The size limit (`MAX_TEXT_CHARS`, set for both functions by the
template) counts a text's characters, or a record's field names and string values.
"""

from __future__ import annotations

import hashlib
import json
import math
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


def input_size(item: ModelInput) -> int:
    """Characters counted against MAX_TEXT_CHARS: the text, or a record's field names and string values."""
    if isinstance(item, str):
        return len(item)
    return sum(len(name) + (len(value) if isinstance(value, str) else 0) for name, value in item.items())


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
        if (size := input_size(verdict.input)) > max_text_chars:
            error = f"input has {size} characters; at most {max_text_chars} are allowed"
            problems.append({"index": index, "id": verdict.id, "error": error})
        elif not _finite(verdict.input):
            problems.append({"index": index, "id": verdict.id, "error": "fields: numbers must be finite"})
        elif labels is not None and verdict.label not in labels:
            error = f"unknown label {verdict.label!r}; expected one of {list(labels)}"
            problems.append({"index": index, "id": verdict.id, "error": error})
        else:
            verdicts.append(verdict)
    if problems:
        raise VerdictError(problems)
    return verdicts


def parse_message_body(body: str, *, max_text_chars: int, labels: Sequence[str] | None) -> list[Verdict]:
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
    return parse_verdicts(raw_items, max_text_chars=max_text_chars, labels=labels)


def describe(error: ValidationError) -> str:
    """Pydantic's messages with their locations, never the input values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'item'}: {detail['msg']}" for detail in error.errors()
    )


def _finite(item: ModelInput) -> bool:
    if isinstance(item, str):
        return True
    return all(math.isfinite(value) for value in item.values() if isinstance(value, float))


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_id(raw: Any) -> Any:
    return raw.get("id") if isinstance(raw, dict) else None
