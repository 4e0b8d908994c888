"""The wall screen in headless Chromium against a real `yiwang serve` over the tiny city, at
1920×1080 and 3840×2160: no scrollbars, no console errors, nothing off 127.0.0.1, the map
keeps its view across refreshes, a KPI moves when readings arrive through the file inbox, the
stale banner appears when a source stops, the offline banner when the server goes away.
Screenshots go to tests/artifacts/ (wall_1920.png, wall_3840.png, wall_stale.png)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from browser_support import free_port as _free_port
from browser_support import require_chromium as _require_chromium
from browser_support import wait_healthy as _wait_healthy
from conftest import TINY_PASSWORD, build_tiny_city
from layers_data import add_layer_data

from core.rollups import refresh_rollups
from core.store import Store

pytestmark = pytest.mark.browser

PIPELINES_TOML = """
[sources.inbox_cg]
kind = "files"
seconds = 2
department = "cg"

[sources.inbox_sw]
kind = "files"
seconds = 5
department = "sw"
"""


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def build_wall_city(data_dir: Path) -> None:
    """The tiny city with sensors, incidents and alerts around now, readings behind every
    fresh ``sensor_latest`` row (sensor 5 has none: offline), rollups built."""
    store = Store.open(data_dir / "city.duckdb")
    try:
        build_tiny_city(store)
        now = _utcnow()
        add_layer_data(store, now, sources=False)
        with store.transaction() as cur:
            cur.execute("DELETE FROM readings")
            cur.execute("INSERT INTO readings VALUES (1, ?, 40), (2, ?, 90), (3, ?, 5.2),"
                        " (4, ?, 3.0), (6, ?, 30)",
                        [now - timedelta(minutes=1)] * 4 + [now - timedelta(hours=2)])
        refresh_rollups(store, full=True)
    finally:
        store.close()
    (data_dir / "pipelines.toml").write_text(PIPELINES_TOML)


@pytest.fixture
def wall_server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    _require_chromium()
    build_wall_city(tmp_path)
    port = _free_port()
    yiwang = Path(sys.executable).with_name("yiwang")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIWANG_")}
    env["YIWANG_TOTP_REQUIRED"] = "false"
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(yiwang), "serve", "--data-dir", str(tmp_path), "--port", str(port), "--threads", "4"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, tmp_path, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert proc.returncode == 0, output


class Browser:
    """A Chromium page that records console errors and refuses requests to other hosts."""

    def __init__(self, pw, width: int, height: int) -> None:
        self.problems: list[str] = []
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.context = self.browser.new_context(viewport={"width": width, "height": height},
                                                locale="zh-CN", timezone_id="Asia/Shanghai")
        self.context.route("**/*", self._guard)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error"
                     and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def _guard(self, route) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            self.problems.append(f"request to another host: {route.request.url}")
            route.abort()
        else:
            route.continue_()

    def login(self, url: str, path: str) -> None:
        self.page.goto(url + path)
        self.page.fill("#username", "commander")
        self.page.fill("#password", TINY_PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector(".yw-wall", timeout=30_000)

    def kpi(self, kpi_id: str) -> str:
        return self.page.inner_text(f"#wall-kpi-{kpi_id} .yw-wall-kpi-value")

    def close(self) -> None:
        self.browser.close()


def wait_js(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JS expression until true (page.wait_for_function evals, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {expression}")
        page.wait_for_timeout(250)


def _wait_for_data(page) -> None:
    wait_js(page, "document.querySelector('#wall-kpi-open .yw-wall-kpi-value')?.innerText"
                  " !== '—'")
    page.wait_for_selector(".yw-wall-ev", timeout=10_000)
    page.wait_for_selector(".yw-wall-clock .yw-clock-time", timeout=10_000)


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (3840, 2160)])
def test_wall_fits_the_screen_and_keeps_its_view(wall_server, width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    url, _data_dir, _proc = wall_server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = Browser(pw, width, height)
        page = b.page
        try:
            b.login(url, "/wall?refresh=2&dwell=600")
            _wait_for_data(page)
            assert not page.locator(".yw-header").is_visible()  # kiosk: no navigation chrome
            page.wait_for_selector("path.leaflet-interactive", timeout=10_000)
            assert page.locator(".yw-wall-kpi").count() == 6
            assert page.inner_text("#wall-kpi-open .yw-wall-kpi-value") == "5"
            assert "level-alarm" in page.get_attribute("#wall-kpi-alerts", "class")
            assert page.inner_text(".yw-wall-view") == "城市总览"
            assert not page.locator(".yw-wall-banner.show").count()
            # sensors, incidents and alerts are drawn (circle markers are SVG paths)
            assert page.locator("path.leaflet-interactive").count() >= 2 + 6 + 5
            page.wait_for_timeout(800)
            page.screenshot(path=str(ARTIFACTS / f"wall_{width}.png"))
            sizes = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight,"
                " document.body.scrollWidth, document.body.scrollHeight,"
                " window.innerWidth, window.innerHeight]")
            assert sizes == [width, height, width, height, width, height], sizes
            overflow = page.evaluate(
                "[...document.querySelectorAll('.yw-wall *')].filter(e =>"
                " e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY"
                " .match(/auto|scroll/)).map(e => e.className)")
            assert overflow == [], f"inner scrollbars: {overflow}"

            # the map keeps its view and its element across refreshes (data props only)
            page.evaluate("window.yiwangWallMap.setView([0.3, 0.4], 9, {animate: false});"
                          "document.querySelector('#wall-map').__ywMark = 1")
            seq = page.evaluate("window.yiwangWallState.seq")
            wait_js(page, f"window.yiwangWallState.seq >= {seq} + 2", 20)
            view = page.evaluate("(() => { const m = window.yiwangWallMap;"
                                 " return [m.getCenter().lat, m.getCenter().lng, m.getZoom()] })()")
            assert [round(v, 3) for v in view] == [0.3, 0.4, 9]
            assert page.evaluate("document.querySelector('#wall-map').__ywMark") == 1
        finally:
            b.close()
    assert not b.problems, "\n".join(b.problems)


def test_kpi_moves_stale_banner_and_offline_banner(wall_server) -> None:
    from playwright.sync_api import sync_playwright

    url, data_dir, proc = wall_server
    with sync_playwright() as pw:
        b = Browser(pw, 1920, 1080)
        page = b.page
        try:
            b.login(url, "/wall?refresh=2&dwell=5")
            _wait_for_data(page)
            page.wait_for_timeout(3000)  # every source has run once
            assert not page.locator(".yw-wall-banner.show").count()
            online = b.kpi("online")
            assert online == "66.7%", online  # sensors 1–4 of 6 report

            # new data arrives: a reading of sensor 5 dropped into the cg inbox
            now = _utcnow().strftime("%Y-%m-%d %H:%M:%S")
            inbox = data_dir / "inbox" / "cg"
            (inbox / "readings_wall.csv").write_text(f"sensor_id,ts,value\n5,{now},33\n")
            wait_js(page, "document.querySelector('#wall-kpi-online .yw-wall-kpi-value')"
                          ".innerText === '83.3%'", 45)

            # the rotation moved on by itself (dwell 5 s)
            wait_js(page, "document.querySelector('.yw-wall-view').innerText !== '城市总览'", 15)

            # a source stops: its inbox becomes unusable, its runs fail
            shutil.rmtree(data_dir / "inbox" / "sw")
            (data_dir / "inbox" / "sw").write_text("not a folder")
            page.wait_for_selector(".yw-wall-banner.show", timeout=30_000)
            assert "inbox_sw" in page.inner_text(".yw-wall-banner")
            page.screenshot(path=str(ARTIFACTS / "wall_stale.png"))
            assert not page.locator(".yw-wall-offline.show").count()
            problems_before = list(b.problems)

            # the server goes away: the browser says so by itself
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            page.wait_for_selector(".yw-wall-offline.show", timeout=40_000)
            b.problems = problems_before  # failed requests to a stopped server are expected
        finally:
            b.close()
    assert not b.problems, "\n".join(b.problems)
    assert re.search(r"Yiwang stopped", (data_dir / "serve.log").read_text())
