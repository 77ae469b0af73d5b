"""The Swagger UI of the local stack in a real browser: it opens without a key, and "Try it out" calls the API
with the key given to "Authorize"."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from devstack.demo import StackInfo

# Every browser test on one worker (`make test` spreads the rest): one Chromium and one local stack.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_swagger_opens_without_a_key_and_try_it_out_predicts_with_one(page: Page, stack: StackInfo) -> None:
    # Given the Swagger UI of `make local`, opened with no key
    response = page.goto(f"{stack.api_url}/swagger")
    assert response is not None and response.status == 200
    expect(page.locator(".opblock-summary-path", has_text="/predict").first).to_be_visible(timeout=30_000)

    # When the key is given to "Authorize"
    page.locator("button.authorize").first.click()
    page.locator(".auth-container input").first.fill(stack.api_key)
    page.locator(".auth-btn-wrapper button.authorize").click()
    page.locator(".auth-btn-wrapper button.btn-done").click()

    # And POST /predict is tried out with a text
    operation = page.locator(".opblock-post").filter(has=page.locator(".opblock-summary-path", has_text="/predict"))
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("textarea.body-param__text").fill(json.dumps({"text": "WINNER! Claim your free prize now"}))
    with page.expect_response(lambda answer: answer.url == f"{stack.api_url}/predict") as called:
        operation.locator("button.execute").click()

    # Then the browser called the stack's own /predict with the key, and the model answered
    assert called.value.request.headers.get("x-api-key") == stack.api_key
    assert called.value.status == 200
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")


def test_openapi_document_needs_no_key_and_names_the_local_server(stack: StackInfo) -> None:
    # When the document is fetched without a key
    with urllib.request.urlopen(f"{stack.api_url}/openapi.json", timeout=30) as response:
        document = json.loads(response.read())
    # Then it answers, with the root as its server (the local API has no stage in its URL)
    assert document["servers"] == [{"url": "/"}]
    # And a keyed route still refuses a call without a key, saying where the key goes
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.api_url}/model", timeout=30)
    assert refused.value.code == 403
    assert "x-api-key" in json.loads(refused.value.read())["message"]
