"""The package's folders are its architecture: each imports only the folders below it, TensorFlow stays inside
`lodbrok/training/` (imported lazily even there), and the predict function never reaches training or learning.

The folder checks read the source (every import, also those inside functions); the TensorFlow checks import
modules in a fresh interpreter and look at what it loaded.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lodbrok
from lodbrok.model.bundle import Bundle
from lodbrok.model.features import FeaturizerConfig

HEAVY_PACKAGES = ("tensorflow", "keras", "tf_keras")
PACKAGE = Path(lodbrok.__file__).resolve().parent
ROOT = PACKAGE.parents[2]
PLATFORM = "platform"  # the modules at the package's top: aws, clock, observability, settings

# Each folder and the folders it may import, bottom up; a folder missing here fails the test that walks them all.
ALLOWED = {
    "model": set(),
    PLATFORM: {"model"},
    "access": {PLATFORM},
    "verdicts": {"model", PLATFORM, "access"},
    "registry": {"model", PLATFORM},
    "training": {"model", PLATFORM},
    "serving": {"model", PLATFORM, "access", "verdicts", "registry"},
    "learning": {"model", PLATFORM, "access", "verdicts", "registry", "training"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> list[str]:
    return sorted(module_name(path) for path in PACKAGE.rglob("*.py"))


def folder_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else PLATFORM


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name `path` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_package_folders_import_only_the_folders_below_them() -> None:
    # Given every module of the package and the imports it makes
    upward = []
    for path in PACKAGE.rglob("*.py"):
        here = folder_of(module_name(path))
        assert here in ALLOWED, f"{here} is a folder the architecture does not name yet"
        for name in imported_modules(path):
            if name.split(".")[0] == "lodbrok" and name.count(".") >= 1:
                there = folder_of(name)
                # Then each lodbrok import stays in its folder or goes down to one the folder may use
                if there != here and there not in ALLOWED[here]:
                    upward.append(f"{module_name(path)} -> {name}")
    assert upward == []


def test_only_the_training_folder_names_tensorflow() -> None:
    # Given every module's imports, also the lazy ones inside functions
    for path in PACKAGE.rglob("*.py"):
        heavy = {name for name in imported_modules(path) if name.split(".")[0] in HEAVY_PACKAGES}
        # Then TensorFlow and Keras appear only under lodbrok/training/
        if folder_of(module_name(path)) != "training":
            assert heavy == set(), module_name(path)


@pytest.mark.parametrize("handler", ["app.py", "errors.py"])
def test_predict_function_reaches_neither_training_nor_learning(handler: str) -> None:
    # Given the predict function's modules and, transitively, every lodbrok module they import
    modules = set(package_modules())
    seen: set[str] = set()
    todo = [name for name in imported_modules(ROOT / "functions" / "predict" / handler) if name.startswith("lodbrok")]
    while todo:
        name = todo.pop()
        module = next((m for m in (name, name.rpartition(".")[0]) if m in modules), None)
        if module is None or module in seen:
            continue
        seen.add(module)
        source = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
        if not source.exists():
            source = source.with_suffix("") / "__init__.py"
        todo.extend(n for n in imported_modules(source) if n.startswith("lodbrok"))

    # Then none of them lives in training/ or learning/
    assert seen and not {folder_of(module) for module in seen} & {"training", "learning"}


# Reports, as JSON, which heavy packages and which lodbrok modules are loaded after running `body`.
CHILD_TEMPLATE = """
import json, sys
{body}
heavy = sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r})
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("lodbrok", "lodbrok_cli"))
print(json.dumps({{"heavy": heavy, "loaded": loaded}}))
"""


def run_child(body: str) -> dict[str, list[str]]:
    """Run `body` in a fresh interpreter and return what it had loaded afterwards."""
    existing = os.environ.get("PYTHONPATH")
    paths = [str(PACKAGE.parent), str(ROOT), *([existing] if existing else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
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


def test_modules_outside_training_do_not_load_tensorflow() -> None:
    # Given a fresh interpreter
    # When every module outside lodbrok/training/ is imported
    modules = [module for module in package_modules() if folder_of(module) != "training"]
    report = run_child("\n".join(f"import {module}" for module in modules))

    # Then they all really loaded, and neither TensorFlow nor Keras came with them
    assert set(modules) <= set(report["loaded"])
    assert report["heavy"] == [], f"loaded {report['heavy'][:5]}"


@pytest.mark.parametrize("module", ["lodbrok.training.trainer", "lodbrok.training.network"])
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
        "import lodbrok_cli.main\n"
        "parser = lodbrok_cli.main.build_parser()\n"
        "parser.parse_args(['train', '--out', 'model.lbk'])\n"
        "parser.parse_args(['predict', '--model', 'model.lbk', 'hello'])"
    )

    # Then TensorFlow/Keras are not loaded: only the training commands may import them
    assert "lodbrok_cli.main" in report["loaded"]
    assert "lodbrok.training.trainer" not in report["loaded"]
    assert report["heavy"] == [], f"importing lodbrok_cli.main loaded {report['heavy'][:5]}"


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
        "import contextlib, io, lodbrok_cli.main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    status = lodbrok_cli.main.main(['inspect', {str(path)!r}])\n"
        "assert status == 0, status\n"
        "assert 'v7' in out.getvalue(), out.getvalue()"
    )

    # Then the command succeeded without loading TensorFlow or Keras
    assert "lodbrok_cli.main" in report["loaded"]
    assert report["heavy"] == [], f"lodbrok inspect loaded {report['heavy'][:5]}"
