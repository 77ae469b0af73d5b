"""Test data made on the fly (never copied from a dataset) and small shared helpers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from lodbrok.bundle import Bundle
from lodbrok.data import LabelledItem
from lodbrok.features import FeaturizerConfig

TINY_FEATURIZER = FeaturizerConfig(num_buckets=2**12, max_tokens=96)
EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

_SPAM_TEMPLATES = [
    "WINNER!! You have won a {prize}. Call {number} now to claim, T&C apply",
    "FREE {prize} for you! Text CLAIM to {short} before midnight. Cost 150p/msg",
    "Urgent: your mobile number won {money} in our draw. Call {number} to collect",
    "Congratulations! Claim your {prize} today, reply YES to {short}. Stop? txt STOP",
]
_HAM_TEMPLATES = [
    "Are we still meeting for {meal} at {time}? I'll bring the {thing}",
    "Sorry I missed your call, I was at {place}. Talk later?",
    "Can you pick up some {thing} on the way home from {place}",
    "Mum says {meal} is at {time}, don't be late again",
]
_SLOTS = {
    "prize": ["holiday", "camera phone", "ipod", "voucher", "car"],
    "money": ["£1000", "£2000 cash", "$500", "£250"],
    "meal": ["lunch", "dinner", "breakfast", "coffee"],
    "time": ["noon", "7pm", "half six", "eight"],
    "thing": ["milk", "bread", "charger", "umbrella", "tickets"],
    "place": ["the gym", "work", "uni", "the station", "grandma's"],
}


def make_tiny_dataset(size: int = 240, seed: int = 3) -> list[LabelledItem]:
    """A small, clearly separable spam/ham dataset with varied wording."""
    rng = random.Random(seed)
    items = []
    for index in range(size):
        label = "spam" if index % 3 == 0 else "ham"
        template = rng.choice(_SPAM_TEMPLATES if label == "spam" else _HAM_TEMPLATES)
        values = {name: rng.choice(choices) for name, choices in _SLOTS.items()}
        values["number"] = "09" + "".join(rng.choice("0123456789") for _ in range(9))
        values["short"] = str(rng.randint(80000, 89999))
        items.append(LabelledItem(f"{template.format(**values)} #{index}", label))
    return items


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


_DESK_TEMPLATES = {
    "billing": ["I was charged twice for {plan}, please refund", "my invoice for {plan} shows the wrong amount"],
    "bug": ["the app crashes when I open {screen}", "{screen} shows an error after the update"],
    "account": ["I cannot log in to my account since {day}", "please reset my password, locked out since {day}"],
    "praise": ["thanks, the new {screen} is great", "love the {plan} plan, support was quick"],
}
_DESK_SLOTS = {
    "plan": ["the family plan", "premium", "the yearly plan", "basic"],
    "screen": ["settings", "the dashboard", "checkout", "the inbox"],
    "day": ["monday", "yesterday", "last week", "friday"],
}


def make_support_desk_dataset(size: int = 200, seed: int = 5) -> list[LabelledItem]:
    """Four labels, unevenly frequent, like the tickets of a support desk."""
    rng = random.Random(seed)
    shares = ["billing"] * 2 + ["bug"] * 4 + ["account"] * 3 + ["praise"]
    items = []
    for index in range(size):
        label = shares[index % len(shares)]
        values = {name: rng.choice(choices) for name, choices in _DESK_SLOTS.items()}
        items.append(LabelledItem(f"{rng.choice(_DESK_TEMPLATES[label]).format(**values)} #{index}", label))
    return items


def same_model(stored: bytes, original: bytes) -> bool:
    """Two stored bundles hold the same model: every member byte for byte, and the metadata but for the
    unique write stamp (`stored`) that the model store adds to each write."""
    first, second = Bundle.from_bytes(stored), Bundle.from_bytes(original)
    members = ("keras_model", "tflite_model", "featurizer", "labels", "rehearsal", "gate")
    return all(getattr(first, name) == getattr(second, name) for name in members) and {
        **first.metadata,
        "stored": None,
    } == {**second.metadata, "stored": None}
