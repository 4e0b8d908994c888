"""Indicators (驾驶舱): pick an indicator and a period, see which area is worst, drill down.

A choropleth of the current jurisdiction's children (click one to go down a level, the
breadcrumbs go back up), a ranking, a trend and a table, linked: hovering or selecting an
area in one highlights it in the others. The rows behind a number open in a list with the
same filters; the table and the list export to CSV and XLSX; the charts to PNG (the chart
toolbar, in the browser). The URL carries the whole state, so a link reopens the same view
within the opener's own scope: every code the browser sends is checked again in ``core``,
and a refusal is audited there.

>>> layout(ind="overdue", code="320281101")     # doctest: +SKIP  (Dash calls it per request)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dash
import dash_leaflet as dl
import plotly.graph_objects as go
from dash import ALL, ClientsideFunction, Input, Output, Patch, State, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from core.indicators import INDICATORS, trend
from core.jurisdictions import get_jurisdiction
from core.lookups import jurisdiction_level, jurisdiction_names
from core.roles import Role
from core.scope import ScopeError
from dashboard.context import current_scope, current_settings, current_store
from dashboard.i18n import N_, _, get_locale, localized_name
from dashboard.indicator_view import (
    GOOD,
    NODATA,
    DrillView,
    ViewState,
    build_view,
    detail_rows,
    export_bytes,
    format_value,
    local_offset_hours,
    parse_state,
    period_bounds,
    state_search,
    table_rows,
    worst_first,
)

dash.register_page(__name__, path="/indicators", name=N_("Indicators"), order=10,
                   title="驾驶舱 · Yiwang", roles=[Role.LEADER, Role.COMMANDER])


class ids:  # noqa: N801 - a namespace of component ids
    STATE = "ind-state"
    VALUES = "ind-values"
    HOVER = "ind-hover"
    URL = "ind-url"
    URL_SINK = "ind-url-sink"
    INDICATOR = "ind-indicator"
    PERIOD = "ind-period"
    DATES = "ind-dates"
    COMPARE = "ind-compare"
    COLOUR = "ind-colour"
    CRUMBS = "ind-crumbs"
    CRUMB = "ind-crumb"
    HEADLINE = "ind-headline"
    MAP = "ind-map"
    GEO = "ind-geo"
    LEGEND = "ind-legend"
    RANKING = "ind-ranking"
    TREND = "ind-trend"
    TABLE = "ind-table"
    CSV = "ind-csv"
    XLSX = "ind-xlsx"
    DOWNLOAD = "ind-download"
    OPEN_DETAIL = "ind-open-detail"
    DETAIL = "ind-detail"
    DETAIL_TITLE = "ind-detail-title"
    DETAIL_BODY = "ind-detail-body"
    DETAIL_CLOSE = "ind-detail-close"
    DETAIL_CSV = "ind-detail-csv"
    DETAIL_XLSX = "ind-detail-xlsx"


PERIOD_LABELS = {"today": N_("Today"), "7d": N_("7 days"), "30d": N_("30 days"),
                 "custom": N_("Custom")}
_PADDING = [24, 24]
_GRAPH_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2},
                 "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"]}
_TEXT, _MUTED, _GRID = "#e8f2ff", "#8fa8c9", "rgba(42,106,166,0.35)"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _name(ind_or_row: Any) -> str:
    if isinstance(ind_or_row, dict):
        return localized_name(ind_or_row)
    return ind_or_row.name_en if get_locale() == "en" else ind_or_row.name_zh


def layout(**query: str) -> html.Div:
    """The page for the logged-in user and the state in the URL, built at request time."""
    try:
        scope = current_scope()
    except ScopeError:
        return html.Div(_("Your account is bound to a jurisdiction that no longer exists. "
                          "Ask a system administrator to fix it."), className="yw-denied")
    state = parse_state(query)
    store = current_store()
    focus = (get_jurisdiction(store, scope, state.code) if state.code else None) \
        or get_jurisdiction(store, scope, scope.root_code)
    return html.Div(
        [
            dcc.Store(id=ids.STATE, data=state.to_dict()),
            dcc.Store(id=ids.VALUES, data=[]),
            dcc.Store(id=ids.HOVER, data=None),
            dcc.Store(id=ids.URL, data=None),
            html.Div(id=ids.URL_SINK, hidden=True),
            dcc.Download(id=ids.DOWNLOAD),
            _toolbar(state),
            html.Section([_map(focus), html.Div(id=ids.LEGEND, className="yw-ind-legend")],
                         className="yw-ind-map"),
            html.Section([html.Nav(id=ids.CRUMBS, className="yw-crumbs yw-ind-crumbs"),
                          html.Div(id=ids.HEADLINE, className="yw-ind-headline"),
                          dcc.Graph(id=ids.RANKING, config=_GRAPH_CONFIG,
                                    className="yw-ind-graph", clear_on_unhover=True)],
                         className="yw-ind-card yw-ind-rank"),
            html.Section(dcc.Graph(id=ids.TREND, config=_GRAPH_CONFIG,
                                   className="yw-ind-graph"),
                         className="yw-ind-card yw-ind-trend"),
            html.Section(_table(), className="yw-ind-card yw-ind-table"),
            html.Section(_detail_frame(), id=ids.DETAIL, className="yw-ind-detail",
                         hidden=True),
        ],
        className="yw-ind" + ("" if scope.business_data else " yw-ind-platform"),
    )


def _toolbar(state: ViewState) -> html.Div:
    options = [{"label": _name(ind), "value": ind.id} for ind in INDICATORS.values()]
    return html.Div(
        [
            dcc.Dropdown(id=ids.INDICATOR, options=options, value=state.indicator,
                         clearable=False, searchable=False, className="yw-ind-select"),
            dcc.RadioItems(id=ids.PERIOD, value=state.period, className="yw-ind-periods",
                           inputClassName="yw-ind-radio", labelClassName="yw-ind-period",
                           options=[{"label": _(label), "value": key}
                                    for key, label in PERIOD_LABELS.items()]),
            dcc.DatePickerRange(id=ids.DATES, start_date=state.start, end_date=state.end,
                                display_format="YYYY-MM-DD", className="yw-ind-dates",
                                minimum_nights=0),
            dcc.Checklist(id=ids.COMPARE, value=["cmp"] if state.compare else [],
                          options=[{"label": _("Compare with previous period"),
                                    "value": "cmp"}],
                          className="yw-ind-compare"),
            dcc.RadioItems(id=ids.COLOUR, value=state.colour, className="yw-ind-periods",
                           inputClassName="yw-ind-radio", labelClassName="yw-ind-period",
                           options=[{"label": _("By rank"), "value": "rank"},
                                    {"label": _("By target"), "value": "target"}]),
            html.Div(className="yw-header-spacer"),
            html.Button(_("Rows behind the number"), id=ids.OPEN_DETAIL,
                        className="yw-ind-button"),
            html.Button("CSV", id=ids.CSV, className="yw-ind-button",
                        title=_("Export the table as CSV")),
            html.Button("XLSX", id=ids.XLSX, className="yw-ind-button",
                        title=_("Export the table as XLSX")),
        ],
        className="yw-ind-toolbar",
    )


def _map(focus: dict[str, Any] | None) -> dl.MapContainer:
    """The choropleth's map, opened on the focus's bounds (it used to open on the whole
    world and fly into the city, scaling its SVG ~500× on the way). The size it follows is
    its container's (assets/layers.js observes it), not only the window's."""
    layers: list[Any] = []
    tile_url = current_settings().tile_url
    if tile_url:
        layers.append(dl.TileLayer(url=tile_url, maxZoom=18, opacity=0.5))
    layers += [
        dl.GeoJSON(id=ids.GEO, data=None, hideout={"selected": None},
                   style={"variable": "yiwang.ind.style"},
                   hoverStyle={"variable": "yiwang.map.hoverStyle"},
                   onEachFeature={"variable": "yiwang.ind.onEachFeature"},
                   eventHandlers={"mouseover": {"variable": "yiwang.ind.mouseover"}}),
        dl.ScaleControl(position="bottomleft", imperial=False),
        dl.ZoomControl(position="topright"),
    ]
    view: dict[str, Any] = {"center": [0, 0], "zoom": 2}
    if focus is not None:
        view = {"bounds": [[focus["min_lat"], focus["min_lon"]],
                           [focus["max_lat"], focus["max_lon"]]],
                "boundsOptions": {"padding": _PADDING}}
    return dl.MapContainer(layers, id=ids.MAP, trackViewport=False, zoomSnap=0.25,
                           zoomControl=False, attributionControl=False, className="yw-map",
                           **view)


def _table() -> dash_table.DataTable:
    return dash_table.DataTable(
        id=ids.TABLE, data=[], columns=[], page_action="none", sort_action="native",
        fixed_rows={"headers": True}, style_table={"height": "100%", "overflowY": "auto"},
        style_as_list_view=True, cell_selectable=True,
        style_header={"backgroundColor": "#0a1a31", "color": _MUTED, "fontWeight": "normal",
                      "borderBottom": "1px solid #2a6aa6", "fontSize": "14px"},
        style_cell={"backgroundColor": "transparent", "color": _TEXT, "fontSize": "15px",
                    "fontFamily": "inherit", "border": "none", "padding": "6px 10px",
                    "borderBottom": "1px solid rgba(22,58,99,0.7)"},
        style_cell_conditional=[{"if": {"column_id": "name"}, "textAlign": "left"}],
    )


# -- rendering ----------------------------------------------------------------------------
def _headline(view: DrillView) -> list[Any]:
    ind, now = view.indicator, view.focus_value
    value = None if now is None else now.value
    before = None if view.focus_previous is None else view.focus_previous.value
    parts: list[Any] = [
        html.Div([html.Span(_name(view.focus), className="yw-ind-focus"),
                  html.Span(_name(ind), className="yw-badge")], className="yw-ind-head"),
        html.Div([html.Span(format_value(ind, value), className="yw-ind-big"),
                  html.Span(ind.unit if ind.unit != "%" else "", className="yw-kpi-unit")]),
    ]
    if before is not None and value is not None:
        delta = value - before
        better = (delta > 0) == (ind.good == "up") if delta else None
        arrow = "▲" if delta > 0 else ("▼" if delta < 0 else "＝")
        parts.append(html.Div(
            [html.Span(f"{arrow} {abs(delta):,.{ind.digits}f}",
                       className="yw-ind-delta " + {True: "better", False: "worse",
                                                    None: ""}[better]),
             html.Span(" " + _("vs previous period") + f" {format_value(ind, before)}",
                       className="yw-ind-prev")]))
    if ind.snapshot:
        parts.append(html.Div(_("Current value; the period does not apply."),
                              className="yw-ind-prev"))
    parts.append(html.Div(ind.definition_en if get_locale() == "en" else ind.definition_zh,
                          className="yw-ind-def"))
    return parts


def _ranking(view: DrillView) -> go.Figure:
    ind = view.indicator
    ordered = list(reversed(worst_first(ind, view.values)))  # worst at the top of the chart
    names = [_name({"name_zh": v.name_zh, "name_en": v.name_en}) for v in ordered]
    fig = go.Figure(go.Bar(
        x=[v.value if v.value is not None else 0 for v in ordered], y=names, orientation="h",
        customdata=[v.code for v in ordered],
        text=[format_value(ind, v.value) for v in ordered], textposition="auto",
        marker={"color": [view.colours.get(v.code, NODATA) for v in ordered],
                "line": {"width": [0] * len(ordered), "color": "#ffd166"}},
        hovertemplate="%{y}: %{text}<extra></extra>"))
    _dark(fig, _("Ranking (worst at the top)"))
    fig.update_layout(margin={"l": 8, "r": 12, "t": 36, "b": 24}, bargap=0.25,
                      yaxis={"automargin": True})
    return fig


def _trend(view: DrillView) -> go.Figure:
    ind = view.indicator
    x = [view.period.local(p.start) for p in view.trend]
    fig = go.Figure()
    fig.add_scatter(x=x, y=[p.value for p in view.trend], mode="lines+markers",
                    name=_name(view.focus), line={"color": "#3cc8ff", "width": 3})
    if view.trend_previous:
        fig.add_scatter(x=x[: len(view.trend_previous)],
                        y=[p.value for p in view.trend_previous], mode="lines",
                        name=_("Previous period"),
                        line={"color": _MUTED, "width": 2, "dash": "dash"})
    fig.add_scatter(x=[], y=[], mode="lines+markers", name="", showlegend=False,
                    line={"color": "#ffd166", "width": 2})   # the selected child (see select)
    title = _("Trend over the period") if view.trend else _("No trend: the value is a snapshot")
    _dark(fig, title)
    fig.update_layout(margin={"l": 48, "r": 12, "t": 36, "b": 32},
                      legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                      yaxis={"title": {"text": ind.unit}})
    return fig


def _dark(fig: go.Figure, title: str) -> None:
    fig.update_layout(
        title={"text": title, "font": {"size": 15, "color": _MUTED}, "x": 0.01},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        font={"color": _TEXT, "family": "Noto Sans CJK SC, sans-serif", "size": 13},
        xaxis={"gridcolor": _GRID, "zerolinecolor": _GRID},
        yaxis={"gridcolor": _GRID, "zerolinecolor": _GRID},
        hoverlabel={"bgcolor": "#0a1a31"},
    )


def _columns(view: DrillView) -> list[tuple[str, str]]:
    unit = f" ({view.indicator.unit})" if view.indicator.unit else ""
    columns = [("rank", _("Rank")), ("code", _("Code")), ("name", _("Name")),
               ("value", _name(view.indicator) + unit), ("numerator", _("Numerator")),
               ("denominator", _("Denominator"))]
    if view.previous:
        columns += [("previous", _("Previous period")), ("change", _("Change"))]
    return columns


def _crumbs(view: DrillView) -> list[Any]:
    items: list[Any] = []
    for i, crumb in enumerate(view.crumbs):
        if i:
            items.append(html.Span("›", className="yw-crumb-sep"))
        if crumb["code"] == view.code:
            items.append(html.Span(_name(crumb), className="yw-crumb current"))
        else:
            items.append(html.Button(_name(crumb), className="yw-crumb",
                                     id={"type": ids.CRUMB, "code": crumb["code"]}))
    return items


def _legend(view: DrillView) -> list[Any]:
    ind = view.indicator
    if ind.thresholds is None or view.state.colour == "rank":
        return [html.Div(_name(ind), className="yw-legend-title"),
                html.Div(className="yw-ind-ramp"),
                html.Div([html.Span(_("better")), html.Span(_("worse"))],
                         className="yw-legend-ends")]
    good, bad = ind.thresholds
    sign = "≥" if ind.good == "up" else "≤"
    worse = "<" if ind.good == "up" else ">"
    return [html.Div(_name(ind), className="yw-legend-title")] + [
        html.Div([html.Span(className="yw-ind-swatch", style={"background": colour}), text],
                 className="yw-ind-key")
        for colour, text in ((GOOD, f"{sign} {good:g}"), ("#f5b83d", f"{bad:g} – {good:g}"),
                             ("#ff5d73", f"{worse} {bad:g}"), (NODATA, _("no data")))]


def _detail_frame() -> list[Any]:
    return [
        html.Div([
            html.H3(id=ids.DETAIL_TITLE),
            html.Div(className="yw-header-spacer"),
            html.Button("CSV", id=ids.DETAIL_CSV, className="yw-ind-button",
                        title=_("Export the list as CSV")),
            html.Button("XLSX", id=ids.DETAIL_XLSX, className="yw-ind-button",
                        title=_("Export the list as XLSX")),
            html.Button(_("Close list"), id=ids.DETAIL_CLOSE, className="yw-ind-button"),
        ], className="yw-ind-detail-head"),
        html.Div(id=ids.DETAIL_BODY, className="yw-ind-detail-body"),
    ]


def _detail(view: DrillView, code: str) -> tuple[str, Any]:
    """(title, body) of the list behind the number of ``code``."""
    store, scope = current_store(), current_scope()
    rows = detail_rows(store, scope, view, code, limit=2000)
    target = next((c for c in view.crumbs if c["code"] == code), None) or next(
        ({"name_zh": v.name_zh, "name_en": v.name_en} for v in view.values if v.code == code),
        {"name_zh": code})
    kind = _("Incident list") if view.indicator.source == "incidents" else _("Sensor list")
    columns = list(rows[0]) if rows else []
    title = f"{_name(target)} · {_name(view.indicator)} · {kind} ({len(rows)})"
    return title, (
        dash_table.DataTable(
            data=rows, columns=[{"name": c, "id": c} for c in columns], page_size=14,
            sort_action="native", filter_action="native", style_as_list_view=True,
            style_table={"overflowX": "auto"},
            style_header={"backgroundColor": "#0a1a31", "color": _MUTED},
            style_filter={"backgroundColor": "#061225", "color": _TEXT},
            style_cell={"backgroundColor": "transparent", "color": _TEXT, "fontSize": "14px",
                        "border": "none", "borderBottom": "1px solid rgba(22,58,99,0.7)",
                        "maxWidth": "260px", "overflow": "hidden", "textOverflow": "ellipsis"},
        ) if rows else html.Div(_("Nothing behind this number."), className="yw-empty"))


def _view(state_data: dict[str, Any]) -> DrillView | None:
    return build_view(current_store(), current_scope(), parse_state(state_data or {}), _now())


def render(state_data: dict[str, Any]) -> tuple:
    """Everything for one state. Outside the user's scope: an empty view (core audits)."""
    view = _view(state_data)
    if view is None:
        denied = html.Div(_("Nothing to show: this area is outside your jurisdiction."),
                          className="yw-note")
        empty = go.Figure()
        _dark(empty, "")
        return (None, {"selected": None}, dash.no_update, [], denied, empty, empty, [], [],
                "", [], True, [], None, [], dash.no_update)
    rows = table_rows(view, get_locale())
    columns = [{"name": header, "id": key} for key, header in _columns(view) if key != "code"]
    detail_code = view.state.detail
    title, body = _detail(view, detail_code) if detail_code else ("", [])
    # the first render shows the bounds the map opened on: no flight; later steps fly
    viewport = dash.no_update if dash.ctx.triggered_id is None else {
        "bounds": view.bounds, "transition": "flyToBounds",
        "options": {"padding": _PADDING, "duration": 0.5}}
    hideout = {"selected": None, "lang": get_locale()}
    return (view.geojson, hideout, viewport, _crumbs(view), _headline(view), _ranking(view),
            _trend(view), rows, columns, title, body, not detail_code,
            [v.code for v in worst_first(view.indicator, view.values)],
            state_search(view.state), _legend(view),
            "custom" if view.state.period == "custom" else dash.no_update)


def navigate(indicator: str, period: str, start: str | None, end: str | None,
             compare: list[str], colour: str, click: dict | None, bar_click: dict | None, _crumbs: list,
             _open: int | None, _close: int | None, state_data: dict, values: list[str]
             ) -> dict:
    """The next state from whatever the user did (one callback, so the state stays whole)."""
    state = parse_state(state_data or {})
    trigger = dash.ctx.triggered_id
    code: str | None = None
    if trigger == ids.GEO:
        code = ((click or {}).get("properties") or {}).get("code")
    elif trigger == ids.RANKING:
        points = (bar_click or {}).get("points") or []
        code = points[0].get("customdata") if points else None
    elif isinstance(trigger, dict) and trigger.get("type") == ids.CRUMB:
        if not dash.ctx.triggered[0].get("value"):
            raise PreventUpdate
        return {**state.to_dict(), "code": trigger.get("code"), "detail": None}
    elif trigger == ids.OPEN_DETAIL:
        return {**state.to_dict(), "detail": state.code or current_scope().root_code}
    elif trigger == ids.DETAIL_CLOSE:
        return {**state.to_dict(), "detail": None}
    else:
        if trigger == ids.DATES and start and end:
            period = "custom"     # picking dates means a custom period
        data = {**state.to_dict(), "ind": indicator, "period": period,
                "cmp": bool(compare), "colour": colour, "detail": None}
        if period == "custom":
            data.update(start=start, end=end)
        new = parse_state(data)
        if new == state:
            raise PreventUpdate
        return new.to_dict()
    if not isinstance(code, str) or code not in (values or []):
        raise PreventUpdate
    ind = INDICATORS[state.indicator]
    if jurisdiction_level(current_store(), code) in ind.levels[:-1]:
        return {**state.to_dict(), "code": code, "detail": None}
    return {**state.to_dict(), "detail": code}   # a leaf: open its list


def select(bar_hover: dict | None, map_hover: str | None, cell: dict | None,
           table_data: list[dict], state_data: dict, values: list[str],
           ranking: dict | None, trend_figure: dict | None) -> tuple:
    """Highlight one child everywhere: the map, the ranking, the table and its trend."""
    trigger = dash.ctx.triggered_id
    code = None
    if trigger == ids.RANKING and bar_hover:
        code = (bar_hover.get("points") or [{}])[0].get("customdata")
    elif trigger == ids.HOVER:
        code = map_hover
    elif trigger == ids.TABLE and cell:
        code = cell.get("row_id")   # the row's code, whatever the table's sort order
    if code is not None and code not in (values or []):
        raise PreventUpdate
    hideout = Patch()
    hideout["selected"] = code
    bars = Patch()
    shown = ((ranking or {}).get("data") or [{}])[0].get("customdata") or []
    bars["data"][0]["marker"]["line"]["width"] = [3 if c == code else 0 for c in shown]
    style = ([{"if": {"filter_query": f'{{code}} = "{code}"'},
               "backgroundColor": "rgba(255,209,102,0.18)", "color": "#ffd166"}]
             if code else [])
    line = Patch()
    last = len((trend_figure or {}).get("data") or []) - 1   # the selected child's trace
    if last < 0 or not shown:
        raise PreventUpdate
    state = parse_state(state_data or {})
    ind = INDICATORS[state.indicator]
    if code and not ind.snapshot:
        store, scope = current_store(), current_scope()
        period = period_bounds(state, _now(), local_offset_hours(store, scope))
        points = trend(store, scope, ind.id, code=code, start=period.start, end=period.end,
                       step=period.step)
        names = jurisdiction_names(store, code)
        line["data"][last]["x"] = [period.local(p.start) for p in points]
        line["data"][last]["y"] = [p.value for p in points]
        line["data"][last]["name"] = _name(names) if names else code
        line["data"][last]["showlegend"] = True
    else:
        line["data"][last]["x"] = []
        line["data"][last]["y"] = []
        line["data"][last]["showlegend"] = False
    return hideout, bars, style, line


def export(_csv: int | None, _xlsx: int | None, _dcsv: int | None, _dxlsx: int | None,
           state_data: dict) -> dict:
    """The table or the list as a file, recomputed from core with the user's scope."""
    trigger = dash.ctx.triggered_id
    if not dash.ctx.triggered or not dash.ctx.triggered[0].get("value"):
        raise PreventUpdate
    view = _view(state_data)
    if view is None:
        raise PreventUpdate
    fmt = "xlsx" if trigger in (ids.XLSX, ids.DETAIL_XLSX) else "csv"
    stamp = view.period.local(view.period.start).strftime("%Y%m%d")
    if trigger in (ids.DETAIL_CSV, ids.DETAIL_XLSX):
        code = view.state.detail or view.code
        rows = detail_rows(current_store(), current_scope(), view, code, limit=1_000_000)
        columns = [(c, c) for c in (rows[0] if rows else [])]
        data = export_bytes(rows, columns, fmt, sheet=view.indicator.id)
        filename = f"{view.indicator.id}_{code}_{stamp}_list.{fmt}"
    else:
        data = export_bytes(table_rows(view, get_locale()), _columns(view), fmt,
                            sheet=view.indicator.id)
        filename = f"{view.indicator.id}_{view.code}_{stamp}.{fmt}"
    return dcc.send_bytes(data, filename)


def register_callbacks(app: dash.Dash) -> None:
    """Wire this page's callbacks into ``app`` (called by ``create_app``)."""
    app.callback(
        Output(ids.STATE, "data"),
        Input(ids.INDICATOR, "value"),
        Input(ids.PERIOD, "value"),
        Input(ids.DATES, "start_date"),
        Input(ids.DATES, "end_date"),
        Input(ids.COMPARE, "value"),
        Input(ids.COLOUR, "value"),
        Input(ids.GEO, "clickData"),
        Input(ids.RANKING, "clickData"),
        Input({"type": ids.CRUMB, "code": ALL}, "n_clicks"),
        Input(ids.OPEN_DETAIL, "n_clicks"),
        Input(ids.DETAIL_CLOSE, "n_clicks"),
        State(ids.STATE, "data"),
        State(ids.VALUES, "data"),
        prevent_initial_call=True,
    )(navigate)
    app.callback(
        Output(ids.GEO, "data"),
        Output(ids.GEO, "hideout"),
        Output(ids.MAP, "viewport"),
        Output(ids.CRUMBS, "children"),
        Output(ids.HEADLINE, "children"),
        Output(ids.RANKING, "figure"),
        Output(ids.TREND, "figure"),
        Output(ids.TABLE, "data"),
        Output(ids.TABLE, "columns"),
        Output(ids.DETAIL_TITLE, "children"),
        Output(ids.DETAIL_BODY, "children"),
        Output(ids.DETAIL, "hidden"),
        Output(ids.VALUES, "data"),
        Output(ids.URL, "data"),
        Output(ids.LEGEND, "children"),
        Output(ids.PERIOD, "value"),
        Input(ids.STATE, "data"),
    )(render)
    app.callback(
        Output(ids.GEO, "hideout", allow_duplicate=True),
        Output(ids.RANKING, "figure", allow_duplicate=True),
        Output(ids.TABLE, "style_data_conditional"),
        Output(ids.TREND, "figure", allow_duplicate=True),
        Input(ids.RANKING, "hoverData"),
        Input(ids.HOVER, "data"),
        Input(ids.TABLE, "active_cell"),
        State(ids.TABLE, "data"),
        State(ids.STATE, "data"),
        State(ids.VALUES, "data"),
        State(ids.RANKING, "figure"),
        State(ids.TREND, "figure"),
        prevent_initial_call=True,
    )(select)
    app.callback(
        Output(ids.DOWNLOAD, "data"),
        Input(ids.CSV, "n_clicks"),
        Input(ids.XLSX, "n_clicks"),
        Input(ids.DETAIL_CSV, "n_clicks"),
        Input(ids.DETAIL_XLSX, "n_clicks"),
        State(ids.STATE, "data"),
        prevent_initial_call=True,
    )(export)
    app.clientside_callback(
        ClientsideFunction(namespace="yiwang_ind", function_name="syncUrl"),
        Output(ids.URL_SINK, "children"),
        Input(ids.URL, "data"),
    )
