"""The built-in map layers: jurisdictions (indicator choropleth), sensors by state, incidents
by priority and status, active alerts, citizen report density.

Each query applies the user's scope in SQL (``Scope.data_filter``) and the request's bbox,
then hands the rows to ``points_or_cells``. Sensor data comes from the ``sensor_status``
view (contract A), never raw readings.

>>> from layers import LayerRequest, layer_features
>>> layer_features(store, scope, "incidents", LayerRequest((120, 31, 121, 32), 12))
...                                                              # doctest: +SKIP
{'type': 'FeatureCollection', 'features': [...], 'meta': {'mode': 'points', ...}}
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from core.roles import Role
from core.scope import Scope
from core.store import Store
from layers.aggregate import bbox_condition, padded_bbox, points_or_cells
from layers.registry import Layer, LayerRequest, LegendItem, register_layer

__all__ = ["CITIZEN_SOURCES", "MAX_POLYGONS", "indicator_values"]

# Who sees business layers: everyone with business data except social organisations (their
# incidents need category filtering and masking, which the incident pages do).
_BUSINESS = frozenset({Role.COMMANDER, Role.LEADER, Role.DEPT_STAFF, Role.DEPT_ADMIN,
                       Role.GRASSROOTS, Role.GRID_WORKER})
_EVERYONE = frozenset(Role)
CITIZEN_SOURCES = ("hotline", "citizen_app", "open311")
MAX_POLYGONS = 1500


def _list_option(request: LayerRequest, name: str) -> list[str] | None:
    value = request.options.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"option {name!r} must be a string or a list of strings")
    return list(value)


# -- jurisdictions ---------------------------------------------------------------------
def indicator_values(store: Store, scope: Scope, indicator_id: str, parent_code: str,
                     start: Any, end: Any) -> dict[str, float | None]:
    """Indicator value per child of ``parent_code`` from ``core.indicators`` (contract C);
    empty when that module or the indicator is not there."""
    try:
        from core import indicators
    except ImportError:
        return {}
    if indicator_id not in getattr(indicators, "INDICATORS", {}):
        return {}
    values = indicators.evaluate(store, scope, indicator_id, parent_code=parent_code,
                                 start=start, end=end, now=end)
    return {v.code: v.value for v in values}


def _jurisdictions(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Children of ``parent_code`` (default the user's root) or every jurisdiction of
    ``level`` in view, simplified to a pixel at the zoom, with an indicator value."""
    west, south, east, north = padded_bbox(request)
    tolerance = 360.0 / (256.0 * 2.0 ** request.zoom)
    level = request.options.get("level")
    parent = request.options.get("parent_code") or scope.root_code
    if level is not None:
        which, which_params = "level = ?", [level]
    else:
        which = ("(parent_code = ? OR (code = ? AND NOT EXISTS "
                 "(SELECT 1 FROM jurisdictions c WHERE c.parent_code = ?)))")
        which_params = [parent, parent, parent]
    rows = store.query(
        "SELECT code, name_zh, name_en, level, parent_code,"
        " ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, ?)) FROM jurisdictions"
        f" WHERE starts_with(path, ?) AND {which}"
        " AND max_lon >= ? AND min_lon <= ? AND max_lat >= ? AND min_lat <= ?"
        " ORDER BY code LIMIT ?",
        [tolerance, scope.root_path, *which_params, west, east, south, north, MAX_POLYGONS],
    )
    values: dict[str, float | None] = {}
    indicator = request.options.get("indicator")
    if indicator and scope.business_data:
        end = request.when
        start = end - timedelta(days=float(request.options.get("days", 1)))
        for p in {r[4] for r in rows} if level is not None else {parent}:
            if p is not None and scope.contains(store, p):
                values.update(indicator_values(store, scope, indicator, p, start, end))
    features = []
    for code, zh, en, lev, _parent, geom in rows:
        props: dict[str, Any] = {"code": code, "name_zh": zh, "name_en": en, "level": lev}
        if values.get(code) is not None:
            props["value"] = round(values[code], 4)
        features.append({"type": "Feature", "id": code, "properties": props,
                         "geometry": json.loads(geom)})
    return {"type": "FeatureCollection", "features": features,
            "meta": {"mode": "polygons", "count": len(features), "cap": MAX_POLYGONS,
                     "indicator": indicator if values else None}}


# -- sensors ---------------------------------------------------------------------------
def _sensors(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Sensors coloured by state (normal, warning, alarm, offline) from ``sensor_status``."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    box, box_params = bbox_condition(request)
    sql = ("SELECT sensor_id, lon, lat, kind, state, value FROM sensor_status"
           f" WHERE ({where}) AND {box}")
    params = params + box_params
    kinds = _list_option(request, "kinds")
    if kinds is not None:
        sql += " AND kind IN (SELECT unnest(?::VARCHAR[]))"
        params.append(kinds)
    return points_or_cells(
        store, sql, params, request,
        props={"id": "sensor_id", "k": "kind", "s": "state", "v": "value"},
        cell_aggs={"a": "count_if(state = 'alarm')", "w": "count_if(state = 'warning')",
                   "o": "count_if(state = 'offline')"},
    )


# -- incidents -------------------------------------------------------------------------
def _incidents(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Incidents open at the request's time, by priority and status (overdue flagged)."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    box, box_params = bbox_condition(request)
    at = request.when
    sql = ("SELECT id, lon, lat, priority, status, category,"
           " (resolve_due < ? AND (resolved_at IS NULL OR resolved_at > ?)) AS overdue"
           " FROM incidents"
           f" WHERE ({where}) AND {box} AND reported_at <= ?"
           " AND (closed_at IS NULL OR closed_at > ?)")
    params = [at, at, *params, *box_params, at, at]
    for option, column in (("categories", "category"), ("priorities", "priority")):
        chosen = _list_option(request, option)
        if chosen is not None:
            sql += f" AND {column} IN (SELECT unnest(?::VARCHAR[]))"
            params.append(chosen)
    return points_or_cells(
        store, sql, params, request,
        props={"id": "id", "p": "priority", "s": "status", "c": "category", "od": "overdue"},
        cell_aggs={"e": "count_if(priority = 'emergency')", "hi": "count_if(priority = 'high')",
                   "od": "count_if(overdue)"},
    )


# -- alerts ----------------------------------------------------------------------------
def _alerts(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Alerts active at the request's time, at their sensor, by level."""
    where, params = scope.data_filter("a.jurisdiction_code", "s.department_code")
    box, box_params = bbox_condition(request, "s.lon", "s.lat")
    at = request.when
    sql = ("SELECT a.id, s.lon, s.lat, a.kind, a.level, a.peak_value, a.opened_at"
           " FROM alerts a JOIN sensors s ON s.id = a.sensor_id"
           f" WHERE ({where}) AND {box} AND a.opened_at <= ?"
           " AND (a.closed_at IS NULL OR a.closed_at > ?)")
    params = params + box_params + [at, at]
    kinds = _list_option(request, "kinds")
    if kinds is not None:
        sql += " AND a.kind IN (SELECT unnest(?::VARCHAR[]))"
        params.append(kinds)
    return points_or_cells(
        store, sql, params, request,
        props={"id": "id", "k": "kind", "l": "level", "v": "peak_value"},
        cell_aggs={"a": "count_if(level = 'alarm')"},
    )


# -- report density --------------------------------------------------------------------
def _reports(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Citizen reports (hotline, app, Open311) per grid cell over the last ``hours``."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    box, box_params = bbox_condition(request)
    at = request.when
    hours = float(request.options.get("hours", 24 * 7))
    sql = ("SELECT lon, lat FROM incidents"
           f" WHERE ({where}) AND {box} AND reported_at > ? AND reported_at <= ?"
           " AND source IN (SELECT unnest(?::VARCHAR[]))")
    params = params + box_params + [at - timedelta(hours=hours), at, list(CITIZEN_SOURCES)]
    fc = points_or_cells(store, sql, params, request, props={}, cell_aggs={},
                         force_cells=True)
    top = max((f["properties"]["n"] for f in fc["features"]), default=0) or 1
    for f in fc["features"]:  # 0..1 of the busiest cell, for the colour ramp
        f["properties"]["t"] = round(f["properties"]["n"] / top, 2)
    return fc


_STATE_LEGEND = (
    LegendItem("#37d67a", "normal", "正常"),
    LegendItem("#ffb020", "warning", "预警"),
    LegendItem("#ff4d4f", "alarm", "告警"),
    LegendItem("#6b7a90", "offline", "离线"),
)
_PRIORITY_LEGEND = (
    LegendItem("#ff4d4f", "emergency", "紧急"),
    LegendItem("#ff8a3d", "high", "高"),
    LegendItem("#4fc3f7", "normal", "一般"),
    LegendItem("#8fa3bf", "low", "低"),
    LegendItem("#ffffff", "overdue (ring)", "超时（外圈）", "ring"),
)

register_layer(Layer(
    id="jurisdictions", name_zh="辖区边界", name_en="Jurisdictions", kind="polygons",
    query=_jurisdictions, style="choroplethStyle", on_each_feature="jurisdictionLabel",
    legend=(LegendItem("#0d2747", "low", "低", "square"),
            LegendItem("#64d6fb", "high", "高", "square")),
    roles=_EVERYONE, order=0,
))
register_layer(Layer(
    id="sensors", name_zh="物联感知", name_en="Sensors", kind="points", query=_sensors,
    style="sensorStyle", point_to_layer="sensorPoint", cluster_to_layer="clusterIcon",
    on_each_feature="sensorTip", legend=_STATE_LEGEND, roles=_BUSINESS, order=10,
))
register_layer(Layer(
    id="incidents", name_zh="事件工单", name_en="Incidents", kind="points", query=_incidents,
    style="incidentStyle", point_to_layer="incidentPoint", cluster_to_layer="clusterIcon",
    on_each_feature="incidentTip", legend=_PRIORITY_LEGEND, roles=_BUSINESS, order=20,
))
register_layer(Layer(
    id="alerts", name_zh="活动告警", name_en="Active alerts", kind="points", query=_alerts,
    style="alertStyle", point_to_layer="alertPoint", cluster_to_layer="clusterIcon",
    on_each_feature="alertTip",
    legend=(LegendItem("#ffb020", "warning", "预警", "ring"),
            LegendItem("#ff4d4f", "alarm", "告警", "ring")),
    roles=_BUSINESS, order=30,
))
register_layer(Layer(
    id="reports", name_zh="市民诉求密度", name_en="Citizen report density", kind="cells",
    query=_reports, style="densityStyle", point_to_layer="densityCell",
    on_each_feature="densityTip",
    legend=(LegendItem("#3b1d5e", "few", "少", "square"),
            LegendItem("#ff6b3d", "many", "多", "square")),
    roles=frozenset({Role.COMMANDER, Role.LEADER, Role.DEPT_STAFF, Role.DEPT_ADMIN,
                     Role.GRASSROOTS}), order=40,
))
