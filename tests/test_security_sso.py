"""Single sign-on in headless Chromium: a real `yiwang serve` configured for OpenID Connect
against a real local provider (oidc-provider-mock, its own HTTP server) — first login binds the
provider subject to the Yiwang account named by the claim, a later login with another subject
claiming the same name is refused, an unknown account is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from browser_support import CHROMIUM, CHROMIUM_ARGS, free_port, require_chromium, serving
from conftest import build_tiny_city

from core.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    require_chromium()
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(port=free_port()) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="module")
def server(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    tmp_path = tmp_path_factory.mktemp("sso-serve")
    store = Store.open(tmp_path / "city.duckdb")
    build_tiny_city(store)
    store.close()
    with serving(tmp_path, scheduler_enabled="false", oidc_issuer=provider,
                 oidc_client_id="yiwang", oidc_client_secret="yiwang-secret") as url:
        yield url, tmp_path


def sso_login(page, url: str, subject: str) -> None:
    page.goto(url + "/login")
    page.click("a.yw-login-sso")
    page.wait_for_selector("input[name=sub]")
    page.fill("input[name=sub]", subject)
    page.click("button[type=submit]:not([name])")


def test_sso_binds_then_refuses_an_impostor(provider: str, server: tuple) -> None:
    from playwright.sync_api import sync_playwright

    url, data_dir = server
    requests.put(f"{provider}/users/gov-0001", json={"preferred_username": "cg_staff"},
                 timeout=10).raise_for_status()
    requests.put(f"{provider}/users/gov-0002", json={"preferred_username": "cg_staff"},
                 timeout=10).raise_for_status()
    requests.put(f"{provider}/users/gov-0003", json={"preferred_username": "nobody"},
                 timeout=10).raise_for_status()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="zh-CN")
            page = context.new_page()
            sso_login(page, url, "gov-0001")
            page.wait_for_selector(".yw-header", timeout=30_000)
            assert "城管" in page.inner_text(".yw-header") or page.url == url + "/"
            page.click("a.yw-logout")
            page.wait_for_url(url + "/login")
            for impostor in ("gov-0002", "gov-0003"):
                sso_login(page, url, impostor)
                page.wait_for_selector(".yw-login-error", timeout=30_000)
                assert "单点登录失败" in page.inner_text(".yw-login-error")
        finally:
            browser.close()
    from test_security_browser import audit_actions

    assert audit_actions(data_dir, "cg_staff")[:3] == ["sso_bound", "login", "logout"]
    assert "login_failed" in audit_actions(data_dir, "cg_staff")
    assert audit_actions(data_dir, "nobody") == ["login_failed"]
