"""The built-in map layers: jurisdictions (indicator choropleth), sensors by state, incidents
by priority and status, active alerts, citizen report density.

Each layer's ``fetch`` reads through a scoped query of ``core.map_queries``, which applies
the user's scope in SQL (``Scope.data_filter``) and the request's bbox, and sends points or
cells. Sensor data comes from the ``sensor_status`` view (contract A), never raw readings.

>>> from layers import LayerRequest, layer_features
>>> layer_features(store, scope, "incidents", LayerRequest((120, 31, 121, 32), 12))
...                                                              # doctest: +SKIP
{'type': 'FeatureCollection', 'features': [...], 'meta': {'mode': 'points', ...}}
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from core import map_queries
from core.map_queries import CITIZEN_SOURCES, MAX_POLYGONS
from core.roles import Role
from core.scope import Scope
from core.store import Store
from layers.registry import Layer, LayerRequest, LegendItem, register_layer

__all__ = ["CITIZEN_SOURCES", "MAX_POLYGONS", "indicator_values"]

# Who sees business layers: everyone with business data except social organisations (their
# incidents need category filtering and masking, which the incident pages do).
_BUSINESS = frozenset({Role.COMMANDER, Role.LEADER, Role.DEPT_STAFF, Role.DEPT_ADMIN,
                       Role.GRASSROOTS, Role.GRID_WORKER})
_EVERYONE = frozenset(Role)


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
    level = request.options.get("level")
    parent = request.options.get("parent_code") or scope.root_code
    rows = map_queries.jurisdiction_shapes(store, scope, request.bbox, request.zoom,
                                           level=level, parent_code=parent, limit=MAX_POLYGONS)
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
    return map_queries.sensor_points(store, scope, request.bbox, request.zoom,
                                     kinds=_list_option(request, "kinds"))


# -- incidents -------------------------------------------------------------------------
def _incidents(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Incidents open at the request's time, by priority and status (overdue flagged)."""
    return map_queries.incident_points(
        store, scope, request.bbox, request.zoom, request.when,
        categories=_list_option(request, "categories"),
        priorities=_list_option(request, "priorities"))


# -- alerts ----------------------------------------------------------------------------
def _alerts(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Alerts active at the request's time, at their sensor, by level."""
    return map_queries.alert_points(store, scope, request.bbox, request.zoom, request.when,
                                    kinds=_list_option(request, "kinds"))


# -- report density --------------------------------------------------------------------
def _reports(store: Store, scope: Scope, request: LayerRequest) -> dict[str, Any]:
    """Citizen reports (hotline, app, Open311) per grid cell over the last ``hours``."""
    hours = float(request.options.get("hours", 24 * 7))
    fc = map_queries.report_cells(store, scope, request.bbox, request.zoom, request.when,
                                  hours=hours)
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
    fetch=_jurisdictions, style="choroplethStyle", on_each_feature="jurisdictionLabel",
    legend=(LegendItem("#0d2747", "low", "低", "square"),
            LegendItem("#64d6fb", "high", "高", "square")),
    roles=_EVERYONE, order=0,
))
register_layer(Layer(
    id="sensors", name_zh="物联感知", name_en="Sensors", kind="points", fetch=_sensors,
    style="sensorStyle", point_to_layer="sensorPoint", cluster_to_layer="clusterIcon",
    on_each_feature="sensorTip", legend=_STATE_LEGEND, roles=_BUSINESS, order=10,
))
register_layer(Layer(
    id="incidents", name_zh="事件工单", name_en="Incidents", kind="points", fetch=_incidents,
    style="incidentStyle", point_to_layer="incidentPoint", cluster_to_layer="clusterIcon",
    on_each_feature="incidentTip", legend=_PRIORITY_LEGEND, roles=_BUSINESS, order=20,
))
register_layer(Layer(
    id="alerts", name_zh="活动告警", name_en="Active alerts", kind="points", fetch=_alerts,
    style="alertStyle", point_to_layer="alertPoint", cluster_to_layer="clusterIcon",
    on_each_feature="alertTip",
    legend=(LegendItem("#ffb020", "warning", "预警", "ring"),
            LegendItem("#ff4d4f", "alarm", "告警", "ring")),
    roles=_BUSINESS, order=30,
))
register_layer(Layer(
    id="reports", name_zh="市民诉求密度", name_en="Citizen report density", kind="cells",
    fetch=_reports, style="densityStyle", point_to_layer="densityCell",
    on_each_feature="densityTip",
    legend=(LegendItem("#3b1d5e", "few", "少", "square"),
            LegendItem("#ff6b3d", "many", "多", "square")),
    roles=frozenset({Role.COMMANDER, Role.LEADER, Role.DEPT_STAFF, Role.DEPT_ADMIN,
                     Role.GRASSROOTS}), order=40,
))
