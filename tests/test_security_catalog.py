"""The catalog page through Flask's test client: listing without secret data, masked
preview, crafted preview of a secret dataset refused and audited, a subscription requested,
approved by the owner's dept_admin, and then read."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import TINY_PASSWORD
from flask.testing import FlaskClient

from core.settings import load_settings
from core.sharing import register_dataset
from core.store import Store
from core.users import create_user
from dashboard.app import create_app


@pytest.fixture
def client(tiny_city: Store, tmp_path: Path) -> FlaskClient:
    with tiny_city.transaction() as cur:
        cur.execute("CREATE TABLE care (id INTEGER, name VARCHAR, phone VARCHAR,"
                    " jurisdiction_code VARCHAR)")
        cur.execute("INSERT INTO care VALUES (1, '王芳', '13912345678', 'D1S1C1'),"
                    " (2, '李伟', '13800001111', 'D2S1C1')")
    for ds_id, classification, sharing in [("care_flow", "sensitive", "backflow"),
                                           ("care_sub", "internal", "subscription"),
                                           ("care_secret", "secret", "owner_only")]:
        register_dataset(tiny_city, id=ds_id, table_name="care", name_zh=f"{ds_id}名",
                         name_en=ds_id, owner_department="cg", classification=classification,
                         sharing=sharing, sensitive_columns=["name", "phone"])
    create_user(tiny_city, "cg_admin", TINY_PASSWORD, role="dept_admin", department_code="cg")
    app = create_app(tiny_city, load_settings(data_dir=tmp_path, totp_required=False))
    return app.server.test_client()


def login(client: FlaskClient, username: str) -> None:
    client.get("/logout")
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": username, "password": TINY_PASSWORD,
                                "csrf_token": token, "next": "/"})


def route(client: FlaskClient, path: str) -> str:
    client.get("/")
    response = client.post("/_dash-update-component", json={
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"},
                    {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                   {"id": "_pages_location", "property": "search", "value": ""}],
        "changedPropIds": ["_pages_location.pathname"], "state": []})
    assert response.status_code == 200
    return json.dumps(response.json, ensure_ascii=False)


def click(client: FlaskClient, output: dict, kind: str, *, more: int = 0, **key) -> object:
    """Post a click on a pattern-matching button; ``more`` empty ALL-inputs follow."""
    ident = {"type": kind, **key}
    return client.post("/_dash-update-component", json={
        "output": f"{output['id']}.{output['property']}", "outputs": output,
        "inputs": [[{"id": ident, "property": "n_clicks", "value": 1}]] + [[]] * more,
        "changedPropIds": [json.dumps(ident, separators=(",", ":"), sort_keys=True)
                           + ".n_clicks"], "state": []})


SOON = (date.today() + timedelta(days=30)).isoformat()
PREVIEW_OUT = {"id": "catalog-preview-out", "property": "children"}


def test_catalog_lists_without_secret_and_previews_masked(client, tiny_city: Store) -> None:
    login(client, "d1_commander")
    page = route(client, "/catalog")
    assert "care_flow名" in page and "care_sub名" in page and "care_secret" not in page
    response = click(client, PREVIEW_OUT, "catalog-preview", dataset="care_flow")
    text = json.dumps(response.json, ensure_ascii=False)
    assert response.status_code == 200 and "***78" in text
    assert "13912345678" not in text and "王芳" not in text and "D2S1C1" not in text
    crafted = click(client, PREVIEW_OUT, "catalog-preview", dataset="care_secret")
    assert crafted.status_code == 204
    detail = tiny_city.query_one("SELECT detail FROM audit_log WHERE action = 'refused'")[0]
    assert "care_secret" in detail


def test_request_approve_read(client, tiny_city: Store) -> None:
    login(client, "d1_commander")
    route(client, "/catalog")
    deps = client.get("/_dash-dependencies").json
    key = next(d["output"] for d in deps if "catalog-req-message" in d["output"])
    response = client.post("/_dash-update-component", json={
        "output": key,
        "outputs": [{"id": "catalog-req-message", "property": "children"},
                    {"id": "catalog-subs", "property": "children"}],
        "inputs": [{"id": "catalog-req-submit", "property": "n_clicks", "value": 1}],
        "state": [{"id": "catalog-req-dataset", "property": "value", "value": "care_sub"},
                  {"id": "catalog-req-area", "property": "value", "value": "D1"},
                  {"id": "catalog-req-columns", "property": "value", "value": ["id", "phone"]},
                  {"id": "catalog-req-purpose", "property": "value", "value": "巡访"},
                  {"id": "catalog-req-until", "property": "value", "value": SOON}],
        "changedPropIds": ["catalog-req-submit.n_clicks"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert tiny_city.query_one("SELECT status, scope_code FROM subscriptions") == (
        "requested", "D1")
    sub_id = tiny_city.query_one("SELECT id FROM subscriptions")[0]
    login(client, "cg_admin")
    assert "care_secret名" in route(client, "/catalog")  # the owner sees its secret dataset
    decided = click(client, {"id": "catalog-subs", "property": "children"}, "catalog-decide",
                    more=1, ok=1, sub=sub_id)
    assert decided.status_code == 200
    assert tiny_city.query_one("SELECT status, decided_by FROM subscriptions") == (
        "approved", "cg_admin")
    login(client, "d1_commander")
    read = click(client, PREVIEW_OUT, "catalog-preview", dataset="care_sub")
    text = json.dumps(read.json, ensure_ascii=False)
    assert "13912345678" in text and "王芳" not in text
