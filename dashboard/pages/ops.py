"""Pipeline operations (sysadmin, vendor_tech): sources and their freshness, the latest
runs with rows loaded and refused, and the quarantine browser.

Every read goes through ``core.ops``, which refuses other roles (and audits the refusal);
quarantined rows show their field names and reason, never their values.

>>> layout()          # doctest: +SKIP  (called by Dash's router for sysadmin / vendor_tech)
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, dcc, html

from core.access import AccessDenied
from core.ops import ops_contracts, ops_quarantine, ops_runs, ops_sources
from dashboard.context import current_store, current_user
from dashboard.i18n import N_, _, format_datetime, format_number

dash.register_page(__name__, path="/ops", name=N_("Pipelines"), order=80,
                   title="一网统管 · 运维", roles=["sysadmin", "vendor_tech"])

_REFRESH_MS = 15_000


class ids:  # noqa: N801 - a namespace of component ids
    TICK = "ops-tick"
    SOURCES = "ops-sources"
    RUNS = "ops-runs"
    CONTRACT = "ops-contract"
    QUARANTINE = "ops-quarantine"


def layout(**_query: str) -> html.Div:
    try:
        contracts = ops_contracts(current_store(), current_user())
    except (AccessDenied, PermissionError):
        return html.Div(_("You do not have access to this page."), className="yw-denied")
    return html.Div(
        [
            dcc.Interval(id=ids.TICK, interval=_REFRESH_MS),
            html.H2(_("Pipelines")),
            html.H3(_("Sources and freshness")),
            html.Div(id=ids.SOURCES),
            html.H3(_("Latest runs")),
            html.Div(id=ids.RUNS),
            html.H3(_("Quarantine")),
            dcc.Dropdown(id=ids.CONTRACT, options=[{"label": c, "value": c} for c in contracts],
                         placeholder=_("All datasets"), clearable=True,
                         style={"maxWidth": "320px"}),
            html.Div(id=ids.QUARANTINE),
        ],
        className="yw-ops",
        style={"padding": "16px 24px", "overflow": "auto", "height": "100%"},
    )


def _time(value: Any) -> str:
    return format_datetime(value, "short") if value is not None else _("never")


def _table(head: list[str], rows: list[list[Any]], empty: str) -> html.Div | html.Table:
    if not rows:
        return html.Div(empty, className="yw-empty")
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])),
                       html.Tbody([html.Tr([html.Td(c) for c in row]) for row in rows])],
                      className="yw-ops-table")


def _status(status: str | None, stale: bool | None = None) -> html.Span:
    label = {"success": _("ok"), "failed": _("failed"), "running": _("running"),
             "missed": _("missed"), None: "—"}.get(status, status or "—")
    bad = stale or status in ("failed", "missed")
    return html.Span(label, className="yw-badge yw-bad" if bad else "yw-badge")


def sources_table() -> Any:
    rows = ops_sources(current_store(), current_user())
    return _table(
        [_("Source"), _("Kind"), _("Expected every"), _("Last success"), _("Last run"),
         _("Stale"), _("Rows in"), _("Loaded"), _("Refused"), _("Open in quarantine"),
         _("Last error")],
        [[r["name"], r["kind"], _("{n} s").format(n=format_number(r["expected_seconds"])),
          _time(r["last_success"]), _status(r["last_status"]),
          _status(None, True) if r["stale"] else "", format_number(r["rows_in"] or 0),
          format_number(r["loaded"] or 0), format_number(r["rejected"] or 0),
          format_number(r["open_quarantine"]), (r["error"] or "")[:160]] for r in rows],
        _("No sources yet."))


def runs_table() -> Any:
    rows = ops_runs(current_store(), current_user(), limit=50)
    return _table(
        [_("Run"), _("Source"), _("Trigger"), _("Started"), _("Finished"), _("Rows in"),
         _("Loaded"), _("Refused"), _("Run status"), _("Error")],
        [[r["id"], r["source"], r["trigger"], _time(r["started_at"]),
          _time(r["finished_at"]) if r["finished_at"] else "", format_number(r["rows_in"]),
          format_number(r["rows_loaded"]), format_number(r["rows_rejected"]),
          _status(r["status"]), (r["error"] or "")[:160]] for r in rows],
        _("No runs yet."))


def quarantine_table(contract: Any) -> Any:
    chosen = contract if isinstance(contract, str) and contract else None
    rows = ops_quarantine(current_store(), current_user(), contract=chosen)
    return _table(
        [_("Entry"), _("Quarantined at"), _("Run"), _("Source"), _("Dataset"), _("Reason"),
         _("Fields")],
        [[r["id"], _time(r["created_at"]), r["run_id"], r["source"], r["contract"],
          r["reason"], r["fields"]] for r in rows],
        _("Nothing in quarantine."))


def refresh(_tick: Any, contract: Any) -> tuple[Any, Any, Any]:
    try:
        return sources_table(), runs_table(), quarantine_table(contract)
    except (AccessDenied, PermissionError):
        denied = html.Div(_("You do not have access to this page."), className="yw-denied")
        return denied, "", ""


def register_callbacks(app: dash.Dash) -> None:
    app.callback(
        Output(ids.SOURCES, "children"), Output(ids.RUNS, "children"),
        Output(ids.QUARANTINE, "children"),
        Input(ids.TICK, "n_intervals"), Input(ids.CONTRACT, "value"),
    )(refresh)
