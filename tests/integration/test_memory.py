"""The verdict memory (lodbrok.verdicts.memory) as the retrain function and the CLI keep it: screened verdicts
remembered at intake (unless decided under model versions a rollback undid), forgotten once a promoted model agrees.

Driven through `retrain.app.lambda_handler` with SQS events, against moto. How the predict function answers with
the memory, and ignores entries outside the active model's lineage, is in test_service.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from lodbrok.clock import utc_iso
from lodbrok.model.predictor import Predictor
from lodbrok.registry.store import ModelRef, ModelStore
from lodbrok.verdicts.verdict import Verdict
from support import (
    MEMORY_TABLE,
    active_bundle,
    attested,
    flipped_template_spam,
    fresh_container,
    learning_loop,
    zorblax_verdicts,
)
from support import (
    RETRAIN_BUCKET as BUCKET,
)


def _remembered(*inputs: str, caller: str | None = None) -> dict[str, str | None]:
    """The verdict memory's label for each input as `caller` (an API key id) is answered (None: no entry)."""
    from lodbrok.model.features import canonical_key
    from lodbrok.verdicts.memory import VerdictMemory

    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    items = boto3.client("dynamodb").batch_get_item(
        RequestItems={MEMORY_TABLE: memory.read_request([canonical_key(text) for text in inputs], caller)}
    )["Responses"][MEMORY_TABLE]
    found = memory.parse(items, [canonical_key(text) for text in inputs], caller)
    return {text: (found[canonical_key(text)].label if canonical_key(text) in found else None) for text in inputs}


def test_verdict_memory_remembers_screened_verdicts_at_intake_and_never_held_ones(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a feedback client's batch with a new campaign labelled spam and a few obvious template spam texts
    # labelled ham (lies, too few to make the sender suspect), no retrain
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    fresh_container()
    campaign, lies = zorblax_verdicts(3), flipped_template_spam(2)
    invoke(send(attested(campaign + lies, sender="desk", role="feedback")))
    # Then the campaign is remembered at once for that client, before any fine-tune; the lies, which screening
    # holds, are not; and no other client is answered with any of them
    texts = [verdict["text"] for verdict in campaign + lies]
    remembered = _remembered(*texts, caller="desk")
    assert [remembered[verdict["text"]] for verdict in campaign] == ["spam"] * 3
    assert [remembered[verdict["text"]] for verdict in lies] == [None] * 2
    assert set(_remembered(*texts, caller="someone-else").values()) == {None}


def test_verdict_memory_caps_entries_per_sender_and_for_reviewers_per_day(
    retrain_env: None, read_metrics: Callable[[], dict[str, float]]
) -> None:
    # Given a memory that lets each sender add 2 entries a day, and reviewers together 1
    from lodbrok.access.roles import Role
    from lodbrok.observability import metrics
    from lodbrok.verdicts.attestation import Provenance
    from lodbrok.verdicts.memory import VerdictMemory

    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"), client_daily_cap=2, global_daily_cap=1)

    def taught(sender: str, role: Role, count: int) -> list[tuple[Verdict, Provenance]]:
        provenance = Provenance(sender=sender, role=role, received_at="2026-12-01T10:00:00.000Z")
        return [
            (Verdict(id=f"{sender}-{i}", text=f"{sender} text {i}", label="spam"), provenance) for i in range(count)
        ]

    read_metrics()
    # When one client sends 3, another 1, and reviewers 2
    written = [
        memory.remember(taught("a", Role.FEEDBACK, 3)),
        memory.remember(taught("b", Role.FEEDBACK, 1)),
        memory.remember(taught("r", Role.REVIEWER, 2)),
    ]
    # Then each stops at its own cap, and the skipped ones are counted
    assert written == [2, 1, 1]
    assert _remembered("a text 0", "a text 1", "a text 2", caller="a") == {
        "a text 0": "spam",
        "a text 1": "spam",
        "a text 2": None,
    }
    metrics.flush_metrics()
    assert read_metrics()["VerdictMemoryCapped"] == 2


def test_verdict_memory_list_and_forget_with_the_cli(retrain_env: None, capsys: Any) -> None:
    # Given a clients table naming two clients, and entries: alice's own, bob's own, and a reviewer's
    from devstack.resources import create_table
    from devstack.template import Template
    from lodbrok.access.roles import ClientRoles, Role
    from lodbrok.verdicts.attestation import Provenance
    from lodbrok.verdicts.memory import VerdictMemory
    from lodbrok_cli.main import main

    table = create_table(Template(), "ClientsTable", "lodbrok-clients-memory-test")
    roles = ClientRoles(table, client=boto3.client("dynamodb"))
    roles.put("key-alice", "alice", Role.FEEDBACK)
    roles.put("key-bob", "bob", Role.FEEDBACK)
    memory = VerdictMemory(MEMORY_TABLE, client=boto3.client("dynamodb"))
    at = "2026-12-01T10:00:00.000Z"
    assert (
        memory.remember(
            [
                (Verdict(id="a1", text="shared text", label="spam"), Provenance("key-alice", Role.FEEDBACK, at)),
                (Verdict(id="b1", text="shared text", label="ham"), Provenance("key-bob", Role.FEEDBACK, at)),
                (Verdict(id="r1", text="other text", label="spam"), Provenance("key-rev", Role.REVIEWER, at)),
            ]
        )
        == 3
    )
    options = ["--clients-table", table]
    # When an operator lists alice's entries, then everything
    capsys.readouterr()
    assert main(["memory", "list", "--client", "alice", *options]) == 0
    alice_only = capsys.readouterr().out
    assert main(["memory", "list", *options]) == 0
    everything = capsys.readouterr().out
    # Then alice's list holds her entry only (named by client, not key), and the full list all three
    assert len(alice_only.splitlines()) == 1 and "\talice\tspam\ta1\t" in alice_only
    assert len(everything.splitlines()) == 3 and "\teveryone\tspam\tr1\t" in everything
    # When alice's entry of the shared text is forgotten, then every entry of the other text
    assert main(["memory", "forget", "--text", "shared text", "--client", "alice", *options]) == 0
    assert _remembered("shared text", caller="key-alice") == {"shared text": None}
    assert _remembered("shared text", caller="key-bob") == {"shared text": "ham"}
    assert main(["memory", "forget", "--text", "other text", *options]) == 0
    # Then only bob's entry is left (alice still sees none of it)
    assert _remembered("other text") == {"other text": None}
    assert [entry.verdict_id for entry in memory.entries()] == ["b1"]


def test_verdict_memory_takes_a_held_verdict_once_a_reviewer_accepts_it(
    base_ref: ModelRef, invoke: Callable[..., dict[str, Any]], send: Any, capsys: Any
) -> None:
    # Given lies that the retrain function held for review
    from lodbrok_cli.main import main

    lies = flipped_template_spam(3)
    invoke(send(attested(lies, sender="desk", role="feedback")))
    held = learning_loop().archive.held("held")
    assert len(held) == 3
    texts = [record["verdict"]["text"] for record in held]
    # When a reviewer accepts one and rejects the others with the CLI
    capsys.readouterr()
    assert main(["held", "accept", held[0]["key"], "--bucket", BUCKET]) == 0
    assert "answered from the verdict memory" in capsys.readouterr().out
    assert main(["held", "reject", *(record["key"] for record in held[1:]), "--bucket", BUCKET]) == 0
    # Then only the accepted one is answered from the memory, before any fine-tune
    assert _remembered(*texts) == {texts[0]: held[0]["verdict"]["label"], texts[1]: None, texts[2]: None}


def test_verdict_memory_later_verdict_replaces_and_promotion_forgets_what_the_model_learned(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any
) -> None:
    # Given a reviewer's correction, then a correction of that correction on the same input, in later messages
    first = {"id": "c-1", "text": "team lunch moved to friday", "label": "spam"}
    second = {**first, "label": "ham"}
    invoke(send(attested([second], received_at="2026-12-01T10:05:00.000Z")))
    # arrives late, but was decided earlier: it does not replace the newer one
    invoke(send(attested([first], received_at="2026-12-01T10:00:00.000Z")))
    assert _remembered(first["text"]) == {first["text"]: "ham"}
    # When a campaign a reviewer sent is remembered, learned and promoted
    campaign = zorblax_verdicts(12)
    invoke(send(*(attested(campaign[index : index + 4]) for index in range(0, 12, 4))))
    assert store.versions()[0].action == "promote"
    # Then the entries the promoted model answers the same way are gone; the model answers them now
    promoted = Predictor(active_bundle(store))
    texts = [verdict["text"] for verdict in campaign]
    right = [
        text for text, prediction in zip(texts, promoted.predict(texts), strict=True) if prediction.label == "spam"
    ]
    assert right, "the promoted model learned the campaign"
    assert set(_remembered(*right).values()) == {None}
    assert set(_remembered(*texts).values()) <= {None, "spam"}


def test_verdict_memory_after_a_rollback_takes_no_verdict_decided_under_the_undone_versions(
    base_ref: ModelRef, store: ModelStore, invoke: Callable[..., dict[str, Any]], send: Any, monkeypatch: Any
) -> None:
    # Given a promotion over the seed, and a campaign verdict stamped while it was active
    monkeypatch.setenv("MIN_VERDICTS_TO_TRAIN", "1000")
    fresh_container()
    store.publish(active_bundle(store).with_metadata(version="v2"), expected=store.head(), action="promote")
    stamped_before, stamped_after = zorblax_verdicts(2)
    received_before = utc_iso()
    # When the promotion is rolled back, and only then the verdict is processed, with one stamped after the rollback
    store.rollback(base_ref.version_id)
    invoke(
        send(attested([stamped_before], received_at=received_before), attested([stamped_after], received_at=utc_iso()))
    )
    # Then the verdict decided under the undone version is not remembered; the later one is
    assert _remembered(stamped_before["text"], stamped_after["text"]) == {
        stamped_before["text"]: None,
        stamped_after["text"]: "spam",
    }
