"""Points or cells: the browser never receives more than it can draw.

A point layer's scoped, bbox-filtered query is read with a limit of ``MAX_POINTS + 1``
rows. Up to ``MAX_POINTS`` things in view go to the browser as points (it clusters them itself, supercluster); more are
aggregated in DuckDB into square grid cells of about ``CELL_PX`` screen pixels at the
request's zoom, never more than ``MAX_CELLS`` of them (the cell doubles until they fit). So a
point layer's response holds at most ``max(MAX_POINTS, MAX_CELLS)`` features whatever the
data size.

>>> fc = points_or_cells(store, "SELECT id, lon, lat, state FROM t", [], request,
...                      props={"s": "state"}, cell_aggs={"a": "count_if(state = 'alarm')"})
...                                                              # doctest: +SKIP
>>> fc["meta"]["mode"], len(fc["features"]) <= MAX_CELLS          # doctest: +SKIP
('cells', True)
"""

from __future__ import annotations

from typing import Any

from core.store import Store
from layers.registry import LayerRequest

__all__ = ["CELL_PX", "MAX_CELLS", "MAX_POINTS", "bbox_condition", "padded_bbox",
           "point_feature", "points_or_cells"]

MAX_POINTS = 600
MAX_CELLS = 1200
CELL_PX = 64
_DIGITS = 5  # 5 decimals of a degree ≈ 1 m: enough for a wall, and short


def padded_bbox(request: LayerRequest, pad: float = 0.1) -> tuple[float, float, float, float]:
    """The request's bbox grown by ``pad`` of its size on each side (panning stays filled)."""
    west, south, east, north = request.bbox
    dx, dy = (east - west) * pad, (north - south) * pad
    return (max(-180.0, west - dx), max(-90.0, south - dy), min(180.0, east + dx),
            min(90.0, north + dy))


def bbox_condition(request: LayerRequest, lon: str = "lon", lat: str = "lat") -> tuple[str, list]:
    """SQL condition keeping points inside the (padded) bbox, and its parameters."""
    west, south, east, north = padded_bbox(request)
    return f"{lon} BETWEEN ? AND ? AND {lat} BETWEEN ? AND ?", [west, east, south, north]


def point_feature(lon: float, lat: float, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature",
            "geometry": {"type": "Point",
                         "coordinates": [round(lon, _DIGITS), round(lat, _DIGITS)]},
            "properties": props}


def points_or_cells(store: Store, base_sql: str, params: list, request: LayerRequest, *,
                    props: dict[str, str], cell_aggs: dict[str, str],
                    max_points: int = MAX_POINTS, max_cells: int = MAX_CELLS,
                    force_cells: bool = False) -> dict[str, Any]:
    """Points (≤ ``max_points``) or grid cells (≤ ``max_cells``) of ``base_sql``'s rows.

    ``base_sql`` selects at least ``lon`` and ``lat`` (already scoped and bbox-filtered);
    ``props`` maps short property names to its columns for points; ``cell_aggs`` maps
    property names to aggregate expressions for cells (``n``, the count, is always there).
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
    size = request.cell_degrees(CELL_PX)
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
