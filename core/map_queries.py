"""Map data: the built-in layers' scoped queries and the point/cell engine (design §6).

Each layer query takes the user's ``Scope`` and applies it in SQL (``Scope.data_filter``;
jurisdictions by the scope root's path), together with the map's bbox (padded so panning
stays filled). Sensor data comes from the ``sensor_status`` view (contract A), never raw
readings. ``layers.builtin`` turns these into registered map layers.

Points or cells: the browser never receives more than it can draw. A point layer's scoped,
bbox-filtered query is read with a limit of ``MAX_POINTS + 1`` rows. Up to ``MAX_POINTS``
things in view go to the browser as points (it clusters them itself, supercluster); more are
aggregated in DuckDB into square grid cells of about ``CELL_PX`` screen pixels at the zoom,
never more than ``MAX_CELLS`` of them (the cell doubles until they fit). So a point layer's
response holds at most ``max(MAX_POINTS, MAX_CELLS)`` features whatever the data size.

>>> fc = sensor_points(store, scope, (120.0, 31.6, 120.6, 32.2), 11)  # doctest: +SKIP
>>> fc["meta"]["mode"], len(fc["features"]) <= MAX_POINTS            # doctest: +SKIP
('points', True)
>>> padded_bbox((0.0, 0.0, 1.0, 1.0))
(-0.1, -0.1, 1.1, 1.1)
>>> cell_degrees(9, 64)
0.17578125
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from core.scope import Scope
from core.store import Store

__all__ = ["CELL_PX", "CITIZEN_SOURCES", "MAX_CELLS", "MAX_POINTS", "MAX_POLYGONS", "Bbox",
           "alert_points", "cell_degrees", "incident_points", "jurisdiction_shapes",
           "padded_bbox", "point_feature", "points_or_cells", "report_cells", "sensor_points"]

Bbox = tuple[float, float, float, float]  # west, south, east, north (WGS84)

MAX_POINTS = 600
MAX_CELLS = 1200
CELL_PX = 64
MAX_POLYGONS = 1500
CITIZEN_SOURCES = ("hotline", "citizen_app", "open311")
_DIGITS = 5  # 5 decimals of a degree ≈ 1 m: enough for a wall, and short


# -- bbox and cells --------------------------------------------------------------------
def padded_bbox(bbox: Bbox, pad: float = 0.1) -> Bbox:
    """``bbox`` grown by ``pad`` of its size on each side (panning stays filled)."""
    west, south, east, north = bbox
    dx, dy = (east - west) * pad, (north - south) * pad
    return (max(-180.0, west - dx), max(-90.0, south - dy), min(180.0, east + dx),
            min(90.0, north + dy))


def cell_degrees(zoom: float, cell_px: int = CELL_PX) -> float:
    """Side of an aggregation cell in degrees: ``cell_px`` screen pixels at ``zoom``."""
    return cell_px * 360.0 / (256.0 * 2.0 ** zoom)


def _bbox_condition(bbox: Bbox, lon: str = "lon", lat: str = "lat") -> tuple[str, list]:
    """SQL condition keeping points inside the (padded) bbox, and its parameters."""
    west, south, east, north = padded_bbox(bbox)
    return f"{lon} BETWEEN ? AND ? AND {lat} BETWEEN ? AND ?", [west, east, south, north]


def point_feature(lon: float, lat: float, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature",
            "geometry": {"type": "Point",
                         "coordinates": [round(lon, _DIGITS), round(lat, _DIGITS)]},
            "properties": props}


def points_or_cells(store: Store, base_sql: str, params: list, zoom: float, *,
                    props: dict[str, str], cell_aggs: dict[str, str],
                    max_points: int = MAX_POINTS, max_cells: int = MAX_CELLS,
                    force_cells: bool = False) -> dict[str, Any]:
    """Points (≤ ``max_points``) or grid cells (≤ ``max_cells``) of ``base_sql``'s rows.

    ``base_sql`` (built in this module) selects at least ``lon`` and ``lat``, already scoped
    and bbox-filtered; ``props`` maps short property names to its columns for points;
    ``cell_aggs`` maps property names to aggregate expressions for cells (``n``, the count,
    is always there).
    """
    if not force_cells:
        # one read of at most max_points + 1 rows tells whether the points fit
        names = list(props)
        cols = "".join(f", {props[n]}" for n in names)
        rows = store.query(f"SELECT lon, lat{cols} FROM ({base_sql}) AS base LIMIT ?",
                           [*params, max_points + 1])
        if len(rows) <= max_points:
            features = [point_feature(r[0], r[1], _clean(dict(zip(names, r[2:], strict=True))))
                        for r in rows]
            return {"type": "FeatureCollection", "features": features,
                    "meta": {"mode": "points", "count": len(rows), "cap": max_points}}
    size = cell_degrees(zoom, CELL_PX)
    agg_names = list(cell_aggs)
    aggs = "".join(f", {cell_aggs[n]}" for n in agg_names)
    while True:
        rows = store.query(
            f"SELECT floor(lon / ?)::BIGINT AS gx, floor(lat / ?)::BIGINT AS gy, count(*) AS n"
            f"{aggs} FROM ({base_sql}) AS base GROUP BY ALL",
            [size, size, *params],
        )
        if len(rows) <= max_cells:
            break
        size *= 2
    half = round(size / 2, 6)
    count = sum(r[2] for r in rows)
    features = []
    for gx, gy, n, *rest in rows:
        cell_props = {"n": n, "h": half, **dict(zip(agg_names, rest, strict=True))}
        features.append(point_feature((gx + 0.5) * size, (gy + 0.5) * size, _clean(cell_props)))
    return {"type": "FeatureCollection", "features": features,
            "meta": {"mode": "cells", "count": count, "cap": max_cells, "cell": size}}


def _clean(props: dict[str, Any]) -> dict[str, Any]:
    """Round floats and drop Nones: every byte counts on a 10-second refresh."""
    out = {}
    for key, value in props.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = round(value, 2)
        out[key] = value
    return out


# -- jurisdictions ---------------------------------------------------------------------
def jurisdiction_shapes(store: Store, scope: Scope, bbox: Bbox, zoom: float, *,
                        level: Any = None, parent_code: str | None = None,
                        limit: int = MAX_POLYGONS) -> list[tuple]:
    """Children of ``parent_code`` (default the scope's root; the parent itself when it has
    none) or every jurisdiction of ``level``, inside the scope and in view, simplified to a
    pixel at ``zoom``: rows of (code, name_zh, name_en, level, parent_code, GeoJSON text)."""
    west, south, east, north = padded_bbox(bbox)
    tolerance = 360.0 / (256.0 * 2.0 ** zoom)
    parent = parent_code or scope.root_code
    if level is not None:
        which, which_params = "level = ?", [level]
    else:
        which = ("(parent_code = ? OR (code = ? AND NOT EXISTS "
                 "(SELECT 1 FROM jurisdictions c WHERE c.parent_code = ?)))")
        which_params = [parent, parent, parent]
    return store.query(
        "SELECT code, name_zh, name_en, level, parent_code,"
        " ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, ?)) FROM jurisdictions"
        f" WHERE starts_with(path, ?) AND {which}"
        " AND max_lon >= ? AND min_lon <= ? AND max_lat >= ? AND min_lat <= ?"
        " ORDER BY code LIMIT ?",
        [tolerance, scope.root_path, *which_params, west, east, south, north, limit],
    )


# -- sensors, incidents, alerts, reports -------------------------------------------------
def sensor_points(store: Store, scope: Scope, bbox: Bbox, zoom: float, *,
                  kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Sensors in scope and in view, by state (normal, warning, alarm, offline), from
    ``sensor_status``; only ``kinds`` when given."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    box, box_params = _bbox_condition(bbox)
    sql = ("SELECT sensor_id, lon, lat, kind, state, value FROM sensor_status"
           f" WHERE ({where}) AND {box}")
    params = params + box_params
    if kinds is not None:
        sql += " AND kind IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(kinds))
    return points_or_cells(
        store, sql, params, zoom,
        props={"id": "sensor_id", "k": "kind", "s": "state", "v": "value"},
        cell_aggs={"a": "count_if(state = 'alarm')", "w": "count_if(state = 'warning')",
                   "o": "count_if(state = 'offline')"},
    )


def incident_points(store: Store, scope: Scope, bbox: Bbox, zoom: float, at: datetime, *,
                    categories: Sequence[str] | None = None,
                    priorities: Sequence[str] | None = None) -> dict[str, Any]:
    """Incidents in scope and in view open at ``at``, by priority and status (overdue
    flagged); only ``categories`` / ``priorities`` when given."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    box, box_params = _bbox_condition(bbox)
    sql = ("SELECT id, lon, lat, priority, status, category,"
           " (resolve_due < ? AND (resolved_at IS NULL OR resolved_at > ?)) AS overdue"
           " FROM incidents"
           f" WHERE ({where}) AND {box} AND reported_at <= ?"
           " AND (closed_at IS NULL OR closed_at > ?)")
    params = [at, at, *params, *box_params, at, at]
    for chosen, column in ((categories, "category"), (priorities, "priority")):
        if chosen is not None:
            sql += f" AND {column} IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(chosen))
    return points_or_cells(
        store, sql, params, zoom,
        props={"id": "id", "p": "priority", "s": "status", "c": "category", "od": "overdue"},
        cell_aggs={"e": "count_if(priority = 'emergency')", "hi": "count_if(priority = 'high')",
                   "od": "count_if(overdue)"},
    )


def alert_points(store: Store, scope: Scope, bbox: Bbox, zoom: float, at: datetime, *,
                 kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Alerts in scope active at ``at``, at their sensor (in view), by level; only ``kinds``
    when given."""
    where, params = scope.data_filter("a.jurisdiction_code", "s.department_code")
    box, box_params = _bbox_condition(bbox, "s.lon", "s.lat")
    sql = ("SELECT a.id, s.lon, s.lat, a.kind, a.level, a.peak_value, a.opened_at"
           " FROM alerts a JOIN sensors s ON s.id = a.sensor_id"
           f" WHERE ({where}) AND {box} AND a.opened_at <= ?"
           " AND (a.closed_at IS NULL OR a.closed_at > ?)")
    params = params + box_params + [at, at]
    if kinds is not None:
        sql += " AND a.kind IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(kinds))
    return points_or_cells(
        store, sql, params, zoom,
        props={"id": "id", "k": "kind", "l": "level", "v": "peak_value"},
        cell_aggs={"a": "count_if(level = 'alarm')"},
    )


def report_cells(store: Store, scope: Scope, bbox: Bbox, zoom: float, at: datetime, *,
                 hours: float) -> dict[str, Any]:
    """Citizen reports (``CITIZEN_SOURCES``) in scope and in view per grid cell, over the
    ``hours`` before ``at``."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    box, box_params = _bbox_condition(bbox)
    sql = ("SELECT lon, lat FROM incidents"
           f" WHERE ({where}) AND {box} AND reported_at > ? AND reported_at <= ?"
           " AND source IN (SELECT unnest(?::VARCHAR[]))")
    params = params + box_params + [at - timedelta(hours=hours), at, list(CITIZEN_SOURCES)]
    return points_or_cells(store, sql, params, zoom, props={}, cell_aggs={}, force_cells=True)
