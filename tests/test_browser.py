"""The whole flow in headless Chromium against a real `yiwang serve`: login, map, drill-down,
English, logout. Screenshots go to tests/artifacts/ (1920×1080)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import TINY_PASSWORD, build_tiny_city

from core.store import Store

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VIEWPORT = {"width": 1920, "height": 1080}


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    msg = f"{CHROMIUM} not installed (apt-get install -y chromium fonts-noto-cjk)"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(msg + " and REQUIRE_SERVICES=1")
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"yiwang serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"yiwang serve not healthy at {url} after {timeout}s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    _require_chromium()
    store = Store.open(tmp_path / "city.duckdb")
    build_tiny_city(store)
    store.close()
    port = _free_port()
    yiwang = Path(sys.executable).with_name("yiwang")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIWANG_")}
    env["YIWANG_TOTP_REQUIRED"] = "false"  # the tiny city's commander logs in with a password
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(yiwang), "serve", "--data-dir", str(tmp_path), "--port", str(port), "--threads", "4"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert proc.returncode == 0, output
    assert "Yiwang stopped" in output, output


def test_login_map_drill_language_logout(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")

        def guard(route) -> None:
            if urlsplit(route.request.url).hostname != "127.0.0.1":
                problems.append(f"request to another host: {route.request.url}")
                route.abort()
            else:
                route.continue_()

        context.route("**/*", guard)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
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

