"""Against a live `yiwang serve`: a third-party Open311 client from PyPI (georeport) lists
services, submits and reads back; and a citizen's journey on a 390×844 phone screen in
headless Chromium — report with a pin and a photo, get a code, the department closes it
(through core.incidents.transition), the citizen rates it. Screenshots in tests/artifacts/."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from browser_support import require_chromium as _require_chromium
from browser_support import serving as _serving
from conftest import build_tiny_city
from public_helpers import add_categories, close_incident, jpeg_with_exif

from core import api_keys, public
from core.store import Store

PHONE = {"width": 390, "height": 844}


def serving(data_dir: Path):
    """`yiwang serve` with the scheduler off (these tests drive every change themselves)."""
    return _serving(data_dir, scheduler_enabled="false")


@pytest.fixture
def city_dir(tmp_path: Path) -> tuple[Path, str]:
    store = Store.open(tmp_path / "city.duckdb")
    build_tiny_city(store)
    add_categories(store)
    _key, secret = api_keys.create_api_key(store, None, "georeport test", per_minute=60)
    store.close()
    return tmp_path, secret


def test_georeport_client_lists_submits_and_reads_back(city_dir) -> None:
    from georeport import GeoReport

    data_dir, secret = city_dir
    with serving(data_dir) as url:
        client = GeoReport(url + "/open311/v2", jurisdiction="C", api_key=secret)
        services = client.get_service_list()
        assert {s["service_code"] for s in services} == {
            "garbage_overflow", "manhole_cover", "road_waterlogging"}
        assert client.get_service_definition("garbage_overflow")["service_code"] == \
            "garbage_overflow"
        # georeport 0.3.1 has no submit call: POST per the spec (form-encoded) with requests
        posted = requests.post(f"{url}/open311/v2/requests.json", timeout=10, data={
            "api_key": secret, "jurisdiction_id": "C", "service_code": "manhole_cover",
            "lat": 0.75, "long": 1.5, "description": "井盖缺失 manhole missing"})
        assert posted.status_code == 201, posted.text
        code = posted.json()[0]["service_request_id"]
        one = client.get_service_request(code)
        assert one["service_code"] == "manhole_cover" and one["status"] == "open"
        assert one["description"] == "井盖缺失 manhole missing"
        listed = client.get_service_requests(service_code="manhole_cover", status="open")
        assert [r["service_request_id"] for r in listed] == [code]
        xml_client = GeoReport(url + "/open311/v2", jurisdiction="C", output_format="xml")
        assert xml_client.get_service_request(code)["service_request_id"] == code
        refused = requests.post(f"{url}/open311/v2/requests.json", timeout=10, data={
            "service_code": "manhole_cover", "lat": 0.75, "long": 1.5})
        assert refused.status_code == 401 and refused.json()[0]["code"] == 401


@pytest.mark.browser
def test_phone_journey_report_close_rate(city_dir, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    _require_chromium()
    data_dir, _secret = city_dir
    store = Store.open(data_dir / "city.duckdb")
    earlier = public.submit_report(store, {"category": "garbage_overflow",
                                           "description": "早上就满了", "lon": 0.5258,
                                           "lat": 0.3004}).tracking_code
    store.close()
    ARTIFACTS.mkdir(exist_ok=True)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_with_exif((320, 240)))
    problems: list[str] = []

    def browse(url: str, work) -> None:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True,
                                          has_touch=True, device_scale_factor=2,
                                          geolocation={"latitude": 0.75, "longitude": 1.5},
                                          permissions=["geolocation"])

            def guard(route) -> None:
                if urlsplit(route.request.url).hostname != "127.0.0.1":
                    problems.append(f"request to another host: {route.request.url}")
                    route.abort()
                else:
                    route.continue_()

            context.route("**/*", guard)
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            try:
                work(page, url)
            finally:
                browser.close()

    receipt: dict[str, str] = {}

    def report(page, url: str) -> None:
        page.goto(url + "/public/report")
        page.wait_for_selector(".pub-cat-label", timeout=30_000)
        page.wait_for_selector("#pub-map path.leaflet-interactive, #pub-map svg path",
                               state="attached", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "public_report_empty.png"), full_page=True)
        page.click(".pub-cat-label:has-text('垃圾满溢')")
        page.fill("#pub-description", "<b>小区门口</b>垃圾桶满了，气味很大")
        page.click("#pub-locate")  # the phone's location first …
        expect(page.locator("#pub-coords")).to_have_text("0.75000, 1.50000", timeout=15_000)
        box = page.locator("#pub-map").bounding_box()  # … then a pin by hand
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.62)
        expect(page.locator("#pub-coords")).not_to_have_text("0.75000, 1.50000",
                                                             timeout=15_000)
        nearby = page.locator("#pub-nearby")
        expect(nearby).to_contain_text(earlier, timeout=15_000)  # "already reported"
        page.set_input_files("#pub-photo input[type=file]", str(photo))
        expect(page.locator("#pub-photo-name")).to_contain_text("photo.jpg", timeout=15_000)
        page.fill("#pub-contact", "13812345678")
        page.screenshot(path=str(ARTIFACTS / "public_report_filled.png"), full_page=True)
        page.click("#pub-submit")
        page.wait_for_selector("#pub-code", timeout=30_000)
        receipt["code"] = page.inner_text("#pub-code").strip()
        receipt["key"] = page.inner_text("#pub-key").strip()
        page.screenshot(path=str(ARTIFACTS / "public_report_done.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"page is {width}px wide on a 390px screen"

    with serving(data_dir) as url:
        browse(url, report)
    assert receipt["code"].startswith("YW") and len(receipt["key"]) == 10

    store = Store.open(data_dir / "city.duckdb")
    try:
        incident_id, description = store.query_one(
            "SELECT id, description FROM incidents WHERE tracking_code = ?", [receipt["code"]])
        assert description.startswith("<b>小区门口</b>")
        rel = store.query_one("SELECT path FROM public_photos WHERE incident_id = ?",
                              [incident_id])[0]
        assert b"SecretCameraMaker" not in (data_dir / "photos" / rel).read_bytes()
        close_incident(store, incident_id)  # the department closes it
    finally:
        store.close()

    def track_and_rate(page, url: str) -> None:
        page.goto(f"{url}/public/track?code={receipt['code']}&key={receipt['key']}")
        page.wait_for_selector(".pub-timeline", timeout=30_000)
        expect(page.locator(".pub-status")).to_have_text("已办结")
        expect(page.locator(".pub-desc")).to_contain_text("<b>小区门口</b>")  # shown as text
        timeline = page.inner_text(".pub-timeline")
        assert "城管局" in timeline and "cg_staff" not in timeline and "张三" not in timeline
        page.screenshot(path=str(ARTIFACTS / "public_track_closed.png"), full_page=True)
        page.click(".pub-star-label:has-text('5★')")
        page.fill("#track-comment", "处理很快，谢谢")
        page.click("#track-rate")
        expect(page.locator("#track-rated")).to_contain_text("感谢", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "public_track_rated.png"), full_page=True)

    with serving(data_dir) as url:
        browse(url, track_and_rate)
    store = Store.open(data_dir / "city.duckdb")
    try:
        assert store.query_one("SELECT rating FROM incidents WHERE tracking_code = ?",
                               [receipt["code"]])[0] == 5
    finally:
        store.close()
    assert not problems, problems


@pytest.mark.browser
def test_grid_worker_reports_for_a_resident(city_dir) -> None:
    """代办 in the staff app: the grid worker logs in, reports for a resident, and the
    report is recorded as assisted, by them, for that resident."""
    from conftest import TINY_PASSWORD
    from playwright.sync_api import expect, sync_playwright

    from core.users import create_user

    _require_chromium()
    data_dir, _secret = city_dir
    store = Store.open(data_dir / "city.duckdb")
    create_user(store, "grid_1", TINY_PASSWORD, role="grid_worker", jurisdiction_code="D1S1C1")
    store.close()
    with serving(data_dir) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        try:
            page.goto(url + "/login?next=/assist")
            page.fill("#username", "grid_1")
            page.fill("#password", TINY_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector(".pub-cat-label", timeout=30_000)
            page.click(".pub-cat-label:has-text('垃圾满溢')")
            page.fill("#assist-description", "独居老人家门口垃圾堆积")
            page.wait_for_selector("#assist-map path", state="attached", timeout=30_000)
            box = page.locator("#assist-map").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.62)
            expect(page.locator("#assist-coords")).not_to_be_empty(timeout=15_000)
            page.click("#assist-submit")
            expect(page.locator("#assist-error")).to_contain_text("on_behalf_of",
                                                                  timeout=15_000)
            page.fill("#assist-behalf", "王阿姨（无智能手机）")
            page.click("#assist-submit")
            page.wait_for_selector("#assist-code", timeout=30_000)
            code = page.inner_text("#assist-code").strip()
            page.screenshot(path=str(ARTIFACTS / "public_assist_done.png"))
        finally:
            browser.close()
    store = Store.open(data_dir / "city.duckdb")
    try:
        row = store.query_one("SELECT p.channel, p.assisted_by, p.on_behalf_of, i.source FROM"
                              " public_reports p JOIN incidents i ON i.id = p.incident_id"
                              " WHERE i.tracking_code = ?", [code])
    finally:
        store.close()
    assert row == ("assisted", "grid_1", "王阿姨（无智能手机）", "grid_patrol")
