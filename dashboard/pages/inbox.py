"""Department inbox: what to claim, what is being handled, co-handling tasks; overdue first,
with SLA countdowns; in-app notifications of new assignments (refreshed every 20 s).

>>> layout()          # doctest: +SKIP  (called by Dash's router for a logged-in request)
"""

from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

from core.incident_views import inbox_page, mark_read, notifications, unread_count
from core.sla import utcnow
from dashboard.context import current_store, current_user
from dashboard.i18n import N_, _
from dashboard.pages._incidents_ui import (
    GHOST,
    PAGE,
    PANEL,
    incident_table,
    notification_list,
)

PAGE_ROWS = 50  # the most urgent first; a page refreshes every 20 s, keep it light

dash.register_page(__name__, path="/inbox", name=N_("Inbox"), order=20,
                   roles=["dept_staff", "dept_admin", "social_org"], title="一网统管 · Yiwang")


class ids:  # noqa: N801 - a namespace of component ids
    TICK = "inbox-tick"
    TABLE = "inbox-table"
    NOTES = "inbox-notes"
    UNREAD = "inbox-unread"
    READ_ALL = "inbox-read-all"


def _content() -> tuple:
    store, user, now = current_store(), current_user(), utcnow()
    rows, counts = inbox_page(store, user, now=now, limit=PAGE_ROWS)  # counts: whole inbox
    parts = [
        html.Span(_("{n} open").format(n=counts["open"]), className="yw-badge"),
        html.Span(_("{n} overdue").format(n=counts["overdue"]), className="yw-badge",
                  style={"marginLeft": "8px", "color": "#ff5d73", "borderColor": "#ff5d73"}),
    ]
    if counts["open"] > len(rows):
        parts.append(html.Span(_("showing the {n} most urgent").format(n=len(rows)),
                               style={"marginLeft": "10px", "color": "#8fa8c9"}))
    summary = html.Div(parts, style={"marginBottom": "10px"})
    table = [summary, incident_table(rows, now, box=True, table_id="inbox-row")]
    unread = unread_count(store, user)
    notes = notification_list(notifications(store, user, unread_only=True, limit=20))
    badge = _("{n} unread").format(n=unread) if unread else _("No unread notifications")
    return table, notes, badge


def layout(**_query: str) -> html.Div:
    table, notes, badge = _content()
    return html.Div([
        dcc.Interval(id=ids.TICK, interval=20_000),
        html.Section([
            html.Div([html.H2(_("Notifications"), style={"margin": 0, "fontSize": "22px"}),
                      html.Span(badge, id=ids.UNREAD, className="yw-badge"),
                      html.Button(_("Mark all read"), id=ids.READ_ALL, style=GHOST)],
                     style={"display": "flex", "gap": "14px", "alignItems": "center",
                            "marginBottom": "8px"}),
            html.Div(notes, id=ids.NOTES),
        ], style=PANEL),
        html.Section([html.H2(_("Department inbox"), style={"margin": "0 0 8px",
                                                          "fontSize": "22px"}),
                      html.Div(table, id=ids.TABLE)], style={**PANEL, "flex": 1}),
    ], style=PAGE, className="yw-inbox")


def refresh(_ticks, _read_clicks) -> tuple:
    """Reload the inbox; the button marks the user's notifications read first."""
    if dash.ctx.triggered_id == ids.READ_ALL:
        mark_read(current_store(), current_user())
    table, notes, badge = _content()
    return table, notes, badge


def register_callbacks(app: dash.Dash) -> None:
    app.callback(
        Output(ids.TABLE, "children"),
        Output(ids.NOTES, "children"),
        Output(ids.UNREAD, "children"),
        Input(ids.TICK, "n_intervals"),
        Input(ids.READ_ALL, "n_clicks"),
        prevent_initial_call=True,
    )(refresh)
