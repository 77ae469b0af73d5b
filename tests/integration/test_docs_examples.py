"""The examples of the README and the docs run against the local stack, so the docs and the API cannot disagree.

A fenced `sh`/`bash` block right after `<!-- runnable -->` is run with bash, with the variables of the `export`
block `make local` prints, against `devstack.demo.local_stack()`. It must succeed; every JSON answer it prints
must be an answer, not an error body; and when a `<!-- output -->` JSON block follows it (before the next
runnable block), the last answer must have that block's shape: the same keys at every level and values of the
same kinds (the numbers and ids of a run differ, the shape of an answer does not).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import StackInfo, local_stack

# Every example on one worker (`make test` spreads the rest), in page order, against one stack.
pytestmark = pytest.mark.xdist_group("docs-examples")
ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"<!-- runnable -->\n```(?:sh|bash)\n(.*?)\n```", re.DOTALL)
OUTPUT = re.compile(r"<!-- output -->\n```json\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    script: str
    output: Any | None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = list(RUNNABLE.finditer(text))
        for index, block in enumerate(blocks):
            until = blocks[index + 1].start() if index + 1 < len(blocks) else len(text)
            output = OUTPUT.search(text, block.end(), until)
            line = text.count("\n", 0, block.start()) + 1
            shown = json.loads(output.group(1)) if output else None
            found.append(Example(str(page.relative_to(ROOT)), line, block.group(1), shown))
    return found


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    with local_stack() as info:
        yield info


def export_block(stack: StackInfo) -> dict[str, str]:
    """The variables the banner's `export` block sets: as the stack wrote them, or else named here."""
    exports = getattr(stack, "exports", None)
    if exports:
        return dict(exports)
    return {
        "AWS_ENDPOINT_URL": stack.aws_endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODEL_BUCKET": stack.model_bucket,
        "MODEL_SIGNING_KEY": stack.signing_key,
        "VERDICT_MEMORY_TABLE": stack.verdict_memory_table,
        "CLIENTS_TABLE": stack.clients_table,
        "LODBROK_API_URL": stack.api_url,
        "LODBROK_API_KEY": stack.api_key,
    }


def answers(stdout: str) -> list[Any]:
    """The JSON documents a block printed, one after another (curl prints no newline between them)."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while position < len(stdout.rstrip()):
        while stdout[position].isspace():
            position += 1
        document, position = decoder.raw_decode(stdout, position)
        found.append(document)
    return found


def shape(value: Any) -> Any:
    """What an answer is made of, without its values: keys, and the kind of each leaf."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, int | float) else type(value).__name__


@pytest.mark.slow
@pytest.mark.parametrize("example", examples(), ids=str)
def test_docs_example_runs_against_the_local_stack(stack: StackInfo, example: Example) -> None:
    # Given a runnable example and the variables of the banner's export block
    environment = {**os.environ, **export_block(stack)}
    # When it runs in a shell in the repository, as a reader pastes it
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    # Then it succeeds; what the API printed are answers, not errors; and the last has the shape the docs show
    assert result.returncode == 0, f"{example} failed:\n{result.stderr[-2000:]}"
    if "curl" in example.script:
        printed = answers(result.stdout)
        assert printed, f"{example} printed no answer"
        for answer in printed:
            assert "error" not in answer and "message" not in answer, f"{example} answered {answer}"
        if example.output is not None:
            assert shape(printed[-1]) == shape(example.output), f"{example}: the answer differs from the docs"
