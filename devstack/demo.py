"""`make demo`: start the local stack, drive it like a client, and print what happened.

predict (unsure answers go to review) -> cache hit -> why a text is spam -> verdicts about a new spam campaign
-> a new version is promoted and served -> rollback with the `lodbrok` CLI -> the original version is served
again -> trust decides reach: a `feedback` client's correction answers that client at once but no other, a
`reviewer`'s answers everyone. The end-to-end test runs the same scenario and asserts on the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.process import stop_gracefully
from devstack.template import FAST_LOOP, ROOT

# Spam probabilities from 0.2 to 0.8 are answered with the decision "review": the campaign, new to the seed model.
REVIEW_BAND = 'ReviewBand={"spam": [0.2, 0.8]}'
EXPLAINED = "FREE entry to win a holiday! Text CLAIM to 80085 now"
CAMPAIGN = [
    "zorblax airdrop: connect your wallet at zorblax to receive 500 free tokens",
    "last chance for the zorblax airdrop, wallet verification closes tonight",
    "your zorblax wallet qualifies for a bonus airdrop, verify now",
    "zorblax airdrop round two is live, claim tokens with your wallet",
    "zorblax: verify your wallet today and the airdrop tokens are yours",
    "final zorblax airdrop reminder: wallet check required to claim",
]
PROBE = ["zorblax airdrop: verify your wallet to claim free tokens", "are we still on for lunch tomorrow?"]
# Corrected first by a feedback client (answers only itself), then by a reviewer (answers everyone).
REPORTED = "zorblax bonus round: your wallet earned extra airdrop tokens, claim them today"
CLIENTS = {"desk": "feedback", "moderator": "reviewer", "viewer": "predict"}  # made with `lodbrok clients add`


@dataclass(frozen=True)
class StackInfo:
    api_url: str
    api_key: str
    aws_endpoint: str
    model_bucket: str
    model_name: str
    signing_key: str
    usage_plan: str
    clients_table: str
    verdict_memory_table: str
    seed_version_id: str
    exports: dict[str, str]  # the banner's `export` block


class ApiClient:
    def __init__(self, stack: StackInfo, key: str | None = None) -> None:
        self.stack = stack
        self.key = key or stack.api_key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.stack.api_url + path, data=data, method=method)
        request.add_header("x-api-key", self.key)
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def wait_for_model(self, accept: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, model = self.call("GET", "/model")
            if status == 200 and accept(model):
                return model
            if time.monotonic() > deadline:
                raise TimeoutError(f"the served model did not change in {timeout:.0f} s (last: {status} {model})")
            time.sleep(1)


@dataclass
class Report:
    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, say: Callable[[str], None], step: str, **facts: Any) -> None:
        self.steps.append({"step": step, **facts})
        say(f"- {step}: " + ", ".join(f"{key}={value}" for key, value in facts.items()))

    def __getitem__(self, step: str) -> dict[str, Any]:
        return next(entry for entry in self.steps if entry["step"] == step)


@contextlib.contextmanager
def local_stack(
    overrides: tuple[str, ...] = (*FAST_LOOP, REVIEW_BAND),
    seed_model: str | None = None,
    log_path: Path | None = None,
    startup_timeout: float = 600,
) -> Iterator[StackInfo]:
    """Run `python -m devstack` in a subprocess on free ports; stop it cleanly afterwards."""
    with tempfile.TemporaryDirectory() as workdir:
        ready_file = Path(workdir) / "ready.json"
        log = open(log_path or Path(workdir) / "stack.log", "w")  # noqa: SIM115 - closed below
        command = [
            sys.executable,
            "-m",
            "devstack",
            "--port",
            str(_free_port()),
            "--moto-port",
            "0",
            # One argument, so a key that starts with "-" is not read as an option.
            f"--api-key={secrets.token_urlsafe(16)}",
            "--ready-file",
            str(ready_file),
            "--parameter-overrides",
            *overrides,
        ]
        if seed_model:
            command += ["--seed-model", seed_model]
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_timeout
            while not ready_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = "".join(Path(log.name).read_text(errors="replace").splitlines(keepends=True)[-30:])
                    raise RuntimeError(
                        f"the local stack did not start (exit status {process.poll()}); log tail:\n{tail}"
                    )
                time.sleep(0.5)
            yield StackInfo(**json.loads(ready_file.read_text()))
        finally:
            # Everything the stack holds is in its memory and this temporary folder: a retrain still running is
            # given a few seconds, not the whole of its training, before the process is killed.
            stop_gracefully(process, signal.SIGINT, timeout=5)
            log.close()


def run_scenario(stack: StackInfo, say: Callable[[str], None] = print, promotion_timeout: float = 300) -> Report:
    client = ApiClient(stack)
    report = Report()

    _, seed = client.call("GET", "/model")
    report.add(say, "active model", label=seed["label"], version=seed["version"])

    _, first = client.call("POST", "/predict", {"texts": PROBE})
    _, again = client.call("POST", "/predict", {"texts": PROBE})
    report.add(
        say,
        "predict before verdicts",
        **_answers(first),
        from_cache_first=[p["from_cache"] for p in first["predictions"]],
        from_cache_again=[p["from_cache"] for p in again["predictions"]],
    )

    _, explained = client.call("POST", "/predict", {"text": EXPLAINED, "explain": True})
    why = explained["predictions"][0]
    report.add(
        say,
        "why a text got its label",
        text=EXPLAINED,
        label=why["label"],
        towards=[f"{entry['piece']} {entry['weight']:+.3f}" for entry in why["explanation"]["towards"]],
        away=[f"{entry['piece']} {entry['weight']:+.3f}" for entry in why["explanation"]["away"]],
    )

    verdicts = [
        {"id": f"campaign-{index}", "text": text, "label": "spam", "source": "demo-moderator"}
        for index, text in enumerate(CAMPAIGN)
    ]
    sent_at = time.monotonic()
    status, queued = client.call("POST", "/verdicts", {"verdicts": verdicts})
    report.add(say, "verdicts sent", status=status, queued=queued.get("queued"))

    # The verdict memory answers a corrected text as soon as the retrain function took the batch in,
    # long before the fine-tune ends and a new version is promoted.
    corrected = _poll(lambda: client.call("POST", "/predict", {"text": CAMPAIGN[0]})[1]["predictions"][0], 60)
    report.add(
        say,
        "corrected text answered from the verdict memory",
        seconds_after_post=round(time.monotonic() - sent_at, 1),
        label=corrected["label"],
        source=corrected["source"],
        verdict=corrected.get("verdict", {}).get("id"),
        model_version_still_seed=client.call("POST", "/predict", {"text": CAMPAIGN[0]})[1]["model_version"]
        == seed["version"],
    )

    say("  waiting for the retrain function to fine-tune, gate and promote a new version ...")
    promoted = client.wait_for_model(lambda model: model["version"] != seed["version"], promotion_timeout)
    report.add(
        say, "new version served", label=promoted["label"], version=promoted["version"], parent=promoted.get("parent")
    )

    _, after = client.call("POST", "/predict", {"texts": PROBE})
    report.add(
        say,
        "predict after promotion",
        **_answers(after),
        from_cache=[p["from_cache"] for p in after["predictions"]],
    )

    rollback = _lodbrok_cli(stack, "rollback", "--to", seed["version"])
    report.add(say, "rollback with the CLI", output=rollback.strip())
    restored = client.wait_for_model(lambda model: model["label"] == seed["label"], promotion_timeout)
    _, back = client.call("POST", "/predict", {"texts": PROBE})
    report.add(
        say,
        "original model served again",
        label=restored["label"],
        version=restored["version"],
        spam_probability=_answers(back)["spam_probability"],
    )

    listing = _lodbrok_cli(stack, "versions")
    report.add(say, "versions listed", count=len(listing.splitlines()) - 1)
    say(listing)

    # Last, so that its verdicts (and any retrain they start) change none of the versions above.
    _trust_decides_reach(stack, report, say)
    return report


def _trust_decides_reach(stack: StackInfo, report: Report, say: Callable[[str], None]) -> None:
    """A feedback client's correction answers only that client; a reviewer's answers everyone."""
    keys = {
        name: json.loads(_lodbrok_cli(stack, "clients", "add", name, "--role", role, "--json"))["key"]
        for name, role in CLIENTS.items()
    }
    report.add(say, "clients added with the CLI", roles=CLIENTS)
    clients = {name: ApiClient(stack, key) for name, key in keys.items()}

    def answer(name: str) -> dict[str, Any]:
        status, body = clients[name].call("POST", "/predict", {"text": REPORTED, "skip_cache": True})
        return dict(body["predictions"][0]) if status == 200 else {"source": f"HTTP {status}"}

    refused, _ = clients["viewer"].call(
        "POST", "/verdicts", {"verdicts": [{"id": "x", "text": REPORTED, "label": "spam"}]}
    )
    status, _ = clients["desk"].call(
        "POST", "/verdicts", {"verdicts": [{"id": "desk-1", "text": REPORTED, "label": "spam"}]}
    )
    desk = _poll(lambda: answer("desk"), 60)
    viewer = answer("viewer")
    report.add(
        say,
        "feedback correction answers its sender only",
        predict_key_sending_verdicts=refused,
        status=status,
        sender_source=desk["source"],
        sender_sees_id=desk.get("verdict", {}).get("id"),
        other_source=viewer["source"],
        other_label=viewer.get("label"),
    )
    status, _ = clients["moderator"].call(
        "POST", "/verdicts", {"verdicts": [{"id": "mod-1", "text": REPORTED, "label": "spam"}]}
    )
    viewer = _poll(lambda: answer("viewer"), 60)
    report.add(
        say,
        "reviewer correction answers everyone",
        status=status,
        other_source=viewer["source"],
        other_label=viewer.get("label"),
        other_sees_id=viewer.get("verdict", {}).get("id"),
    )


def _answers(response: dict[str, Any]) -> dict[str, list[Any]]:
    """What the demo shows of a /predict answer: each probe's label, spam probability and decision."""
    predictions = response["predictions"]
    return {
        "labels": [p["label"] for p in predictions],
        "spam_probability": [round(p["probabilities"]["spam"], 4) for p in predictions],
        "decisions": [p["decision"] for p in predictions],
    }


def _poll(answer: Callable[[], dict[str, Any]], timeout: float) -> dict[str, Any]:
    """The first prediction answered from the verdict memory, polling every 0.2 s."""
    deadline = time.monotonic() + timeout
    while True:
        prediction = answer()
        if prediction["source"] == "verdict" or time.monotonic() > deadline:
            return prediction
        time.sleep(0.2)


# What a shell passes every command besides the pasted exports: where programs and this checkout's code are.
PROCESS_VARIABLES = ("PATH", "HOME", "LANG", "PYTHONPATH")


def _lodbrok_cli(stack: StackInfo, *arguments: str) -> str:
    """Run `lodbrok` against the stack as someone who pasted the banner's `export` block: no other setting, no
    option naming the stack's bucket, key, tables or usage plan."""
    environment = {name: os.environ[name] for name in PROCESS_VARIABLES if name in os.environ} | stack.exports
    command = [sys.executable, "-m", "lodbrok_cli", *arguments]
    return subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m devstack.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args(argv)
    print("starting the local stack (moto + API + retrain poller) ...", flush=True)
    log_path = ROOT / ".cache" / "demo-stack.log"
    log_path.parent.mkdir(exist_ok=True)
    with local_stack(log_path=log_path) as stack:
        print(f"stack up at {stack.api_url} (log: {log_path})", flush=True)
        print(f"reviewer's console: {stack.api_url}/console (API key {stack.api_key})\n", flush=True)
        run_scenario(stack, say=lambda line: print(line, flush=True))
    print("\ndemo finished; the stack was stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
