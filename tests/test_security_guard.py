"""Contract D: every Dash callback is wrapped by the authorization + audit guard; crafted
callback POSTs for ids outside the user's scope return nothing and are audited; vendor_tech
calls are recorded in full; role-restricted page callbacks refuse other roles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import TINY_PASSWORD
from flask.testing import FlaskClient

from core.settings import load_settings
from core.store import Store
from core.users import create_user
from dashboard.app import create_app
from dashboard.guard import GUARD_MARK, unguarded

DRILL_OUTPUTS = [("home-geo", "data"), ("home-geo", "hideout"), ("home-map", "viewport"),
                 ("home-panel", "children"), ("home-focus", "data")]


@pytest.fixture
def app(tiny_city: Store, tmp_path: Path):
    create_user(tiny_city, "vendor_1", TINY_PASSWORD, role="vendor_tech", department_code="cg")
    create_user(tiny_city, "auditor", TINY_PASSWORD, role="auditor", jurisdiction_code="C")
    return create_app(tiny_city, load_settings(data_dir=tmp_path, totp_required=False))


@pytest.fixture
def client(app) -> FlaskClient:
    return app.server.test_client()


def login(client: FlaskClient, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": TINY_PASSWORD,
                                           "csrf_token": token, "next": "/"})
    assert response.headers["Location"] == "/", response.get_data(as_text=True)


def post(client: FlaskClient, output: str, outputs: list | dict, inputs: list, changed: list,
         state: list | None = None):
    return client.post("/_dash-update-component", json={
        "output": output, "outputs": outputs, "inputs": inputs, "changedPropIds": changed,
        "state": state or []})


def drill(client: FlaskClient, *, click: str | None = None, child: str | None = None,
          crumb: str | None = None):
    deps = client.get("/_dash-dependencies").json
    output = next(d["output"] for d in deps if "home-geo.data" in d["output"])
    click_value = {"type": "Feature", "properties": {"code": click}} if click else None
    children = ([{"id": {"type": "home-child", "code": child}, "property": "n_clicks",
                  "value": 1}] if child else [])
    crumbs = ([{"id": {"type": "home-crumb", "code": crumb}, "property": "n_clicks",
                "value": 1}] if crumb else [])
    if child or crumb:
        kind, code = ("home-child", child) if child else ("home-crumb", crumb)
        changed = [json.dumps({"code": code, "type": kind}, separators=(",", ":"))
                   + ".n_clicks"]
    else:
        changed = ["home-geo.clickData"]
    return post(client, output, [{"id": i, "property": p} for i, p in DRILL_OUTPUTS],
                [{"id": "home-geo", "property": "clickData", "value": click_value}, children,
                 crumbs], changed)


def refusals(store: Store) -> list[dict]:
    return [{"actor": a, "target": t, **json.loads(d)} for a, t, d in store.query(
        "SELECT actor, target, detail FROM audit_log WHERE action = 'refused' ORDER BY seq")]


def test_every_callback_is_wrapped_before_and_after_the_first_request(app, client) -> None:
    assert app.callback_map, "no callbacks registered?"
    assert unguarded(app) == []
    login(client, "commander")
    client.get("/")  # Dash adds the pages router now
    assert any("_pages_content" in key for key in app.callback_map)
    server_side = {k: e for k, e in app.callback_map.items() if e.get("callback")}
    assert len(server_side) >= 3  # router, home drill, audit search/export
    for key, entry in server_side.items():
        assert getattr(entry["callback"], GUARD_MARK, False), f"{key} is not guarded"


@pytest.mark.parametrize("crafted", [{"click": "D2"}, {"child": "D2S1"}, {"crumb": "C"},
                                     {"click": "NOWHERE"}, {"child": "D1' OR 1=1 --"}])
def test_out_of_scope_ids_return_nothing_and_are_audited(client, tiny_city: Store,
                                                         crafted: dict) -> None:
    login(client, "d1_commander")
    response = drill(client, **crafted)
    assert response.status_code == 204 and response.data == b""
    [refusal] = refusals(tiny_city)
    assert refusal["actor"] == "d1_commander" and refusal["reason"].startswith("id outside")
    assert list(crafted.values())[0] in refusal["ids"]["jurisdiction"]


def test_in_scope_drill_still_works(client, tiny_city: Store) -> None:
    login(client, "d1_commander")
    response = drill(client, child="D1S1")
    assert response.status_code == 200
    assert response.json["response"]["home-focus"]["data"] == "D1S1"
    assert refusals(tiny_city) == []


def test_callbacks_without_login_are_refused(client) -> None:
    denied = post(client, "home-focus.data", [], [], [])
    assert denied.status_code == 401


def test_vendor_tech_calls_are_recorded_in_full(client, tiny_city: Store) -> None:
    login(client, "vendor_1")
    response = drill(client, child="D1")
    assert response.status_code == 200
    [(target, detail)] = tiny_city.query(
        "SELECT target, detail FROM audit_log WHERE action = 'operation'")
    entry = json.loads(detail)
    assert "home-geo.data" in target and entry["page"] == "/"
    assert '"D1"' in entry["parameters"] and entry["result_bytes"] == len(response.data)
    out = drill(client, child="D2S1C1")  # in the vendor's city, but not a child on screen
    assert out.status_code == 200
    assert tiny_city.query_one("SELECT count(*) FROM audit_log WHERE action = 'operation'"
                               ) == (2,)


def test_role_restricted_page_callbacks_refuse_other_roles(client, tiny_city: Store) -> None:
    login(client, "commander")
    filters = [{"id": i, "property": "value", "value": None}
               for i in ("audit-text", "audit-actor", "audit-action", "audit-since",
                         "audit-until")]
    response = post(client, "audit-results.children",
                    {"id": "audit-results", "property": "children"},
                    [{"id": "audit-search", "property": "n_clicks", "value": 1}],
                    ["audit-search.n_clicks"], filters)
    assert response.status_code == 204
    assert refusals(tiny_city)[0]["reason"] == "role may not use this page"
    assert tiny_city.query_one("SELECT count(*) FROM audit_log WHERE action = 'audit_read'"
                               ) == (0,)


def test_auditor_searches_and_exports_the_log(client, tiny_city: Store) -> None:
    login(client, "auditor")
    filters = [{"id": "audit-text", "property": "value", "value": None},
               {"id": "audit-actor", "property": "value", "value": "auditor"},
               {"id": "audit-action", "property": "value", "value": "login"},
               {"id": "audit-since", "property": "value", "value": "2020-01-01"},
               {"id": "audit-until", "property": "value", "value": "2100-01-01"}]
    found = post(client, "audit-results.children",
                 {"id": "audit-results", "property": "children"},
                 [{"id": "audit-search", "property": "n_clicks", "value": 1}],
                 ["audit-search.n_clicks"], filters)
    text = found.get_data(as_text=True)
    assert found.status_code == 200 and '"login"' in text and "login_failed" not in text
    export = post(client, "audit-download.data", {"id": "audit-download", "property": "data"},
                  [{"id": "audit-export", "property": "n_clicks", "value": 1}],
                  ["audit-export.n_clicks"], filters)
    assert export.status_code == 200, export.get_data(as_text=True)
    content = export.json["response"]["audit-download"]["data"]["content"]
    assert content.splitlines()[0] == "seq,ts,actor,action,target,detail"
    assert ",auditor,login," in content
    assert tiny_city.query_one("SELECT count(*) FROM audit_log WHERE action = 'audit_read'"
                               ) == (2,)


# -- one data-access layer: no SQL outside core ------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
_SQL_CALLS = re.compile(r"\.(query|query_one|query_dicts|query_df|cursor|transaction)\(|"
                        r"^\s*(import duckdb|from duckdb)", re.MULTILINE)


def test_no_sql_outside_core() -> None:
    found = {str(path.relative_to(ROOT)) for package in ("dashboard", "layers")
             for path in (ROOT / package).rglob("*.py")
             if _SQL_CALLS.search(path.read_text(encoding="utf-8"))}
    assert found == set(), "SQL outside core (use a scoped core function)"
