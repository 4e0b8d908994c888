"""Home: the map of the user's part of the city, with drill-down.

The jurisdiction polygons are the base map (no tiles unless ``tile_url`` is set). Clicking
an area (on the map or in the side list) shows its details and its subdivisions. Every code
the browser sends back is looked up again within the user's scope: outside it, nothing.

>>> layout()          # doctest: +SKIP  (called by Dash's router for a logged-in request)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dash
import dash_leaflet as dl
from dash import ALL, Input, Output, dcc, html
from dash.exceptions import PreventUpdate

from core.scope import Scope, ScopeError
from dashboard.context import current_scope, current_settings, current_store
from dashboard.focus import FocusView, density, focus_view
from dashboard.i18n import N_, _, format_datetime, format_number, get_locale, localized_name

dash.register_page(__name__, path="/", name=N_("Overview"), order=0, title="一网统管 · Yiwang")


class ids:  # noqa: N801 - a namespace of component ids
    MAP = "home-map"
    GEO = "home-geo"
    PANEL = "home-panel"
    FOCUS = "home-focus"
    CHILD = "home-child"
    CRUMB = "home-crumb"


LEVEL_NAMES = {
    "province": N_("Province"),
    "city": N_("City"),
    "district": N_("District"),
    "street": N_("Street"),
    "community": N_("Community"),
    "grid": N_("Grid"),
}
# Units after a count of subdivisions: "9 districts", "9 个区县".
COUNT_UNITS = {
    "district": N_("districts"),
    "street": N_("streets"),
    "community": N_("communities"),
    "grid": N_("grids"),
    "city": N_("cities"),
}
_PADDING = [28, 28]


def layout(**_query: str) -> html.Div:
    """The page for the logged-in user, built at request time."""
    try:
        scope = current_scope()
    except ScopeError:
        return html.Div(_("Your account is bound to a jurisdiction that no longer exists. "
                          "Ask a system administrator to fix it."), className="yw-denied")
    view = focus_view(current_store(), scope, scope.root_code)
    if view is None:  # the user's own root is always in scope; guard against a broken tree
        return html.Div(_("Your jurisdiction is not on the map."), className="yw-denied")
    return html.Div(
        [
            html.Section([_map(view), _map_hud(), _legend()], className="yw-home-map"),
            html.Aside(_panel(view, scope), id=ids.PANEL, className="yw-home-panel"),
            dcc.Store(id=ids.FOCUS, data=view.code),
        ],
        className="yw-home",
    )


def _hideout(view: FocusView) -> dict[str, Any]:
    return {"lang": get_locale(), "maxDensity": view.max_density}


def _map(view: FocusView) -> dl.MapContainer:
    layers: list[Any] = []
    tile_url = current_settings().tile_url
    if tile_url:
        layers.append(dl.TileLayer(url=tile_url, maxZoom=18, opacity=0.6))
    layers += [
        dl.GeoJSON(
            id=ids.GEO,
            data=view.geojson,
            hideout=_hideout(view),
            style={"variable": "yiwang.map.style"},
            hoverStyle={"variable": "yiwang.map.hoverStyle"},
            onEachFeature={"variable": "yiwang.map.onEachFeature"},
        ),
        dl.ScaleControl(position="bottomleft", imperial=False),
        dl.ZoomControl(position="topright"),
    ]
    return dl.MapContainer(
        layers,
        id=ids.MAP,
        bounds=view.bounds,
        boundsOptions={"padding": _PADDING},
        # dash-leaflet 1.1.3's viewport tracking throws when only bounds are given (it
        # compares against an unset center); nothing here reads the tracked viewport.
        trackViewport=False,
        zoomSnap=0.25,
        zoomControl=False,
        attributionControl=False,
        className="yw-map",
    )


def _map_hud() -> html.Div:
    return html.Div(
        [
            html.Div(_("Jurisdiction map"), className="yw-hud-title"),
            html.Div(_("Click an area to drill down"), className="yw-hud-hint"),
        ],
        className="yw-map-hud",
    )


def _legend() -> html.Div:
    return html.Div(
        [
            html.Div(_("Population density"), className="yw-legend-title"),
            html.Div(className="yw-legend-ramp"),
            html.Div([html.Span(_("low")), html.Span(_("high"))], className="yw-legend-ends"),
        ],
        className="yw-legend",
    )


def _panel(view: FocusView, scope: Scope) -> list[Any]:
    focus, kids = view.focus, view.children
    density_value = density(focus)
    child_unit = _(COUNT_UNITS[kids[0]["level"]]) if kids else ""
    density_digits = 1 if density_value is not None and density_value < 100 else 0
    parts: list[Any] = [
        html.Nav(_crumbs(view), className="yw-crumbs"),
        html.Div(
            [
                html.H2(localized_name(focus), className="yw-focus-name"),
                html.Span(_(LEVEL_NAMES[focus["level"]]), className="yw-badge"),
            ],
            className="yw-focus-head",
        ),
        html.Div([_("Code"), " ", focus["code"]], className="yw-focus-code"),
        html.Div(
            [
                _kpi(_("Subdivisions"), format_number(len(kids)), child_unit),
                _kpi(_("Population"), format_number(focus["population"]), _("people")),
                _kpi(_("Area"), format_number(focus["area_km2"], 1), "km²"),
                _kpi(_("Density"), format_number(density_value, density_digits), _("per km²")),
            ],
            className="yw-kpis",
        ),
    ]
    if not scope.business_data:
        parts.append(html.Div(
            _("Platform role: you see boundaries only, no business data."), className="yw-note"
        ))
    parts.append(_child_table(kids))
    parts.append(html.Div([_("Refreshed"), " ", format_datetime(datetime.now(), "medium")],
                          className="yw-panel-foot"))
    return parts


def _crumbs(view: FocusView) -> list[Any]:
    items: list[Any] = []
    if len(view.crumbs) < 2:
        return items
    for i, crumb in enumerate(view.crumbs):
        if i:
            items.append(html.Span("›", className="yw-crumb-sep"))
        if crumb["code"] == view.code:
            items.append(html.Span(localized_name(crumb), className="yw-crumb current"))
        else:
            items.append(html.Button(localized_name(crumb), className="yw-crumb",
                                     id={"type": ids.CRUMB, "code": crumb["code"]}))
    return items


def _kpi(label: str, value: str, unit: str) -> html.Div:
    return html.Div(
        [
            html.Div(label, className="yw-kpi-label"),
            html.Div([html.Span(value, className="yw-kpi-value"),
                      html.Span(unit, className="yw-kpi-unit")]),
        ],
        className="yw-kpi",
    )


def _child_table(kids: list[dict[str, Any]]) -> html.Div:
    if not kids:
        return html.Div(_("No subdivisions."), className="yw-empty")
    head = html.Div(
        [html.Span(_("Name")), html.Span(_("Population")), html.Span(_("Area (km²)"))],
        className="yw-row yw-row-head",
    )
    top = max((k["population"] or 0 for k in kids), default=0) or 1
    rows = [
        html.Button(
            [
                html.Span(
                    [
                        html.Span(localized_name(k)),
                        html.Span(className="yw-row-bar",
                                  style={"width": f"{100 * (k['population'] or 0) / top:.0f}%"}),
                    ],
                    className="yw-row-name",
                ),
                html.Span(format_number(k["population"])),
                html.Span(format_number(k["area_km2"], 1)),
            ],
            id={"type": ids.CHILD, "code": k["code"]},
            className="yw-row",
        )
        for k in kids
    ]
    return html.Div([head, html.Div(rows, className="yw-rows")], className="yw-table")


def _requested_code(click_data: dict[str, Any] | None) -> str | None:
    """The jurisdiction code the browser asks for, from a map click or a button."""
    trigger = dash.ctx.triggered_id
    if trigger == ids.GEO:
        props = (click_data or {}).get("properties") or {}
        code = props.get("code")
    elif isinstance(trigger, dict) and trigger.get("type") in (ids.CHILD, ids.CRUMB):
        # a list re-rendered by this callback reports its new buttons with no click
        code = trigger.get("code") if dash.ctx.triggered[0].get("value") else None
    else:
        code = None
    return code if isinstance(code, str) and code else None


def drill(click_data: dict[str, Any] | None, _child_clicks: list, _crumb_clicks: list) -> tuple:
    """Focus on the requested jurisdiction, if it is inside the user's scope."""
    code = _requested_code(click_data)
    scope = current_scope()
    view = focus_view(current_store(), scope, code) if code else None
    if view is None:
        raise PreventUpdate
    viewport = {"bounds": view.bounds, "transition": "flyToBounds",
                "options": {"padding": _PADDING, "duration": 0.6}}
    return view.geojson, _hideout(view), viewport, _panel(view, scope), view.code


def register_callbacks(app: dash.Dash) -> None:
    """Wire this page's callbacks into ``app`` (called by ``create_app``)."""
    app.callback(
        Output(ids.GEO, "data"),
        Output(ids.GEO, "hideout"),
        Output(ids.MAP, "viewport"),
        Output(ids.PANEL, "children"),
        Output(ids.FOCUS, "data"),
        Input(ids.GEO, "clickData"),
        Input({"type": ids.CHILD, "code": ALL}, "n_clicks"),
        Input({"type": ids.CRUMB, "code": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )(drill)
