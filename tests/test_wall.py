"""The wall screen and the offline base map through Flask's test client: page access, the
refresh callback (scoped data, data props only), KPIs, stale banner, the MBTiles route."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import TINY_PASSWORD
from flask.testing import FlaskClient
from layers_data import NOW, add_layer_data

from core.scope import scope_for
from core.settings import load_settings
from core.store import Store
from core.users import create_user, get_user
from dashboard.app import create_app
from layers import LayerRequest
from layers.basemap import MBTiles, MBTilesError, base_map
from layers.wall import kpi_level, local_day_start, stale_sources, ticker, wall_kpis

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


def make_mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], fmt: str = "png") -> Path:
    """A small MBTiles file; ``tiles`` keyed by XYZ (converted to TMS rows here)."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    con.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER,"
                " tile_row INTEGER, tile_data BLOB)")
    con.executemany("INSERT INTO metadata VALUES (?, ?)",
                    [("name", "test"), ("format", fmt), ("minzoom", "0"), ("maxzoom", "3")])
    con.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                    [(z, x, 2**z - 1 - y, data) for (z, x, y), data in tiles.items()])
    con.commit()
    con.close()
    return path


@pytest.fixture
def city(tiny_city: Store) -> Store:
    add_layer_data(tiny_city)
    create_user(tiny_city, "leader_d2", TINY_PASSWORD, role="leader", jurisdiction_code="D2")
    return tiny_city


@pytest.fixture
def live_city(tiny_city: Store) -> Store:
    """The same data around the real clock, which the web app reads (``city`` sits at the
    fixed ``NOW`` for the functions that take a time)."""
    add_layer_data(tiny_city, datetime.now(UTC).replace(tzinfo=None))
    create_user(tiny_city, "leader_d2", TINY_PASSWORD, role="leader", jurisdiction_code="D2")
    return tiny_city


@pytest.fixture
def client(live_city: Store, tmp_path: Path) -> FlaskClient:
    app = create_app(live_city, load_settings(data_dir=tmp_path, totp_required=False))
    return app.server.test_client()


def login(client: FlaskClient, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": TINY_PASSWORD,
                                           "csrf_token": token, "next": "/"})
    assert response.status_code == 302


def route(client: FlaskClient, pathname: str, search: str = "") -> str:
    client.get("/")
    response = client.post("/_dash-update-component", json={
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"},
                    {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": pathname},
                   {"id": "_pages_location", "property": "search", "value": search}],
        "changedPropIds": ["_pages_location.pathname"], "state": []})
    assert response.status_code == 200, response.data
    return json.dumps(response.json, ensure_ascii=False)


def refresh(client: FlaskClient, viewport: dict | None = None, view: str = "city",
            toggles: list[str] | None = None) -> dict:
    """Run the wall refresh callback as the browser does; the outputs by component id."""
    deps = client.get("/_dash-dependencies").json
    dep = next(d for d in deps if "wall-kpis.children" in d["output"])
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1]}
               for o in dep["output"].strip(".").split("...")]
    toggles = ["jurisdictions", "sensors", "incidents", "alerts", "reports"] \
        if toggles is None else toggles
    body = {"output": dep["output"], "outputs": outputs,
            "inputs": [{"id": "wall-trigger", "property": "data", "value": 1},
                       {"id": "wall-view", "property": "data", "value": view},
                       {"id": "wall-viewport", "property": "data", "value": viewport},
                       {"id": "wall-toggles", "property": "value", "value": toggles}],
            "state": [{"id": "wall-seq", "property": "data", "value": 3}],
            "changedPropIds": ["wall-trigger.data"]}
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.data
    return {f"{k}.{p}": v for k, props in response.json["response"].items()
            for p, v in props.items()}


def test_wall_page_for_commanders_and_leaders_only(client: FlaskClient) -> None:
    login(client, "commander")
    page = route(client, "/wall", "?dwell=20&refresh=5")
    assert "wall-map" in page and "wall-kpis" in page and "yw-wall" in page
    assert '"interval": 5000' in page and '"interval": 20000' in page
    assert "1区" in page and "2区" in page  # the polygons are the base map
    assert "TileLayer" not in page  # no tiles configured: nothing from any host
    client.get("/logout")
    login(client, "cg_staff")
    assert "wall-map" not in route(client, "/wall")


def test_refresh_sends_scoped_layers_kpis_ticker_and_stale_banner(client: FlaskClient) -> None:
    login(client, "commander")
    route(client, "/wall")
    out = refresh(client, {"bbox": [0, 0, 2, 1], "zoom": 9})
    sensors = out["wall-sensors-pts.data"]["features"]
    assert len(sensors) == 6 and out["wall-sensors-cells.data"]["features"] == []
    assert out["wall-seq.data"] == 4
    assert out["wall-banner.className"] == "yw-wall-banner show"
    assert "hotline" in json.dumps(out["wall-banner.children"], ensure_ascii=False)
    kpis = json.dumps(out["wall-kpis.children"], ensure_ascii=False)
    for label in ("在办事件", "超时", "今日按时办结率", "感知设备在线率", "活动告警", "今日市民诉求"):
        assert label in kpis
    assert "level-alarm" in kpis
    assert out["wall-ticker.children"], "the ticker lists the latest events"
    # hidden layers come back empty; a broken viewport falls back to the scope's extent
    out = refresh(client, {"bbox": "nonsense"}, toggles=["incidents"])
    assert out["wall-sensors-pts.data"]["features"] == []
    assert len(out["wall-incidents-pts.data"]["features"]) > 0


def test_refresh_is_scoped_to_the_district(client: FlaskClient) -> None:
    login(client, "leader_d2")
    route(client, "/wall")
    out = refresh(client, {"bbox": [0, 0, 2, 1], "zoom": 9})
    lons = [f["geometry"]["coordinates"][0] for f in out["wall-sensors-pts.data"]["features"]]
    assert lons and all(lon >= 1.0 for lon in lons)
    lons = [f["geometry"]["coordinates"][0] for f in out["wall-incidents-pts.data"]["features"]]
    assert lons and all(lon >= 1.0 for lon in lons)


def test_refresh_refused_without_login(client: FlaskClient) -> None:
    response = client.post("/_dash-update-component", json={})
    assert response.status_code == 401


def test_kpis_with_change_from_yesterday(city: Store) -> None:
    kpis = {k.id: k for k in wall_kpis(city, scope_for(city, get_user(city, "commander")), NOW)}
    assert (kpis["open"].value, kpis["open"].previous) == (5, 2)
    assert (kpis["overdue"].value, kpis["overdue"].previous) == (1, 0)
    assert kpis["on_time"].value == 50.0 and kpis["on_time"].previous is None
    assert round(kpis["online"].value, 1) == 66.7 and kpis["online"].previous == 50.0
    assert (kpis["alerts"].value, kpis["alerts"].previous, kpis["alerts"].level) == (2, 1, "alarm")
    assert (kpis["reports"].value, kpis["reports"].previous) == (2, 1)
    d1 = {k.id: k for k in wall_kpis(city, scope_for(city, get_user(city, "d1_commander")), NOW)}
    assert (d1["open"].value, d1["on_time"].value, d1["online"].value) == (3, 100.0, 100.0)
    assert wall_kpis(city, scope_for(city, get_user(city, "sysadmin")), NOW) == []


def test_kpi_levels_and_local_day() -> None:
    assert kpi_level("online", 80.0) == "alarm" and kpi_level("online", 96.0) == "ok"
    assert kpi_level("overdue", 2, base=100) == "ok"
    assert kpi_level("overdue", 20, base=100) == "alarm"
    assert kpi_level("reports", 11, 10) == "ok" and kpi_level("reports", 13, 10) == "warn"
    assert kpi_level("on_time", None) == "none"
    from datetime import datetime
    assert local_day_start(datetime(2026, 11, 28, 15, 59)) == datetime(2026, 11, 27, 16, 0)


def test_ticker_and_stale_sources(city: Store) -> None:
    events = ticker(city, scope_for(city, get_user(city, "cg_staff")), NOW)
    assert [(e["type"], e["ref"]) for e in events] == [("incident", 3), ("incident", 5)]
    events = ticker(city, scope_for(city, get_user(city, "commander")), NOW)
    assert events[0]["action"] == "alert_alarm"
    assert [e["ts"] for e in events] == sorted((e["ts"] for e in events), reverse=True)
    assert [s["name"] for s in stale_sources(city)] == ["hotline"]
    with city.transaction() as cur:   # lake maintenance, not run yet: it delivers no data
        cur.execute("INSERT INTO pipeline_sources VALUES ('lake_maintenance', 'maintenance',"
                    " 900, 'DuckLake compaction'), ('feed', 'file', 60, 'a feed')")
    assert [s["name"] for s in stale_sources(city)] == ["feed", "hotline"]


def test_mbtiles_reader_flips_rows_and_refuses_bad_files(tmp_path: Path) -> None:
    path = make_mbtiles(tmp_path / "basemap.mbtiles", {(1, 0, 0): PNG, (1, 1, 1): b"south"})
    tiles = MBTiles(path)
    assert tiles.tile(1, 0, 0) == PNG and tiles.tile(1, 1, 1) == b"south"
    assert tiles.tile(1, 0, 1) is None and tiles.tile(1, 5, 0) is None
    assert base_map(tmp_path, "http://tiles.intranet/{z}/{x}/{y}.png").kind == "mbtiles"
    (tmp_path / "bad.mbtiles").write_text("not sqlite")
    with pytest.raises(MBTilesError):
        MBTiles(tmp_path / "bad.mbtiles")
    with pytest.raises(MBTilesError, match="raster"):
        MBTiles(make_mbtiles(tmp_path / "vector.mbtiles", {}, fmt="pbf"))


def test_tiles_served_by_yiwang_behind_login(city: Store, tmp_path: Path) -> None:
    make_mbtiles(tmp_path / "basemap.mbtiles", {(2, 1, 2): PNG})
    app = create_app(city, load_settings(data_dir=tmp_path, totp_required=False))
    client = app.server.test_client()
    image = {"Accept": "image/webp,image/png,*/*"}  # what a browser's <img> asks for
    assert client.get("/tiles/2/1/2", headers=image).status_code == 401
    login(client, "commander")
    response = client.get("/tiles/2/1/2")
    assert response.status_code == 200 and response.data == PNG
    assert response.mimetype == "image/png"
    assert client.get("/tiles/2/1/1").status_code == 204
    page = route(client, "/wall")
    assert '"/tiles/{z}/{x}/{y}"' in page


def test_intranet_tile_url_is_the_only_other_host(city: Store, tmp_path: Path) -> None:
    url = "http://tiles.intranet:8080/{z}/{x}/{y}.png"
    app = create_app(city, load_settings(data_dir=tmp_path, tile_url=url, totp_required=False))
    client = app.server.test_client()
    login(client, "commander")
    assert url in route(client, "/wall")
    csp = client.get("/").headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob: http://tiles.intranet:8080" in csp


def test_layer_request_of_the_wall_is_bounded() -> None:
    with pytest.raises(ValueError):
        LayerRequest((0, 0, 1, 1), -1)


def test_kpis_agree_with_core_indicators(city: Store) -> None:
    indicators = pytest.importorskip("core.indicators")
    for username in ("commander", "d1_commander"):
        scope = scope_for(city, get_user(city, username))
        kpis = {k.id: k for k in wall_kpis(city, scope, NOW)}
        day0 = local_day_start(NOW)
        on_time = indicators.evaluate_one(city, scope, "resolve_on_time", code=scope.root_code,
                                          start=day0, end=NOW, now=NOW)
        online = indicators.evaluate_one(city, scope, "sensor_online", code=scope.root_code,
                                         start=day0, end=NOW, now=NOW)
        assert kpis["on_time"].value == on_time.value
        assert kpis["online"].value == pytest.approx(online.value)


def test_screens_of_one_scope_share_a_snapshot_and_other_scopes_never_do(city: Store) -> None:
    from layers.wall import shared_wall_snapshot

    create_user(city, "commander_2", TINY_PASSWORD, role="commander", jurisdiction_code="C")
    request = LayerRequest((0.0, 0.0, 2.0, 1.0), 9.0, NOW)
    one = shared_wall_snapshot(city, scope_for(city, get_user(city, "commander")), "city",
                               request)
    # a second screen of the same scope (another account) gets the very same snapshot
    two = shared_wall_snapshot(city, scope_for(city, get_user(city, "commander_2")), "city",
                               request)
    assert two is one
    # a district commander never gets the city's, nor the city's another view
    d1 = shared_wall_snapshot(city, scope_for(city, get_user(city, "d1_commander")), "city",
                              request)
    assert d1 is not one
    assert {k.id: k.value for k in d1.kpis}["open"] == 3
    assert {k.id: k.value for k in one.kpis}["open"] == 5
    other_view = shared_wall_snapshot(city, scope_for(city, get_user(city, "commander")),
                                      "air", request)
    assert other_view is not one
    # once too old, the snapshot is computed afresh, and then shared again
    fresh = shared_wall_snapshot(city, scope_for(city, get_user(city, "commander")), "city",
                                 request, seconds=0)
    assert fresh is not one
    assert shared_wall_snapshot(city, scope_for(city, get_user(city, "commander_2")), "city",
                                request) is fresh
