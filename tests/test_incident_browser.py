"""The coordination journey in headless Chromium against a real `yiwang serve`: the commander
dispatches → the department claims → requests co-handling → both finish → the commander
verifies and closes. Screenshots go to tests/artifacts/incident_*.png (1920×1080)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, VIEWPORT, serving
from browser_support import require_chromium as _require_chromium
from conftest import TINY_PASSWORD, build_tiny_city
from test_incident_machine import setup_incident_city

from core.incidents import report_incident
from core.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    _require_chromium()
    store = Store.open(tmp_path / "city.duckdb")
    build_tiny_city(store)
    setup_incident_city(store)
    report_incident(store, None, category="garbage_overflow", title="小区门口垃圾满溢",
                    lon=0.3, lat=0.2, source="hotline", contact="13812345678",
                    description="市民来电：垃圾桶满溢两天无人清运。")
    store.close()
    with serving(tmp_path, scheduler_enabled="false", check_exit=False) as url:
        yield url, tmp_path


def test_commander_department_co_department_journey(server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _data_dir = server
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []

    def guard(route) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            problems.append(f"request to another host: {route.request.url}")
            route.abort()
        else:
            route.continue_()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def session(username: str):
            context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
            context.route("**/*", guard)
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and problems.append(
                f"{username} console: {m.text}"))
            page.on("pageerror", lambda exc: problems.append(f"{username} page error: {exc}"))
            page.goto(url + "/login")
            page.fill("#username", username)
            page.fill("#password", TINY_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector(".yw-header", timeout=30_000)
            return page

        def act(page, action: str, note: str | None = None, department: str | None = None,
                shot: str | None = None) -> None:
            page.click(f"button.yw-action:has-text('{action}')")
            page.wait_for_selector("#incident-form", state="visible", timeout=10_000)
            if department:
                page.click("#incident-dept")
                page.click(f".Select-option:has-text('{department}'), "
                           f"[role=option]:has-text('{department}')")
            if note:
                page.fill("#incident-note", note)
            if shot:
                page.screenshot(path=str(ARTIFACTS / shot))
            page.click("#incident-confirm")
            expect(page.locator(".yw-done")).to_contain_text(action, timeout=15_000)

        try:
            # 1. the commander dispatches from the board
            cmd = session("commander")
            cmd.goto(url + "/dispatch")
            cmd.wait_for_selector("#dispatch-pick input[type=checkbox]", timeout=30_000)
            cmd.check("#dispatch-pick input[type=checkbox]")
            cmd.screenshot(path=str(ARTIFACTS / "incident_dispatch_board.png"))
            cmd.click("#dispatch-go")
            expect(cmd.locator("#dispatch-result")).to_contain_text("已派单 1 件", timeout=15_000)

            # 2. the department sees it in its inbox (notified), claims and starts
            cg = session("cg_staff")
            cg.goto(url + "/inbox")
            cg.wait_for_selector(".yw-incident-row", timeout=30_000)
            expect(cg.locator("#inbox-notes")).to_contain_text("新派单")
            expect(cg.locator("#inbox-table")).to_contain_text("待签收")
            cg.screenshot(path=str(ARTIFACTS / "incident_inbox.png"))
            cg.click(".yw-incident-row a")
            cg.wait_for_selector("button.yw-action", timeout=30_000)
            act(cg, "签收")
            act(cg, "开始办理")
            # 3. requests co-handling by the water bureau
            act(cg, "申请协办", note="请水务局协助疏通雨水井", department="水务局",
                shot="incident_co_request_form.png")
            expect(cg.locator(".yw-co-pending")).to_have_count(1)
            # resolving before the co-task is done is refused with the reason
            cg.click("button.yw-action:has-text('办结')")
            cg.fill("#incident-note", "已清运")
            cg.click("#incident-confirm")
            expect(cg.locator(".yw-refused")).to_contain_text("水务局", timeout=15_000)

            # 4. the co-department finishes its task
            sw = session("sw_staff")
            sw.goto(url + "/inbox")
            sw.wait_for_selector(".yw-incident-row", timeout=30_000)
            expect(sw.locator("#inbox-table")).to_contain_text("协办")
            sw.click(".yw-incident-row a")
            sw.wait_for_selector("button.yw-action", timeout=30_000)
            act(sw, "协办完成", note="雨水井已疏通")
            expect(sw.locator(".yw-co-done")).to_have_count(1)

            # 5. the lead department resolves
            cg.reload()
            cg.wait_for_selector("button.yw-action", timeout=30_000)
            act(cg, "办结", note="垃圾已清运，雨水井已疏通")

            # 6. the commander verifies and closes
            cmd.goto(cg.url)
            cmd.wait_for_selector("button.yw-action", timeout=30_000)
            act(cmd, "核查通过")
            act(cmd, "结案")
            expect(cmd.locator(".yw-incident-fact").first).to_have_text("已结案")
            cmd.wait_for_timeout(500)
            cmd.screenshot(path=str(ARTIFACTS / "incident_closed.png"), full_page=True)
            steps = cmd.locator(".yw-timeline-row td:nth-child(2)").all_inner_texts()
            size = cmd.evaluate("[document.documentElement.scrollWidth,"
                                " document.documentElement.scrollHeight]")
            assert size[0] == 1920, f"the incident page scrolls sideways: {size}"
        finally:
            browser.close()
    assert steps == ["受理", "派单", "签收", "开始办理", "申请协办", "协办完成", "办结",
                     "核查通过", "结案"]
    assert not problems, "\n".join(problems)
