"""The Docker engine and the local Lambda base image that `sam local` runs the predict function in.

No image registry is reachable here, so the engine is Debian's docker.io, started as root with the vfs storage
driver, and the base image is built from Debian packages by build-rootfs.sh (docs/local-development.md, "make
sam-local"). The image is a test fixture, not product code: its root filesystem is cached as a tarball under
.cache/samlocal, keyed by the hash of build-rootfs.sh, so only the first run pays for debootstrap.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.process import stop_gracefully
from scripts.debian_packages import install_missing

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "samlocal"
RECIPE = Path(__file__).with_name("build-rootfs.sh")
IMAGE = "lodbrok-local/lambda-python:3.13"
BRIDGE = "docker0"
APT_SOURCES = Path("/etc/apt")
ENGINE_START_SECONDS = 60
# The image configuration `docker import` gives the root filesystem, as the Lambda base image has it.
IMAGE_CHANGES = ("ENV LAMBDA_TASK_ROOT=/var/task", "WORKDIR /var/task", 'ENTRYPOINT ["/lambda-entrypoint.sh"]')


class EngineUnavailable(RuntimeError):
    """No Docker engine (or base image) can be had on this machine; the message says what is missing."""


@dataclass
class Engine:
    bridge_ip: str
    dockerd: subprocess.Popen[bytes] | None = None  # the engine this process started, if it started one

    def stop(self) -> None:
        """Stop the engine if this process started it; an engine that was already running is left alone.

        An engine started here serves only these runs, so what they left behind goes first: stopped containers
        and untagged images (each `sam local` run and image rebuild leaves one; vfs keeps full copies of each).
        """
        if self.dockerd is not None:
            for leftovers in ("container", "image"):
                subprocess.run(["docker", leftovers, "prune", "--force"], check=False, capture_output=True)
            stop_gracefully(self.dockerd)


def log(message: str) -> None:
    print(f"samlocal: {message}", file=sys.stderr, flush=True)


def ensure_engine() -> Engine:
    """A running Docker engine: the one that answers, or dockerd started here (as root), installed if missing."""
    if _engine_answers():
        return Engine(bridge_ip())
    if os.geteuid() != 0:
        raise EngineUnavailable(
            "no Docker engine answers (`docker info` fails) and starting one needs root: as root, "
            "`apt-get install -y docker.io debootstrap` and `dockerd --storage-driver=vfs &`"
        )
    install_missing({"docker": "docker.io", "dockerd": "docker.io"})
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    log_path = CACHE_DIR / "dockerd.log"
    log(f"starting dockerd --storage-driver=vfs (log: {log_path})")
    with log_path.open("ab") as output:
        # Its own session: a Ctrl-C must reach sam (which then removes its containers) before the engine stops.
        dockerd = subprocess.Popen(
            ["dockerd", "--storage-driver=vfs"], stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + ENGINE_START_SECONDS
    while not _engine_answers():
        if dockerd.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with status {dockerd.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            dockerd.kill()
            dockerd.wait()
            raise EngineUnavailable(f"dockerd did not answer within {ENGINE_START_SECONDS} s; see {log_path}")
        time.sleep(0.5)
    return Engine(bridge_ip(), dockerd)


def bridge_ip() -> str:
    """The IPv4 address of the Docker bridge on this host: containers reach a server bound there, nothing else does."""
    completed = subprocess.run(["ip", "-4", "-o", "addr", "show", BRIDGE], capture_output=True, text=True, check=False)
    found = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", completed.stdout)
    if not found:
        raise EngineUnavailable(f"the Docker bridge {BRIDGE} has no IPv4 address here (`ip -4 addr show {BRIDGE}`)")
    return found.group(1)


def ensure_base_image() -> str:
    """The local Lambda base image for the current recipe: already imported, imported from the cache, or built."""
    key = recipe_key()
    if _image_recipe() == key:
        return IMAGE
    tarball = CACHE_DIR / f"lambda-python-3.13-{key}.tar"
    if not tarball.exists():
        build_rootfs_tarball(tarball)
    log(f"importing {tarball.name} as {IMAGE}")
    changes = [*IMAGE_CHANGES, f"ENV LODBROK_ROOTFS_RECIPE={key}"]
    options = [option for change in changes for option in ("--change", change)]
    subprocess.run(["docker", "import", *options, str(tarball), IMAGE], check=True, stdout=subprocess.DEVNULL)
    return IMAGE


def recipe_key() -> str:
    return hashlib.sha256(RECIPE.read_bytes() + "\n".join(IMAGE_CHANGES).encode()).hexdigest()[:16]


def build_rootfs_tarball(tarball: Path) -> None:
    """Run build-rootfs.sh into a scratch directory and keep only its tarball (replacing tarballs of older recipes)."""
    if os.geteuid() != 0:
        raise EngineUnavailable(f"{IMAGE} is not built yet and building it (debootstrap) needs root")
    install_missing({"debootstrap": "debootstrap"})
    mirror = debian_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"building {IMAGE} from {mirror} (once; cached in {tarball.parent}) ...")
    with tempfile.TemporaryDirectory(prefix="lodbrok-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            ["sh", str(RECIPE), str(rootfs), mirror, sys.executable, "-m", "pip"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
    for stale in tarball.parent.glob("lambda-python-3.13-*.tar"):
        stale.unlink()
    partial.rename(tarball)
    log(f"built the root filesystem in {time.monotonic() - started:.0f} s")


def debian_mirror(apt_dir: Path = APT_SOURCES) -> str:
    """The Debian archive apt already uses: the first `deb` source with path /debian and component main."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    files += sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for path in filter(Path.is_file, files):
        parse = _deb822_sources if path.suffix == ".sources" else _one_line_sources
        for uri, components in parse(path.read_text()):
            if uri.rstrip("/").endswith("/debian") and "main" in components:
                return uri
    raise EngineUnavailable(f"no Debian archive (a `deb` source .../debian with main) in {apt_dir}/sources.list*")


def _one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, components) of each `deb URI suite component...` line."""
    sources = []
    for line in text.splitlines():
        fields = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # without comments and [options]
        if len(fields) >= 4 and fields[0] == "deb":
            sources.append((fields[1], fields[3:]))
    return sources


def _deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, components) of each enabled `Types: deb` stanza."""
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            name, separator, value = line.partition(":")
            if separator and not line.startswith(("#", " ", "\t")):
                fields[name.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            sources += [(uri, fields.get("components", [])) for uri in fields.get("uris", [])]
    return sources


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def _image_recipe() -> str | None:
    completed = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in completed.stdout.splitlines():
        name, _, value = line.partition("=")
        if name == "LODBROK_ROOTFS_RECIPE":
            return value
    return None
