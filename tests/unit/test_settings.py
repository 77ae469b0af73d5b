"""Runtime configuration (lodbrok.settings): environment variables read by name, parsed, and checked at load."""

from __future__ import annotations

import pydantic
import pytest

from lodbrok.settings import Settings


def test_settings_from_env_parse_the_template_variables_and_ignore_the_rest() -> None:
    # Given an environment as a function sees it: the template's variables among the runtime's own
    environ = {
        "MODEL_BUCKET": "models",
        "MODEL_REFRESH_SECONDS": "2.5",
        "MAX_ITEMS": "7",
        "CALL_LOG_ENABLED": "true",
        "MODEL_TRUSTED_SIGNING_KEYS": "arn:old,arn:older",
        "PATH": "/usr/bin",
        "max_items": "999",
    }

    # When the settings are read from it
    settings = Settings.from_env(environ)

    # Then each variable lands in its field with its type, and names that are not the template's are ignored
    assert settings.model_bucket == "models"
    assert settings.model_refresh_seconds == 2.5
    assert settings.max_items == 7
    assert settings.call_log_enabled is True
    assert settings.trusted_signing_keys == "arn:old,arn:older"


def test_settings_from_an_empty_environment_are_the_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.model_name, settings.max_items, settings.cache_ttl_seconds) == ("default", 100, 86_400)
    assert settings.review_band == "" and settings.call_log_enabled is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_ITEMS", "0"),
        ("MAX_ITEMS", "1001"),
        ("MAX_ITEMS", "ten"),
        ("MAX_BODY_BYTES", "1023"),
        ("CACHE_TTL_SECONDS", "59"),
        ("MODEL_REFRESH_SECONDS", "-1"),
        ("GATE_TOLERANCE", "1.5"),
        ("RETRAIN_MAX_ATTEMPTS", "11"),
        ("FINETUNE_EPOCHS", "0"),
        ("CALL_LOG_ENABLED", "maybe"),
    ],
)
def test_settings_refuse_a_bad_value_naming_its_variable(name: str, value: str) -> None:
    # Given one variable out of its range, or not of its type
    # When the settings are read
    # Then loading fails and the error names the variable, rather than a function running with it
    with pytest.raises(pydantic.ValidationError, match=name):
        Settings.from_env({name: value})


def test_settings_are_frozen_once_read() -> None:
    settings = Settings.from_env({"MAX_ITEMS": "5"})
    with pytest.raises(pydantic.ValidationError):
        settings.max_items = 50  # type: ignore[misc]
