"""A real headless Chromium (Debian's package) driving pages of the local stack.

The test setup installs `chromium` with apt-get as it installs Docker, so CI, which runs as root on a clean machine,
always runs these tests. Elsewhere they skip with the reason when Chromium is missing and cannot be installed;
with CI=true they fail instead. Playwright drives the system browser: its own browser download is never used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from devstack.demo import StackInfo, local_stack
from scripts.debian_packages import PackagesMissing, install_missing

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        install_missing({"chromium": "chromium"})
    except PackagesMissing as missing:
        _skip_or_fail(f"no headless Chromium: {missing}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """One `make local` stack for every browser test (its seed model is trained once per machine)."""
    with local_stack() as running:
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    opened = context.new_page()
    yield opened
    context.close()
