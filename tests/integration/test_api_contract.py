"""The API against its own OpenAPI document: schemathesis with every check, against `make local`'s stack.

The document (`GET /openapi.json`) states every rule the API enforces, with the stack's limits and the
model's labels; schemathesis generates requests that follow it (each must be accepted) and requests that
break it (each must be refused with a 4xx), sends undeclared methods and requests without the key, and
checks every answer's status, content type and body against the document.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.demo import local_stack
from lodbrok.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "tests" / "contract"
# No retrain during the run (fuzzed verdicts would start fine-tunes), and the call log on so its route is fuzzed.
STACK_OVERRIDES = ("MinVerdictsToTrain=1000000", "CallLogEnabled=true")


@pytest.mark.slow
def test_api_follows_its_openapi_document_under_schemathesis(tmp_path: Path) -> None:
    with local_stack(overrides=STACK_OVERRIDES, log_path=tmp_path / "stack.log") as stack:
        # When schemathesis runs every check on every operation (a fixed seed keeps runs comparable)
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{stack.api_url}/openapi.json",
                "--url",
                stack.api_url,
                "--checks",
                "all",
                "--header",
                f"x-api-key: {stack.api_key}",
                "--max-examples",
                "60",
                "--seed",
                "20261203",
                "--no-color",
            ],
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": str(HOOKS),
                "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                "EXPLAIN_MAX_CHARS": str(Settings.from_env({}).explain_max_chars),  # the template's default too
            },
            capture_output=True,
            text=True,
            timeout=900,
        )
    # Then no check failed
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " generated, " in run.stdout
