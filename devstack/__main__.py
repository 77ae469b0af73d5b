"""`make local`: the whole Lodbrok system on one machine, with no AWS account and no Docker.

Starts a moto server on loopback, creates the resources of template.yaml in it, publishes a seed
model (trained once from the demo data and cached), serves the API on http://127.0.0.1:3000 through
the template's routes and API-key rule, and runs the SQS -> retrain wiring in-process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shlex
import signal
import sys
import threading
from pathlib import Path

from devstack.seed import default_seed_model, publish_seed_model
from devstack.template import FAST_LOOP, LOCAL_DEFAULTS, REGION, QueueTrigger, Template, queue_url
from lodbrok_cli.quiet import quiet_tensorflow


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if argv is None:  # the program, not a test calling it: before the seed training or retrain imports TensorFlow
        quiet_tensorflow()
    template = Template(parameter_overrides=parameter_overrides(arguments))

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per emulated AWS call drowns the log

    moto = ThreadedMotoServer(ip_address=arguments.moto_host, port=arguments.moto_port, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _use_emulation(endpoint)

    from devstack.resources import create_resources
    from lodbrok import aws

    created = create_resources(template)
    predict_env = template.environment("PredictFunction")
    retrain_env = template.environment("RetrainFunction")
    clashes = {name for name in predict_env.keys() & retrain_env.keys() if predict_env[name] != retrain_env[name]}
    if clashes:
        raise SystemExit(f"the functions need different values for {sorted(clashes)}; they share one process here")
    os.environ.update({**predict_env, **retrain_env})

    seed_path = Path(arguments.seed_model) if arguments.seed_model else default_seed_model()
    seed_ref = publish_seed_model(seed_path, predict_env)

    from devstack.gateway import LocalGateway
    from devstack.poller import QueuePoller
    from lodbrok.access.api_keys import ClientKeys
    from lodbrok.access.roles import ClientRoles, Role

    # One client to start with, an admin; `lodbrok clients add NAME --role ROLE` makes more.
    keys = ClientKeys(created["LodbrokApiUsagePlan"], roles=ClientRoles(predict_env["CLIENTS_TABLE"]))
    api_key = keys.add("local", key=arguments.api_key or secrets.token_urlsafe(24), role=Role.ADMIN).key
    gateway = LocalGateway.from_template(template, "PredictFunction", keys.authorize)
    server = gateway.serve(arguments.host, arguments.port)
    threading.Thread(target=server.serve_forever, name="gateway", daemon=True).start()

    trigger = template.queue_trigger("RetrainFunction")
    queue_name = template.physical_name(trigger.queue_logical_id)
    poller = QueuePoller(
        "RetrainFunction",
        template.handler("RetrainFunction"),
        trigger,
        queue_url(queue_name),
        template.attribute(trigger.queue_logical_id, "Arn"),
        aws.client("sqs"),
        timeout_seconds=template.timeout_seconds("RetrainFunction"),
    )
    poller.start()

    api_url = f"http://{arguments.host}:{arguments.port}"
    exports = cli_environment(api_url, api_key, endpoint, predict_env, keys.usage_plan_id)
    rollback = predict_env.get("API_ROLLBACK") == "true"
    print(banner(exports, seed_ref, trigger, api_rollback=rollback), flush=True)
    if arguments.ready_file:
        ready = {
            "api_url": api_url,
            "api_key": api_key,
            "aws_endpoint": endpoint,
            "model_bucket": predict_env["MODEL_BUCKET"],
            "model_name": predict_env.get("MODEL_NAME", "default"),
            "signing_key": predict_env["MODEL_SIGNING_KEY"],
            "usage_plan": keys.usage_plan_id,
            "clients_table": predict_env["CLIENTS_TABLE"],
            "verdict_memory_table": predict_env["VERDICT_MEMORY_TABLE"],
            "seed_version_id": seed_ref,
            "exports": exports,
        }
        Path(arguments.ready_file).write_text(json.dumps(ready, indent=2))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("stopping: API, retrain poller, AWS emulation", flush=True)
    server.shutdown()
    poller.stop()
    moto.stop()
    return 0


def parameter_overrides(arguments: argparse.Namespace) -> dict[str, str]:
    """The template parameters to override: the local defaults, --fast's, then --parameter-overrides (which win)."""
    chosen = [*LOCAL_DEFAULTS, *(FAST_LOOP if arguments.fast else ()), *arguments.parameter_overrides]
    return dict(item.split("=", 1) for item in chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="API port (default 3000)")
    parser.add_argument("--moto-host", default="127.0.0.1", help="AWS emulation address (default 127.0.0.1)")
    parser.add_argument("--moto-port", type=int, default=5055, help="AWS emulation port (default 5055; 0 = any free)")
    parser.add_argument(
        "--api-key", help="key of the first client, at least 20 characters (default: a random one, printed at start)"
    )
    parser.add_argument(
        "--seed-model", help="bundle to publish as version 1 (default: trained once from the demo data, cached)"
    )
    parser.add_argument("--ready-file", help="write the stack's URLs, API key and names here as JSON once it serves")
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"a learning loop that answers in seconds, not minutes: {' '.join(FAST_LOOP)} "
        "(by default verdicts are batched for up to 60 s, and a warm API looks for a new model every 60 s)",
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, as for sam deploy (e.g. RetrainBatchSize=10)",
    )
    return parser


def _emulation(endpoint: str) -> dict[str, str]:
    """What points boto3 (and the `aws` CLI) at the emulation instead of an AWS account."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def _use_emulation(endpoint: str) -> None:
    os.environ.update(_emulation(endpoint))
    os.environ.pop("AWS_PROFILE", None)


# What the `lodbrok` stack commands read from the environment (lodbrok.settings), as the functions name them.
CLI_VARIABLES = (
    "MODEL_BUCKET",
    "MODEL_NAME",
    "MODEL_SIGNING_KEY",
    "MODEL_REFRESH_SECONDS",
    "VERDICT_MEMORY_TABLE",
    "CLIENTS_TABLE",
)


def cli_environment(
    api_url: str, api_key: str, endpoint: str, function_env: dict[str, str], usage_plan: str
) -> dict[str, str]:
    """The variables that let every `lodbrok` command and every curl example of the banner and the docs run
    unchanged against this stack: the emulation's endpoint and credentials, the names the CLI reads, the usage
    plan of `lodbrok clients`, and the API's URL and key."""
    return {
        **_emulation(endpoint),
        **{name: function_env.get(name, "default" if name == "MODEL_NAME" else "") for name in CLI_VARIABLES},
        "USAGE_PLAN_ID": usage_plan,
        "LODBROK_API_URL": api_url,
        "LODBROK_API_KEY": api_key,
    }


def banner(exports: dict[str, str], seed: str, trigger: QueueTrigger, *, api_rollback: bool) -> str:
    """What `make local` prints once it serves: where things are, an `export` block, and examples that use it."""
    export_block = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in exports.items())
    url = exports["LODBROK_API_URL"]
    rollback = "an admin may roll back there (ApiRollback=true)" if api_rollback else "rollback is off (ApiRollback)"
    return f"""
Lodbrok is running locally (Ctrl-C stops it).
  API            {url}   (API key of client "local", an admin: {exports["LODBROK_API_KEY"]})
  Swagger UI     {url}/swagger   (opens without a key; "Authorize" takes the API key)
  Console        {url}/console   (the reviewer's console: paste the API key above; {rollback})
  AWS emulation  {exports["AWS_ENDPOINT_URL"]}   bucket {exports["MODEL_BUCKET"]}, seed model version {seed}
  retraining     up to {trigger.batch_size} verdicts per batch, gathered for up to {trigger.batching_window_seconds} s

Paste this block into another shell: then the examples below, the docs' and every `lodbrok` command run unchanged.
unset AWS_PROFILE
{export_block}

Try:
  curl -s -X POST "$LODBROK_API_URL/predict" -H "x-api-key: $LODBROK_API_KEY" -H 'content-type: application/json' \\
       -d '{{"texts": ["WINNER! Claim your free prize now, call 09061701461", "see you at lunch?"]}}'
  curl -s "$LODBROK_API_URL/model" -H "x-api-key: $LODBROK_API_KEY"
  curl -s -X POST "$LODBROK_API_URL/verdicts" -H "x-api-key: $LODBROK_API_KEY" -H 'content-type: application/json' \\
       -d '{{"verdicts": [{{"id": "v1", "text": "zorblax airdrop, claim your tokens", "label": "spam"}}]}}'
  .venv/bin/lodbrok versions
  .venv/bin/lodbrok clients add NAME --role feedback    (roles: predict < feedback < reviewer < admin)
"""


if __name__ == "__main__":
    sys.exit(main())
