"""The built functions in Lambda-like containers, through the real `sam local` (what `make sam-local` runs).

The session builds with `make build`, checks that build with scripts/check_artifacts.py, then starts
`python -m scripts.samlocal serve --retrain`: the same setup as `make sam-local` (a Docker engine, started and
installed here as root if needed; the local base image; a moto server on the Docker bridge with the template's
resources and the seed model), plus the retrain function's image built offline from its Dockerfile (`make
retrain-image`; cached while its inputs are unchanged). It writes stack.json with the exact `sam local` commands,
which the tests run. A fresh container costs ~20 s here (vfs storage), so the `sam local invoke` of every predict
event runs two at a time, once per session, and `sam local start-api` serves its requests from one warm container.
The retrain function then learns the SQS event's verdicts in its container, last, so the predict tests above see
the seed model and the final test sees the model it promoted. Outside CI the tests skip when no engine can be had
(not root and no engine running); with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from packaging.utils import canonicalize_name

from devstack.process import stop_gracefully
from scripts.lock_retrain import read_lock
from support import EVENTS_DIR

# One worker runs every test of the group (`make test` spreads the rest): one Docker engine, one `make build`.
pytestmark = [pytest.mark.samlocal, pytest.mark.xdist_group("docker")]

ROOT = Path(__file__).resolve().parents[2]
ENGINE_UNAVAILABLE = 3  # exit status of `python -m scripts.samlocal` when no Docker engine can be had
SETUP_TIMEOUT_SECONDS = 900  # a fresh machine installs docker.io, debootstraps the base image, builds the retrain image
INVOKE_TIMEOUT_SECONDS = 300
RUNTIME_GLIBC = (2, 34)
CALLER = "key#k7x2mq9zb1"  # the API key id in every event's requestContext
PREDICT, RETRAIN = "PredictFunction", "RetrainFunction"


@dataclass
class Invocation:
    returncode: int
    stdout: str
    stderr: str

    @property
    def response(self) -> dict[str, Any]:
        """The function's API Gateway proxy response, with its JSON body decoded."""
        assert self.returncode == 0, self.stderr[-4000:]
        response = json.loads(self.stdout)
        return {**response, "body": json.loads(response["body"])}


def labels(body: dict[str, Any]) -> list[str]:
    return [prediction["label"] for prediction in body["predictions"]]


# Each event of the predict function: the status it must answer, and what its body must show.
EXPECTED: dict[str, tuple[int, Callable[[dict[str, Any]], bool]]] = {
    "predict_single.json": (200, lambda body: labels(body) == ["spam"]),
    "predict_batch.json": (200, lambda body: labels(body) == ["ham", "spam", "ham"]),
    "predict_records.json": (200, lambda body: [p["id"] for p in body["predictions"]] == ["e1", "e2"]),
    "predict_get.json": (200, lambda body: labels(body) == ["ham"]),
    "predict_bad_input.json": (
        422,
        lambda body: (
            body["error"]["code"] == "validation_error"
            and {detail["field"] for detail in body["error"]["details"]}
            == {"items.0.text", "items.1.fields.subject", "colour"}
        ),
    ),
    "model_get.json": (200, lambda body: body["label"] == "v1" and body["labels"] == ["ham", "spam"]),
    "verdicts_post.json": (202, lambda body: body["queued"] == 2 and len(body["message_ids"]) == 2),
    "openapi_get.json": (200, lambda body: {"/predict", "/model", "/verdicts", "/calls/recent"} <= set(body["paths"])),
    "calls_recent_get.json": (200, lambda body: body["caller"] == CALLER and isinstance(body["calls"], list)),
}


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def build_dir() -> Path:
    """`make build`: the zip function and its layer, as `make sam-local` builds them."""
    completed = subprocess.run(["make", "build"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    return ROOT / ".aws-sam" / "build"


@pytest.fixture(scope="session")
def stack(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The running emulation (`python -m scripts.samlocal serve`), described by its stack.json."""
    workdir = tmp_path_factory.mktemp("samlocal")
    log_path = workdir / "serve.log"
    command = [sys.executable, "-m", "scripts.samlocal", "serve", "--retrain", "--workdir", str(workdir)]
    # The call log is off by default; GET /calls/recent has something to show with it on.
    command += ["--build-dir", str(build_dir), "--parameter-overrides", "CallLogEnabled=true"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield _wait_for_stack(process, workdir / "stack.json", log_path)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def invocations(stack: dict[str, Any]) -> dict[str, Invocation]:
    """`sam local invoke PredictFunction -e events/<event>` of every predict event, two containers at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        invoked = pool.map(lambda event: _invoke(stack, PREDICT, event), EXPECTED)
        return dict(zip(EXPECTED, invoked, strict=True))


@pytest.fixture(scope="session")
def retrained(stack: dict[str, Any], invocations: dict[str, Invocation]) -> Invocation:
    """`sam local invoke RetrainFunction -e events/retrain_sqs.json`, after the predict events used the seed model."""
    return _invoke(stack, RETRAIN, "retrain_sqs.json")


@pytest.fixture(scope="session")
def local_api(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`sam local start-api` with one warm container, created when it starts (--warm-containers EAGER)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("start-api") / "sam.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*stack["start_api"], "--port", str(port)],
            cwd=ROOT,
            env=_sam_env(stack),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + INVOKE_TIMEOUT_SECONDS
        while not _accepts_connections(port):
            assert process.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, f"start-api did not listen within {INVOKE_TIMEOUT_SECONDS} s"
            time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


# --- the build they run -----------------------------------------------------------------------------------------


def test_samlocal_build_passes_the_artifact_checks(build_dir: Path, tmp_path: Path) -> None:
    # Given the build that the containers mount
    report_path = tmp_path / "report.json"

    # When scripts/check_artifacts.py checks it
    checker = ROOT / "scripts" / "check_artifacts.py"
    completed = subprocess.run(
        [sys.executable, str(checker), "--build-dir", str(build_dir), "--report", str(report_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Then it passes, including the glibc the Lambda runtime has (the trixie containers have a newer one)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert tuple(map(int, report["max_glibc_needed"].split("."))) <= RUNTIME_GLIBC


# --- sam local invoke -------------------------------------------------------------------------------------------


# The reviewer's console's events run through the template's wiring in tests/integration/test_events_wiring.py, and
# tests/integration/test_build.py checks its files are in the built function: a fresh container each (~20 s) would
# add minutes here and prove nothing more.
CONSOLE_EVENT_PREFIXES = ("review_", "console_", "model_versions", "model_rollback")


def test_samlocal_covers_every_predict_event() -> None:
    predict_events = {
        path.name
        for path in EVENTS_DIR.glob("*.json")
        if not path.name.startswith(("retrain_", *CONSOLE_EVENT_PREFIXES))
    }
    assert predict_events == set(EXPECTED)


@pytest.mark.parametrize("event", list(EXPECTED))
def test_sam_local_invoke_answers_event(event: str, invocations: dict[str, Invocation], stack: dict[str, Any]) -> None:
    # Given the built function invoked in a fresh container with events/<event>
    status, shows_expected = EXPECTED[event]

    # When its response is read from sam's stdout
    response = invocations[event].response

    # Then it has the event's status and body, and predictions come from the seed model published to moto
    assert response["statusCode"] == status, response
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    body = response["body"]
    assert shows_expected(body), body
    if "predictions" in body:
        assert body["model_version"] == stack["seed_version"]


def test_layer_imports_and_predicts_in_the_base_image(stack: dict[str, Any]) -> None:
    # Given the base image, the built function and layer mounted where Lambda puts them, and no network
    build = Path(stack["build_dir"])
    child = (
        "import json, sys\n"
        "import app\n"  # the handler module, as the runtime imports it
        "import ai_edge_litert.interpreter, boto3, lodbrok, numpy\n"
        "from lodbrok.model.bundle import Bundle\n"
        "from lodbrok.model.predictor import Predictor\n"
        "predictor = Predictor(Bundle.read('/tmp/model.lbk'))\n"
        "labels = [p.label for p in predictor.predict(['WINNER!! claim your prize, call 09061701461', 'lunch?'])]\n"
        "files = {m.__name__: m.__file__ for m in (app, ai_edge_litert.interpreter, boto3, lodbrok, numpy)}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps({'labels': labels, 'version': list(sys.version_info[:2]), 'files': files, 'heavy': heavy}))\n"
    )

    mounts = {
        build / "ModelLayer": "/opt",
        build / "PredictFunction": "/var/task",
        stack["seed_model"]: "/tmp/model.lbk",
    }
    command = ["docker", "run", "--rm", "--network", "none"]
    command += [option for source, target in mounts.items() for option in ("-v", f"{source}:{target}:ro")]
    command += ["-e", "PYTHONPATH=/var/task:/opt/python:/var/runtime", "-e", "POWERTOOLS_TRACE_DISABLED=true"]
    command += ["-e", "AWS_DEFAULT_REGION=us-east-1", "--entrypoint", "python3", stack["image"], "-S", "-c", child]

    # When the handler module is imported and the layer's LiteRT runs the seed model, with no site-packages (-S)
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT_SECONDS,
        check=False,
    )

    # Then it predicts on Python 3.13 with modules from the layer, the function and the runtime only, no TensorFlow
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["version"] == [3, 13]
    assert result["labels"] == ["spam", "ham"]
    files = result["files"]
    assert files["app"] == "/var/task/app.py"
    assert all(files[name].startswith("/opt/python/") for name in ("ai_edge_litert.interpreter", "lodbrok", "numpy"))
    assert files["boto3"].startswith("/var/runtime/")  # the runtime's, which the layer leaves out
    assert result["heavy"] == []


def test_retrain_image_holds_exactly_the_locked_distributions(stack: dict[str, Any]) -> None:
    # Given the retrain image built from the Dockerfile, and the lock made from pyproject.toml
    listing = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions(path=['/var/task'])}))\n"
    )
    command = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", stack["retrain_image"]]

    # When the distributions installed where the function's code lives are listed
    completed = subprocess.run(
        [*command, "-c", listing], capture_output=True, text=True, timeout=INVOKE_TIMEOUT_SECONDS, check=False
    )

    # Then they are the lock's, at the lock's versions: nothing more, nothing resolved on its own
    assert completed.returncode == 0, completed.stderr[-4000:]
    installed = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {canonicalize_name(name): version for name, version in installed.items()} == {
        name: version for name, (version, _) in read_lock().items()
    }


# --- sam local start-api ----------------------------------------------------------------------------------------


def test_start_api_serves_predictions_from_a_warm_container(local_api: str, stack: dict[str, Any]) -> None:
    # Given the local API, whose container was started eagerly
    texts = ["WINNER!! You have won a camera phone. Call 09061701461 now to claim", "Are we still on for lunch?"]
    assert _running_containers(stack["image"])

    # When it is asked three times
    serving = []
    for _ in range(3):
        status, body = _request(local_api, "POST", "/predict", {"texts": texts, "skip_cache": True})

        # Then each answer classifies both texts with the seed model
        assert status == 200, body
        assert labels(body) == ["spam", "ham"]
        assert body["model_version"] == stack["seed_version"]
        serving.append(_running_containers(stack["image"]))
    # ... and the container that answered first answered the others: no container per request. (Under load sam may
    # replace its eager container before the first answer, so the containers are compared from that answer on.)
    assert serving[0] == serving[1] == serving[2]


def test_start_api_refuses_verdicts_from_a_request_without_a_key_id(local_api: str) -> None:
    # Given `sam local start-api`, which emulates no API keys: its requests carry no apiKeyId, hence no role
    # (the `sam local invoke` of verdicts_post.json above, whose key id is an admin's, queues its verdicts)
    verdicts = [{"id": "start-api-1", "text": "zorblax airdrop, claim your tokens now", "label": "spam"}]

    # When verdicts are posted to the local API
    status, body = _request(local_api, "POST", "/verdicts", {"verdicts": verdicts})

    # Then the function refuses them as it would a key without a role (least privilege), with its JSON error
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"
    assert body["error"]["details"] == [{"required_role": "feedback", "role": "predict"}]


# --- the retrain image under sam local invoke (last: it promotes a new model) ----------------------------------


def test_sam_local_invoke_retrain_learns_the_sqs_event_and_promotes(
    retrained: Invocation, stack: dict[str, Any]
) -> None:
    # Given the retrain image built offline from functions/retrain/Dockerfile, on the moto stack serving the seed model
    # When sam local invoke runs it with the SQS event: valid, duplicate and invalid verdict messages
    response = json.loads(retrained.stdout) if retrained.returncode == 0 else retrained.stderr[-4000:]

    # Then no message is reported failed, in the image's own function container
    assert response == {"batchItemFailures": []}
    assert f"Invoking Container created from {stack['retrain_image']}" in retrained.stderr
    # ... the valid verdicts were archived and the invalid messages quarantined in the moto bucket
    archived = _bucket_keys(stack, "verdicts/archive/")
    assert len(archived) == 5 and len(_bucket_keys(stack, "verdicts/quarantine/")) == 3
    # ... and a candidate was fine-tuned in the container (TensorFlow), gated and promoted as the active model
    promoted = [entry for entry in _log_records(retrained) if entry.get("message") == "candidate promoted"]
    assert len(promoted) == 1, retrained.stderr[-4000:]
    assert promoted[0]["finetune_seconds"] > 0 and promoted[0]["parent_version"] == "v1"
    assert _active_model_version(stack) == promoted[0]["version_id"] != stack["seed_version"]


def test_predict_function_serves_the_model_the_retrain_container_promoted(
    retrained: Invocation, stack: dict[str, Any]
) -> None:
    # Given the model the retrain function promoted in its container
    promoted = _active_model_version(stack)

    # When the predict function is invoked in a fresh container
    response = _invoke(stack, PREDICT, "model_get.json").response

    # Then it serves that model: the second version, fine-tuned from the seed model
    assert response["statusCode"] == 200, response
    assert response["body"]["version"] == promoted
    assert (response["body"]["label"], response["body"]["parent"]) == ("v2", "v1")


# --- helpers ----------------------------------------------------------------------------------------------------


def _invoke(stack: dict[str, Any], function: str, event: str) -> Invocation:
    completed = subprocess.run(
        [*stack["invoke"][function], "-e", str(EVENTS_DIR / event)],
        cwd=ROOT,
        env=_sam_env(stack),
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT_SECONDS,
        check=False,
    )
    return Invocation(completed.returncode, completed.stdout, completed.stderr)


def _running_containers(image: str) -> set[str]:
    listed = subprocess.run(
        ["docker", "ps", "--quiet", "--filter", f"ancestor={image}"], capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


def _log_records(invocation: Invocation) -> list[dict[str, Any]]:
    """The function's structured log lines (Powertools writes one JSON object per line)."""
    return [json.loads(line) for line in invocation.stderr.splitlines() if line.startswith('{"level"')]


def _aws(stack: dict[str, Any], service: str) -> Any:
    credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return boto3.client(service, endpoint_url=stack["endpoint"], region_name="us-east-1", **credentials)


def _bucket_keys(stack: dict[str, Any], prefix: str) -> list[str]:
    bucket = stack["environments"][RETRAIN]["MODEL_BUCKET"]
    listing = _aws(stack, "s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [entry["Key"] for entry in listing.get("Contents", [])]


def _active_model_version(stack: dict[str, Any]) -> str:
    environment = stack["environments"][RETRAIN]
    key = f"models/{environment['MODEL_NAME']}/active.lbk"
    return _aws(stack, "s3").head_object(Bucket=environment["MODEL_BUCKET"], Key=key)["VersionId"]


def _wait_for_stack(process: subprocess.Popen[bytes], stack_file: Path, log_path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + SETUP_TIMEOUT_SECONDS
    while not stack_file.exists():
        if process.poll() is not None:
            log = log_path.read_text()
            if process.returncode == ENGINE_UNAVAILABLE:
                reason = f"sam local needs a Docker engine: {log.strip().splitlines()[-1]}"
                if os.environ.get("CI", "").lower() == "true":
                    pytest.fail(reason)
                pytest.skip(reason)
            pytest.fail(f"python -m scripts.samlocal serve exited with {process.returncode}:\n{log[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the sam local setup took over {SETUP_TIMEOUT_SECONDS} s:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.5)
    return json.loads(stack_file.read_text())


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets sam remove its containers and serve stop moto and the engine it started."""
    stop_gracefully(process, timeout=60)


def _sam_env(stack: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **stack["sam_environment"]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _request(base_url: str, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(payload).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
