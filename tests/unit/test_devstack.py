"""`python -m devstack` (devstack.__main__): its options and the banner it prints once the stack serves."""

from __future__ import annotations

import subprocess

from devstack.__main__ import banner, build_parser, cli_environment, parameter_overrides
from devstack.template import FAST_LOOP, LOCAL_DEFAULTS, Template
from lodbrok.settings import Settings


def test_parameter_overrides_fast_batches_verdicts_for_seconds_and_explicit_ones_win() -> None:
    # Given --fast, and --fast with an explicit batching window
    fast = build_parser().parse_args(["--fast"])
    both = build_parser().parse_args(["--fast", "--parameter-overrides", "RetrainBatchingWindowSeconds=7"])
    # Then --fast sets the fast loop's parameters, which the template accepts, and an explicit value wins
    assert parameter_overrides(fast) == dict(item.split("=", 1) for item in (*LOCAL_DEFAULTS, *FAST_LOOP))
    assert (
        Template(parameter_overrides=parameter_overrides(fast)).queue_trigger("RetrainFunction").batching_window_seconds
        == 2
    )
    assert parameter_overrides(both)["RetrainBatchingWindowSeconds"] == "7"
    # And without it only the local stack's own defaults change the template's
    assert parameter_overrides(build_parser().parse_args([])) == dict(item.split("=", 1) for item in LOCAL_DEFAULTS)


def test_parameter_overrides_turn_the_api_rollback_on_locally_unless_told_otherwise() -> None:
    # Given the local stack's options without overrides, and with ApiRollback=false
    plain = build_parser().parse_args([])
    off = build_parser().parse_args(["--parameter-overrides", "ApiRollback=false"])
    # When the predict function's environment is read from the template with them
    environments = [
        Template(parameter_overrides=parameter_overrides(args)).environment("PredictFunction") for args in (plain, off)
    ]
    # Then the local stack rolls back through the API (the template's default is off), unless told otherwise
    assert Template().environment("PredictFunction")["API_ROLLBACK"] == "false"
    assert [Settings.from_env(env).api_rollback for env in environments] == [True, False]


FUNCTION_ENV = {
    "MODEL_BUCKET": "lodbrok-local-modelbucket",
    "MODEL_SIGNING_KEY": "arn:aws:kms:us-east-1:123456789012:key/abc",
    "VERDICT_MEMORY_TABLE": "lodbrok-local-verdictmemorytable",
    "CLIENTS_TABLE": "lodbrok-local-clientstable",
    "CACHE_TABLE": "lodbrok-local-cachetable",
    "MODEL_REFRESH_SECONDS": "2",
}


def _exports() -> dict[str, str]:
    return cli_environment("http://127.0.0.1:3000", "key-with-$-and-'", "http://127.0.0.1:5055", FUNCTION_ENV, "p1")


def test_cli_environment_gives_the_cli_every_name_it_reads_from_settings() -> None:
    # Given the variables the banner exports
    exports = _exports()
    # When the CLI reads its settings from them alone
    settings = Settings.model_validate(exports)
    # Then it finds the stack's bucket, signing key, tables and usage plan, and boto3 finds the emulation
    assert settings.model_bucket == FUNCTION_ENV["MODEL_BUCKET"] and settings.model_name == "default"
    assert settings.model_signing_key == FUNCTION_ENV["MODEL_SIGNING_KEY"]
    assert settings.verdict_memory_table == FUNCTION_ENV["VERDICT_MEMORY_TABLE"]
    assert settings.clients_table == FUNCTION_ENV["CLIENTS_TABLE"] and settings.usage_plan_id == "p1"
    assert settings.model_refresh_seconds == 2
    assert exports["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5055" and exports["AWS_DEFAULT_REGION"] == "us-east-1"
    assert (exports["LODBROK_API_URL"], exports["LODBROK_API_KEY"]) == ("http://127.0.0.1:3000", "key-with-$-and-'")


def test_banner_export_block_sets_every_variable_as_a_shell_reads_it_and_the_examples_use_them() -> None:
    # Given the banner of a stack whose API key has characters a shell would expand
    exports = _exports()
    text = banner(exports, "seed-version", Template().queue_trigger("RetrainFunction"), api_rollback=True)
    # When its export lines are run by a shell
    lines = [line for line in text.splitlines() if line.startswith("export ")]
    script = "\n".join([*lines, 'printf "%s\\n" "$LODBROK_API_KEY" "$MODEL_BUCKET" "$USAGE_PLAN_ID"'])
    shown = subprocess.run(["sh", "-c", script], env={}, capture_output=True, text=True, check=True).stdout
    # Then each variable is exported once, with its exact value
    assert [line.split("=", 1)[0].removeprefix("export ") for line in lines] == list(exports)
    assert shown.splitlines() == [exports["LODBROK_API_KEY"], exports["MODEL_BUCKET"], "p1"]
    # And the examples name the API and the key only through the exported variables
    examples = [line for line in text.splitlines() if "curl" in line or "lodbrok " in line]
    assert examples and not [line for line in examples if "127.0.0.1" in line or "key-with" in line]
    assert not [line for line in examples if "--bucket" in line or "--signing-key" in line or "--usage-plan" in line]
