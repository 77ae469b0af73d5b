"""What logs may say about user input and errors (lodbrok.observability): digests and error shapes, no values."""

from __future__ import annotations

from lodbrok.observability import digest, error_fields


def test_digest_is_stable_short_and_does_not_hold_the_value() -> None:
    # Given a user-controlled string (a source name, with a lone surrogate as JSON can carry)
    value = "moderator-\ud800-42"

    # When it is digested twice, then it is the same 12 hex characters and not the value
    assert digest(value) == digest(value) != digest("moderator-43")
    assert len(digest(value)) == 12 and "moderator" not in digest(value)


def test_error_fields_name_the_type_and_frames_but_never_the_message() -> None:
    # Given an exception whose message quotes user input
    def fail() -> None:
        raise ValueError("unknown label 'SECRET-LABEL'")

    try:
        fail()
    except ValueError as error:
        fields = error_fields(error)

    # Then the log fields say what and where, not the message
    assert fields["error_type"] == "ValueError"
    assert fields["stack"][-1].startswith("test_observability.py:") and fields["stack"][-1].endswith(" fail")
    assert "SECRET" not in str(fields)
