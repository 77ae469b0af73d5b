"""One source for the retrain image's dependencies: the lock made from pyproject.toml, installed by the Dockerfile.

Building the image and what it holds are tested in tests/samlocal (the image holds exactly the lock's
distributions); these checks need no Docker and no network, so a dependency change in pyproject.toml without
`make retrain-lock` fails here, in every `make test`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.lock_retrain import LOCK, SOURCE_LINE, image_requirements, read_lock, source_digest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "functions" / "retrain" / "Dockerfile"


def test_retrain_lock_was_generated_from_the_current_pyproject() -> None:
    # Given the lock's header, which records the pyproject.toml requirements it was resolved from
    header = [line for line in LOCK.read_text().splitlines() if line.startswith(SOURCE_LINE)]

    # Then they are today's (otherwise: `make retrain-lock`)
    assert header == [SOURCE_LINE + source_digest(image_requirements())]


def test_source_digest_changes_with_any_requirement() -> None:
    requirements = image_requirements()
    assert source_digest(requirements) == source_digest(list(reversed(requirements)))
    assert source_digest(requirements) != source_digest([*requirements[:-1], "tensorflow-cpu==2.20.0"])


def test_retrain_lock_pins_every_package_with_a_hash() -> None:
    pins = read_lock()
    assert len(pins) > 20  # the whole closure (TensorFlow alone brings dozens), not only the direct requirements
    for name, (version, hashes) in pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), name
        assert len(hashes) == 1 and re.fullmatch(r"sha256:[0-9a-f]{64}", hashes[0]), name


@pytest.mark.parametrize("requirement", image_requirements())
def test_retrain_lock_satisfies_each_project_requirement(requirement: str) -> None:
    # Given one runtime or train requirement of pyproject.toml
    declared = Requirement(requirement)
    pins = read_lock()

    # Then the lock installs it at a version the project allows
    assert canonicalize_name(declared.name) in pins, f"{declared.name} is missing from the lock"
    assert declared.specifier.contains(pins[canonicalize_name(declared.name)][0], prereleases=True)


def test_retrain_lock_includes_the_tracer_extra_of_powertools() -> None:
    # Powertools' [tracer] extra is what brings aws-xray-sdk, which lodbrok.observability imports
    assert "aws-xray-sdk" in read_lock()


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    # Given the sources of the Dockerfile's COPY instructions and the build context .dockerignore leaves
    copied = set(re.findall(r"^COPY (\S+) ", DOCKERFILE.read_text(), re.MULTILINE))
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]

    # Then the context is everything excluded except those sources (and never bytecode)
    assert rules[0] == "*"
    assert {rule[1:] for rule in rules if rule.startswith("!")} == copied
    assert "**/__pycache__" in rules
    assert all((ROOT / source).exists() for source in copied)
