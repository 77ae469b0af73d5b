"""The AWS side of `sam local`: a moto server the containers can reach, and the files `sam local` reads.

moto is bound to the Docker bridge address (containers cannot reach the host's loopback), the template's buckets,
tables and queues are created in it and the seed model is published, as `make local` does on loopback. Then:

- env-vars.json (`--env-vars`): the function's template environment, resolved to those resources, plus
  AWS_ENDPOINT_URL and dummy credentials, so every boto3 client in the container talks to moto;
- template.json (`-t`): the built template (.aws-sam/build/template.yaml) with two changes. SAM passes an
  `--env-vars` value only for a variable the template declares, so the emulation's variables are declared (empty)
  on each function; and the retrain image function gets the ImageUri of the image built here (retrain_image.py),
  or, when none was built, is dropped, since `--warm-containers EAGER` fails on a function it cannot start. Code
  paths become absolute.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.resources import create_resources
from devstack.seed import default_seed_model, publish_seed_model
from devstack.template import REGION, ROOT, Template, load_template
from lodbrok.access.roles import ClientRoles, Role

PREDICT_FUNCTION = "PredictFunction"
RETRAIN_FUNCTION = "RetrainFunction"
BUILD_DIR = ROOT / ".aws-sam" / "build"
SAM = str(Path(sys.executable).with_name("sam"))
# Dummy credentials: the function and SAM itself must never pick up real ones.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
SAM_ENVIRONMENT = {"SAM_CLI_TELEMETRY": "0", **CREDENTIALS}

EVENTS_API_KEY_ID = "k7x2mq9zb1"


@dataclass
class LocalStack:
    """A moto server on the Docker bridge holding the template's resources and the seed model."""

    endpoint: str
    image: str
    workdir: Path
    build_dir: Path
    seed_model: Path
    seed_version: str
    environments: dict[str, dict[str, str]]  # of each function the stack runs
    retrain_image: str | None = None
    parameter_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def env_vars(self) -> Path:
        return self.workdir / "env-vars.json"

    @property
    def template(self) -> Path:
        return self.workdir / "template.json"

    def invoke_command(self, function: str = PREDICT_FUNCTION) -> list[str]:
        """`sam local invoke` of a built function; add `-e <event file>`."""
        return [SAM, "local", "invoke", function, *self._common_options()]

    def start_api_command(self) -> list[str]:
        """`sam local start-api` with one warm container reused by every request; add `--port <port>`."""
        return [SAM, "local", "start-api", *self._common_options(), "--warm-containers", "EAGER", "--host", "127.0.0.1"]

    def _common_options(self) -> list[str]:
        # The zip function runs on the base image; an image function on its own image (the template's ImageUri).
        options = ["-t", str(self.template), "--invoke-image", f"{PREDICT_FUNCTION}={self.image}", "--skip-pull-image"]
        options += ["--env-vars", str(self.env_vars)]
        if self.parameter_overrides:
            overrides = " ".join(f"{name}={value}" for name, value in self.parameter_overrides.items())
            options += ["--parameter-overrides", overrides]
        return options

    def describe(self) -> dict[str, Any]:
        """What a client of the stack needs (tests read it from stack.json)."""
        return {
            "endpoint": self.endpoint,
            "image": self.image,
            "build_dir": str(self.build_dir),
            "template": str(self.template),
            "env_vars": str(self.env_vars),
            "seed_model": str(self.seed_model),
            "seed_version": self.seed_version,
            "environments": self.environments,
            "retrain_image": self.retrain_image,
            "sam_environment": SAM_ENVIRONMENT,
            "invoke": {function: self.invoke_command(function) for function in self.environments},
            "start_api": self.start_api_command(),
        }


def start_moto(host: str) -> tuple[Any, str]:
    """A moto server on `host` (any free port) and its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call otherwise
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    bound_host, port = server.get_host_and_port()
    return server, f"http://{bound_host}:{port}"


def provision(
    endpoint: str,
    image: str,
    workdir: Path,
    build_dir: Path = BUILD_DIR,
    parameter_overrides: dict[str, str] | None = None,
    retrain_image: str | None = None,
) -> LocalStack:
    """Create the template's resources at `endpoint`, publish the seed model, and write the files sam reads.

    The stack runs the predict function, and the retrain function too when its image is given.
    """
    overrides = dict(parameter_overrides or {})
    functions = [PREDICT_FUNCTION, RETRAIN_FUNCTION] if retrain_image else [PREDICT_FUNCTION]
    environments, seed_model, seed_version = emulate_aws(endpoint, functions, overrides)
    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        endpoint=endpoint,
        image=image,
        workdir=workdir,
        build_dir=build_dir,
        seed_model=seed_model,
        seed_version=seed_version,
        environments=environments,
        retrain_image=retrain_image,
        parameter_overrides=overrides,
    )
    stack.env_vars.write_text(json.dumps(environments, indent=2) + "\n")
    images = {RETRAIN_FUNCTION: retrain_image} if retrain_image else {}
    write_local_template(build_dir, stack.template, environments, images)
    return stack


def emulate_aws(
    endpoint: str, functions: list[str], parameter_overrides: dict[str, str]
) -> tuple[dict[str, dict[str, str]], Path, str]:
    """The template's resources created at `endpoint` with the seed model published.

    Returns each function's environment (the template's, resolved, plus the emulation's endpoint and credentials),
    the seed model's file and its version id.
    """
    seed_model = default_seed_model()  # the one `make local` publishes: trained once from the demo data, cached
    template = Template(parameter_overrides=parameter_overrides)
    # This process only ever talks to the emulation.
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS})
    os.environ.pop("AWS_PROFILE", None)
    create_resources(template)
    environments = {
        function: {**template.environment(function), "AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}
        for function in functions
    }
    seed_version = publish_seed_model(seed_model, environments[functions[0]])
    # The API key id of the events/ files is an admin's, so every predict event is allowed (lodbrok.access.roles).
    clients_table = environments[functions[0]].get("CLIENTS_TABLE")
    if clients_table:
        ClientRoles(clients_table).put(EVENTS_API_KEY_ID, "events", Role.ADMIN)
    return environments, seed_model, seed_version


def write_local_template(
    build_dir: Path, path: Path, environments: dict[str, dict[str, str]], images: dict[str, str]
) -> None:
    """The built template as `sam local` must see it here (see the module docstring)."""
    built = build_dir / "template.yaml"
    if not built.is_file():
        raise FileNotFoundError(f"{built} does not exist: run `make build` (sam build {PREDICT_FUNCTION}) first")
    document = load_template(built)
    resources = document["Resources"]
    for logical_id, resource in list(resources.items()):
        properties = resource.get("Properties", {})
        if properties.get("PackageType") == "Image" and "ImageUri" not in properties:
            if logical_id not in images:
                del resources[logical_id]
                continue
            properties["ImageUri"] = images[logical_id]
            resource.pop("Metadata", None)  # its Dockerfile was built already; sam must not build it again
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = str(build_dir / properties[key])
    for function, environment in environments.items():
        variables = resources[function]["Properties"].setdefault("Environment", {}).setdefault("Variables", {})
        for name in environment:
            variables.setdefault(name, "")
    path.write_text(json.dumps(document, indent=1) + "\n")
