"""`make sam-local`: the built predict function in Lambda-like containers, through the real `sam local`.

`make local` runs the handlers in-process (fast, no Docker). This runs what `sam build` produced, with its layer
mounted at /opt, in a container under SAM's runtime interface emulator, against a moto server on the Docker bridge:

    python -m scripts.samlocal [--port 3001]          set up, then `sam local start-api` in the foreground
    python -m scripts.samlocal serve --workdir DIR    set up, write DIR/stack.json, wait for SIGTERM (the tests)
    python -m scripts.samlocal retrain-image          build the retrain function's image only (`make retrain-image`)

Setting up: a Docker engine (started here as root if none answers, installing docker.io with apt-get if needed),
the local base image (engine.py), with --retrain the retrain function's image (retrain_image.py), a moto server
with the template's resources and the seed model (stack.py). Whatever this process started (moto, dockerd) it
stops on exit. Exit status 3: no engine can be had here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts.samlocal.engine import CACHE_DIR, Engine, EngineUnavailable, ensure_base_image, ensure_engine, log
from scripts.samlocal.retrain_image import ensure_retrain_image
from scripts.samlocal.stack import BUILD_DIR, RETRAIN_FUNCTION, SAM_ENVIRONMENT, LocalStack, provision, start_moto

ENGINE_UNAVAILABLE = 3


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    # SIGTERM (how the tests stop `serve`) unwinds like an exit, so moto and an engine started here stop too.
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    try:
        engine = ensure_engine()
        try:
            return _run(arguments, engine)
        finally:
            engine.stop()
    except EngineUnavailable as error:
        log(f"cannot run sam local: {error}")
        return ENGINE_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


def _run(arguments: argparse.Namespace, engine: Engine) -> int:
    image = ensure_base_image()
    if arguments.command == "retrain-image":
        print(ensure_retrain_image(image, engine.bridge_ip))
        return 0
    retrain_image = ensure_retrain_image(image, engine.bridge_ip) if arguments.retrain else None
    moto, endpoint = start_moto(engine.bridge_ip)
    try:
        workdir = Path(arguments.workdir)
        overrides = dict(item.split("=", 1) for item in arguments.parameter_overrides)
        build_dir = Path(arguments.build_dir).resolve()
        stack = provision(endpoint, image, workdir, build_dir, overrides, retrain_image)
        if arguments.command == "start-api":
            return _start_api(stack, engine, arguments.port)
        (workdir / "stack.json").write_text(json.dumps(stack.describe(), indent=2) + "\n")
        parent = os.getppid()
        while os.getppid() == parent:  # until SIGTERM, Ctrl-C, or the test session that started us is gone
            time.sleep(1)
        return 0
    finally:
        moto.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.samlocal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", choices=["start-api", "serve", "retrain-image"], default="start-api")
    parser.add_argument("--port", type=int, default=3001, help="local API port (default 3001)")
    parser.add_argument("--retrain", action="store_true", help="build the retrain image and run that function too")
    parser.add_argument("--workdir", default=str(CACHE_DIR), help="where env-vars.json and template.json go")
    parser.add_argument("--build-dir", default=str(BUILD_DIR), help="sam build output (default .aws-sam/build)")
    parser.add_argument(
        "--parameter-overrides", nargs="*", default=[], metavar="NAME=VALUE", help="template parameters, as for sam"
    )
    return parser


def _start_api(stack: LocalStack, engine: Engine, port: int) -> int:
    command = [*stack.start_api_command(), "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    retrain = ""
    if stack.retrain_image:
        invoke = " ".join(stack.invoke_command(RETRAIN_FUNCTION))
        retrain = f"\nThe retrain function ({stack.retrain_image}) learns verdicts from an SQS event:\n"
        retrain += f"  SAM_CLI_TELEMETRY=0 {invoke} -e events/retrain_sqs.json"
    print(
        f"""
The built PredictFunction runs in {stack.image} containers (warm, reused) behind `sam local start-api`.
  API            {url}   (no API key needed: sam local does not check them)
  AWS emulation  {stack.endpoint}   (moto on the Docker bridge; seed model version {stack.seed_version})
  sam reads      {stack.template}
                 {stack.env_vars}
  Docker engine  {"started here; stopped on exit" if engine.dockerd else "already running; left as it is"}

Once "Running on {url}" shows (the first container takes ~20 s), try from another terminal:
  curl -s -X POST {url}/predict -H 'content-type: application/json' \\
       -d '{{"texts": ["WINNER! Claim your free prize now, call 09061701461", "see you at lunch?"]}}'
  curl -s {url}/model
  SAM_CLI_TELEMETRY=0 {" ".join(stack.invoke_command())} -e events/predict_single.json{retrain}
Ctrl-C stops sam (it removes its containers), the AWS emulation and any engine started here.
""",
        flush=True,
    )
    api = subprocess.Popen(command, env={**os.environ, **SAM_ENVIRONMENT})
    try:
        while True:
            try:
                return api.wait()
            except KeyboardInterrupt:
                continue  # sam got the same Ctrl-C and is removing its containers: let it finish
    finally:
        if api.poll() is None:  # we were sent SIGTERM: pass it on (sam removes its containers then too)
            api.terminate()
            api.wait()


if __name__ == "__main__":
    sys.exit(main())
