from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lodbrok
from lodbrok.bundle import Bundle
from lodbrok.features import FeaturizerConfig

HEAVY_PACKAGES = ("tensorflow", "keras", "tf_keras")

SERVING_MODULES = [
    "lodbrok.predictor",
    "lodbrok.bundle",
    "lodbrok.features",
    "lodbrok.decision",
    "lodbrok.network",
    "lodbrok.data",
    "lodbrok.evaluation",
]

# Reports, as JSON, which heavy packages and which lodbrok modules are loaded after running `body`.
CHILD_TEMPLATE = """
import json, sys
{body}
heavy = sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r})
loaded = sorted(name for name in sys.modules if name == "lodbrok" or name.startswith("lodbrok."))
print(json.dumps({{"heavy": heavy, "loaded": loaded}}))
"""


def run_child(body: str) -> dict[str, list[str]]:
    """Run `body` in a fresh interpreter and return what it had loaded afterwards."""
    package_root = str(Path(lodbrok.__file__).resolve().parents[1])
    existing = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + existing if existing else "")}
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_TEMPLATE.format(body=body, heavy=HEAVY_PACKAGES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", SERVING_MODULES)
def test_serving_module_import_does_not_load_tensorflow(module: str) -> None:
    # Given a fresh interpreter
    # When a serving-path module is imported
    report = run_child(f"import {module}")

    # Then the module really loaded, and neither TensorFlow nor Keras came with it
    assert module in report["loaded"]
    assert report["heavy"] == [], f"importing {module} loaded {report['heavy'][:5]}"


@pytest.mark.parametrize("module", ["lodbrok.training", "lodbrok.network"])
def test_training_module_import_defers_tensorflow(module: str) -> None:
    # Given a fresh interpreter
    # When a training-side module is imported but nothing is trained
    report = run_child(f"import {module}")

    # Then TensorFlow/Keras are still not loaded (they are imported inside the functions that need them)
    assert module in report["loaded"]
    assert report["heavy"] == [], f"importing {module} loaded {report['heavy'][:5]}"


def test_cli_import_and_parser_do_not_load_tensorflow() -> None:
    # Given a fresh interpreter
    # When the CLI module is imported and its parser built and used
    report = run_child(
        "import lodbrok.cli\n"
        "parser = lodbrok.cli.build_parser()\n"
        "parser.parse_args(['train', '--out', 'model.lbk'])\n"
        "parser.parse_args(['predict', '--model', 'model.lbk', 'hello'])"
    )

    # Then TensorFlow/Keras are not loaded: only the training commands may import them
    assert "lodbrok.cli" in report["loaded"]
    assert "lodbrok.training" not in report["loaded"]
    assert report["heavy"] == [], f"importing lodbrok.cli loaded {report['heavy'][:5]}"


def test_cli_inspect_command_does_not_load_tensorflow(tmp_path: Path) -> None:
    # Given a bundle file on disk (members are placeholder bytes: inspect only reads metadata)
    path = tmp_path / "model.lbk"
    Bundle(
        keras_model=b"keras",
        tflite_model=b"tflite",
        featurizer=FeaturizerConfig(),
        labels=["ham", "spam"],
        rehearsal=b"",
        gate=b"",
        metadata={"version": "v7"},
    ).write(str(path))

    # When `lodbrok inspect` runs on it in a fresh interpreter
    report = run_child(
        "import contextlib, io, lodbrok.cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    status = lodbrok.cli.main(['inspect', {str(path)!r}])\n"
        "assert status == 0, status\n"
        "assert 'v7' in out.getvalue(), out.getvalue()"
    )

    # Then the command succeeded without loading TensorFlow or Keras
    assert "lodbrok.cli" in report["loaded"]
    assert report["heavy"] == [], f"lodbrok inspect loaded {report['heavy'][:5]}"
