"""Accounts (三权分立): the system administrator's and the security administrator's page.

- sysadmin: add accounts (never an admin role), disable and enable them, reset passwords;
- secadmin: change roles (the three admin roles included), reset a lost second factor;
- the auditor reads the audit log (``/audit``) and manages nothing here.

Every action goes through the ``core.users``/``core.totp`` function that checks the actor's
power and writes the audit entry in the same transaction; this page only shows what the
user's power offers. Nobody acts on their own account.

>>> layout()          # doctest: +SKIP  (called by Dash's router for sysadmin or secadmin)
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from core import totp
from core.access import AccessDenied, Power, may
from core.roles import ROLE_NAMES, Role
from core.users import (
    ADMIN_ROLES,
    PasswordPolicy,
    UserError,
    admin_create_user,
    admin_list_users,
    admin_reset_password,
    admin_set_active,
    admin_set_role,
    binding_choices,
)
from dashboard.context import current_settings, current_store, current_user
from dashboard.i18n import N_, _, format_datetime, get_locale

dash.register_page(__name__, path="/admin", name=N_("Accounts"), order=95,
                   title="一网统管 · 账号", roles=["sysadmin", "secadmin"])

_FIELD_MAX = 64


class ids:  # noqa: N801 - a namespace of component ids
    TABLE = "admin-users"
    FILTER = "admin-filter"
    MESSAGE = "admin-message"
    NEW_USERNAME = "admin-new-username"
    NEW_NAME = "admin-new-name"
    NEW_ROLE = "admin-new-role"
    NEW_JURISDICTION = "admin-new-jurisdiction"
    NEW_DEPARTMENT = "admin-new-department"
    NEW_PASSWORD = "admin-new-password"
    CREATE = "admin-create"
    DISABLE = "admin-disable"
    ENABLE = "admin-enable"
    RESET_PASSWORD = "admin-reset-password"
    RESET_PASSWORD_VALUE = "admin-reset-password-value"
    ROLE = "admin-role"
    SET_ROLE = "admin-set-role"
    RESET_TOTP = "admin-reset-totp"


def _role_name(role: str) -> str:
    names = ROLE_NAMES.get(Role(role))
    if not names:
        return role
    return names[0] if get_locale() == "zh_CN" else names[1]


def _role_options(roles) -> list[dict[str, str]]:
    return [{"label": f"{_role_name(r.value)} ({r.value})", "value": r.value} for r in roles]


def _yes(flag: Any) -> str:
    return _("yes") if flag else _("no")


def _rows(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{
        "username": u["username"],
        "display_name": u["display_name"],
        "role": _role_name(u["role"]),
        "jurisdiction": u["jurisdiction_name"] or u["jurisdiction_code"] or "",
        "department": u["department_name"] or u["department_code"] or "",
        "active": _yes(u["active"]),
        "locked": format_datetime(u["locked_until"], "short") if u["locked_until"] else "",
        "totp": _yes(u["totp_enrolled"]),
        "last_login": format_datetime(u["last_login_at"], "short") if u["last_login_at"]
        else "",
    } for u in users]


def _columns() -> list[dict[str, str]]:
    return [{"name": name, "id": key} for key, name in (
        ("username", _("Username")), ("display_name", _("Name")), ("role", _("Role")),
        ("jurisdiction", _("Jurisdiction")), ("department", _("Department")),
        ("active", _("Active")), ("locked", _("Locked until")),
        ("totp", _("Two-step verification")), ("last_login", _("Last login")))]


def _sysadmin_panel(store) -> html.Div:
    jurisdictions, departments = binding_choices(store)
    roles = [r for r in Role if r not in ADMIN_ROLES]
    return html.Section([
        html.H3(_("New account")),
        html.Div([
            dcc.Input(id=ids.NEW_USERNAME, type="text", placeholder=_("Username"),
                      maxLength=_FIELD_MAX),
            dcc.Input(id=ids.NEW_NAME, type="text", placeholder=_("Name"),
                      maxLength=_FIELD_MAX),
            dcc.Dropdown(id=ids.NEW_ROLE, options=_role_options(roles),
                         placeholder=_("Role"), style={"minWidth": "200px"}),
            dcc.Dropdown(id=ids.NEW_JURISDICTION,
                         options=[{"label": f"{name} ({code})", "value": code}
                                  for code, name in jurisdictions],
                         placeholder=_("Jurisdiction"), style={"minWidth": "240px"}),
            dcc.Dropdown(id=ids.NEW_DEPARTMENT,
                         options=[{"label": f"{name} ({code})", "value": code}
                                  for code, name in departments],
                         placeholder=_("Department"), style={"minWidth": "240px"}),
            dcc.Input(id=ids.NEW_PASSWORD, type="password", placeholder=_("Initial password"),
                      maxLength=128, autoComplete="new-password"),
            html.Button(_("Create"), id=ids.CREATE, n_clicks=0),
        ], className="yw-admin-row"),
        html.H3(_("Selected account")),
        html.Div([
            html.Button(_("Disable"), id=ids.DISABLE, n_clicks=0),
            html.Button(_("Enable"), id=ids.ENABLE, n_clicks=0),
            dcc.Input(id=ids.RESET_PASSWORD_VALUE, type="password",
                      placeholder=_("New password"), maxLength=128,
                      autoComplete="new-password"),
            html.Button(_("Reset password"), id=ids.RESET_PASSWORD, n_clicks=0),
        ], className="yw-admin-row"),
    ], className="yw-admin-panel")


def _secadmin_panel() -> html.Section:
    return html.Section([
        html.H3(_("Selected account")),
        html.Div([
            dcc.Dropdown(id=ids.ROLE, options=_role_options(Role), placeholder=_("Role"),
                         style={"minWidth": "240px"}),
            html.Button(_("Change role"), id=ids.SET_ROLE, n_clicks=0),
            html.Button(_("Reset two-step verification"), id=ids.RESET_TOTP, n_clicks=0),
        ], className="yw-admin-row"),
    ], className="yw-admin-panel")


def layout(**_query: str) -> html.Div:
    store, user = current_store(), current_user()
    try:
        users = admin_list_users(store, user)
    except AccessDenied:
        return html.Div(_("You do not have access to this page."), className="yw-denied")
    if may(user, Power.MANAGE_USERS):
        intro = _("You manage accounts: add, disable and enable them, reset passwords. "
                  "Roles and second factors are the security administrator's.")
        panel: Any = _sysadmin_panel(store)
    else:
        intro = _("You manage roles and second factors. Accounts are the system "
                  "administrator's; the audit log is the auditor's.")
        panel = _secadmin_panel()
    return html.Div([
        html.H2(_("Accounts")),
        html.P(intro, className="yw-note"),
        html.Div(id=ids.MESSAGE, role="status", className="yw-admin-message"),
        panel,
        dash_table.DataTable(
            id=ids.TABLE, data=_rows(users), columns=_columns(), row_selectable="single",
            selected_rows=[], filter_action="native", sort_action="native", page_size=25,
            style_table={"overflowX": "auto"}, style_as_list_view=True,
            style_header={"backgroundColor": "#0a1a31", "color": "#8fa8c9",
                          "borderBottom": "1px solid #2a6aa6", "fontSize": "14px"},
            style_cell={"backgroundColor": "transparent", "color": "#e8f2ff",
                        "fontSize": "15px", "fontFamily": "inherit", "textAlign": "left",
                        "border": "none", "padding": "6px 10px",
                        "borderBottom": "1px solid rgba(22,58,99,0.7)"},
            style_filter={"backgroundColor": "#071428", "color": "#e8f2ff"}),
    ], className="yw-admin", style={"padding": "16px 24px", "overflow": "auto",
                                    "height": "100%"})


def _selected(rows: list[dict[str, Any]] | None, selected: list[int] | None) -> str:
    """The username of the selected row. It comes from the browser like everything else: the
    core function called with it checks the actor's power and refuses their own account."""
    if not selected or not rows or not isinstance(selected[0], int) \
            or not 0 <= selected[0] < len(rows):
        raise UserError(_("Select an account in the table first."))
    username = rows[selected[0]].get("username")
    if not isinstance(username, str) or not username:
        raise UserError(_("Select an account in the table first."))
    return username


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def act(_create: int, _disable: int, _enable: int, _reset: int, _role_n: int, _totp_n: int,
        rows: list[dict[str, Any]] | None, selected: list[int] | None,
        new_username: Any, new_name: Any, new_role: Any, new_jurisdiction: Any,
        new_department: Any, new_password: Any, reset_value: Any, role: Any) -> tuple:
    """One callback for every button: run the core action, then show the table afresh."""
    store, user = current_store(), current_user()
    trigger = dash.ctx.triggered_id
    policy = PasswordPolicy.from_settings(current_settings())
    message, ok = "", True
    try:
        if trigger == ids.CREATE:
            username = _text(new_username)
            if not username or not isinstance(new_password, str) or not new_password:
                raise UserError(_("A username and an initial password are needed."))
            if not isinstance(new_role, str) or new_role not in {r.value for r in Role}:
                raise UserError(_("Choose a role."))
            created = admin_create_user(
                store, user, username, new_password, role=new_role, policy=policy,
                display_name=_text(new_name), jurisdiction_code=_text(new_jurisdiction),
                department_code=_text(new_department))
            message = _("Account {name} created.").format(name=created.username)
        elif trigger in (ids.DISABLE, ids.ENABLE):
            username = _selected(rows, selected)
            admin_set_active(store, user, username, trigger == ids.ENABLE)
            message = (_("Account {name} enabled.") if trigger == ids.ENABLE
                       else _("Account {name} disabled; its sessions have ended.")
                       ).format(name=username)
        elif trigger == ids.RESET_PASSWORD:
            username = _selected(rows, selected)
            if not isinstance(reset_value, str) or not reset_value:
                raise UserError(_("Type the new password first."))
            admin_reset_password(store, user, username, reset_value, policy=policy)
            message = _("Password of {name} reset.").format(name=username)
        elif trigger == ids.SET_ROLE:
            username = _selected(rows, selected)
            if not isinstance(role, str) or role not in {r.value for r in Role}:
                raise UserError(_("Choose a role."))
            admin_set_role(store, user, username, role)
            message = _("Role of {name} changed; its sessions have ended.").format(name=username)
        elif trigger == ids.RESET_TOTP:
            username = _selected(rows, selected)
            totp.reset(store, user, username)
            message = _("Two-step verification of {name} reset: it enrols again at the next "
                        "login.").format(name=username)
        else:
            raise PreventUpdate
    except AccessDenied as exc:
        message, ok = _("Refused: {reason}").format(reason=str(exc)), False
    except (UserError, ValueError) as exc:
        message, ok = str(exc), False
    try:
        data = _rows(admin_list_users(store, user))
    except AccessDenied:
        data = []
    return (html.Div(message, className="yw-note" if ok else "yw-denied"), data,
            [] if ok else dash.no_update)


def register_callbacks(app: dash.Dash) -> None:
    """Wire this page's callbacks into ``app`` (called by ``create_app``)."""
    # the sysadmin's and the secadmin's panels hold different buttons: each callback names only
    # components on the page (the other's inputs are absent, so a callback per panel)
    common = [State(ids.TABLE, "data"), State(ids.TABLE, "selected_rows")]
    outputs = [Output(ids.MESSAGE, "children"), Output(ids.TABLE, "data"),
               Output(ids.TABLE, "selected_rows")]

    def sysadmin(create, disable, enable, reset, rows, selected, username, name, role,
                 jurisdiction, department, password, reset_value):
        return act(create, disable, enable, reset, 0, 0, rows, selected, username, name, role,
                   jurisdiction, department, password, reset_value, None)

    def secadmin(set_role, reset_totp, rows, selected, role):
        return act(0, 0, 0, 0, set_role, reset_totp, rows, selected, None, None, None, None,
                   None, None, None, role)

    app.callback(*outputs, Input(ids.CREATE, "n_clicks"), Input(ids.DISABLE, "n_clicks"),
                 Input(ids.ENABLE, "n_clicks"), Input(ids.RESET_PASSWORD, "n_clicks"),
                 *common, State(ids.NEW_USERNAME, "value"), State(ids.NEW_NAME, "value"),
                 State(ids.NEW_ROLE, "value"), State(ids.NEW_JURISDICTION, "value"),
                 State(ids.NEW_DEPARTMENT, "value"), State(ids.NEW_PASSWORD, "value"),
                 State(ids.RESET_PASSWORD_VALUE, "value"),
                 prevent_initial_call=True)(sysadmin)
    duplicates = [Output(o.component_id, o.component_property, allow_duplicate=True)
                  for o in outputs]
    app.callback(*duplicates, Input(ids.SET_ROLE, "n_clicks"),
                 Input(ids.RESET_TOTP, "n_clicks"), *common, State(ids.ROLE, "value"),
                 prevent_initial_call=True)(secadmin)
