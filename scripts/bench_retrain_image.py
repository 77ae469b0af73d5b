"""`make bench-retrain-image`: the retrain function's image, measured where Docker runs (part of `make bench`).

The image is built (or reused) as `make retrain-image` builds it, and its handler runs in a container the way Lambda
runs it: read-only root filesystem with a writable /tmp, memory capped at the template's RetrainMemorySize, reaching
only a moto server on the Docker bridge that holds the template's resources and the seed model. The batch is 100
verdicts (10 SQS messages of 10 rows sampled from the demo data). Reported: the image's size, the container's cold
start (container start, imports, first batch), the fine-tune time, and peak memory against the memory size; the
baseline is the same handler, batch and emulation run on the host, in the same bench run (ratios, not thresholds).
Without a Docker engine (not root and none running) the section says why and measures nothing.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from devstack.template import Template
from lodbrok.model.data import load_demo_dataset
from scripts.benchlib import parse_no_arguments, write_results
from scripts.samlocal.engine import EngineUnavailable, ensure_base_image, ensure_engine
from scripts.samlocal.retrain_image import ensure_retrain_image
from scripts.samlocal.stack import RETRAIN_FUNCTION, emulate_aws, start_moto

ROOT = Path(__file__).resolve().parents[1]
VERDICTS, PER_MESSAGE = 100, 10
CONTAINER_PYTHONPATH = "/var/task:/opt/python:/var/runtime"
HOST_PYTHONPATH = f"{ROOT / 'functions' / 'retrain'}:{ROOT / 'layers' / 'model'}"
MARKER = "BENCH-RESULT "
# Runs inside the container (and on the host for the baseline): import the handler, run one batch, report.
DRIVER = """
import json, resource, sys, time
started = time.time()
import app
imported = time.time()

class Context:
    function_name = "lodbrok-retrain"
    memory_limit_in_mb = int(sys.argv[2])
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:lodbrok-retrain"
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self):
        return 900_000

with open(sys.argv[1]) as event:
    response = app.lambda_handler(json.load(event), Context())
finished = time.time()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH-RESULT " + json.dumps({"started": started, "imported": imported, "finished": finished,
                                    "peak_mb": peak_mb, "response": response}), flush=True)
"""


def run(report: dict[str, Any]) -> None:
    print("\n== the retrain image (`make bench-retrain-image`) ==")
    try:
        engine = ensure_engine()
    except EngineUnavailable as error:
        print(f"skipped: {error}")
        report["retrain_image"] = {"skipped": str(error)}
        return
    try:
        image = ensure_retrain_image(ensure_base_image(), engine.bridge_ip)
        template = Template()
        memory_mb = int(template.resolve(template.properties(RETRAIN_FUNCTION)["MemorySize"]))
        with tempfile.TemporaryDirectory() as workdir:
            event = Path(workdir) / "event.json"
            event.write_text(json.dumps(verdict_event()))
            container = measure(engine.bridge_ip, event, memory_mb, image)
            host = measure(engine.bridge_ip, event, memory_mb, None)
    finally:
        engine.stop()
    report["retrain_image"] = summarize(image, memory_mb, container, host)
    print(json.dumps(report["retrain_image"], indent=2))


def verdict_event() -> dict[str, Any]:
    """An SQS event of 100 demo-data verdicts, 10 per message, shaped like events/retrain_sqs.json."""
    rows = random.Random(7).sample(load_demo_dataset(), VERDICTS)
    verdicts = [
        {"id": f"bench-{index}", "text": row.input, "label": row.label, "source": "bench"}
        for index, row in enumerate(rows)
    ]
    template = json.loads((ROOT / "events" / "retrain_sqs.json").read_text())["Records"][0]
    sent = str(int(time.time() * 1000))
    records = []
    for start in range(0, VERDICTS, PER_MESSAGE):
        record = {**template, "messageId": f"bench-message-{start // PER_MESSAGE}"}
        record["body"] = json.dumps(verdicts[start : start + PER_MESSAGE])
        record["attributes"] = {**template["attributes"], "SentTimestamp": sent}
        records.append(record)
    return {"Records": records}


def measure(bridge_ip: str, event: Path, memory_mb: int, image: str | None) -> dict[str, Any]:
    """One batch through the handler against a fresh emulation: in the image's container, or on the host if None."""
    moto, endpoint = start_moto(bridge_ip)
    try:
        # moto servers in one process share their state: start from an empty one.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30)
        environments, _, _ = emulate_aws(endpoint, [RETRAIN_FUNCTION], {})
        environment = environments[RETRAIN_FUNCTION]
        launched = time.time()
        if image is None:
            command = [sys.executable, "-c", DRIVER, str(event), str(memory_mb)]
            completed = _run(command, {**os.environ, **environment, "PYTHONPATH": HOST_PYTHONPATH})
        else:
            command = ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp:rw,size=2048m"]
            command += ["--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m"]
            command += ["-v", f"{event}:/bench/event.json:ro", "--entrypoint", "python3"]
            for name, value in {**environment, "PYTHONPATH": CONTAINER_PYTHONPATH}.items():
                command += ["-e", f"{name}={value}"]
            completed = _run([*command, image, "-c", DRIVER, "/bench/event.json", str(memory_mb)], None)
    finally:
        moto.stop()
    lines = completed.stdout.splitlines()
    result = json.loads(next(line for line in reversed(lines) if line.startswith(MARKER))[len(MARKER) :])
    logs = [json.loads(line) for line in lines if line.startswith('{"level"')]
    outcome = next(entry for entry in logs if entry.get("message", "").startswith("candidate "))
    return {**result, "launched": launched, "outcome": outcome}


def summarize(image: str, memory_mb: int, container: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    def phases(run: dict[str, Any]) -> dict[str, float]:
        return {
            "start_s": round(run["started"] - run["launched"], 2),
            "imports_s": round(run["imported"] - run["started"], 2),
            "first_batch_s": round(run["finished"] - run["imported"], 2),
            "cold_start_total_s": round(run["finished"] - run["launched"], 2),
            "finetune_s": run["outcome"]["finetune_seconds"],
            "peak_memory_mb": round(run["peak_mb"]),
            "outcome": run["outcome"]["status"],
            "failed_messages": len(run["response"]["batchItemFailures"]),
        }

    inside, outside = phases(container), phases(host)
    size = json.loads(_run(["docker", "image", "inspect", image], None).stdout)[0]["Size"]
    layers = _run(["docker", "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image], None).stdout
    dependencies = next(line.split("\t")[0] for line in layers.splitlines() if "pip install" in line)
    return {
        "image": image,
        "image_mb": round(size / 1e6),
        "dependency_layer": dependencies,
        "verdicts": VERDICTS,
        "memory_size_mb": memory_mb,
        "container": inside,
        "host_baseline": outside,
        "container_vs_host": {
            key: round(inside[key] / outside[key], 2)
            for key in ("imports_s", "first_batch_s", "finetune_s")
            if outside[key]
        },
        "peak_memory_share_of_memory_size": round(inside["peak_memory_mb"] / memory_mb, 2),
    }


def _run(command: list[str], environment: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {completed.returncode}:\n{completed.stderr[-4000:]}")
    return completed


if __name__ == "__main__":
    parse_no_arguments(__doc__)
    report: dict[str, Any] = {}
    run(report)
    write_results("retrain_image", report["retrain_image"])
