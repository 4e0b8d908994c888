"""The wall screen (大屏): kiosk page for the command-centre wall, 1920×1080 to 3840×2160.

KPI tiles, a live map, a ticker of the latest events, a clock and a rotation playlist of views
(city overview, flood watch, air quality, incidents). Every ``refresh`` seconds (default 10)
one callback fetches a scoped ``layers.wall.wall_snapshot`` and replaces data props only: the
map is created once and keeps its view. A tick asks again only once the previous answer has
arrived (or 30 s passed), so a slow server still shows every answer. A banner shows stale sources (``source_freshness``);
another, driven in the browser, shows when the server stops answering.

URL options: ``/wall?views=city,flood&dwell=30&refresh=10&view=flood``.

>>> layout(dwell="20", refresh="5")        # doctest: +SKIP  (inside a logged-in request)
"""

from __future__ import annotations

import math
from typing import Any

import dash
import dash_leaflet as dl
from dash import ClientsideFunction, Input, Output, State, dcc, html

from core.jurisdictions import get_jurisdiction
from core.scope import Scope, ScopeError
from dashboard.context import current_scope, current_store
from dashboard.i18n import N_, _, format_datetime, format_number, get_locale, localized_name
from dashboard.mapview import (
    base_layers,
    code_names,
    layer_components,
    layer_ids,
    legend,
    register_tile_route,
)
from dashboard.shell import ids as shell_ids
from layers import LayerRequest, get_layer, layer_features
from layers.wall import (
    LOCAL_UTC_OFFSET,
    NO_RESOLVED_TODAY,
    NO_SENSORS,
    VIEWS,
    Kpi,
    shared_wall_snapshot,
)

dash.register_page(__name__, path="/wall", name=N_("Wall screen"), order=90,
                   roles=["commander", "leader", "grassroots"], title="一网统管 · 大屏")


class ids:  # noqa: N801 - a namespace of component ids
    ROOT = "wall-root"
    MAP = "wall-map"
    BASE = "wall-base"
    KPIS = "wall-kpis"
    TICKER = "wall-ticker"
    BANNER = "wall-banner"
    OFFLINE = "wall-offline"
    CLOCK = "wall-clock"
    REFRESH = "wall-refresh"
    TRIGGER = "wall-trigger"
    ROTATE = "wall-rotate"
    VIEW = "wall-view"
    VIEW_NAME = "wall-view-name"
    PLAYLIST = "wall-playlist"
    VIEWPORT = "wall-viewport"
    CONFIG = "wall-config"
    SEQ = "wall-seq"
    TOGGLES = "wall-toggles"
    UPDATED = "wall-updated"


POINT_LAYERS = ("sensors", "incidents", "alerts")
CELL_LAYERS = ("reports",)
TOGGLEABLE = ("jurisdictions", *POINT_LAYERS, *CELL_LAYERS)
DEFAULT_DWELL = 30
DEFAULT_REFRESH = 10

KPI_LABELS = {
    "open": N_("Incidents open"),
    "overdue": N_("Incidents overdue"),
    "on_time": N_("Resolved on time today"),
    "online": N_("Sensors online now"),
    "alerts": N_("Alerts active now"),
    "reports": N_("Citizen reports so far today"),
}
# which way is good: a rise of these is bad news
_RISE_IS_BAD = {"open", "overdue", "alerts", "reports"}
ACTIONS = {
    "report": N_("incident reported"), "dispatch": N_("incident dispatched"),
    "claim": N_("incident claimed"),
    "start": N_("handling started"), "resolve": N_("incident resolved"),
    "verify": N_("incident verified"),
    "verify_failed": N_("failed verification"), "close": N_("incident closed"),
    "rate": N_("incident rated"),
    "return": N_("incident returned"), "reopen": N_("incident reopened"),
    "supervise": N_("incident supervised"),
    "transfer": N_("incident transferred"), "request_extension": N_("extension requested"),
    "approve_extension": N_("extension approved"), "reject_extension": N_("extension refused"),
    "co_request": N_("co-handling requested"), "co_done": N_("co-handling done"),
    "escalate": N_("incident escalated"), "merge": N_("incident merged"),
    "alert_warning": N_("warning alert opened"), "alert_alarm": N_("alarm alert opened"),
}


def _int_option(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))


def _config(query: dict[str, str]) -> dict[str, Any]:
    """Playlist, dwell and refresh from the URL, each bounded (bad values fall back)."""
    views = [v for v in (query.get("views") or "").split(",") if v in VIEWS] or list(VIEWS)
    start = query.get("view") if query.get("view") in views else views[0]
    return {"views": views, "start": start,
            "dwell": _int_option(query.get("dwell"), DEFAULT_DWELL, 5, 3600),
            "refresh": _int_option(query.get("refresh"), DEFAULT_REFRESH, 1, 300)}


def _estimate_zoom(bounds: list[list[float]], width_px: float = 1100) -> float:
    """The zoom at which ``bounds`` fill about ``width_px`` (until the map reports its own)."""
    span = max(bounds[1][1] - bounds[0][1], 1e-6)
    return max(0.0, min(18.0, math.log2(width_px * 360.0 / (256.0 * span))))


def layout(**query: str) -> html.Div:
    """The wall for the logged-in user's scope."""
    try:
        scope = current_scope()
    except ScopeError:
        return html.Div(_("Your account is bound to a jurisdiction that no longer exists. "
                          "Ask a system administrator to fix it."), className="yw-denied")
    store = current_store()
    root = get_jurisdiction(store, scope, scope.root_code)
    if root is None:
        return html.Div(_("Your jurisdiction is not on the map."), className="yw-denied")
    config = _config(query)
    bounds = [[root["min_lat"], root["min_lon"]], [root["max_lat"], root["max_lon"]]]
    viewport = {"bbox": [root["min_lon"], root["min_lat"], root["max_lon"], root["max_lat"]],
                "zoom": round(_estimate_zoom(bounds), 2)}
    return html.Div(
        [
            dcc.Store(id=ids.CONFIG, data=config),
            dcc.Store(id=ids.VIEW, data=config["start"]),
            dcc.Store(id=ids.VIEWPORT, data=viewport),
            dcc.Store(id=ids.SEQ, data=0),
            dcc.Store(id=ids.TRIGGER, data=0),
            dcc.Interval(id=ids.REFRESH, interval=config["refresh"] * 1000),
            dcc.Interval(id=ids.ROTATE, interval=config["dwell"] * 1000,
                         disabled=len(config["views"]) < 2),
            _top_bar(root),
            html.Div(id=ids.BANNER, className="yw-wall-banner"),
            html.Div(_("Server unreachable: the figures below may be out of date."),
                     id=ids.OFFLINE, className="yw-wall-offline"),
            html.Section(id=ids.KPIS, className="yw-wall-kpis",
                         children=[_kpi_tile(Kpi(k, None, None, "count", "none"))
                                   for k in KPI_LABELS]),
            html.Section([_map(scope, bounds, viewport), _map_panel(scope)],
                         className="yw-wall-map"),
            html.Aside([html.H3(_("Latest events"), className="yw-wall-h"),
                        html.Ol(id=ids.TICKER, className="yw-wall-ticker")],
                       className="yw-wall-side"),
        ],
        id=ids.ROOT, className="yw-wall",
    )


def _top_bar(root: dict[str, Any]) -> html.Header:
    return html.Header(
        [
            html.Div([html.Span("一网统管", className="yw-wall-brand-zh"),
                      html.Span(localized_name(root), className="yw-wall-place")],
                     className="yw-wall-brand"),
            html.Div(id=ids.VIEW_NAME, className="yw-wall-view"),
            html.Ol(id=ids.PLAYLIST, className="yw-wall-playlist"),
            html.Div(id=ids.UPDATED, className="yw-wall-updated"),
            html.Div(id=ids.CLOCK, className="yw-wall-clock"),
        ],
        className="yw-wall-top",
    )


def _map(scope: Scope, bounds: list[list[float]], viewport: dict[str, Any]) -> dl.MapContainer:
    store = current_store()
    lang = get_locale()
    request = LayerRequest(tuple(viewport["bbox"]), viewport["zoom"])
    polygons = layer_features(store, scope, "jurisdictions", request)
    hideout = {"lang": lang, **code_names(store)}
    children: list[Any] = [*base_layers(),
                           dl.GeoJSON(id=ids.BASE, data=polygons,
                                      hideout={"lang": lang, "values": {}, "labels": True},
                                      style={"variable": "yiwang.layers.choroplethStyle"},
                                      onEachFeature={"variable": "yiwang.layers.jurisdictionLabel"})]
    for layer_id in (*CELL_LAYERS, *POINT_LAYERS):
        layer = get_layer(layer_id)
        if layer.allows(scope.role):
            children += layer_components("wall", layer, hideout)
    children.append(dl.ScaleControl(position="bottomright", imperial=False))
    moved = {"variable": "yiwang.layers.wallMoved"}
    return dl.MapContainer(
        children, id=ids.MAP, bounds=bounds, boundsOptions={"padding": [24, 24]},
        trackViewport=False, zoomSnap=0.25, zoomControl=False, attributionControl=False,
        eventHandlers={"moveend": moved, "zoomend": moved, "resize": moved,
                       "layeradd": moved},
        className="yw-map yw-wall-leaflet",
    )


def _map_panel(scope: Scope) -> html.Div:
    """Layer toggles with their legends, over the map."""
    options = []
    for layer_id in TOGGLEABLE:
        layer = get_layer(layer_id)
        if layer.allows(scope.role):
            options.append({"label": legend(layer), "value": layer_id})
    return html.Div(
        dcc.Checklist(id=ids.TOGGLES, options=options, value=[o["value"] for o in options],
                      className="yw-wall-toggles", inputClassName="yw-wall-toggle"),
        className="yw-wall-legend",
    )


# -- refresh ---------------------------------------------------------------------------
def _request(viewport: dict[str, Any] | None, scope: Scope) -> LayerRequest:
    """The map's bbox/zoom from the browser, checked; the scope's extent when unusable."""
    try:
        bbox = tuple(float(v) for v in (viewport or {})["bbox"])
        return LayerRequest(bbox, float((viewport or {})["zoom"]))
    except (KeyError, TypeError, ValueError):
        root = get_jurisdiction(current_store(), scope, scope.root_code)
        bounds = [[root["min_lat"], root["min_lon"]], [root["max_lat"], root["max_lon"]]]
        return LayerRequest((root["min_lon"], root["min_lat"], root["max_lon"],
                             root["max_lat"]), _estimate_zoom(bounds))


# why a tile shows no number, instead of a bare dash
WHY_NONE = {
    NO_RESOLVED_TODAY: N_("No incident resolved yet today"),
    NO_SENSORS: N_("No sensors in your area"),
}


def _format_kpi(kpi: Kpi, value: float | None) -> str:
    if value is None:
        return "—"
    if kpi.unit == "percent":
        return format_number(value, 1) + "%"
    return format_number(value)


def _kpi_tile(kpi: Kpi) -> html.Div:
    change = kpi.change
    if change is None:
        delta = html.Span(_("no figure for yesterday"), className="yw-wall-delta-none")
    else:
        arrow = "▲" if change > 0 else "▼" if change < 0 else "＝"
        bad = (change > 0) == (kpi.id in _RISE_IS_BAD) and change != 0
        digits = 1 if kpi.unit == "percent" else 0
        shown = format_number(abs(change), digits) + (" pt" if kpi.unit == "percent" else "")
        delta = html.Span([_("vs yesterday"), " ", arrow, " ", shown],
                          className="yw-wall-delta " + ("bad" if bad else "good"))
    if kpi.value is None and kpi.why_none in WHY_NONE:
        value = html.Div(_(WHY_NONE[kpi.why_none]), className="yw-wall-kpi-value why-none")
    else:
        value = html.Div(_format_kpi(kpi, kpi.value), className="yw-wall-kpi-value")
    return html.Div(
        [html.Div(_(KPI_LABELS[kpi.id]), className="yw-wall-kpi-label"),
         value,
         html.Div(delta, className="yw-wall-kpi-delta")],
        className=f"yw-wall-kpi level-{kpi.level}", id=f"wall-kpi-{kpi.id}",
    )


def _event_row(event: dict[str, Any]) -> html.Li:
    zh = get_locale() == "zh_CN"
    local = event["ts"] + LOCAL_UTC_OFFSET
    what = (event["what_zh"] if zh else event["what_en"] or event["what_zh"]) or ""
    place = (event["place_zh"] if zh else event["place_en"] or event["place_zh"]) or ""
    action = ACTIONS.get(event["action"])
    return html.Li(
        [html.Span(local.strftime("%H:%M:%S"), className="yw-wall-ev-time"),
         html.Span(what, className="yw-wall-ev-what"),
         html.Span(_(action) if action else event["action"], className="yw-wall-ev-action"),
         html.Span(place, className="yw-wall-ev-place")],
        className=f"yw-wall-ev level-{event['level']} type-{event['type']}",
    )


def _banner(stale: list[dict[str, Any]]) -> tuple[Any, str]:
    if not stale:
        return [], "yw-wall-banner"
    parts = []
    for source in stale:
        seen = source["last_success"]
        when = (format_datetime(seen + LOCAL_UTC_OFFSET, "short") if seen else _("no data yet"))
        failed = _("last run failed") + ", " if source["last_status"] == "failed" else ""
        last = _("last data at")
        parts.append(f"{source['name']} ({failed}{last} {when})")
    return [html.Strong(_("Stale data sources:")), " ", "; ".join(parts)], \
        "yw-wall-banner show"


def _values_hideout(values: dict[str, float | None], indicator: str | None) -> dict[str, Any]:
    numbers = [v for v in values.values() if v is not None]
    return {"lang": get_locale(), "values": values, "labels": True, "indicator": indicator,
            "min": min(numbers, default=0), "max": max(numbers, default=1)}


def refresh(_n: int | None, view_id: str | None, viewport: dict[str, Any] | None,
            toggles: list[str] | None, seq: int | None) -> tuple:
    """One wall refresh: layers, choropleth values, KPIs, ticker, banner, playlist."""
    scope = current_scope()
    view_id = view_id if view_id in VIEWS else "city"
    shown = {t for t in (toggles or []) if t in TOGGLEABLE}
    hidden = frozenset(TOGGLEABLE) - shown
    snap = shared_wall_snapshot(current_store(), scope, view_id, _request(viewport, scope),
                                hidden)
    empty = {"type": "FeatureCollection", "features": []}
    data: list[Any] = []
    for layer_id in POINT_LAYERS:
        fc = snap.layers.get(layer_id, empty)
        cells = fc.get("meta", {}).get("mode") == "cells"
        data += [empty if cells else fc, fc if cells else empty]
    for layer_id in CELL_LAYERS:
        data.append(snap.layers.get(layer_id, empty))
    values = snap.values if "jurisdictions" in shown else {}
    zh = get_locale() == "zh_CN"
    banner, banner_class = _banner(snap.stale)
    playlist = [html.Li(VIEWS[v].name_zh if zh else VIEWS[v].name_en,
                        className="active" if v == view_id else "")
                for v in VIEWS]
    updated = [_("Wall updated"), " ",
               (snap.now + LOCAL_UTC_OFFSET).strftime("%H:%M:%S")]
    return (*data, _values_hideout(values, snap.indicator),
            [_kpi_tile(k) for k in snap.kpis], [_event_row(e) for e in snap.events],
            banner, banner_class, snap.view.name_zh if zh else snap.view.name_en, playlist,
            updated, (seq or 0) + 1)


def register_callbacks(app: dash.Dash) -> None:
    """The refresh (server), rotation, clock and liveness (browser) callbacks; the tiles."""
    register_tile_route(app)
    outputs = []
    for layer_id in POINT_LAYERS:
        pts, cells = layer_ids("wall", layer_id)
        outputs += [Output(pts, "data"), Output(cells, "data")]
    for layer_id in CELL_LAYERS:
        outputs.append(Output(layer_ids("wall", layer_id)[1], "data"))
    app.callback(
        *outputs,
        Output(ids.BASE, "hideout"),
        Output(ids.KPIS, "children"),
        Output(ids.TICKER, "children"),
        Output(ids.BANNER, "children"),
        Output(ids.BANNER, "className"),
        Output(ids.VIEW_NAME, "children"),
        Output(ids.PLAYLIST, "children"),
        Output(ids.UPDATED, "children"),
        Output(ids.SEQ, "data"),
        Input(ids.TRIGGER, "data"),
        Input(ids.VIEW, "data"),
        Input(ids.VIEWPORT, "data"),
        Input(ids.TOGGLES, "value"),
        State(ids.SEQ, "data"),
    )(refresh)
    # a tick asks for a refresh only when the previous answer is in: Dash drops an answer
    # that arrives after a newer request, so a slow server would otherwise never show one
    app.clientside_callback(
        ClientsideFunction(namespace="yiwangLayers", function_name="wallTick"),
        Output(ids.TRIGGER, "data"),
        Input(ids.REFRESH, "n_intervals"),
        State(ids.SEQ, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="yiwangLayers", function_name="wallRotate"),
        Output(ids.VIEW, "data"),
        Input(ids.ROTATE, "n_intervals"),
        State(ids.CONFIG, "data"),
        State(ids.VIEW, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="yiwang", function_name="clock"),
        Output(ids.CLOCK, "children"),
        Input(shell_ids.TICK, "n_intervals"),
        State(shell_ids.LOCALE, "data"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="yiwangLayers", function_name="wallOnline"),
        Output(ids.OFFLINE, "className"),
        Input(shell_ids.TICK, "n_intervals"),
        State(ids.SEQ, "data"),
        State(ids.CONFIG, "data"),
    )
