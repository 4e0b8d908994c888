"""Pieces shared by the incident pages (inbox, dispatch board, incident): names of statuses
and actions, SLA countdowns, incident rows, the notification list. Not a page (leading ``_``).

>>> countdown(datetime(2026, 11, 28, 12), datetime(2026, 11, 28, 9, 30))   # doctest: +SKIP
'2 h 30 min left'
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dash import dcc, html

from dashboard.i18n import N_, _, format_datetime

STATUS_NAMES = {
    "reported": N_("Reported"),
    "dispatched": N_("Dispatched"),
    "claimed": N_("Claimed"),
    "in_progress": N_("In progress"),
    "resolved": N_("Resolved"),
    "verified": N_("Verified"),
    "closed": N_("Closed"),
    "returned": N_("Returned"),
    "reopened": N_("Reopened"),
}
ACTION_NAMES = {
    "report": N_("Intake"),
    "dispatch": N_("Dispatch"),
    "transfer": N_("Transfer"),
    "supervise": N_("Supervise"),
    "claim": N_("Claim"),
    "return": N_("Return"),
    "start": N_("Start handling"),
    "resolve": N_("Resolve"),
    "request_extension": N_("Request extension"),
    "approve_extension": N_("Approve extension"),
    "reject_extension": N_("Reject extension"),
    "co_request": N_("Request co-handling"),
    "co_done": N_("Co-handling done"),
    "verify": N_("Verify resolution"),
    "verify_failed": N_("Verification failed"),
    "close": N_("Close"),
    "rate": N_("Rate"),
    "reopen": N_("Reopen"),
    "merge": N_("Merge duplicate"),
    "escalate": N_("Escalate"),
}
BOX_NAMES = {
    "claimable": N_("To claim"),
    "mine": N_("Handling"),
    "co": N_("Co-handling"),
    "waiting": N_("Awaiting verification"),
}
PRIORITY_NAMES = {
    "emergency": N_("Emergency"),
    "high": N_("High"),
    "normal": N_("Normal"),
    "low": N_("Low"),
}

CELL = {"padding": "8px 10px", "borderBottom": "1px solid rgba(22, 58, 99, 0.7)",
        "textAlign": "left", "fontSize": "16px"}
HEAD = {**CELL, "color": "#8fa8c9", "fontSize": "14px"}
PANEL = {"padding": "16px 20px", "background": "rgba(9, 25, 48, 0.88)",
         "border": "1px solid #2a6aa6", "borderRadius": "6px", "overflow": "auto",
         "minHeight": 0}
PAGE = {"display": "flex", "flexDirection": "column", "gap": "14px", "height": "100%",
        "padding": "18px", "overflow": "auto"}
BUTTON = {"padding": "6px 14px", "fontSize": "16px", "color": "#041022", "cursor": "pointer",
          "background": "linear-gradient(180deg, #64d6fb, #1f9bd1)", "border": "none",
          "borderRadius": "4px", "fontWeight": 700, "marginRight": "8px"}
GHOST = {**BUTTON, "background": "none", "color": "#64d6fb", "border": "1px solid #2a6aa6",
         "fontWeight": 400}
INPUT = {"padding": "6px 10px", "fontSize": "16px", "color": "#e8f2ff",
         "background": "#061225", "border": "1px solid #2a6aa6", "borderRadius": "4px"}


def countdown(due: datetime | None, now: datetime) -> str:
    """'2 h 30 min left' / 'overdue 1 d 3 h' in the request's language."""
    if due is None:
        return "—"
    seconds = int((due - now).total_seconds())
    late = seconds < 0
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        span = _("{d} d {h} h").format(d=days, h=hours)
    elif hours:
        span = _("{h} h {m} min").format(h=hours, m=minutes)
    else:
        span = _("{m} min").format(m=minutes)
    return _("overdue {span}").format(span=span) if late else _("{span} left").format(span=span)


def name_of(row: dict[str, Any], key: str) -> str:
    from dashboard.i18n import localized_name

    return localized_name(row, key) if row.get(f"{key}_zh") else "—"


def incident_link(row: dict[str, Any]) -> dcc.Link:
    return dcc.Link(row["tracking_code"], href=f"/incident?id={row['id']}",
                    className="yw-incident-link")


def sla_cell(row: dict[str, Any], now: datetime) -> html.Td:
    return html.Td(countdown(row.get("due"), now),
                   className="yw-sla overdue" if row.get("overdue") else "yw-sla")


def incident_table(rows: list[dict[str, Any]], now: datetime, *, box: bool = False,
                   select: list[dict[str, Any]] | None = None, table_id: str | None = None
                   ) -> html.Table | html.Div:
    """A table of incident rows (from core.incident_views); empty text when none."""
    if not rows:
        return html.Div(_("Nothing here."), style={"color": "#8fa8c9", "padding": "8px"})
    heads = [_("Work order no."), _("Title"), _("Category"), _("Location"), _("Department"), _("Status"),
             _("Deadline")]
    if box:
        heads.insert(1, _("Box"))
    # cell styles live in yiwang.css (.yw-incident-table): a refreshed table of 50 rows
    # sends no style per cell
    body = []
    for row in rows:
        cells = [html.Td(incident_link(row))]
        if box:
            cells.append(html.Td(_(BOX_NAMES[row["box"]])))
        cells += [
            html.Td(row["title"]),
            html.Td(name_of(row, "category")),
            html.Td(name_of(row, "place")),
            html.Td(name_of(row, "department")),
            html.Td(_(STATUS_NAMES[row["status"]])),
            sla_cell(row, now),
        ]
        body.append(html.Tr(cells, className="yw-incident-row" + (" overdue" if row.get(
            "overdue") else ""), **({"id": f"{table_id}-{row['id']}"} if table_id else {})))
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in heads])), html.Tbody(body)],
                      className="yw-incident-table")


def notification_list(rows: list[dict[str, Any]]) -> html.Div:
    if not rows:
        return html.Div(_("No new notifications."), style={"color": "#8fa8c9"})
    kinds = {"dispatch": _("New assignment"), "co_request": _("Co-handling request"),
             "escalate": _("Escalated"), "supervise": _("Supervision"),
             "extension": _("Extension request")}
    return html.Ul([
        html.Li([
            html.Span(kinds.get(n["kind"], n["kind"]), style={"color": "#ffd166",
                                                               "marginRight": "8px"}),
            dcc.Link(n["message"], href=f"/incident?id={n['incident_id']}"),
            html.Span(" · " + format_datetime(n["created_at"], "short"),
                      style={"color": "#8fa8c9", "fontSize": "14px"}),
        ], className="yw-notification")
        for n in rows
    ], style={"margin": 0, "paddingLeft": "18px", "lineHeight": 1.8})
