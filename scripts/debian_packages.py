"""Debian packages that the test setup installs itself, as CI does on a clean machine: only as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


class PackagesMissing(RuntimeError):
    """A command is missing and cannot be installed here (not root); the message says how to install it."""


def install_missing(packages_by_command: dict[str, str]) -> None:
    """Install, with apt-get, the Debian package of each command that is not on PATH."""
    packages = sorted({package for command, package in packages_by_command.items() if shutil.which(command) is None})
    if not packages:
        return
    if os.geteuid() != 0:
        raise PackagesMissing(f"missing {', '.join(packages)}: `apt-get install -y {' '.join(packages)}` as root")
    print(f"installing {', '.join(packages)} with apt-get", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env, stdout=subprocess.DEVNULL, check=True)
