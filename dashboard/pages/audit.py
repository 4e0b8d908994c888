"""Audit log (auditor only): the chain's state, search and filters, CSV export.

Reads go through ``core.audit.search``, which refuses anyone but the auditor (三权分立) and
records every read of the log in the log itself.

>>> layout()          # doctest: +SKIP  (called by Dash's router for the auditor)
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import dash
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from core.access import AccessDenied
from core.audit import search, verify_chain
from dashboard.context import current_store, current_user
from dashboard.i18n import N_, _, format_datetime, format_number

dash.register_page(__name__, path="/audit", name=N_("Audit log"), order=90,
                   title="一网统管 · 审计", roles=["auditor"])

ACTIONS = ("login", "login_failed", "account_locked", "login_locked", "logout",
           "session_timeout", "refused", "operation", "audit_read", "totp_enrolled",
           "totp_failed", "totp_reset", "password_changed", "password_reset", "user_created",
           "user_disabled", "user_enabled", "role_changed", "subscription_requested",
           "subscription_approved", "subscription_refused", "subscription_revoked",
           "shared_read", "dataset_classified")
_PAGE_ROWS = 200


class ids:  # noqa: N801 - a namespace of component ids
    TEXT = "audit-text"
    ACTOR = "audit-actor"
    ACTION = "audit-action"
    SINCE = "audit-since"
    UNTIL = "audit-until"
    SEARCH = "audit-search"
    EXPORT = "audit-export"
    DOWNLOAD = "audit-download"
    RESULTS = "audit-results"


def layout(**_query: str) -> html.Div:
    check = verify_chain(current_store())
    if check.ok:
        status = html.Div(_("Chain intact: {n} entries, signed head matches.").format(
            n=format_number(check.entries)), className="yw-note yw-audit-ok")
    else:
        status = html.Div(_("Chain broken at entry {seq}: {reason}").format(
            seq=check.first_broken if check.first_broken is not None else "-",
            reason=check.reason or ""), className="yw-denied yw-audit-broken")
    today = datetime.now().date()
    return html.Div(
        [
            html.H2(_("Audit log")),
            status,
            html.Div(
                [
                    dcc.Input(id=ids.TEXT, type="text", placeholder=_("Search target or detail"),
                              debounce=True, maxLength=200),
                    dcc.Input(id=ids.ACTOR, type="text", placeholder=_("User"), maxLength=64),
                    dcc.Dropdown(id=ids.ACTION, options=[{"label": a, "value": a}
                                                         for a in ACTIONS],
                                 placeholder=_("Action"), clearable=True,
                                 style={"minWidth": "220px"}),
                    dcc.Input(id=ids.SINCE, type="date",
                              value=(today - timedelta(days=30)).isoformat()),
                    dcc.Input(id=ids.UNTIL, type="date", value=today.isoformat()),
                    html.Button(_("Search"), id=ids.SEARCH, n_clicks=0),
                    html.Button(_("Export CSV"), id=ids.EXPORT, n_clicks=0),
                    dcc.Download(id=ids.DOWNLOAD),
                ],
                className="yw-audit-filters",
                style={"display": "flex", "gap": "8px", "flexWrap": "wrap",
                       "alignItems": "center"},
            ),
            html.Div(id=ids.RESULTS, className="yw-audit-results"),
        ],
        className="yw-audit",
        style={"padding": "16px 24px", "overflow": "auto", "height": "100%"},
    )


def _date(value: Any, *, end: bool = False) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        day = datetime.fromisoformat(value[:10])
    except ValueError:
        return None
    return day + timedelta(days=1) if end else day


def _query(text: Any, actor: Any, action: Any, since: Any, until: Any,
           limit: int) -> list:
    return search(current_store(), current_user(),
                  text=text if isinstance(text, str) and text.strip() else None,
                  actor=actor.strip() if isinstance(actor, str) and actor.strip() else None,
                  action=action if isinstance(action, str) and action else None,
                  since=_date(since), until=_date(until, end=True), limit=limit)


def run_search(_n: int, text: Any, actor: Any, action: Any, since: Any, until: Any) -> Any:
    try:
        rows = _query(text, actor, action, since, until, _PAGE_ROWS)
    except AccessDenied:
        return html.Div(_("You do not have access to this page."), className="yw-denied")
    if not rows:
        return html.Div(_("No entries match."), className="yw-empty")
    head = html.Tr([html.Th(h) for h in (_("No."), _("Time (UTC)"), _("User"), _("Action"),
                                         _("Target"), _("Detail"))])
    body = [html.Tr([html.Td(r.seq), html.Td(format_datetime(r.ts, "medium")),
                     html.Td(r.actor), html.Td(r.action), html.Td(r.target or ""),
                     html.Td(r.detail or "", style={"wordBreak": "break-all"})])
            for r in rows]
    return [html.Div(_("{n} entries (newest first, at most {max}).").format(
                n=format_number(len(rows)), max=_PAGE_ROWS)),
            html.Table([html.Thead(head), html.Tbody(body)], className="yw-audit-table")]


def export_csv(n: int, text: Any, actor: Any, action: Any, since: Any, until: Any) -> Any:
    if not n:
        raise PreventUpdate
    try:
        rows = _query(text, actor, action, since, until, 10_000)
    except AccessDenied:
        raise PreventUpdate from None
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["seq", "ts", "actor", "action", "target", "detail"])
    for r in rows:
        out.writerow([r.seq, r.ts.isoformat(), r.actor, r.action, r.target or "",
                      r.detail or ""])
    return dcc.send_string(buf.getvalue(), f"audit-{datetime.now():%Y%m%d-%H%M%S}.csv")


def register_callbacks(app: dash.Dash) -> None:
    """Wire this page's callbacks into ``app`` (called by ``create_app``)."""
    filters = [State(ids.TEXT, "value"), State(ids.ACTOR, "value"), State(ids.ACTION, "value"),
               State(ids.SINCE, "value"), State(ids.UNTIL, "value")]
    app.callback(Output(ids.RESULTS, "children"), Input(ids.SEARCH, "n_clicks"),
                 *filters)(run_search)
    app.callback(Output(ids.DOWNLOAD, "data"), Input(ids.EXPORT, "n_clicks"), *filters,
                 prevent_initial_call=True)(export_csv)
