"""Pydantic's validation messages in plain words, for the API's error bodies.

Pydantic writes a validator's own message as "Value error, <message>" and an unknown field as "Extra inputs
are not permitted"; a client is better served by the message alone, and by the names of the fields it may send
where it sent the unknown one. Used by the predict API's 422 details (`functions/predict/errors.py`) and by
each bad verdict's problem (`lodbrok.verdicts.verdict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args

from pydantic import BaseModel

PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def plain_message(entry: Mapping[str, Any], model: type[BaseModel] | None = None) -> str:
    """One of `ValidationError.errors()` as a sentence; `model` is what was validated at the root of its `loc`."""
    location: Sequence[Any] = entry.get("loc") or ()
    if entry.get("type") == "extra_forbidden" and location:
        where = model_at(model, location[:-1]) if model is not None else None
        allowed = f"; the fields allowed here are {', '.join(field_names(where))}" if where is not None else ""
        return f"'{location[-1]}' is not a field of this object{allowed}"
    message = str(entry.get("msg", "invalid value"))
    for prefix in PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def field_names(model: type[BaseModel]) -> list[str]:
    """The names a client sends the model's fields by."""
    return [field.alias or name for name, field in model.model_fields.items()]


def model_at(model: type[BaseModel], location: Sequence[Any]) -> type[BaseModel] | None:
    """The model validated at `location` under `model` (list positions skipped), or None where there is none."""
    current: type[BaseModel] | None = model
    for part in location:
        if isinstance(part, int):
            continue
        fields = {field.alias or name: field for name, field in current.model_fields.items()} if current else {}
        field = fields.get(str(part))
        current = _model_in(field.annotation) if field is not None else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first model in a field's type: itself, or inside list[...], X | None, Annotated[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
