"""The seed model of the local stack: trained once from the demo data, cached, published as v1."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

from devstack.template import ROOT

# Cached under a hash of the code that decides its features, weights, rule and metadata, so a change there
# retrains it instead of serving (and the suite checking) a stale bundle.
SEED_SOURCE_FOLDERS = ("model", "training")


def default_seed_model() -> Path:
    package = ROOT / "layers" / "model" / "lodbrok"
    sources = sorted(path for folder in SEED_SOURCE_FOLDERS for path in (package / folder).glob("*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:12]
    return ROOT / ".cache" / f"seed-model-{digest}.lbk"


def ensure_seed_model(path: Path) -> Path:
    """The cached seed bundle, trained first if missing; stacks started together train it once and never read half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            from lodbrok.model.data import load_demo_dataset
            from lodbrok.training.trainer import train_bundle

            print(f"training the seed model from the demo data (once; cached in {path}) ...", flush=True)
            started = time.perf_counter()
            partial = path.with_name(path.name + ".partial")
            train_bundle(load_demo_dataset()).bundle.write(str(partial))
            os.replace(partial, path)
            print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def publish_seed_model(path: Path, environment: dict[str, str]) -> str:
    """Publish the seed bundle as the signed first version, per the functions' environment; returns its version id."""
    from lodbrok.model.bundle import Bundle
    from lodbrok.registry.signing import BundleSigner
    from lodbrok.registry.store import ModelStore
    from lodbrok.settings import Settings

    settings = Settings.from_env(environment)
    store = ModelStore(settings.model_bucket, settings.model_name, signer=BundleSigner.from_settings(settings))
    bundle = Bundle.read(str(ensure_seed_model(path)))
    return store.publish(bundle.with_metadata(version="v1"), expected=None).version_id
