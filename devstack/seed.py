"""The seed model of the local stack: trained once from the demo data, cached, published as v1."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from devstack.template import ROOT

# Cached under a hash of the code that decides its features and weights, so a change to the
# featurizer or the network retrains it instead of serving a stale bundle.
SEED_SOURCES = ("model/features.py", "training/network.py", "training/trainer.py", "model/data.py", "model/decision.py")


def default_seed_model() -> Path:
    package = ROOT / "layers" / "model" / "lodbrok"
    digest = hashlib.sha256(b"".join((package / name).read_bytes() for name in SEED_SOURCES)).hexdigest()[:12]
    return ROOT / ".cache" / f"seed-model-{digest}.lbk"


def ensure_seed_model(path: Path) -> Path:
    if not path.exists():
        from lodbrok.model.data import load_demo_dataset
        from lodbrok.training.trainer import train_bundle

        print(f"training the seed model from the demo data (once; cached in {path}) ...", flush=True)
        started = time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        train_bundle(load_demo_dataset()).bundle.write(str(path))
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
