"""What an item is: its input types, their limits, and the one rule of exactly one input."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lodbrok.model.items import ItemInput, has_content, input_chars, is_blank


@pytest.mark.parametrize(
    ("value", "blank"), [(None, True), ("", True), (" \t\u3000\n", True), ("a", False), (0, False)]
)
def test_is_blank_means_none_or_whitespace_only(value: object, blank: bool) -> None:
    assert is_blank(value) is blank


def test_has_content_needs_one_field_that_is_not_blank() -> None:
    assert has_content({"a": None, "b": " ", "c": False})
    assert not has_content({"a": None, "b": " \u2003"})


def test_input_chars_counts_a_text_or_the_longest_string_value_of_a_record() -> None:
    assert input_chars("héllo") == 5
    assert input_chars({"subject": "abc", "long_field_name": "de", "count": 123456}) == 3


def test_item_input_takes_exactly_one_of_text_or_fields() -> None:
    assert ItemInput.model_validate({"text": "hi"}).input == "hi"
    assert ItemInput.model_validate({"id": "e1", "fields": {"subject": "Hi"}}).input == {"subject": "Hi"}
    for neither_or_both in ({"id": "e1"}, {"text": "hi", "fields": {"subject": "Hi"}}):
        with pytest.raises(ValidationError, match="exactly one of `text` or `fields`"):
            ItemInput.model_validate(neither_or_both)


def test_item_input_refuses_blank_texts_empty_records_and_nested_values() -> None:
    for invalid in ({"text": "  "}, {"fields": {"a": None, "b": ""}}, {"fields": {"a": [1]}}, {"fields": {"a": 1e999}}):
        with pytest.raises(ValidationError):
            ItemInput.model_validate(invalid)
