"""The command centre's dispatch board: unassigned and returned incidents (bulk dispatch),
overdue, supervised, extension requests, resolved awaiting verification; notifications.

Bulk dispatch sends each chosen incident to the chosen department, or to its routed one when
none is chosen; each incident goes through ``core.incidents.transition`` on its own, so a
refusal (another commander was faster, a wrong department) is reported and the rest land.

>>> layout()          # doctest: +SKIP  (called by Dash's router for a logged-in request)
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, dcc, html

from core.incident_views import board, departments_for_dispatch, mark_read, notifications
from core.incidents import IncidentError, transition
from core.sla import utcnow
from dashboard.context import current_store, current_user
from dashboard.i18n import N_, _, localized_name
from dashboard.pages._incidents_ui import (
    BUTTON,
    GHOST,
    INPUT,
    PAGE,
    PANEL,
    countdown,
    incident_table,
    name_of,
    notification_list,
)

dash.register_page(__name__, path="/dispatch", name=N_("Dispatch"), order=21,
                   roles=["commander"], title="一网统管 · Yiwang")


class ids:  # noqa: N801 - a namespace of component ids
    TICK = "dispatch-tick"
    PICK = "dispatch-pick"
    DEPT = "dispatch-dept"
    REASON = "dispatch-reason"
    GO = "dispatch-go"
    RESULT = "dispatch-result"
    SECTIONS = "dispatch-sections"
    NOTES = "dispatch-notes"
    READ_ALL = "dispatch-read-all"


SECTION_TITLES = {
    "overdue": N_("Overdue"),
    "supervised": N_("Supervised"),
    "extensions": N_("Extension requests"),
    "resolved": N_("Resolved, awaiting verification"),
}


def _options(rows: list[dict]) -> list[dict]:
    now, suggested = utcnow(), _("suggested")
    return [{"label": html.Span([
                html.A(r["tracking_code"], href=f"/incident?id={r['id']}",
                       style={"marginRight": "10px"}),
                f"{r['title']} · {name_of(r, 'category')} · {name_of(r, 'place')} · "
                f"{suggested}: {name_of(r, 'department')} · {countdown(r['due'], now)}"]),
             "value": r["id"]} for r in rows]


def _sections() -> tuple[list, list, list]:
    store, user, now = current_store(), current_user(), utcnow()
    b = board(store, user, now=now)
    queue = b["unassigned"] + b["returned"]
    sections = [
        html.Section([html.H3(f"{_(title)} ({len(b[key])})", style={"margin": "0 0 6px"}),
                      incident_table(b[key], now)], style={**PANEL, "marginBottom": "12px"})
        for key, title in SECTION_TITLES.items()
    ]
    notes = notification_list(notifications(store, user, unread_only=True, limit=15))
    return _options(queue), sections, [notes]


def layout(**_query: str) -> html.Div:
    options, sections, notes = _sections()
    departments = [{"label": localized_name(d), "value": d["code"]}
                   for d in departments_for_dispatch(current_store(), current_user())]
    queue = html.Section([
        html.H2(_("To dispatch (unassigned and returned)"), style={"margin": "0 0 8px",
                                                                   "fontSize": "22px"}),
        dcc.Checklist(id=ids.PICK, options=options, value=[],
                      labelStyle={"display": "block", "padding": "4px 0", "color": "#e8f2ff"},
                      inputStyle={"marginRight": "10px"}),
        html.Div([
            dcc.Dropdown(id=ids.DEPT, options=departments, placeholder=_("Routed department"),
                         style={"width": "340px", "color": "#041022"}),
            dcc.Input(id=ids.REASON, placeholder=_("Reason (needed to override routing)"),
                      style={**INPUT, "width": "360px"}),
            html.Button(_("Dispatch selected"), id=ids.GO, style=BUTTON),
        ], style={"display": "flex", "gap": "12px", "alignItems": "center",
                  "marginTop": "10px"}),
        html.Div(id=ids.RESULT, style={"marginTop": "8px"}),
    ], style=PANEL)
    side = html.Section([
        html.Div([html.H2(_("Notifications"), style={"margin": 0, "fontSize": "22px"}),
                  html.Button(_("Mark all read"), id=ids.READ_ALL, style=GHOST)],
                 style={"display": "flex", "gap": "12px", "alignItems": "center"}),
        html.Div(notes, id=ids.NOTES),
    ], style=PANEL)
    return html.Div([
        dcc.Interval(id=ids.TICK, interval=30_000),
        html.Div([queue, side], style={"display": "grid", "gap": "14px",
                                       "gridTemplateColumns": "minmax(0, 2fr) minmax(0, 1fr)"}),
        html.Div(sections, id=ids.SECTIONS),
    ], style=PAGE, className="yw-dispatch")


def dispatch_selected(_clicks, chosen: list | None, department: str | None,
                      reason: str | None) -> tuple:
    """Dispatch every chosen incident; one line per refusal."""
    store, user = current_store(), current_user()
    done, problems = 0, []
    for incident_id in chosen or []:
        if not isinstance(incident_id, int):
            continue
        fields = {"department": department} if department else {}
        try:
            transition(store, user, incident_id, "dispatch", reason=reason or None, **fields)
            done += 1
        except IncidentError as exc:
            problems.append(html.Li(f"#{incident_id}: {exc}"))
    options, sections, notes = _sections()
    message = [html.Div(_("{n} dispatched").format(n=done), style={"color": "#3ee09a"})]
    if problems:
        message.append(html.Ul(problems, style={"color": "#ff5d73"}))
    return message, options, [], sections, notes


def refresh(_ticks, _read) -> tuple:
    if dash.ctx.triggered_id == ids.READ_ALL:
        mark_read(current_store(), current_user())
    options, sections, notes = _sections()
    return options, sections, notes


def register_callbacks(app: dash.Dash) -> None:
    app.callback(
        Output(ids.RESULT, "children"),
        Output(ids.PICK, "options", allow_duplicate=True),
        Output(ids.PICK, "value"),
        Output(ids.SECTIONS, "children", allow_duplicate=True),
        Output(ids.NOTES, "children", allow_duplicate=True),
        Input(ids.GO, "n_clicks"),
        State(ids.PICK, "value"),
        State(ids.DEPT, "value"),
        State(ids.REASON, "value"),
        prevent_initial_call=True,
    )(dispatch_selected)
    app.callback(
        Output(ids.PICK, "options"),
        Output(ids.SECTIONS, "children"),
        Output(ids.NOTES, "children"),
        Input(ids.TICK, "n_intervals"),
        Input(ids.READ_ALL, "n_clicks"),
        prevent_initial_call=True,
    )(refresh)
