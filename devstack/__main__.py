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
import signal
import sys
import threading
from pathlib import Path

from devstack.seed import default_seed_model, publish_seed_model
from devstack.template import Template, queue_url


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    overrides = dict(item.split("=", 1) for item in arguments.parameter_overrides)
    template = Template(parameter_overrides=overrides)

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
    gateway = LocalGateway(
        "PredictFunction", template.handler("PredictFunction"), template.routes("PredictFunction"), keys.authorize
    )
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

    _print_banner(arguments, api_key, endpoint, predict_env, seed_ref, trigger, keys.usage_plan_id)
    if arguments.ready_file:
        ready = {
            "api_url": f"http://{arguments.host}:{arguments.port}",
            "api_key": api_key,
            "aws_endpoint": endpoint,
            "model_bucket": predict_env["MODEL_BUCKET"],
            "model_name": predict_env.get("MODEL_NAME", "default"),
            "signing_key": predict_env["MODEL_SIGNING_KEY"],
            "usage_plan": keys.usage_plan_id,
            "clients_table": predict_env["CLIENTS_TABLE"],
            "verdict_memory_table": predict_env["VERDICT_MEMORY_TABLE"],
            "seed_version_id": seed_ref,
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


def _parser() -> argparse.ArgumentParser:
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
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, as for sam deploy (e.g. MinVerdictsToTrain=5)",
    )
    return parser


def _use_emulation(endpoint: str) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_PROFILE", None)


def _print_banner(
    arguments: argparse.Namespace,
    api_key: str,
    endpoint: str,
    env: dict[str, str],
    seed: str,
    trigger: object,
    usage_plan: str,
) -> None:
    url = f"http://{arguments.host}:{arguments.port}"
    print(
        f"""
Lodbrok is running locally (Ctrl-C stops it).
  API            {url}   (API key of client "local", an admin: {api_key}; usage plan {usage_plan})
  Swagger UI     {url}/swagger
  Console        {url}/console   (the reviewer's console: paste the API key above)
  AWS emulation  {endpoint}   bucket {env["MODEL_BUCKET"]}, seed model version {seed}
  signing key    {env["MODEL_SIGNING_KEY"]}
  retraining     {trigger}

Try:
  curl -s -X POST {url}/predict -H 'x-api-key: {api_key}' -H 'content-type: application/json' \\
       -d '{{"texts": ["WINNER! Claim your free prize now, call 09061701461", "see you at lunch?"]}}'
  curl -s {url}/model -H 'x-api-key: {api_key}'
  curl -s -X POST {url}/verdicts -H 'x-api-key: {api_key}' -H 'content-type: application/json' \\
       -d '{{"verdicts": [{{"id": "v1", "text": "zorblax airdrop, claim your tokens", "label": "spam"}}]}}'
  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \\
       .venv/bin/lodbrok versions --bucket {env["MODEL_BUCKET"]}
  (rollback, publish, promote and approve also need --signing-key {env["MODEL_SIGNING_KEY"]})
  Other clients, with the same variables (roles: predict < feedback < reviewer < admin):
  CLIENTS_TABLE={env["CLIENTS_TABLE"]} .venv/bin/lodbrok clients add NAME --role feedback --usage-plan {usage_plan}
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
