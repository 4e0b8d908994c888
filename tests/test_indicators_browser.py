"""The leaders' journey in headless Chromium against a real `yiwang serve` of a small demo city:
log in as the city leader, pick the on-time resolution rate, click the worst district, then its
worst street, open the incident list, export CSV. Screenshots in tests/artifacts/ (1920×1080)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, VIEWPORT, serving, yiwang_env
from browser_support import require_chromium as _require_chromium

pytestmark = pytest.mark.browser
PASSWORD = "Yiwang#2026"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small demo city (10 days, 6,000 incidents) served on a free port."""
    _require_chromium()
    data = tmp_path_factory.mktemp("ind-browser")
    yiwang = Path(sys.executable).with_name("yiwang")
    env = yiwang_env(scheduler_enabled="false")
    subprocess.run([str(yiwang), "build-demo", "--data-dir", str(data), "--days", "10",
                    "--sensors", "300", "--incidents", "6000"], check=True, env=env,
                   capture_output=True, timeout=300)
    with serving(data, scheduler_enabled="false", check_exit=False) as url:
        yield url


def _click_area(page, name: str) -> None:
    """Click the map polygon under the label of ``name`` (labels themselves are inert) until
    the breadcrumbs show it: on a loaded machine the map may still be settling (flying to the
    new bounds) when the first click lands."""
    for _attempt in range(4):
        # a hover highlight re-draws the features (and re-binds their labels): wait for one
        label = page.locator(".yw-ind-label", has_text=name).first
        label.wait_for(state="visible", timeout=15_000)
        box = label.bounding_box()
        if box is None:
            page.wait_for_timeout(500)
            continue
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        try:
            page.wait_for_function(
                "name => document.querySelector('.yw-crumb.current')?.textContent.trim() === name",
                arg=name, timeout=15_000)
            return
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError; click again
            page.wait_for_timeout(1000)


def _worst(page) -> tuple[str, float]:
    """The first table row: the worst child (the table is ordered worst first)."""
    row = page.locator("#ind-table tbody tr").filter(has=page.locator("td")).first
    name = row.locator("td[data-dash-column=name]").inner_text().strip()
    value = float(row.locator("td[data-dash-column=value]").inner_text())
    return name, value


_MAP_PROBE = """() => {
  const map = document.querySelector('#ind-map');
  const m = map.getBoundingClientRect();
  const svg = map.querySelector('svg');
  const s = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const paths = [...map.querySelectorAll('path.leaflet-interactive')].map(p => {
    const r = p.getBoundingClientRect();
    const x = Math.max(r.left, m.left), y = Math.max(r.top, m.top);
    const w = Math.min(r.right, m.right) - x, h = Math.min(r.bottom, m.bottom) - y;
    return {w: r.width, h: r.height, visible: Math.max(0, w) * Math.max(0, h)};
  });
  // what is on top at points spread over the header: the header's own elements only
  const header = document.querySelector('.yw-header').getBoundingClientRect();
  const covered = [];
  for (let i = 1; i < 10; i++) {
    const x = header.left + header.width * i / 10, y = header.top + header.height / 2;
    const top = document.elementFromPoint(x, y);
    if (!top || !top.closest('.yw-header')) covered.push([x, y, top && top.outerHTML.slice(0, 80)]);
  }
  return {map: [m.width, m.height], svg: [s.width, s.height], paths, covered};
}"""


# a style that keeps the map's cell 60 px high until the test removes it
_SQUEEZE = """document.addEventListener('DOMContentLoaded', () => {
  const s = document.createElement('style');
  s.id = 'yw-squeeze';
  s.textContent = '#ind-map { height: 60px !important; }';
  document.head.appendChild(s);
});"""


def _assert_map_drawn(page, children: int, label: str) -> None:
    """The choropleth really draws: one SVG path per child, the renderer as large as the
    map (Leaflet clips paths to its renderer's bounds: a renderer sized before its container
    drew slivers), the polygons covering a good part of the map, nothing over the header,
    and no large black area in the page (the bug seen on the full demo city)."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    probe = page.evaluate(_MAP_PROBE)
    (mw, mh), (sw, sh) = probe["map"], probe["svg"]
    assert len(probe["paths"]) == children, (label, probe)
    assert sw >= mw and sh >= mh, (label, "renderer smaller than the map", probe)
    drawn = sum(p["visible"] for p in probe["paths"])
    assert drawn >= 0.2 * mw * mh, (label, "polygons cover little of the map", probe)
    assert all(p["w"] > 4 and p["h"] > 4 for p in probe["paths"]), (label, probe)
    assert not probe["covered"], (label, "something covers the header", probe["covered"])
    shot = Image.open(BytesIO(page.screenshot(animations="disabled", timeout=90_000)))
    grey = np.asarray(shot.convert("L").resize((192, 108)))
    black = float((grey < 3).mean())   # the dark theme's darkest pixels are ≥ 6
    assert black < 0.02, (label, f"{black:.1%} of the page is black")


def _values(page) -> list[float]:
    cells = page.locator("#ind-table td[data-dash-column=value]").all_inner_texts()
    return [float(c) for c in cells if c.strip()]


def test_leader_drills_to_the_worst_street_and_exports(demo_server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", accept_downloads=True)

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
            # start on another indicator, so that picking 按时办结率 is a real step
            page.goto(demo_server + "/indicators?ind=satisfaction")
            assert "/login" in page.url
            page.fill("#username", "leader")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector(".yw-ind-label", timeout=30_000)
            expect(page.locator("#ind-indicator")).to_contain_text("满意率")
            page.wait_for_timeout(800)
            _assert_map_drawn(page, 9, "city")
            # the map follows its container, not only the window: open the page with the
            # map's cell squeezed (as when the layout settles late), then let it grow
            page.add_init_script(_SQUEEZE)
            page.reload()
            page.wait_for_selector(".yw-ind-label", timeout=30_000)
            page.wait_for_timeout(800)
            page.evaluate("() => document.getElementById('yw-squeeze').remove()")
            page.wait_for_timeout(800)
            _assert_map_drawn(page, 9, "city after its container grew")

            page.locator("#ind-indicator").click()
            page.get_by_text("按时办结率", exact=True).last.click()
            expect(page.locator(".yw-ind-headline .yw-badge")).to_have_text("按时办结率",
                                                                           timeout=20_000)
            page.wait_for_timeout(800)
            values = _values(page)
            assert len(values) == 9 and values == sorted(values), values  # worst (lowest) first
            district, worst_value = _worst(page)
            page.screenshot(path=str(ARTIFACTS / "indicators_city.png"), animations="disabled",
                            timeout=90_000)  # a loaded 2-core CI machine renders slowly

            _click_area(page, district)
            expect(page.locator(".yw-crumb.current")).to_have_text(district, timeout=20_000)
            page.wait_for_selector(".yw-ind-label", timeout=20_000)
            page.wait_for_timeout(800)
            expect(page.locator(".yw-ind-big")).to_have_text(f"{worst_value:.1f}%")
            _assert_map_drawn(page, page.locator("#ind-table tbody tr").filter(
                has=page.locator("td")).count(), "district")
            query = parse_qs(urlsplit(page.url).query)
            assert query["ind"] == ["resolve_on_time"] and len(query["code"][0]) > 6
            page.screenshot(path=str(ARTIFACTS / "indicators_district.png"), animations="disabled",
                            timeout=90_000)  # a loaded 2-core CI machine renders slowly

            street, _value = _worst(page)
            _click_area(page, street)
            expect(page.locator(".yw-crumb.current")).to_have_text(street, timeout=20_000)
            page.wait_for_timeout(800)
            street_url = page.url
            page.screenshot(path=str(ARTIFACTS / "indicators_street.png"), animations="disabled",
                            timeout=90_000)  # a loaded 2-core CI machine renders slowly

            page.get_by_role("button", name="查看明细").click()
            detail = page.locator("#ind-detail")
            expect(detail).to_be_visible(timeout=20_000)
            expect(detail.locator("h3")).to_contain_text(street)
            rows = detail.locator("td[data-dash-column=tracking_code]")
            expect(rows.first).to_be_visible(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "indicators_list.png"), animations="disabled",
                            timeout=90_000)  # a loaded 2-core CI machine renders slowly

            with page.expect_download(timeout=30_000) as download:
                detail.get_by_role("button", name="CSV").click()
            body = Path(download.value.path()).read_bytes().decode("utf-8-sig")
            (ARTIFACTS / "indicators_list.csv").write_text(body, encoding="utf-8")
            listed = list(csv.DictReader(io.StringIO(body)))
            assert listed and {"tracking_code", "resolved_at", "counted"} <= set(listed[0])
            assert download.value.suggested_filename.endswith("_list.csv")

            # the link reopens the same view
            other = context.new_page()
            other.goto(street_url)
            expect(other.locator(".yw-crumb.current")).to_have_text(street, timeout=30_000)
            expect(other.locator(".yw-ind-headline .yw-badge")).to_have_text("按时办结率")
            other.close()
        finally:
            context.close()
            browser.close()
    assert not problems, problems
