"""The layer registry and each layer's scoped query (real DuckDB, the tiny city + layers_data)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from layers_data import NOW, add_layer_data

from core import map_queries
from core.roles import Role
from core.scope import scope_for
from core.store import Store
from core.users import get_user
from layers import (
    LayerAccessError,
    LayerRequest,
    get_layer,
    layer_features,
    visible_layers,
)
from layers.aggregate import MAX_CELLS, MAX_POINTS

CITY = (0.0, 0.0, 2.0, 1.0)


@pytest.fixture
def city(tiny_city: Store) -> Store:
    add_layer_data(tiny_city)
    return tiny_city


def scope(store: Store, username: str):
    return scope_for(store, get_user(store, username))


def features(store: Store, username: str, layer: str, bbox=CITY, zoom=9.0, **options):
    request = LayerRequest(bbox, zoom, NOW, options)
    return layer_features(store, scope(store, username), layer, request)


def ids(fc: dict) -> list:
    return sorted(f["properties"]["id"] for f in fc["features"])


def test_registry_lists_layers_by_role_and_refuses_others(city: Store) -> None:
    assert [lay.id for lay in visible_layers(Role.COMMANDER)] == [
        "jurisdictions", "sensors", "incidents", "alerts", "reports"]
    assert [lay.id for lay in visible_layers(Role.SYSADMIN)] == ["jurisdictions"]
    assert "reports" not in [lay.id for lay in visible_layers(Role.GRID_WORKER)]
    with pytest.raises(LayerAccessError):
        features(city, "sysadmin", "sensors")
    with pytest.raises(LayerAccessError):
        features(city, "commander", "no-such-layer")
    for layer in visible_layers(Role.COMMANDER):
        assert layer.name_zh and layer.name_en and layer.legend and layer.style
    assert get_layer("sensors").js("sensorPoint") == {"variable": "yiwang.layers.sensorPoint"}


def test_request_rejects_bad_bbox_and_zoom() -> None:
    with pytest.raises(ValueError, match="bbox"):
        LayerRequest((2, 0, 1, 1), 9)
    with pytest.raises(ValueError, match="zoom"):
        LayerRequest((0, 0, 1, 1), 40)


def test_sensors_by_state_scoped_to_jurisdiction_department_and_bbox(city: Store) -> None:
    fc = features(city, "commander", "sensors")
    assert fc["meta"]["mode"] == "points"
    states = {f["properties"]["id"]: f["properties"]["s"] for f in fc["features"]}
    assert states == {1: "normal", 2: "warning", 3: "alarm", 4: "normal", 5: "offline",
                      6: "offline"}
    assert ids(features(city, "d1_commander", "sensors")) == [1, 2, 3]
    assert ids(features(city, "cg_staff", "sensors")) == [1, 2, 5, 6]  # department cg only
    assert ids(features(city, "commander", "sensors", bbox=(1.0, 0.0, 2.0, 0.5))) == [4]
    assert ids(features(city, "commander", "sensors", kinds=["water_level"])) == [3, 4]
    with pytest.raises(ValueError, match="kinds"):
        features(city, "commander", "sensors", kinds=[1])


def test_incidents_open_at_time_by_priority_status_and_scope(city: Store) -> None:
    fc = features(city, "commander", "incidents")
    props = {f["properties"]["id"]: f["properties"] for f in fc["features"]}
    assert sorted(props) == [1, 2, 3, 5, 6]  # 4 is closed
    assert props[2]["od"] is True and props[1]["od"] is False
    assert props[3]["p"] == "emergency" and props[3]["s"] == "claimed"
    assert ids(features(city, "d1_commander", "incidents")) == [1, 2, 6]
    assert ids(features(city, "cg_staff", "incidents")) == [2, 3, 5]
    assert ids(features(city, "commander", "incidents", categories="road_waterlogging")) == [1, 6]
    # two days earlier only incident 4 had been reported (and was still open then)
    request = LayerRequest(CITY, 9, NOW - timedelta(hours=39))
    assert ids(layer_features(city, scope(city, "commander"), "incidents", request)) == [4]


def test_alerts_active_only_and_scoped(city: Store) -> None:
    fc = features(city, "commander", "alerts")
    assert {f["properties"]["id"]: f["properties"]["l"] for f in fc["features"]} == {
        1: "alarm", 2: "warning"}
    assert ids(features(city, "cg_staff", "alerts")) == [2]  # sensor 2 belongs to cg
    assert ids(features(city, "commander", "alerts", kinds=["water_level"])) == [1]
    request = LayerRequest(CITY, 9, NOW - timedelta(hours=4))
    assert ids(layer_features(city, scope(city, "commander"), "alerts", request)) == [2, 3]


def test_report_density_counts_citizen_reports_in_cells(city: Store) -> None:
    fc = features(city, "commander", "reports", hours=24 * 7)
    assert fc["meta"]["mode"] == "cells"
    assert sum(f["properties"]["n"] for f in fc["features"]) == 4  # hotline/app/open311
    assert max(f["properties"]["t"] for f in fc["features"]) == 1.0
    fc = features(city, "commander", "reports", hours=24)  # 2 and 4 are older than a day
    assert sum(f["properties"]["n"] for f in fc["features"]) == 2
    fc = features(city, "d1_commander", "reports", hours=24 * 7)
    assert sum(f["properties"]["n"] for f in fc["features"]) == 3
    assert all(f["geometry"]["coordinates"][0] < 1.0 for f in fc["features"])


def test_jurisdictions_children_levels_and_scope(city: Store) -> None:
    fc = features(city, "commander", "jurisdictions")
    assert [f["id"] for f in fc["features"]] == ["D1", "D2"]
    fc = features(city, "d1_commander", "jurisdictions")
    assert [f["id"] for f in fc["features"]] == ["D1S1", "D1S2"]
    # a parent outside the scope yields nothing, a level lists that level inside the scope
    assert features(city, "d1_commander", "jurisdictions", parent_code="D2")["features"] == []
    fc = features(city, "d1_commander", "jurisdictions", level="community")
    assert [f["id"] for f in fc["features"]] == ["D1S1C1", "D1S2C1"]
    fc = features(city, "commander", "jurisdictions", level="street", bbox=(1.2, 0.6, 1.4, 0.8))
    assert [f["id"] for f in fc["features"]] == ["D2S2"]
    fc = features(city, "sysadmin", "jurisdictions", indicator="anything")
    assert [f["id"] for f in fc["features"]] == ["D1", "D2"]
    assert all("value" not in f["properties"] for f in fc["features"])


def test_aggregation_switches_to_cells_when_points_are_many(tiny_city: Store) -> None:
    add_layer_data(tiny_city, many_sensors=5000)
    fc = features(tiny_city, "commander", "sensors", zoom=9)
    assert fc["meta"]["mode"] == "cells"
    assert fc["meta"]["count"] == 5006 > MAX_POINTS
    assert sum(f["properties"]["n"] for f in fc["features"]) == 5006
    assert sum(f["properties"].get("a", 0) for f in fc["features"]) == 1
    assert sum(f["properties"].get("o", 0) for f in fc["features"]) == 2
    assert 1 < len(fc["features"]) <= MAX_CELLS
    # zoomed into a small box: few enough points for the browser to cluster itself
    small = features(tiny_city, "commander", "sensors", bbox=(0.0, 0.0, 0.08, 0.05), zoom=14)
    assert small["meta"]["mode"] == "points"
    assert 0 < len(small["features"]) <= MAX_POINTS
    # more zoom: smaller cells, more of them; a cell never holds points outside the scope
    finer = features(tiny_city, "commander", "sensors", zoom=11)
    assert finer["meta"]["mode"] == "cells" and len(finer["features"]) > len(fc["features"])
    d1 = features(tiny_city, "d1_commander", "sensors", zoom=9)
    assert sum(f["properties"]["n"] for f in d1["features"]) == 5003


def test_cells_grow_until_they_fit_the_cap(tiny_city: Store, monkeypatch) -> None:
    add_layer_data(tiny_city, many_sensors=5000)
    monkeypatch.setattr(map_queries, "MAX_CELLS", 10)
    scoped = scope(tiny_city, "commander")
    base = "SELECT lon, lat FROM sensors"
    fc = map_queries.points_or_cells(tiny_city, base, [], 12, props={}, cell_aggs={},
                                     max_cells=10)
    assert fc["meta"]["mode"] == "cells" and len(fc["features"]) <= 10
    assert sum(f["properties"]["n"] for f in fc["features"]) == 5006
    assert fc["meta"]["cell"] > LayerRequest(CITY, 12).cell_degrees(map_queries.CELL_PX)
    assert scoped.root_code == "C"
