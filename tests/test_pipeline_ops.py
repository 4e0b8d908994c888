"""The ops page and its core reads: sysadmin and vendor_tech only (refusals audited),
sources with freshness, runs, and the quarantine by field names, never values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import TINY_PASSWORD
from test_pipeline_support import build_sensor_city

from core.access import AccessDenied
from core.ingest import READINGS, LoadStats, load
from core.ops import ops_quarantine, ops_runs, ops_sources
from core.settings import load_settings
from core.store import Store
from core.users import get_user
from dashboard.app import create_app
from pipelines.runner import execute
from pipelines.scheduler import JOBS, register_sources


@pytest.fixture
def city(store: Store) -> Store:
    build_sensor_city(store)
    register_sources(store, JOBS)
    execute(store, "simulator", lambda: load(
        store, READINGS, pa.table({"sensor": ["WL-1", "WL-2"], "ts": ["2026-11-28 10:00",
                                                                      "2026-11-28 10:00"],
                                   "value": ["4.1", "SECRET-VALUE"]}),
        run_id=store.query_one("SELECT max(id) FROM ingest_runs")[0], source="simulator"))
    execute(store, "alerts", lambda: LoadStats(), trigger="manual")
    return store


def test_core_reads_are_for_operators_only(city: Store) -> None:
    sysadmin = get_user(city, "sysadmin")
    sources = {r["name"]: r for r in ops_sources(city, sysadmin)}
    assert sources["simulator"]["loaded"] == 1 and sources["simulator"]["rejected"] == 1
    assert sources["simulator"]["open_quarantine"] == 1
    assert sources["rollups"]["stale"] is True and sources["alerts"]["stale"] is False
    assert [r["source"] for r in ops_runs(city, sysadmin)] == ["alerts", "simulator"]
    [entry] = ops_quarantine(city, sysadmin)
    assert entry["fields"] == "sensor, ts, value" and "SECRET" not in json.dumps(
        entry, default=str)
    for who in ("commander", "cg_staff"):
        with pytest.raises(AccessDenied):
            ops_sources(city, get_user(city, who))
    assert city.query("SELECT actor, target, json_extract_string(detail, '$.action')"
                      " FROM audit_log WHERE action = 'refused' ORDER BY seq") == [
        ("commander", "sources", "ops_read"), ("cg_staff", "sources", "ops_read")]


def _login(client, username: str):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"username": username, "password": TINY_PASSWORD,
                                       "csrf_token": token, "next": "/"})


def _post(client, outputs: list, inputs: list, changed: list):
    output = ".." + "...".join(f"{o['id']}.{o['property']}" for o in outputs) + ".."
    return client.post("/_dash-update-component", json={
        "output": output, "outputs": outputs, "inputs": inputs, "changedPropIds": changed,
        "state": []})


def _route(client, path: str) -> str:
    client.get("/")
    response = _post(client, [{"id": "_pages_content", "property": "children"},
                              {"id": "_pages_store", "property": "data"}],
                     [{"id": "_pages_location", "property": "pathname", "value": path},
                      {"id": "_pages_location", "property": "search", "value": ""}],
                     ["_pages_location.pathname"])
    assert response.status_code == 200, response.data
    return json.dumps(response.json, ensure_ascii=False)


def test_the_page_shows_sources_runs_and_quarantine(city: Store, tmp_path: Path) -> None:
    app = create_app(city, load_settings(data_dir=tmp_path, totp_required=False))
    client = app.server.test_client()
    _login(client, "sysadmin")
    assert "数据管道" in _route(client, "/ops")
    response = _post(client, [{"id": "ops-sources", "property": "children"},
                              {"id": "ops-runs", "property": "children"},
                              {"id": "ops-quarantine", "property": "children"}],
                     [{"id": "ops-tick", "property": "n_intervals", "value": 1},
                      {"id": "ops-contract", "property": "value", "value": "readings"}],
                     ["ops-tick.n_intervals"])
    assert response.status_code == 200, response.data
    text = json.dumps(response.json, ensure_ascii=False)
    assert "simulator" in text and "value: not a valid double" in text
    assert "SECRET-VALUE" not in text
    other = app.server.test_client()
    _login(other, "commander")
    assert "数据管道" not in _route(other, "/ops")
