"""Login hardening in headless Chromium against a real `yiwang serve`: TOTP enrolment with the
server-drawn QR code and a later login with a fresh code, lockout after failed logins, idle
timeout. Screenshot of the enrolment page goes to tests/artifacts/totp_enrol.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serving
from browser_support import require_chromium as _require_chromium
from conftest import TINY_PASSWORD, build_tiny_city

from core.store import Store

pytestmark = pytest.mark.browser

IDLE_SECONDS = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    _require_chromium()
    tmp_path = tmp_path_factory.mktemp("secure-serve")
    store = Store.open(tmp_path / "city.duckdb")
    build_tiny_city(store)
    store.close()
    with serving(tmp_path, check_exit=False, config=str(tmp_path / "absent.toml"),
                 login_max_failures="3", idle_timeout_minutes=str(IDLE_SECONDS / 60),
                 scheduler_enabled="false", totp_required="true") as url:
        yield url, tmp_path


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    url, _ = server
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1920, "height": 1080},
                                      locale="zh-CN")

        def only_local(route) -> None:
            if urlsplit(route.request.url).hostname != "127.0.0.1":
                problems.append(f"request to another host: {route.request.url}")
                route.abort()
            else:
                route.continue_()

        context.route("**/*", only_local)
        tab = context.new_page()
        tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        try:
            yield tab
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


def audit_actions(data_dir: Path, actor: str) -> list[str]:
    """Read the audit log from the files the server wrote (a read-only copy)."""
    import shutil

    copy = data_dir / f"audit-copy-{time.monotonic_ns()}.duckdb"
    shutil.copy(data_dir / "city.duckdb", copy)
    wal = data_dir / "city.duckdb.wal"
    if wal.exists():
        shutil.copy(wal, Path(str(copy) + ".wal"))
    store = Store.open(copy, migrate=False)
    try:
        return [r[0] for r in store.query(
            "SELECT action FROM audit_log WHERE actor = ? ORDER BY seq", [actor])]
    finally:
        store.close()


def submit_login(page, url: str, username: str, password: str = TINY_PASSWORD) -> None:
    page.goto(url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


def test_commander_enrols_totp_then_logs_in_with_a_fresh_code(server, page) -> None:
    url, data_dir = server
    submit_login(page, url, "commander")
    page.wait_for_url(url + "/login/enrol")
    assert page.locator(".yw-totp-qr svg path").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "totp_enrol.png"))
    secret = page.inner_text("#totp-secret").replace(" ", "")
    page.fill("#code", "000000")
    page.click("button[type=submit]")
    assert "验证码错误" in page.inner_text(".yw-login-error")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    page.wait_for_selector("path.leaflet-interactive", timeout=30_000)
    assert "市值班员" in page.inner_text(".yw-header")

    page.click("a.yw-logout")
    page.wait_for_url(url + "/login")
    submit_login(page, url, "commander")
    page.wait_for_url(url + "/login/totp")
    step = int(time.time() // 30)
    while int(time.time() // 30) == step:  # the enrolment code's period cannot be reused
        time.sleep(0.5)
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    page.wait_for_selector("path.leaflet-interactive", timeout=30_000)
    assert audit_actions(data_dir, "commander") == [
        "totp_enrol_failed", "totp_enrolled", "login", "logout", "login"]


def test_lockout_after_three_failures(server, page) -> None:
    url, data_dir = server
    for _ in range(3):
        submit_login(page, url, "d1_commander", "Wrong#Password1")
        assert "用户名或密码错误" in page.inner_text(".yw-login-error")
    submit_login(page, url, "d1_commander")  # the right password, but locked
    assert "用户名或密码错误" in page.inner_text(".yw-login-error")
    assert page.url.startswith(url + "/login")
    assert audit_actions(data_dir, "d1_commander") == [
        "login_failed", "login_failed", "account_locked", "login_failed", "login_locked",
        "login_failed"]


def test_idle_session_times_out(server, page) -> None:
    url, data_dir = server
    submit_login(page, url, "cg_staff")
    page.wait_for_selector(".yw-header", timeout=30_000)
    page.goto("about:blank")  # no requests at all while idle
    time.sleep(IDLE_SECONDS + 1.5)
    page.goto(url + "/")
    assert page.url.startswith(url + "/login")
    assert "session_timeout" in audit_actions(data_dir, "cg_staff")
