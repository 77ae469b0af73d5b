"""The Lambda artifacts: `sam build` of the zip parts, checked by scripts/check_artifacts.py.

Tests marked `build` run `sam build PredictFunction` (which also builds ModelLayer) into a temporary
directory. That cross-installs cp313 wheels from PyPI and takes about 10-15 s here, so it runs once
per module and there is no build cache to go stale. The retrain image is not built (it needs Docker
with registry access). If a CPython 3.13 happens to be installed, the built layer is also imported
and made to predict under it, with a stand-in for the runtime's boto3; otherwise only the static
checks run. The unmarked tests feed the checker small hand-made artifacts, one violation each.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.template import Template

# On the worker that runs tests/samlocal (`make test` spreads the rest): the layer's builds share its source tree.
pytestmark = pytest.mark.xdist_group("docker")
ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "scripts" / "check_artifacts.py"
RUNTIME_GLIBC = (2, 34)
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
# Pure-Python packages the python3.13 Lambda runtime provides (the layer deliberately leaves them out).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def sam_executable() -> str | None:
    sam = Path(sys.executable).with_name("sam")
    return str(sam) if sam.exists() else shutil.which("sam")


def run_checker(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def runtime_version() -> list[int]:
    """The Python the template runs the predict function on (python3.13 -> [3, 13]): the layer must run under it."""
    runtime = str(Template().properties("PredictFunction")["Runtime"])
    return [int(part) for part in runtime.removeprefix("python").split(".")]


def find_python313() -> str | None:
    """A real CPython of the runtime's version on this host, if any (pyenv shims that run another are skipped)."""
    candidates = [
        os.environ.get("LODBROK_PYTHON313"),
        shutil.which("python3.13"),
        *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.13*/bin/python3.13"))),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", f"import sys; print(list(sys.version_info[:2]) == {runtime_version()})"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


# --- the real build -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sam = sam_executable()
    if sam is None:
        pytest.skip("the SAM CLI is not installed (pip install aws-sam-cli)")
    if shutil.which("make") is None:
        pytest.skip("make is not installed; the makefile builds need it")
    if not (ROOT / "functions/predict/app.py").exists():
        pytest.skip("functions/predict/app.py is not written yet, so PredictFunction cannot be built")
    work = tmp_path_factory.mktemp("sam")
    completed = subprocess.run(
        [
            sam,
            "build",
            "PredictFunction",
            "--template-file",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(work / "build"),
            "--cache-dir",
            str(work / "cache"),
            "--no-cached",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "PIP": f"{sys.executable} -m pip",  # the layer Makefile's pip: the project's own
            "SAM_CLI_TELEMETRY": "0",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    return work / "build"


@pytest.mark.build
def test_build_artifacts_pass_every_check(build_dir: Path, tmp_path: Path) -> None:
    # Given the built function and layer
    report_path = tmp_path / "report.json"

    # When the artifact checker runs on them
    completed = run_checker("--build-dir", build_dir, "--report", report_path)
    report = json.loads(report_path.read_text())

    # Then there is no violation: size, glibc, CPython 3.13 modules, no stale bytecode
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert report["ok"] is True and report["violations"] == []
    assert report["total_unzipped_bytes"] < LAMBDA_UNZIPPED_LIMIT_BYTES
    assert tuple(map(int, report["max_glibc_needed"].split("."))) <= RUNTIME_GLIBC
    assert set(report["extension_modules"]) == {"cpython-313-x86_64-linux-gnu"}
    assert report["bytecode_files"] == 0
    assert "ModelLayer" in completed.stdout and "MB" in completed.stdout


@pytest.mark.build
def test_build_function_holds_only_handler_code(build_dir: Path) -> None:
    # Given the built predict function
    files = sorted(
        path.relative_to(build_dir / "PredictFunction") for path in (build_dir / "PredictFunction").rglob("*")
    )

    # Then it is the handler module (and any sibling modules) and the console's static files, nothing else:
    # dependencies come from the layer
    assert Path("app.py") in files
    console = {Path("console"), *(Path("console") / name for name in ("index.html", "console.js", "console.css"))}
    assert console <= set(files)
    assert all((path.suffix == ".py" and len(path.parts) == 1) or path in console for path in files), files


@pytest.mark.build
def test_build_layer_ships_lodbrok_without_trimmed_or_runtime_files(build_dir: Path) -> None:
    # Given the built layer
    site = build_dir / "ModelLayer" / "python"
    package = ROOT / "layers/model/lodbrok"
    source_modules = {path.relative_to(package) for path in package.rglob("*.py")}

    # Then it holds the whole lodbrok package, every folder of it, and not the operators' CLI ...
    assert {path.relative_to(site / "lodbrok") for path in (site / "lodbrok").rglob("*.py")} >= source_modules
    assert not (site / "lodbrok_cli").exists()
    # ... and neither what the Makefile trims nor what the Lambda runtime provides
    assert not (site / "ai_edge_litert" / "libLiteRtWebGpuAccelerator.so").exists()
    assert not (site / "ai_edge_litert" / "tools" / "apply_plugin_main").exists()
    assert not (site / "bin").exists()
    assert not [package for package in RUNTIME_PACKAGES if (site / package).exists()]
    assert (site / "aws_xray_sdk").is_dir(), "Powertools' Tracer needs aws_xray_sdk, which the runtime lacks"


@pytest.mark.build
def test_build_layer_predicts_under_python313(build_dir: Path, tiny_bundle_bytes: bytes, tmp_path: Path) -> None:
    # Given a CPython 3.13 on this host, the built function + layer, and a stand-in for the runtime's boto3
    python313 = find_python313()
    if python313 is None:
        pytest.skip("no CPython 3.13 on this host (set LODBROK_PYTHON313); the static checks above still ran")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        module_file = Path(importlib.import_module(name).__file__ or "")
        source = module_file.parent if module_file.name == "__init__.py" else module_file
        (runtime / source.name).symlink_to(source)
    bundle = tmp_path / "model.lbk"
    bundle.write_bytes(tiny_bundle_bytes)
    child = (
        "import json, sys\n"
        "import app\n"  # the handler module, as Lambda imports it
        "from lodbrok.model.bundle import Bundle\n"
        "from lodbrok.model.predictor import Predictor\n"
        "predictor = Predictor(Bundle.read(sys.argv[1]))\n"
        "labels = [p.label for p in predictor.predict(['WINNER!! claim your prize, call 09061701461', 'lunch?'])]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps({'labels': labels, 'heavy': heavy, 'version': list(sys.version_info[:2])}))\n"
    )
    path = os.pathsep.join(str(p) for p in (build_dir / "PredictFunction", build_dir / "ModelLayer/python", runtime))

    # When the handler module is imported and the layer's LiteRT runs the model, with no site-packages
    completed = subprocess.run(
        [python313, "-S", "-B", "-c", child, str(bundle)],
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": path,
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Then it predicts a label for each text, on 3.13, without TensorFlow or Keras
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["version"] == runtime_version()
    assert len(result["labels"]) == 2 and set(result["labels"]) <= {"ham", "spam"}
    assert result["heavy"] == []


# --- the checker on hand-made artifacts ---------------------------------------------------------------------


def make_artifacts(root: Path) -> Path:
    """A minimal build directory that passes every check."""
    build = root / "build"
    (build / "PredictFunction").mkdir(parents=True)
    (build / "PredictFunction" / "app.py").write_text("def lambda_handler(event, context):\n    return {}\n")
    (build / "ModelLayer" / "python" / "lodbrok").mkdir(parents=True)
    (build / "ModelLayer" / "python" / "lodbrok" / "__init__.py").write_text("")
    return build


def host_extension_module() -> Path:
    """A real x86-64 extension module built for this host's CPython (3.11, so the wrong one for Lambda)."""
    import numpy

    return next(Path(numpy.__file__).parent.rglob("*.cpython-*-x86_64-linux-gnu.so"))


def test_check_artifacts_accepts_a_clean_build(tmp_path: Path) -> None:
    build = make_artifacts(tmp_path)
    completed = run_checker("--build-dir", build)
    assert completed.returncode == 0, completed.stderr
    assert json.loads((tmp_path / "artifact-report.json").read_text())["ok"] is True


def test_check_artifacts_reports_each_violation(tmp_path: Path) -> None:
    # Given a layer with TensorFlow, a botocore copy, host bytecode and a cpython-311 extension module
    build = make_artifacts(tmp_path)
    site = build / "ModelLayer" / "python"
    for package in ("tensorflow", "botocore"):
        (site / package).mkdir()
        (site / package / "__init__.py").write_text("")
    (site / "lodbrok" / "__pycache__").mkdir()
    (site / "lodbrok" / "__pycache__" / "settings.cpython-311.pyc").write_bytes(b"\x00" * 16)
    (site / "fast").mkdir()
    shutil.copy(host_extension_module(), site / "fast" / "_speedups.cpython-311-x86_64-linux-gnu.so")

    # When the checker runs
    completed = run_checker("--build-dir", build)

    # Then it fails and names every problem
    assert completed.returncode == 1
    assert "tensorflow" in completed.stderr
    assert "botocore" in completed.stderr
    assert "settings.cpython-311.pyc: cpython-311 bytecode" in completed.stderr
    assert "extension module for cpython-311-x86_64-linux-gnu" in completed.stderr


def test_check_artifacts_rejects_a_glibc_newer_than_the_runtime(tmp_path: Path) -> None:
    # Given an ELF file from this host that needs a glibc newer than Amazon Linux 2023's
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("binutils is not installed")
    newer = None
    for candidate in filter(None, [shutil.which("bash"), shutil.which("ls"), os.path.realpath(sys.executable)]):
        output = subprocess.run([readelf, "-V", "--wide", candidate], capture_output=True, text=True).stdout
        if any(f"GLIBC_2.{minor}" in output for minor in range(RUNTIME_GLIBC[1] + 1, 60)):
            newer = candidate
            break
    if newer is None:
        pytest.skip(f"this host has no binary that needs glibc > {RUNTIME_GLIBC}")
    build = make_artifacts(tmp_path)
    shutil.copy(newer, build / "ModelLayer" / "python" / "libnewer.so")

    # When the checker runs
    completed = run_checker("--build-dir", build)

    # Then it fails on that file's glibc need
    assert completed.returncode == 1
    assert "libnewer.so: needs GLIBC_2." in completed.stderr


def test_check_artifacts_rejects_more_than_250_mb(tmp_path: Path) -> None:
    # Given a layer whose (sparse) data file takes it over Lambda's unzipped limit
    build = make_artifacts(tmp_path)
    with (build / "ModelLayer" / "python" / "weights.bin").open("wb") as handle:
        handle.truncate(LAMBDA_UNZIPPED_LIMIT_BYTES)

    # When the checker runs
    completed = run_checker("--build-dir", build)

    # Then it fails on the size
    assert completed.returncode == 1
    assert "MB unzipped; Lambda allows 250 MB" in completed.stderr


def test_check_artifacts_says_what_to_do_when_nothing_is_built(tmp_path: Path) -> None:
    completed = run_checker("--build-dir", tmp_path / "missing")
    assert completed.returncode == 2
    assert "make build" in completed.stderr
