"""Data catalog (design §4): datasets with owner, classification, sharing mode and what the
user may do with each; a masked preview; subscription requests, decisions and revocations;
what the user's unit holds; the data-sharing scoreboard.

Every action goes through ``core.sharing`` with the logged-in user: it applies the rules
(secret never listed, sensitive columns masked, only the owner's dept_admin decides) and
audits grants, refusals, revocations and reads. Ids the browser sends back (dataset ids,
subscription numbers) are looked up again there.

>>> layout()          # doctest: +SKIP  (called by Dash's router for a logged-in request)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from core.access import AccessDenied
from core.jurisdictions import children, get_jurisdiction
from core.sharing import (
    SharingError,
    access,
    decide_subscription,
    get_dataset,
    holdings,
    list_datasets,
    list_subscriptions,
    read_dataset,
    request_subscription,
    revoke_subscription,
    scoreboard,
)
from dashboard.context import current_scope, current_store, current_user
from dashboard.i18n import N_, _, format_datetime, format_number, get_locale, localized_name

dash.register_page(__name__, path="/catalog", name=N_("Data catalog"), order=80,
                   title="一网统管 · 数据目录",
                   roles=["commander", "leader", "dept_staff", "dept_admin", "grassroots",
                          "grid_worker", "secadmin"])

CLASSIFICATION_NAMES = {"public": N_("Public"), "internal": N_("Internal"),
                        "sensitive": N_("Sensitive"), "secret": N_("Secret")}
SHARING_NAMES = {"backflow": N_("Backflow"), "subscription": N_("Subscription"),
                 "owner_only": N_("Owner only")}
GRANT_NAMES = {"owner": N_("Owner"), "backflow": N_("Backflow"),
               "subscription": N_("Subscribed"), None: N_("None")}
STATUS_NAMES = {"requested": N_("Requested"), "approved": N_("Approved"),
                "refused": N_("Refused"), "revoked": N_("Revoked"), "expired": N_("Expired")}
_PREVIEW_ROWS = 20


class ids:  # noqa: N801 - a namespace of component ids
    PREVIEW = "catalog-preview"          # pattern: {"type": PREVIEW, "dataset": id}
    PREVIEW_OUT = "catalog-preview-out"
    REQ_DATASET = "catalog-req-dataset"
    REQ_AREA = "catalog-req-area"
    REQ_COLUMNS = "catalog-req-columns"
    REQ_PURPOSE = "catalog-req-purpose"
    REQ_UNTIL = "catalog-req-until"
    REQ_SUBMIT = "catalog-req-submit"
    REQ_MESSAGE = "catalog-req-message"
    DECIDE = "catalog-decide"            # pattern: {"type": DECIDE, "sub": n, "ok": 0|1}
    REVOKE = "catalog-revoke"            # pattern: {"type": REVOKE, "sub": n}
    SUBS = "catalog-subs"


def _name(row: Any) -> str:
    return row.name_zh if get_locale() == "zh_CN" else row.name_en


def layout(**_query: str) -> html.Div:
    store, user = current_store(), current_user()
    datasets = list_datasets(store, user)
    return html.Div(
        [
            html.H2(_("Data catalog")),
            _dataset_table(datasets),
            html.Div(id=ids.PREVIEW_OUT, className="yw-catalog-preview"),
            html.H3(_("Request a subscription")),
            _request_form(datasets),
            html.H3(_("Subscriptions")),
            html.Div(_subscriptions(), id=ids.SUBS),
            html.H3(_("Data-sharing scoreboard")),
            _scoreboard(),
        ],
        className="yw-catalog",
        style={"padding": "16px 24px", "overflow": "auto", "height": "100%"},
    )


def _dataset_table(datasets: list) -> Any:
    if not datasets:
        return html.Div(_("No datasets in the catalog."), className="yw-empty")
    store, user = current_store(), current_user()
    head = html.Tr([html.Th(h) for h in (_("Dataset"), _("Owner"), _("Classification"),
                                         _("Sharing"), _("Your access"), "")])
    rows = []
    for ds in datasets:
        grant = access(store, user, ds)
        mode = grant.mode if grant else None
        rows.append(html.Tr([
            html.Td([html.Div(_name(ds)), html.Small(ds.description or "")]),
            html.Td(ds.owner_department),
            html.Td(_(CLASSIFICATION_NAMES[ds.classification]),
                    className=f"yw-class-{ds.classification}"),
            html.Td(_(SHARING_NAMES[ds.sharing])),
            html.Td(_(GRANT_NAMES[mode])),
            html.Td(html.Button(_("Preview"), id={"type": ids.PREVIEW, "dataset": ds.id})
                    if grant else ""),
        ]))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="yw-catalog-table")


def _request_form(datasets: list) -> Any:
    open_ = [ds for ds in datasets if ds.sharing == "subscription"]
    if not open_:
        return html.Div(_("No dataset is open to subscription."), className="yw-empty")
    store, scope = current_store(), current_scope()
    root = get_jurisdiction(store, scope, scope.root_code)
    areas = [root, *children(store, scope, scope.root_code)] if root else []
    return html.Div([
        dcc.Dropdown(id=ids.REQ_DATASET, options=[{"label": _name(d), "value": d.id}
                                                  for d in open_],
                     placeholder=_("Dataset"), style={"minWidth": "240px"}),
        dcc.Dropdown(id=ids.REQ_AREA, options=[{"label": localized_name(a), "value": a["code"]}
                                               for a in areas],
                     value=scope.root_code, clearable=False, style={"minWidth": "200px"}),
        dcc.Checklist(id=ids.REQ_COLUMNS, options=[], value=[], inline=True),
        dcc.Input(id=ids.REQ_PURPOSE, type="text", placeholder=_("Purpose"), maxLength=500),
        dcc.Input(id=ids.REQ_UNTIL, type="date",
                  value=(datetime.now() + timedelta(days=90)).date().isoformat()),
        html.Button(_("Send request"), id=ids.REQ_SUBMIT, n_clicks=0),
        html.Div(id=ids.REQ_MESSAGE),
    ], style={"display": "flex", "gap": "8px", "flexWrap": "wrap", "alignItems": "center"})


def _subscriptions() -> Any:
    store, user = current_store(), current_user()
    subs = list_subscriptions(store, user)
    if not subs:
        return html.Div(_("No subscriptions yet."), className="yw-empty")
    held = {s.id for s in holdings(store, user)}
    head = html.Tr([html.Th(h) for h in (_("No."), _("Dataset"), _("Unit"), _("Area"),
                                         _("Columns"), _("Until"), _("Status"), "")])
    rows = []
    for s in subs:
        state = s.state()
        buttons: list[Any] = []
        ds = get_dataset(store, user, s.dataset_id)
        owner_admin = (ds is not None and user.role.value == "dept_admin"
                       and user.department_code == ds.owner_department)
        if state == "requested" and owner_admin:
            buttons = [html.Button(_("Approve"), id={"type": ids.DECIDE, "sub": s.id, "ok": 1}),
                       html.Button(_("Refuse"), id={"type": ids.DECIDE, "sub": s.id, "ok": 0})]
        elif state == "approved" and (owner_admin or s.id in held):
            buttons = [html.Button(_("Revoke"), id={"type": ids.REVOKE, "sub": s.id})]
        rows.append(html.Tr([
            html.Td(s.id), html.Td(s.dataset_id), html.Td(s.unit), html.Td(s.scope_code),
            html.Td(", ".join(s.columns)), html.Td(format_datetime(s.until, "short")),
            html.Td(_(STATUS_NAMES[state])), html.Td(buttons),
        ]))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="yw-catalog-table")


def _scoreboard() -> Any:
    try:
        board = scoreboard(current_store(), current_user())
    except AccessDenied:
        return html.Div()
    zh = get_locale() == "zh_CN"
    head = html.Tr([html.Th(h) for h in (
        _("Department"), _("Backflow"), _("Subscription"), _("Owner only"), _("Requests"),
        _("Answered"), _("Refused"), _("Median hours to answer"), _("Backflow rows"))])
    rows = [html.Tr([
        html.Td(r["name_zh"] if zh else r["name_en"]), html.Td(r["backflow"]),
        html.Td(r["subscription"]), html.Td(r["owner_only"]), html.Td(r["received"]),
        html.Td(r["answered"]), html.Td(r["refused"]),
        html.Td(format_number(r["median_answer_hours"], 1)
                if r["median_answer_hours"] is not None else "–"),
        html.Td(format_number(r["backflow_rows"])),
    ]) for r in board]
    return html.Table([html.Thead(head), html.Tbody(rows)], className="yw-catalog-table")


# -- callbacks ---------------------------------------------------------------------------------
def preview(_clicks: list) -> Any:
    trigger = dash.ctx.triggered_id
    if not isinstance(trigger, dict) or not dash.ctx.triggered[0].get("value"):
        raise PreventUpdate
    store, user = current_store(), current_user()
    try:
        columns, rows = read_dataset(store, user, str(trigger.get("dataset")),
                                     limit=_PREVIEW_ROWS)
    except AccessDenied:
        return html.Div(_("You have no access to this dataset."), className="yw-denied")
    head = html.Tr([html.Th(c) for c in columns])
    body = [html.Tr([html.Td("" if v is None else str(v)) for v in r]) for r in rows]
    return [html.Div(_("First {n} rows; sensitive columns are masked unless your grant covers "
                       "them.").format(n=len(rows))),
            html.Table([html.Thead(head), html.Tbody(body)], className="yw-catalog-table")]


def columns_for(dataset_id: Any) -> tuple:
    ds = get_dataset(current_store(), current_user(), str(dataset_id)) if dataset_id else None
    if ds is None:
        return [], []
    return [{"label": c, "value": c} for c in ds.columns], []


def send_request(n: int, dataset_id: Any, area: Any, columns: Any, purpose: Any,
                 until: Any) -> tuple:
    if not n:
        raise PreventUpdate
    try:
        until_ts = datetime.fromisoformat(str(until)[:10]) + timedelta(days=1)
    except ValueError:
        return html.Div(_("Choose a valid date."), className="yw-login-error"), dash.no_update
    try:
        sub = request_subscription(current_store(), current_user(), str(dataset_id or ""),
                                   scope_code=str(area or ""),
                                   columns=[str(c) for c in (columns or [])],
                                   purpose=str(purpose or ""), until=until_ts)
    except SharingError:
        return (html.Div(_("Check the request: pick columns, give a purpose and a date within "
                           "a year."), className="yw-login-error"), dash.no_update)
    except AccessDenied:
        return (html.Div(_("This request is not allowed."), className="yw-denied"),
                dash.no_update)
    return html.Div(_("Request {n} sent to the owning department.").format(n=sub.id)), \
        _subscriptions()


def act_on_subscription(_decide: list, _revoke: list) -> Any:
    trigger = dash.ctx.triggered_id
    if not isinstance(trigger, dict) or not dash.ctx.triggered[0].get("value"):
        raise PreventUpdate
    store, user = current_store(), current_user()
    try:
        if trigger.get("type") == ids.DECIDE:
            decide_subscription(store, user, trigger.get("sub"), bool(trigger.get("ok")))
        else:
            revoke_subscription(store, user, trigger.get("sub"))
    except (AccessDenied, SharingError):
        pass  # refused and audited in core; the list below shows the real state
    return _subscriptions()


def register_callbacks(app: dash.Dash) -> None:
    """Wire this page's callbacks into ``app`` (called by ``create_app``)."""
    app.callback(Output(ids.PREVIEW_OUT, "children"),
                 Input({"type": ids.PREVIEW, "dataset": ALL}, "n_clicks"),
                 prevent_initial_call=True)(preview)
    app.callback(Output(ids.REQ_COLUMNS, "options"), Output(ids.REQ_COLUMNS, "value"),
                 Input(ids.REQ_DATASET, "value"), prevent_initial_call=True)(columns_for)
    app.callback(Output(ids.REQ_MESSAGE, "children"),
                 Output(ids.SUBS, "children", allow_duplicate=True),
                 Input(ids.REQ_SUBMIT, "n_clicks"), State(ids.REQ_DATASET, "value"),
                 State(ids.REQ_AREA, "value"), State(ids.REQ_COLUMNS, "value"),
                 State(ids.REQ_PURPOSE, "value"), State(ids.REQ_UNTIL, "value"),
                 prevent_initial_call=True)(send_request)
    app.callback(Output(ids.SUBS, "children"),
                 Input({"type": ids.DECIDE, "sub": ALL, "ok": ALL}, "n_clicks"),
                 Input({"type": ids.REVOKE, "sub": ALL}, "n_clicks"),
                 prevent_initial_call=True)(act_on_subscription)
