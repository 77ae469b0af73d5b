"""Verdicts: the right label for an item, sent by a client after the fact.

One definition of a verdict and its limits (`parse_verdicts`), used by `POST /verdicts` (which validates
before queueing), by the retrain function (which validates again, because producers may also write to the
queue directly) and by `lodbrok finetune`. A queue message body is one verdict object, a JSON list of
them, or `{"verdicts": [...]}`.

The input types (`Text`, `Record`) are shared with the predict API's request models. Every rule they
enforce is also stated in their JSON schema, so the OpenAPI document admits exactly what the API accepts;
limits that come from the settings (`MAX_TEXT_CHARS`: the length of a text, and of each string value
of a record; `MAX_ITEMS`; the model's labels) are marked with `LIMIT_KEYWORD` and filled in by
`lodbrok.openapi` when the document is served.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from lodbrok.data import LabelledItem
from lodbrok.features import ModelInput, canonical_key

MAX_ID_CHARS = 256
MAX_FIELDS = 64
MAX_FIELD_NAME_CHARS = 256
MAX_LABEL_CHARS = 100
MAX_VERDICTS_PER_MESSAGE = 100

# Schema keyword marking a bound that comes from the settings or the model: "text" (maxLength =
# MAX_TEXT_CHARS), "items" (maxItems = MAX_ITEMS) or "label" (enum = the model's labels).
LIMIT_KEYWORD = "x-lodbrok-limit"
# "Not blank": a character that is not whitespace by Python's str.isspace, spelled out because `\s` means
# different sets in Python, ECMAScript and Rust regexes, and the schema must mean one thing to every reader.
NOT_BLANK = r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NOT_BLANK = re.compile(NOT_BLANK)


def _not_blank(value: str) -> str:
    if not _NOT_BLANK.search(value):
        raise ValueError("must contain non-whitespace characters")
    return value


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not _NOT_BLANK.search(value))


def _flat_value(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return value
    raise ValueError("record values must be a string, number, boolean or null (records are flat: no lists or objects)")


def _has_content(record: dict[str, Any]) -> dict[str, Any]:
    if all(_is_blank(value) for value in record.values()):
        raise ValueError("the record has no non-empty field")
    return record


def exactly_one_of(*names: str) -> dict[str, Any]:
    """JSON schema: exactly one of these properties is present and not null."""
    return {"oneOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]}


Text = Annotated[
    str,
    Field(description="the text", json_schema_extra={"pattern": NOT_BLANK, LIMIT_KEYWORD: "text"}),
    AfterValidator(_not_blank),
]
StringValue = Annotated[str, Field(json_schema_extra={LIMIT_KEYWORD: "text"})]
FieldName = Annotated[str, Field(min_length=1, max_length=MAX_FIELD_NAME_CHARS)]
FieldValue = Annotated[StringValue | int | float | bool | None, BeforeValidator(_flat_value)]
Record = Annotated[
    dict[FieldName, FieldValue],
    Field(
        min_length=1,
        max_length=MAX_FIELDS,
        description=f"a flat record: at most {MAX_FIELDS} scalar fields, at least one of them not null or blank",
        json_schema_extra={
            "not": {
                "additionalProperties": {"anyOf": [{"type": "null"}, {"type": "string", "not": {"pattern": NOT_BLANK}}]}
            }
        },
    ),
    AfterValidator(_has_content),
]
ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, description="the client's id for the item")]
Label = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_LABEL_CHARS,
        description="a label of the model",
        json_schema_extra={LIMIT_KEYWORD: "label"},
    ),
]


class Verdict(BaseModel):
    """One labelled item. Exactly one of `text` or `fields`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra=exactly_one_of("text", "fields"))

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
        if (self.text is None) == (self.fields is None):
            raise ValueError("give exactly one of `text` or `fields`")
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


def input_chars(item: ModelInput) -> int:
    """Characters compared with MAX_TEXT_CHARS: the text's, or the longest string value's of a record
    (field names have their own limit, MAX_FIELD_NAME_CHARS), as the schema's maxLength says."""
    if isinstance(item, str):
        return len(item)
    return max((len(value) for value in item.values() if isinstance(value, str)), default=0)


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


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_id(raw: Any) -> Any:
    return raw.get("id") if isinstance(raw, dict) else None
