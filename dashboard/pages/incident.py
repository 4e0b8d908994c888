"""One incident: details, SLA, co-handling tasks, timeline, a map with nearby sensors, and the
actions the user may take now. Choosing an action opens its form with the required fields;
nothing happens until "Confirm" (the confirmation step). Every action is
``core.incidents.transition`` with the current user; a refusal shows its reason.

>>> layout(id="42")   # doctest: +SKIP  (called by Dash's router for a logged-in request)
"""

from __future__ import annotations

from typing import Any

import dash
import dash_leaflet as dl
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from core.incident_views import (
    IncidentDetail,
    departments_for_dispatch,
    incident_detail,
    list_incidents,
)
from core.incidents import TRANSITIONS, IncidentError, allowed_actions, transition
from core.lookups import handling_departments, incident_reference_names
from core.sla import utcnow
from dashboard.context import current_settings, current_store, current_user
from dashboard.i18n import N_, _, format_datetime, localized_name
from dashboard.pages._incidents_ui import (
    ACTION_NAMES,
    BUTTON,
    CELL,
    GHOST,
    HEAD,
    INPUT,
    PAGE,
    PANEL,
    PRIORITY_NAMES,
    STATUS_NAMES,
    countdown,
    incident_table,
)

dash.register_page(__name__, path="/incident", name=N_("Work orders"), order=22,
                   roles=["commander", "leader", "dept_staff", "dept_admin", "grassroots",
                          "grid_worker", "social_org"], title="一网统管 · Yiwang")


class ids:  # noqa: N801 - a namespace of component ids
    INCIDENT = "incident-id"
    BODY = "incident-body"
    ACTION = "incident-action"     # pattern: {"type": ACTION, "action": name}
    CHOSEN = "incident-chosen"
    FORM = "incident-form"
    FORM_TITLE = "incident-form-title"
    NOTE = "incident-note"
    DEPT = "incident-dept"
    HOURS = "incident-hours"
    RATING = "incident-rating"
    INTO = "incident-into"
    CONFIRM = "incident-confirm"
    CANCEL = "incident-cancel"
    MESSAGE = "incident-message"
    LIST = "incident-list"
    FILTER_STATUS = "incident-filter-status"
    FILTER_Q = "incident-filter-q"


_FIELD_IDS = {"note": ids.NOTE, "department": ids.DEPT, "hours": ids.HOURS,
              "rating": ids.RATING, "into": ids.INTO}
_HIDDEN = {"display": "none"}


def _incident_id(raw: Any) -> int | None:
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _list(status: str | None, q: str | None) -> html.Div:
    """Without an id: the newest incidents the user may see (filter by status, search)."""
    status = status if status in STATUS_NAMES else None
    rows = list_incidents(current_store(), current_user(), status=status, query=q)
    options = [{"label": _(name), "value": code} for code, name in STATUS_NAMES.items()]
    search = html.Form([
        dcc.Dropdown(id=ids.FILTER_STATUS, options=options, value=status,
                     placeholder=_("Any status"), style={"width": "240px", "color": "#041022"}),
        dcc.Input(id=ids.FILTER_Q, value=q or "", placeholder=_("Work order no. or title"),
                  style={**INPUT, "width": "320px"}),
    ], style={"display": "flex", "gap": "12px", "marginBottom": "10px"})
    return html.Div([html.Section([html.H2(_("Incidents"), style={"margin": "0 0 8px"}),
                                   search, html.Div(incident_table(rows, utcnow()),
                                                    id=ids.LIST)],
                                  style={**PANEL, "flex": 1})], style=PAGE)


def layout(id: str | None = None, status: str | None = None, q: str | None = None,  # noqa: A002
           **_query: str) -> html.Div:
    """``?id=N``: one incident; no id: the list."""
    if id is None:
        return _list(status, q)
    incident_id = _incident_id(id)
    store, user = current_store(), current_user()
    detail = incident_detail(store, user, incident_id) if incident_id else None
    if detail is None:
        return html.Div(_("No such incident in your scope."), className="yw-denied")
    inc = detail.incident
    departments = [{"label": localized_name(d), "value": d["code"]}
                   for d in _departments(store, user)]
    form = html.Div([
        html.H3(id=ids.FORM_TITLE, style={"margin": "0 0 8px"}),
        html.Div(dcc.Dropdown(id=ids.DEPT, options=departments, placeholder=_("Department"),
                              style={"color": "#041022"}),
                 id=f"{ids.DEPT}-wrap", style=_HIDDEN),
        html.Div(dcc.Input(id=ids.HOURS, type="number", min=1, placeholder=_("Extra hours"),
                           style=INPUT), id=f"{ids.HOURS}-wrap", style=_HIDDEN),
        html.Div(dcc.Dropdown(id=ids.RATING, options=[{"label": "★" * n, "value": n}
                                                      for n in range(5, 0, -1)],
                              placeholder=_("Rating"), style={"color": "#041022"}),
                 id=f"{ids.RATING}-wrap", style=_HIDDEN),
        html.Div(dcc.Input(id=ids.INTO, type="number", placeholder=_("Merge into incident id"),
                           style=INPUT), id=f"{ids.INTO}-wrap", style=_HIDDEN),
        dcc.Textarea(id=ids.NOTE, placeholder=_("Note / reason"),
                     style={**INPUT, "width": "100%", "height": "70px", "marginTop": "8px"}),
        html.Div([html.Button(_("Confirm action"), id=ids.CONFIRM, style=BUTTON),
                  html.Button(_("Cancel"), id=ids.CANCEL, style=GHOST)],
                 style={"marginTop": "8px"}),
    ], id=ids.FORM, style={**PANEL, "display": "none"})
    return html.Div([
        dcc.Store(id=ids.INCIDENT, data=inc.id),
        dcc.Store(id=ids.CHOSEN, data=None),
        html.Div(id=ids.MESSAGE),
        html.Div(_body(inc.id, detail), id=ids.BODY),
        form,
    ], style=PAGE, className="yw-incident")


def _departments(store, user) -> list[dict]:
    if user.role.value == "commander":
        return departments_for_dispatch(store, user)
    return handling_departments(store)


def _body(incident_id: int, detail: IncidentDetail | None = None) -> list:
    store, user, now = current_store(), current_user(), utcnow()
    detail = detail or incident_detail(store, user, incident_id)
    if detail is None:
        return [html.Div(_("No such incident in your scope."), className="yw-denied")]
    inc = detail.incident
    names = incident_reference_names(store, inc.category, inc.jurisdiction_code,
                                     inc.department_code)
    category = localized_name(names["category"])
    place = localized_name(names["jurisdiction"])
    department = (localized_name(names["department"]) if names["department"]["name_zh"]
                  else "—")
    open_ = inc.status.value != "closed"
    due = inc.claim_due if inc.status.value in ("reported", "dispatched", "returned") \
        else inc.resolve_due
    facts = [
        (_("Status"), _(STATUS_NAMES[inc.status.value])),
        (_("Priority"), _(PRIORITY_NAMES[inc.priority])),
        (_("Category"), category),
        (_("Location"), place),
        (_("Lead department"), department),
        (_("Reported"), format_datetime(inc.reported_at, "short")),
        (_("Claim by"), format_datetime(inc.claim_due, "short")),
        (_("Resolve by"), format_datetime(inc.resolve_due, "short")),
        (_("SLA"), countdown(due, now) if open_ else "—"),
        (_("Contact"), inc.reporter_contact or "—"),
    ]
    details = html.Section([
        html.H2([html.Span(inc.tracking_code, style={"fontFamily": "monospace",
                                                     "marginRight": "14px"}), inc.title],
                style={"margin": "0 0 6px"}, className="yw-incident-title"),
        html.Div(inc.description or "", style={"color": "#8fa8c9", "marginBottom": "10px"}),
        html.Div([html.Div([html.Div(k, className="yw-kpi-label"),
                            html.Div(v, className="yw-incident-fact")], className="yw-kpi")
                  for k, v in facts],
                 style={"display": "grid", "gridTemplateColumns": "repeat(5, 1fr)",
                        "gap": "10px"}),
        html.Div(_actions(store, user, inc), style={"marginTop": "12px"},
                 className="yw-incident-actions"),
    ], style=PANEL)
    tasks = detail.co_tasks
    co = html.Section([
        html.H3(_("Co-handling"), style={"margin": "0 0 6px"}),
        html.Table([html.Tbody([
            html.Tr([html.Td(localized_name(t, "department"), style=CELL),
                     html.Td(_("Done") if t["status"] == "done" else _("Pending"), style=CELL,
                             className=f"yw-co-{t['status']}"),
                     html.Td(t["instruction"] or "", style=CELL),
                     html.Td(t["result"] or "", style=CELL)]) for t in tasks])],
            style={"width": "100%", "borderCollapse": "collapse"})
        if tasks else html.Div(_("No co-handling."), style={"color": "#8fa8c9"}),
    ], style=PANEL)
    events = detail.timeline
    history = html.Section([
        html.H3(_("Timeline"), style={"margin": "0 0 6px"}),
        html.Table([html.Thead(html.Tr([html.Th(h, style=HEAD) for h in (
            _("Time"), _("Step"), _("Status"), _("By"), _("Department"), _("Note"))])),
            html.Tbody([html.Tr([
                html.Td(format_datetime(e["ts"], "short"), style=CELL),
                html.Td(_(ACTION_NAMES.get(e["action"], e["action"])), style=CELL),
                html.Td(_(STATUS_NAMES.get(e["to_status"], e["to_status"])), style=CELL),
                html.Td(e["actor"], style=CELL),
                html.Td(localized_name(e, "department") if e["department_zh"] else "—",
                        style=CELL),
                html.Td(e["note"] or "", style=CELL)], className="yw-timeline-row")
                for e in events])],
            style={"width": "100%", "borderCollapse": "collapse"}),
    ], style={**PANEL, "flex": 1})
    return [html.Div([details, _map(inc, detail.nearby)],
                     style={"display": "grid", "gap": "14px",
                            "gridTemplateColumns": "minmax(0, 2fr) minmax(0, 1fr)"}),
            html.Div([history, co], style={"display": "grid", "gap": "14px",
                                           "gridTemplateColumns": "minmax(0, 2fr) "
                                                                  "minmax(0, 1fr)"})]


def _actions(store, user, inc) -> list:
    rules = allowed_actions(store, user, inc)
    if not rules:
        return [html.Span(_("No action for you at this stage."), style={"color": "#8fa8c9"})]
    return [html.Button(_(ACTION_NAMES[r.action]), id={"type": ids.ACTION, "action": r.action},
                        style=BUTTON, className="yw-action") for r in rules]


def _map(inc, sensors: list[dict]) -> html.Section:
    colors = {"alarm": "#ff5d73", "warning": "#ffd166", "normal": "#3ee09a",
              "offline": "#8fa8c9"}
    layers: list = []
    tile_url = current_settings().tile_url
    if tile_url:
        layers.append(dl.TileLayer(url=tile_url, maxZoom=18, opacity=0.6))
    layers += [dl.CircleMarker(center=[s["lat"], s["lon"]], radius=7,
                               color=colors.get(s["state"], "#8fa8c9"), fillOpacity=0.8,
                               children=dl.Tooltip(f"{s['name']} {s['value'] or ''}"))
               for s in sensors]
    layers.append(dl.CircleMarker(center=[inc.lat, inc.lon], radius=12, color="#3cc8ff",
                                  fillOpacity=0.9, children=dl.Tooltip(inc.title)))
    return html.Section([
        html.H3(_("Map and nearby sensors ({n})").format(n=len(sensors)),
                style={"margin": "0 0 6px"}),
        dl.MapContainer(layers, center=[inc.lat, inc.lon], zoom=15, trackViewport=False,
                        attributionControl=False, className="yw-map",
                        style={"height": "300px"}),
    ], style=PANEL)


def choose(_clicks: list, _cancel) -> tuple:
    """Open the form of the chosen action (only the fields it needs) or close it."""
    trigger = dash.ctx.triggered_id
    if trigger == ids.CANCEL or not dash.ctx.triggered or not dash.ctx.triggered[0]["value"]:
        return (None, {**PANEL, "display": "none"}, "", *[_HIDDEN] * 4)
    if not isinstance(trigger, dict) or trigger.get("action") not in ACTION_NAMES:
        raise PreventUpdate
    action = trigger["action"]
    needs = set()
    for (_role, name), rule in TRANSITIONS.items():
        if name == action:
            needs |= set(rule.needs)
    if action == "dispatch":
        needs.add("department")
    shown = [{"marginBottom": "8px"} if f in needs else _HIDDEN
             for f in ("department", "hours", "rating", "into")]
    title = _("Confirm: {action}").format(action=_(ACTION_NAMES[action]))
    return (action, {**PANEL, "display": "block"}, title, *shown)


def confirm(_clicks, action: str | None, incident_id: int | None, note: str | None,
            department: str | None, hours: Any, rating: Any, into: Any) -> tuple:
    """Apply the chosen action as the current user; show the refusal reason if refused."""
    if not action or not isinstance(incident_id, int):
        raise PreventUpdate
    fields: dict[str, Any] = {}
    if department:
        fields["department"] = department
    if hours not in (None, ""):
        fields["hours"] = float(hours)
    if rating not in (None, ""):
        fields["rating"] = int(rating)
    if into not in (None, ""):
        fields["into"] = int(into)
    try:
        transition(current_store(), current_user(), incident_id, action,
                   note=(note or "").strip() or None, **fields)
    except IncidentError as exc:
        message = html.Div(_("Refused: {reason}").format(reason=str(exc)),
                           className="yw-note yw-refused", role="alert")
        return message, dash.no_update, dash.no_update, dash.no_update, dash.no_update
    done = html.Div(_("Done: {action}").format(action=_(ACTION_NAMES[action])),
                    className="yw-note yw-done", style={"color": "#3ee09a"})
    return done, _body(incident_id), None, {**PANEL, "display": "none"}, ""


def filter_list(status: str | None, q: str | None) -> Any:
    status = status if status in STATUS_NAMES else None
    rows = list_incidents(current_store(), current_user(), status=status,
                          query=(q or "")[:100] or None)
    return incident_table(rows, utcnow())


def register_callbacks(app: dash.Dash) -> None:
    app.callback(
        Output(ids.LIST, "children"),
        Input(ids.FILTER_STATUS, "value"),
        Input(ids.FILTER_Q, "value"),
        prevent_initial_call=True,
    )(filter_list)
    app.callback(
        Output(ids.CHOSEN, "data"),
        Output(ids.FORM, "style"),
        Output(ids.FORM_TITLE, "children"),
        Output(f"{ids.DEPT}-wrap", "style"),
        Output(f"{ids.HOURS}-wrap", "style"),
        Output(f"{ids.RATING}-wrap", "style"),
        Output(f"{ids.INTO}-wrap", "style"),
        Input({"type": ids.ACTION, "action": dash.ALL}, "n_clicks"),
        Input(ids.CANCEL, "n_clicks"),
        prevent_initial_call=True,
    )(choose)
    app.callback(
        Output(ids.MESSAGE, "children"),
        Output(ids.BODY, "children"),
        Output(ids.CHOSEN, "data", allow_duplicate=True),
        Output(ids.FORM, "style", allow_duplicate=True),
        Output(ids.NOTE, "value"),
        Input(ids.CONFIRM, "n_clicks"),
        State(ids.CHOSEN, "data"),
        State(ids.INCIDENT, "data"),
        State(ids.NOTE, "value"),
        State(ids.DEPT, "value"),
        State(ids.HOURS, "value"),
        State(ids.RATING, "value"),
        State(ids.INTO, "value"),
        prevent_initial_call=True,
    )(confirm)
