"""A real headless browser for the console's tests: Debian's chromium, driven by Playwright's Python package.

Playwright's own browser downloads are never used (`playwright install` fetches from outside the package
registries): the system's chromium is launched by path, with every background network feature off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from playwright.async_api import Browser, async_playwright

from tests.tools import require_tool

CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",  # root in CI containers; the pages under test are our own
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """The system's chromium, headless (the test skips, or fails in CI, when it is not installed)."""
    path = require_tool("chromium", "chromium", "the console's browser tests")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            await browser.close()
