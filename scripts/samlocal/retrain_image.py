"""The retrain function's image, built offline here from the unchanged functions/retrain/Dockerfile.

Containers cannot reach the package registries, the host can (docs/operations.md, "The retrain image"). So the
wheels the image needs (functions/retrain/requirements.txt, complete and hashed) are downloaded on the host into
.cache/samlocal/wheels, served over HTTP on the Docker bridge only while the image builds, and the Dockerfile is
given BASE_IMAGE (the local Lambda-like base image) and WHEELHOUSE (its address). The address is the same on every
build (a fixed port), so Docker's layer cache keeps the large dependency layer across runs; builds take a file lock,
so two at once queue. The image is tagged by a hash of everything that goes into it and not rebuilt while that is
unchanged.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.lock_retrain import LOCK, PLATFORM_FLAGS
from scripts.samlocal.engine import CACHE_DIR, ROOT, log

RETRAIN_IMAGE = "lodbrok-local/retrain"
DOCKERFILE = ROOT / "functions" / "retrain" / "Dockerfile"
# Everything the Dockerfile copies, besides the lock (.dockerignore admits exactly these).
IMAGE_SOURCES = (ROOT / "functions" / "retrain" / "app.py", ROOT / "layers" / "model" / "lodbrok")
WHEELHOUSE = CACHE_DIR / "wheels"
WHEELHOUSE_PORT = 47613
BUILD_LOCK = CACHE_DIR / "retrain-image.lock"


def ensure_retrain_image(base_image: str, bridge_ip: str) -> str:
    """The retrain image for the current sources on `base_image`: the existing tag, or built now."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with BUILD_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tag = f"{RETRAIN_IMAGE}:{content_key(base_image)}"
        if _image_id(tag) is None:
            download_wheels()
            with serve_directory(WHEELHOUSE, bridge_ip, WHEELHOUSE_PORT) as address:
                build(tag, base_image, address)
        return tag


def content_key(base_image: str) -> str:
    """A hash of the base image, the Dockerfile, the lock and every file the image copies."""
    digest = hashlib.sha256(f"{_image_id(base_image)}\n".encode())
    files = [DOCKERFILE, LOCK, ROOT / ".dockerignore"]
    for source in IMAGE_SOURCES:
        files += sorted(path for path in source.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    for path in files:
        digest.update(f"{path.relative_to(ROOT)}\n".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def download_wheels() -> None:
    """Every wheel the lock names, for the image's platform, into the wheelhouse (files already there are kept)."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--require-hashes", *PLATFORM_FLAGS, "--dest", str(WHEELHOUSE), "-r", str(LOCK)]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    log(f"wheelhouse ready in {time.monotonic() - started:.0f} s ({WHEELHOUSE})")


@contextmanager
def serve_directory(directory: Path, host: str, port: int) -> Iterator[str]:
    """An HTTP listing of `directory` at the host:port it yields (pip's --find-links reads it) while the block runs."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def build(tag: str, base_image: str, wheelhouse: str) -> None:
    """`docker build` of the Dockerfile, then the image it replaces is removed (vfs keeps full copies of each)."""
    previous = _images_of(RETRAIN_IMAGE)
    command = ["docker", "build", "--file", str(DOCKERFILE), "--tag", tag]
    command += ["--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"WHEELHOUSE={wheelhouse}"]
    log(f"building {tag} from {DOCKERFILE.relative_to(ROOT)} ...")
    started = time.monotonic()
    subprocess.run([*command, str(ROOT)], check=True, stdout=subprocess.DEVNULL)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    stale = sorted(set(previous) - {_image_id(tag)})
    if stale:
        subprocess.run(["docker", "image", "rm", "--force", *stale], check=False, capture_output=True)


def _image_id(reference: str) -> str | None:
    completed = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() or None


def _images_of(repository: str) -> list[str]:
    completed = subprocess.run(
        ["docker", "image", "ls", "--quiet", "--no-trunc", repository], capture_output=True, text=True, check=True
    )
    return completed.stdout.split()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """pip fetches dozens of files; their access lines would drown the build log."""
