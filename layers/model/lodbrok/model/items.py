"""What an item is: the input a client sends to be classified (a text or a flat record) and its limits.

One definition, used by the predict API's request models (`lodbrok.serving.schemas`), by verdicts
(`lodbrok.verdicts.verdict`), by the featurizer (`ModelInput`) and by the dataset parser (`is_blank`). Every rule
the validated types (`Text`, `Record`, `ItemInput`) enforce is also stated in their JSON schema, so the
OpenAPI document admits exactly what the API accepts; limits that come from the settings (`MAX_TEXT_CHARS`:
the length of a text, and of each string value of a record; `MAX_ITEMS`; `EXPLAIN_MAX_ITEMS`; the model's
labels) are marked with `LIMIT_KEYWORD` and filled in by `lodbrok.serving.openapi` when the document is served.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_ID_CHARS = 256
MAX_FIELDS = 64
MAX_FIELD_NAME_CHARS = 256

# What the featurizer reads: a text, or a record of field names to scalar values.
RecordInput = Mapping[str, Any]
ModelInput = str | RecordInput

# Schema keyword marking a bound that comes from the settings or the model: "text" (maxLength =
# MAX_TEXT_CHARS), "items" (maxItems = MAX_ITEMS), "explain_items" (maxItems = EXPLAIN_MAX_ITEMS) or "label"
# (enum = the model's labels).
LIMIT_KEYWORD = "x-lodbrok-limit"
# "Not blank": a character that is not whitespace by Python's str.isspace, spelled out because `\s` means
# different sets in Python, ECMAScript and Rust regexes, and the schema must mean one thing to every reader.
NOT_BLANK = r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NOT_BLANK = re.compile(NOT_BLANK)


def is_blank(value: Any) -> bool:
    """No value: None, or a string of whitespace only."""
    return value is None or (isinstance(value, str) and not _NOT_BLANK.search(value))


def has_content(record: RecordInput) -> bool:
    """A record with at least one field that is not blank."""
    return not all(is_blank(value) for value in record.values())


def input_chars(item: ModelInput) -> int:
    """Characters compared with MAX_TEXT_CHARS: the text's, or the longest string value's of a record
    (field names have their own limit, MAX_FIELD_NAME_CHARS), as the schema's maxLength says."""
    if isinstance(item, str):
        return len(item)
    return max((len(value) for value in item.values() if isinstance(value, str)), default=0)


def total_chars(item: ModelInput) -> int:
    """Characters an explanation reads: the text's, or the sum of a record's string values."""
    if isinstance(item, str):
        return len(item)
    return sum(len(value) for value in item.values() if isinstance(value, str))


def exactly_one_of(*names: str) -> dict[str, Any]:
    """JSON schema: exactly one of these properties is present and not null."""
    return {"oneOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]}


def _not_blank(value: str) -> str:
    if is_blank(value):
        raise ValueError("must contain non-whitespace characters")
    return value


def _flat_value(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return value
    raise ValueError("record values must be a string, number, boolean or null (records are flat: no lists or objects)")


def _with_content(record: dict[str, Any]) -> dict[str, Any]:
    if not has_content(record):
        raise ValueError("the record has no non-empty field")
    return record


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
    AfterValidator(_with_content),
]
ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, description="the client's id for the item")]


class ItemInput(BaseModel):
    """An item: an optional id and exactly one of `text` or `fields`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("text", "fields"))

    id: ItemId | None = None
    text: Text | None = None
    fields: Record | None = None

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        if (self.text is None) == (self.fields is None):
            raise ValueError("give exactly one of `text` or `fields`")
        return self

    @property
    def input(self) -> ModelInput:
        return self.text if self.text is not None else dict(self.fields or {})
