"""Map building blocks shared by pages: the offline base map, one dash-leaflet GeoJSON pair
per registered layer (client-clustered points + server cells), legends, the MBTiles route.

A page creates the map once and afterwards only replaces the GeoJSON ``data`` props, so the
map keeps its view and nothing is re-created on refresh.

>>> layer_components("wall", get_layer("sensors"), hideout)      # doctest: +SKIP
[GeoJSON(id='wall-sensors-pts', cluster=True, …), GeoJSON(id='wall-sensors-cells', …)]
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import dash
import dash_leaflet as dl
import flask
from dash import html

from core.lookups import incident_category_names, sensor_kind_names
from core.store import Store
from dashboard.context import current_settings
from dashboard.i18n import get_locale
from layers import Layer, LegendItem
from layers.basemap import TILE_ROUTE, BaseMap, MBTiles, MBTilesError, base_map, mbtiles_path

__all__ = ["base_layers", "code_names", "layer_components", "layer_ids", "legend",
           "register_tile_route"]

_CLUSTER = {"radius": 56, "maxZoom": 15}
_EMPTY = {"type": "FeatureCollection", "features": []}


def layer_ids(prefix: str, layer_id: str) -> tuple[str, str]:
    """Component ids of a layer's clustered points and its server cells."""
    return f"{prefix}-{layer_id}-pts", f"{prefix}-{layer_id}-cells"


def layer_components(prefix: str, layer: Layer, hideout: dict[str, Any]) -> list[dl.GeoJSON]:
    """The pair of GeoJSON components for a point layer (one for a cell-only layer)."""
    pts_id, cells_id = layer_ids(prefix, layer.id)
    hide = {**hideout, "layer": layer.id}
    cells = dl.GeoJSON(id=cells_id, data=_EMPTY, hideout=hide,
                       pointToLayer=layer.js(layer.point_to_layer),
                       onEachFeature=layer.js(layer.on_each_feature))
    if layer.kind == "cells":
        return [cells]
    pts = dl.GeoJSON(id=pts_id, data=_EMPTY, hideout=hide, cluster=True,
                     superClusterOptions=_CLUSTER, spiderfyOnMaxZoom=False,
                     zoomToBoundsOnClick=True,
                     pointToLayer=layer.js(layer.point_to_layer),
                     clusterToLayer=layer.js(layer.cluster_to_layer),
                     onEachFeature=layer.js(layer.on_each_feature))
    return [pts, cells]


def current_base_map() -> BaseMap:
    settings = current_settings()
    try:
        return base_map(settings.data_dir, settings.tile_url)
    except MBTilesError:  # a broken file must not take the page down: polygons only
        return BaseMap("polygons")


def base_layers() -> list[Any]:
    """Raster tiles under the polygons when configured (own MBTiles route or intranet XYZ);
    nothing otherwise — the jurisdiction polygons are then the base map."""
    base = current_base_map()
    if base.kind == "polygons":
        return []
    return [dl.TileLayer(url=base.url, minZoom=base.min_zoom, maxZoom=base.max_zoom,
                         opacity=0.7, attribution="")]


def legend(layer: Layer) -> html.Div:
    """A layer's legend: name and swatches, in the request's language."""
    zh = get_locale() == "zh_CN"
    return html.Div(
        [html.Div(layer.name_zh if zh else layer.name_en, className="yw-legend-name")]
        + [_legend_item(item, zh) for item in layer.legend],
        className="yw-layer-legend",
    )


def _legend_item(item: LegendItem, zh: bool) -> html.Span:
    return html.Span(
        [html.Span(className=f"yw-swatch yw-swatch-{item.shape}",
                   style={"--swatch": item.colour}),
         html.Span(item.label_zh if zh else item.label_en)],
        className="yw-legend-item",
    )


def code_names(store: Store) -> dict[str, dict[str, str]]:
    """Names of sensor kinds, incident categories (reference data, not business data) in the
    request's language, for tooltips drawn in the browser."""
    zh = get_locale() == "zh_CN"
    return {"kinds": sensor_kind_names(store, zh=zh),
            "categories": incident_category_names(store, zh=zh)}


def register_tile_route(app: dash.Dash) -> None:
    """Serve ``<data_dir>/basemap.mbtiles`` at ``/tiles/{z}/{x}/{y}`` (login required, like
    every non-public route). A missing tile is 204: nothing to draw, nothing to log."""
    server = app.server
    if "yiwang_tiles" in server.view_functions:
        return
    server.add_url_rule(TILE_ROUTE, "yiwang_tiles", _tile)


def _tile(z: int, x: int, y: int) -> flask.Response:
    path = mbtiles_path(current_settings().data_dir)
    if not path.is_file():
        flask.abort(404)
    try:
        tiles = _open_tiles(str(path), path.stat().st_mtime_ns)
    except MBTilesError:
        flask.abort(404)
    data = tiles.tile(z, x, y)
    if data is None:
        return flask.Response(status=204)
    response = flask.Response(data, mimetype=tiles.media_type)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@lru_cache(maxsize=4)
def _open_tiles(path: str, _mtime_ns: int) -> MBTiles:
    """The file's metadata read once per version of the file (mtime in the cache key)."""
    return MBTiles(Path(path))
