"""The accounts page (三权分立) through the real Dash endpoint: sysadmin creates, disables and
resets; secadmin changes roles and resets second factors; neither can do the other's work
(refused in core, audited), nobody acts on their own account, other roles are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_PASSWORD
from flask.testing import FlaskClient
from test_security_guard import login, post, refusals

from core.settings import load_settings
from core.store import Store
from core.users import authenticate, create_user, get_user
from dashboard.app import create_app
from dashboard.i18n import LANG_COOKIE

OUT = [{"id": "admin-message", "property": "children"},
       {"id": "admin-users", "property": "data"},
       {"id": "admin-users", "property": "selected_rows"}]
OUTPUT = "..admin-message.children...admin-users.data...admin-users.selected_rows.."
NEW_PASSWORD = "Another#Pass2026"


@pytest.fixture
def client(tiny_city: Store, tmp_path: Path) -> FlaskClient:
    create_user(tiny_city, "secadmin", TINY_PASSWORD, role="secadmin", jurisdiction_code="C")
    app = create_app(tiny_city, load_settings(data_dir=tmp_path, totp_required=False))
    client = app.server.test_client()
    client.set_cookie(LANG_COOKIE, "en")
    return client


def _rows(store: Store) -> list[dict]:
    return [{"username": u} for (u,) in store.query("SELECT username FROM users ORDER BY 1")]


def _row_of(store: Store, username: str) -> int:
    return [r["username"] for r in _rows(store)].index(username)


def sysadmin_click(client: FlaskClient, store: Store, button: str, *, selected: int | None = None,
                   **values):
    fields = {"admin-new-username": None, "admin-new-name": None, "admin-new-role": None,
              "admin-new-jurisdiction": None, "admin-new-department": None,
              "admin-new-password": None, "admin-reset-password-value": None, **values}
    inputs = [{"id": b, "property": "n_clicks", "value": 1 if b == button else 0}
              for b in ("admin-create", "admin-disable", "admin-enable", "admin-reset-password")]
    state = [{"id": "admin-users", "property": "data", "value": _rows(store)},
             {"id": "admin-users", "property": "selected_rows",
              "value": [] if selected is None else [selected]},
             *({"id": k, "property": "value", "value": v} for k, v in fields.items())]
    return post(client, OUTPUT, OUT, inputs, [f"{button}.n_clicks"], state)


def secadmin_click(client: FlaskClient, store: Store, button: str, selected: int,
                   role: str | None = None):
    inputs = [{"id": b, "property": "n_clicks", "value": 1 if b == button else 0}
              for b in ("admin-set-role", "admin-reset-totp")]
    state = [{"id": "admin-users", "property": "data", "value": _rows(store)},
             {"id": "admin-users", "property": "selected_rows", "value": [selected]},
             {"id": "admin-role", "property": "value", "value": role}]
    deps = client.get("/_dash-dependencies").json
    output = next(d["output"] for d in deps
                  if any(i["id"] == "admin-set-role" for i in d["inputs"]))
    # allow_duplicate outputs carry a suffix ("children@…") that the request must repeat
    props = [part.split(".", 1)[1] for part in output.strip(".").split("...")]
    outputs = [{**o, "property": p} for o, p in zip(OUT, props, strict=True)]
    return post(client, output, outputs, inputs, [f"{button}.n_clicks"], state)


def _message(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.dumps(response.json["response"]["admin-message"]["children"],
                      ensure_ascii=False)


def test_sysadmin_creates_disables_and_resets(client, tiny_city: Store) -> None:
    login(client, "sysadmin")
    page = client.get("/admin")
    assert page.status_code == 200
    made = sysadmin_click(client, tiny_city, "admin-create", **{
        "admin-new-username": "wang.fang", "admin-new-name": "王芳",
        "admin-new-role": "dept_staff", "admin-new-department": "cg",
        "admin-new-password": NEW_PASSWORD})
    assert "wang.fang" in _message(made)
    assert [r["username"] for r in made.json["response"]["admin-users"]["data"]].count(
        "wang.fang") == 1
    user = get_user(tiny_city, "wang.fang")
    assert (user.role.value, user.department_code, user.display_name) == ("dept_staff", "cg",
                                                                         "王芳")
    assert authenticate(tiny_city, "wang.fang", NEW_PASSWORD) is not None
    # the same name again: a clear refusal, nothing changed
    again = sysadmin_click(client, tiny_city, "admin-create", **{
        "admin-new-username": "wang.fang", "admin-new-role": "dept_staff",
        "admin-new-department": "cg", "admin-new-password": NEW_PASSWORD})
    assert "exists already" in _message(again)
    # an admin role is the secadmin's to grant
    admin = sysadmin_click(client, tiny_city, "admin-create", **{
        "admin-new-username": "root2", "admin-new-role": "auditor",
        "admin-new-jurisdiction": "C", "admin-new-password": NEW_PASSWORD})
    assert "security administrator" in _message(admin) and get_user(tiny_city, "root2") is None
    # disable, then a reset password
    row = _row_of(tiny_city, "wang.fang")
    assert "disabled" in _message(sysadmin_click(client, tiny_city, "admin-disable",
                                                 selected=row))
    assert not get_user(tiny_city, "wang.fang").active
    sysadmin_click(client, tiny_city, "admin-enable", selected=row)
    assert get_user(tiny_city, "wang.fang").active
    sysadmin_click(client, tiny_city, "admin-reset-password", selected=row,
                   **{"admin-reset-password-value": "Third#Pass20266"})
    assert authenticate(tiny_city, "wang.fang", "Third#Pass20266") is not None
    # nobody disables themselves
    own = sysadmin_click(client, tiny_city, "admin-disable",
                         selected=_row_of(tiny_city, "sysadmin"))
    assert "own account" in _message(own) and get_user(tiny_city, "sysadmin").active
    actions = [a for (a,) in tiny_city.query(
        "SELECT action FROM audit_log WHERE actor = 'sysadmin' ORDER BY seq")]
    for expected in ("user_created", "user_disabled", "user_enabled", "password_reset",
                     "refused"):
        assert expected in actions


def test_secadmin_changes_roles_but_not_accounts(client, tiny_city: Store) -> None:
    login(client, "secadmin")
    assert client.get("/admin").status_code == 200
    row = _row_of(tiny_city, "cg_staff")
    changed = secadmin_click(client, tiny_city, "admin-set-role", row, role="dept_admin")
    assert "cg_staff" in _message(changed)
    assert get_user(tiny_city, "cg_staff").role.value == "dept_admin"
    # the sysadmin's work, crafted by hand: refused in core and audited, nothing created
    crafted = sysadmin_click(client, tiny_city, "admin-create", **{
        "admin-new-username": "sneaky", "admin-new-role": "commander",
        "admin-new-jurisdiction": "C", "admin-new-password": NEW_PASSWORD})
    assert crafted.status_code in (200, 204)
    assert get_user(tiny_city, "sneaky") is None
    assert any(r["actor"] == "secadmin" for r in refusals(tiny_city))


@pytest.mark.parametrize("username", ["commander", "auditor_x"])
def test_other_roles_are_refused_the_page_and_its_callbacks(client, tiny_city: Store,
                                                            username: str) -> None:
    if username == "auditor_x":
        create_user(tiny_city, username, TINY_PASSWORD, role="auditor", jurisdiction_code="C")
    login(client, username)
    assert "admin-users" not in client.get("/admin").get_data(as_text=True) or \
        client.get("/admin").status_code != 200
    response = sysadmin_click(client, tiny_city, "admin-disable",
                              selected=_row_of(tiny_city, "cg_staff"))
    assert response.status_code == 204
    assert get_user(tiny_city, "cg_staff").active
    assert refusals(tiny_city)[-1]["actor"] == username
