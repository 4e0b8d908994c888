"""The whole flow in headless Chromium against a real `yiwang serve`: login, map, drill-down,
English, logout. Screenshots go to tests/artifacts/ (1920×1080)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    open_page,
    require_chromium,
    serving,
)
from conftest import TINY_PASSWORD, build_tiny_city

from core.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    require_chromium()
    store = Store.open(tmp_path / "city.duckdb")
    build_tiny_city(store)
    store.close()
    with serving(tmp_path) as url:
        yield url


def test_login_map_drill_language_logout(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = open_page(browser, problems, viewport=VIEWPORT, locale="zh-CN")
        try:
            page.goto(server + "/")
            assert page.url.startswith(server + "/login")
            page.screenshot(path=str(ARTIFACTS / "login.png"))
            page.fill("#username", "commander")
            page.fill("#password", TINY_PASSWORD)
            page.click("button[type=submit]")

            page.wait_for_selector("path.leaflet-interactive", timeout=30_000)
            assert page.locator("path.leaflet-interactive").count() == 2
            page.wait_for_selector(".yw-clock-time", timeout=5_000)
            assert page.locator(".yw-map-label").all_inner_texts() == ["1区", "2区"]
            assert "市值班员" in page.inner_text(".yw-header")
            page.wait_for_timeout(500)  # let the map settle for the picture
            page.screenshot(path=str(ARTIFACTS / "home.png"))
            size = page.evaluate("[document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight]")
            assert size == [1920, 1080], f"page scrolls at 1920×1080: {size}"

            page.locator("path.leaflet-interactive").first.click(force=True)
            page.wait_for_selector(".yw-crumbs button", timeout=10_000)
            assert page.inner_text(".yw-focus-name") == "1区"
            expect(page.locator(".yw-map-label")).to_have_text(["D1S1街道", "D1S2街道"])
            page.wait_for_timeout(1000)  # the map flies to the district
            page.screenshot(path=str(ARTIFACTS / "drill.png"))

            page.click("a.yw-lang[lang=en]")
            page.wait_for_selector("text=Log out", timeout=15_000)
            page.wait_for_selector("path.leaflet-interactive", timeout=30_000)
            assert "Commander" in page.inner_text(".yw-header")
            assert page.inner_text(".yw-focus-name") == "Demo City"
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "home_en.png"))

            page.click("a.yw-logout")
            page.wait_for_url(server + "/login", timeout=10_000)
            page.goto(server + "/")
            assert page.url.startswith(server + "/login")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)

