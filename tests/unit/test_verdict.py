"""The verdict schema shared by the API, the queue and the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from lodbrok.verdicts.verdict import Verdict, VerdictError, latest_per_input, parse_message_body

LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize(
    "verdict",
    [
        {"id": "a", "text": f"free prize {LONE_SURROGATE}", "label": "spam"},
        {"id": "a", "fields": {"subject": LONE_SURROGATE}, "label": "spam"},
        {"id": "a", "fields": {LONE_SURROGATE: "x"}, "label": "spam"},
        {"id": LONE_SURROGATE, "text": "hello", "label": "ham"},
        {"id": "a", "text": "hello", "label": "ham", "source": LONE_SURROGATE},
    ],
)
def test_verdict_with_a_lone_surrogate_is_invalid(verdict: dict[str, Any]) -> None:
    # Given a verdict with a lone surrogate in any of its strings (it parses from a JSON escape)
    # When it is validated
    # Then it is refused, so it can never reach an archive that must write UTF-8
    with pytest.raises(ValidationError, match=r"lone surrogate|unicode string"):
        Verdict.model_validate(verdict)


def test_queue_message_with_a_lone_surrogate_is_a_permanent_verdict_error() -> None:
    # Given a queue message whose JSON escapes decode to a lone surrogate
    body = json.dumps([{"id": "ok", "text": "hello", "label": "ham"}, {"id": "bad", "text": "\ud83d", "label": "spam"}])

    # When it is parsed
    with pytest.raises(VerdictError) as raised:
        parse_message_body(body, max_text_chars=5000, labels=None)

    # Then the bad item is named without echoing its text, so the message is quarantined, not retried
    [problem] = raised.value.problems
    assert problem["index"] == 1 and problem["id"] == "bad"
    assert "lone surrogate" in problem["error"] and "\ud83d" not in problem["error"]


def test_verdict_with_other_unicode_is_valid() -> None:
    # Given emoji, CJK and right-to-left text (surrogate pairs in JSON, whole code points in Python)
    verdict = Verdict.model_validate({"id": "u", "text": "😀 日本語 שלום", "label": "ham"})

    # Then it is accepted unchanged
    assert verdict.text == "😀 日本語 שלום"


def test_latest_per_input_keeps_the_verdict_received_last_whatever_the_arrival_order() -> None:
    # Given a newer ham that arrived before an older spam on one input (a delayed or redelivered message),
    # two copies of another verdict with the same stamp, and a verdict without a readable stamp
    newer_ham = Verdict(id="1", text="see you at 8", label="ham", received_at="2026-01-02T10:00:02.000Z")
    older_spam = Verdict(id="1", text="See you at 8 ", label="spam", received_at="2026-01-02T10:00:01.000Z")
    first_copy = Verdict(id="2", text="free tokens", label="spam", received_at="2026-01-02T10:00:00.000Z")
    second_copy = first_copy.model_copy(update={"id": "2b"})
    unstamped = Verdict(id="3", text="free tokens", label="ham", received_at="yesterday")

    # When the latest verdict per input is chosen
    latest = latest_per_input([newer_ham, first_copy, older_spam, unstamped, second_copy], lambda verdict: verdict)

    # Then the one received last wins each input (the later position breaks a tie), in arrival order
    assert latest == [newer_ham, second_copy]


NEVER_VALID_BODIES = {
    "deep nesting": "[" * 200_000,
    "5,000-digit integer": "1" * 5_000,
    "deep id": json.dumps({"id": None, "text": "hi", "label": "ham"}).replace("null", "[" * 900 + "]" * 900),
    "not an object": json.dumps([1, "two", None]),
    "verdicts not a list": json.dumps({"verdicts": {"id": "a"}}),
    "lone surrogate in a key": '{"id": "a", "fields": {"\\udc00": "x"}, "label": "ham"}',
}


@pytest.mark.parametrize("body", NEVER_VALID_BODIES.values(), ids=NEVER_VALID_BODIES.keys())
def test_parse_message_body_never_valid_message_is_a_verdict_error(body: str) -> None:
    # Given a queue message that no retry can make valid
    # When it is parsed
    # Then it is a VerdictError (quarantined on first sight), never another exception (retried into the DLQ)
    with pytest.raises(VerdictError) as raised:
        parse_message_body(body, max_text_chars=5000, labels=None)

    # And its problems can be written to the quarantine record
    assert json.dumps(raised.value.problems)
