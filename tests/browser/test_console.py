"""The reviewer's console in a real headless Chromium against the local stack (`make local`, one for all tests).

Each view is driven with the keyboard where a person would use it, and photographed into docs/screenshots/ (linked
from docs/console.md). Waits are for what the page or the API shows, never for a fixed time.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from playwright.sync_api import Page, expect

from devstack.demo import PROBE, REVIEW_BAND, StackInfo, local_stack
from devstack.seed import default_seed_model
from devstack.template import FAST_LOOP
from lodbrok.access.api_keys import ClientKeys
from lodbrok.access.roles import ClientRoles, Role
from lodbrok.model.bundle import Bundle
from lodbrok.registry.signing import BundleSigner
from lodbrok.registry.store import ModelStore
from lodbrok.verdicts.archive import VerdictArchive
from support import hold_verdict

# Every browser test on one worker (`make test` spreads the rest): one Chromium and one local stack.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
EXPLAINED = "FREE entry to win a holiday! Text CLAIM to 80085 now"
UNSURE = PROBE[0]  # the seed model answers it inside the demo's review band
INJECTED = '<script>window.__ran = "script"</script><img src=x onerror="window.__ran = \'onerror\'">'


def _aws(stack: StackInfo, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _open(page: Page, stack: StackInfo, key: str | None = None) -> None:
    """The console, with a key typed in as a person would."""
    page.goto(f"{stack.api_url}/console")
    page.locator("#key").fill(key or stack.api_key)
    page.locator("#key").press("Enter")
    expect(page.locator("#key-state")).to_have_text("key set for this browser session")


def _shot(page: Page, view: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{view}.png"), full_page=True)


def _predict(stack: StackInfo, text: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{stack.api_url}/predict",
        data=json.dumps({"text": text}).encode(),
        headers={"x-api-key": stack.api_key, "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read())["predictions"][0])


def test_console_try_shows_the_decision_and_the_explanation_as_highlights(page: Page, stack: StackInfo) -> None:
    # Given the console with the admin's key
    _open(page, stack)

    # When a spam text is typed and sent with Ctrl+Enter
    page.locator("#try-text").fill(EXPLAINED)
    page.locator("#try-text").press("Control+Enter")

    # Then the decision, the model version and highlighted pieces of the text itself are shown
    expect(page.locator("#try-result")).to_be_visible()
    expect(page.locator("#try-decision")).to_have_text("spam")
    expect(page.locator("#try-model")).to_contain_text("v1")
    assert page.locator("#try-highlighted mark.towards").count() >= 1
    assert page.locator("#try-highlighted").text_content() == EXPLAINED
    _shot(page, "try")


def test_console_shows_script_injection_texts_as_text(page: Page, stack: StackInfo) -> None:
    # Given the console
    _open(page, stack)

    # When a text holding a script and an onerror attribute is predicted
    page.locator("#try-text").fill(INJECTED)
    page.locator("#try-go").click()

    # Then it is shown character for character, and nothing of it ran or became an element
    expect(page.locator("#try-result")).to_be_visible()
    assert page.locator("#try-highlighted").text_content() == INJECTED
    assert page.locator("#try-highlighted script, #try-highlighted img").count() == 0
    assert page.evaluate("window.__ran") is None


def test_console_queue_item_labelled_with_a_key_then_answers_with_that_label(page: Page, stack: StackInfo) -> None:
    # Given a text the model is unsure of, sent from the Try view asking for review
    _open(page, stack)
    page.locator("#try-text").fill(UNSURE)
    page.locator("#try-review").check()
    page.locator("#try-text").press("Control+Enter")
    expect(page.locator("#try-decision")).to_have_text("review")

    # When the reviewer opens the queue with the keyboard
    page.keyboard.press("Alt+2")

    # Then the item is shown with its highlights, its scores and the count left
    expect(page.locator("#queue-text")).to_have_text(UNSURE)
    expect(page.locator("#queue-left")).to_have_text("(1 left)")
    assert page.locator("#queue-text mark").count() >= 1
    _shot(page, "queue")

    # When the key of the label "ham" is pressed
    keys = page.locator("#queue-keys button").all_text_contents()
    ham_key = next(text.split()[0] for text in keys if text.split()[-1] == "ham")
    page.keyboard.press(ham_key)

    # Then the queue moves on at once, and the same input is soon answered with that label for everyone
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Labelled ham")
    deadline = time.monotonic() + 90
    answer = _predict(stack, UNSURE)
    while answer["source"] != "verdict" and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = _predict(stack, UNSURE)
    assert (answer["source"], answer["label"]) == ("verdict", "ham")


def test_console_held_verdicts_are_accepted_and_rejected(page: Page, stack: StackInfo) -> None:
    # Given two held verdicts, one of them a script-injection text
    archive = VerdictArchive(stack.model_bucket, s3=_aws(stack, "s3"))
    accepted = hold_verdict(archive, "free tickets for the zorblax festival, text ZORB now", "spam")
    rejected = hold_verdict(archive, INJECTED, "ham")
    _open(page, stack)

    # When the Held view is opened with the keyboard
    page.keyboard.press("Alt+3")

    # Then both are listed with their reason, the injected one shown as text
    expect(page.locator("#held-list > li")).to_have_count(2)
    expect(page.locator("#held-list")).to_contain_text("held because contradicts trusted data")
    expect(page.locator("#held-list")).to_contain_text(INJECTED)
    assert page.locator("#held-list script, #held-list img").count() == 0
    _shot(page, "held")

    # When the first is accepted and the other rejected, with the keyboard
    page.locator("#held-list > li").filter(has_text="zorblax festival").get_by_role("button", name="Accept").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Accepted")
    page.locator("#held-list > li").filter(has_text="onerror").get_by_role("button", name="Reject").press("Enter")
    expect(page.locator("#status")).to_contain_text("Rejected")

    # Then the archive records both decisions, and nothing of the injected text ran
    statuses = {record["key"]: record["status"] for record in archive.held()}
    assert statuses == {accepted: "accepted", rejected: "rejected"}
    assert page.evaluate("window.__ran") is None


def test_console_refuses_a_predict_key_the_reviewer_views_in_plain_words(page: Page, stack: StackInfo) -> None:
    # Given a client whose key has the role predict
    roles = ClientRoles(stack.clients_table, client=_aws(stack, "dynamodb"))
    viewer = ClientKeys(stack.usage_plan, apigateway=_aws(stack, "apigateway"), roles=roles).add(
        "console-viewer", role=Role.PREDICT
    )
    _open(page, stack, viewer.key)

    # When it opens the Queue view, then the Held view
    page.keyboard.press("Alt+2")

    # Then the page says which role is needed and which the key has, and shows no item
    expect(page.locator("#status")).to_contain_text('it needs the role "reviewer", and your key has "predict"')
    assert page.locator("#queue-item").is_hidden()
    page.keyboard.press("Alt+3")
    expect(page.locator("#status")).to_contain_text('needs the role "reviewer"')
    _shot(page, "refused")


def _second_version(stack: StackInfo) -> ModelStore:
    """The stack's model store, with the seed model published again over itself as the next version."""
    store = ModelStore(
        stack.model_bucket,
        stack.model_name,
        signer=BundleSigner(stack.signing_key, kms=_aws(stack, "kms")),
        s3=_aws(stack, "s3"),
    )
    bundle = Bundle.read(str(default_seed_model()))
    store.publish(bundle.with_metadata(version=store.next_version_label()), expected=store.head())
    return store


def test_console_admin_rolls_back_after_confirming(page: Page, stack: StackInfo) -> None:
    # Given a second version published over the seed model
    store = _second_version(stack)
    stored = len(store.versions())
    _open(page, stack)

    # When the admin opens the Model view and asks to roll back to v1
    page.keyboard.press("Alt+4")
    expect(page.locator("#model-versions tbody tr")).to_have_count(stored)
    page.get_by_role("button", name="Roll back to v1").press("Enter")
    expect(page.locator("#confirm")).to_be_visible()
    _shot(page, "model-rollback")
    page.locator("#confirm-yes").press("Enter")

    # Then the restored version is active, as a new version of the history
    expect(page.locator("#status")).to_contain_text("Rolled back: v1 is active again")
    expect(page.locator("#model-versions tbody tr")).to_have_count(stored + 1)
    _shot(page, "model")
    assert store.versions()[0].restored_from == stack.seed_version_id


@pytest.fixture(scope="module")
def stack_without_api_rollback() -> Iterator[StackInfo]:
    """A local stack deployed as the template's default: ApiRollback=false."""
    with local_stack(overrides=(*FAST_LOOP, REVIEW_BAND, "ApiRollback=false")) as running:
        yield running


def test_console_model_view_offers_no_rollback_where_the_stack_turns_it_off(
    page: Page, stack_without_api_rollback: StackInfo
) -> None:
    # Given a stack with ApiRollback off, and a second version published over the seed model
    stack = stack_without_api_rollback
    store = _second_version(stack)
    _open(page, stack)

    # When the admin opens the Model view, and the page asks the API for a rollback all the same
    page.keyboard.press("Alt+4")
    expect(page.locator("#model-versions tbody tr")).to_have_count(len(store.versions()))
    refused = page.evaluate(
        "([to]) => api('POST', 'model/rollback', { to }).then(() => 'rolled back', (failure) => failure.message)",
        [stack.seed_version_id],
    )

    # Then the view has no rollback button and says how to roll back; the API's refusal reads in plain words
    expect(page.locator("#status")).to_contain_text("Rolling back through the API is off on this stack")
    expect(page.get_by_role("button", name="Roll back to v1")).to_have_count(0)
    assert "ApiRollback" in refused and "lodbrok rollback" in refused and "HTTP 403" in refused
    assert "refused the key" not in refused
    assert store.versions()[0].action != "rollback"
