"""The indicators page through Flask's test client: role gate, URL state, crafted callbacks
outside the scope (empty and audited), exports recomputed in core (CSV and XLSX)."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_PASSWORD, build_tiny_city
from flask.testing import FlaskClient
from test_indicators import T0, _incidents

from core.indicators import evaluate
from core.scope import scope_for
from core.settings import load_settings
from core.store import Store
from core.users import create_user, get_user
from dashboard.app import create_app
from dashboard.indicator_view import (
    ViewState,
    colour_for,
    export_bytes,
    parse_state,
    period_bounds,
    state_search,
)

STATE = {"ind": "resolve_on_time", "period": "custom", "start": "2026-11-01",
         "end": "2026-11-10", "cmp": True}


@pytest.fixture(scope="module")
def city_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    path = tmp_path_factory.mktemp("indweb") / "city.duckdb"
    store = Store.open(path)
    build_tiny_city(store)
    create_user(store, "leader", TINY_PASSWORD, role="leader", jurisdiction_code="C")
    inc, ev = _incidents(np.random.default_rng(7), n=150)
    with store.transaction() as cur:
        for table, frame in (("incidents", inc), ("incident_events", ev)):
            cur.register("_frame", frame)
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
            cur.unregister("_frame")
    store.close()
    return path


@pytest.fixture
def city(city_file: Path, tmp_path: Path) -> Store:
    import shutil

    shutil.copy(city_file, tmp_path / "city.duckdb")
    store = Store.open(tmp_path / "city.duckdb")
    yield store
    store.close()


@pytest.fixture
def app(city: Store, tmp_path: Path):
    return create_app(city, load_settings(data_dir=tmp_path, totp_required=False))


def _login(client: FlaskClient, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": TINY_PASSWORD,
                                           "csrf_token": token, "next": "/"})
    assert response.status_code == 302 and response.headers["Location"] == "/", response.headers


def _call(client: FlaskClient, output_part: str, values: dict[str, object]):
    """Run the callback whose output names ``output_part``, giving inputs and states by
    'id.property' (missing ones are None), as the Dash renderer would."""
    deps = client.get("/_dash-dependencies").json
    assert isinstance(deps, list), deps
    dep = next(d for d in deps if output_part in d["output"])

    def fill(items):
        return [{"id": i["id"], "property": i["property"],
                 "value": values.get(f"{i['id']}.{i['property']}")} for i in items]

    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]}
               for o in dep["output"].strip(".").split("...")]
    body = {"output": dep["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": fill(dep["inputs"]), "state": fill(dep["state"]),
            "changedPropIds": [k for k in values if k.split(".")[0] in
                               {i["id"] for i in dep["inputs"]}][:1]}
    return client.post("/_dash-update-component", json=body)


def _denials(store: Store) -> list[tuple]:
    return store.query("SELECT actor, target FROM audit_log WHERE action = 'indicators.denied'")


# -- state in the URL ----------------------------------------------------------------------------
def test_state_round_trips_through_the_url() -> None:
    state = ViewState("overdue", "D1", "custom", date(2026, 11, 1), date(2026, 11, 9), False,
                      "D1S1", "target")
    search = state_search(state)
    query = dict(pair.split("=") for pair in search[1:].split("&"))
    assert parse_state(query) == state
    assert parse_state(state.to_dict()) == state


@pytest.mark.parametrize("query", [
    {"ind": "DROP TABLE"}, {"period": "century"},
    {"period": "custom", "start": "2026-11-09", "end": "2026-11-01"},
    {"period": "custom", "start": "2020-01-01", "end": "2026-01-01"},
    {"period": "custom", "start": "garbage", "end": "2026-01-01"},
])
def test_bad_url_state_falls_back_to_defaults(query: dict) -> None:
    state = parse_state(query)
    assert state.indicator == "resolve_on_time" and state.period in ("7d", "today", "30d")


def test_periods_are_whole_local_days() -> None:
    now = datetime(2026, 11, 28, 17, 30)   # 01:30 on the 29th in UTC+8
    today = period_bounds(ViewState(period="today"), now, 8)
    assert (today.start, today.end) == (datetime(2026, 11, 28, 16), datetime(2026, 11, 29, 16))
    assert today.prev_start == datetime(2026, 11, 27, 16) and today.step.total_seconds() == 3600
    custom = period_bounds(ViewState(period="custom", start=date(2026, 11, 1),
                                     end=date(2026, 11, 3)), now, 8)
    assert (custom.start, custom.end) == (datetime(2026, 10, 31, 16), datetime(2026, 11, 3, 16))
    assert custom.prev_end == custom.start and custom.end - custom.start == custom.start - \
        custom.prev_start


def test_colours_follow_rank_or_target() -> None:
    from core.indicators import INDICATORS
    ind = INDICATORS["resolve_on_time"]
    assert colour_for(ind, 91, [91, 95, 99]) != colour_for(ind, 99, [91, 95, 99])
    assert colour_for(ind, 91, [91, 99], "target") == colour_for(ind, 99, [91, 99], "target")
    assert colour_for(ind, None, [1]) == colour_for(INDICATORS["overdue"], None, [])


def test_export_bytes_csv_and_xlsx() -> None:
    from openpyxl import load_workbook

    rows = [{"name": "一区", "value": 91.5}, {"name": "二区", "value": None}]
    cols = [("name", "名称"), ("value", "按时办结率")]
    text = export_bytes(rows, cols, "csv").decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text))) == [["名称", "按时办结率"], ["一区", "91.5"],
                                                   ["二区", ""]]
    sheet = load_workbook(io.BytesIO(export_bytes(rows, cols, "xlsx"))).active
    assert [[c.value for c in r] for r in sheet.iter_rows()] == [["名称", "按时办结率"],
                                                                 ["一区", 91.5], ["二区", None]]
    with pytest.raises(ValueError, match="csv or xlsx"):
        export_bytes(rows, cols, "pdf")


# -- the page ------------------------------------------------------------------------------------
def test_only_leaders_and_commanders_open_the_page(app, city: Store) -> None:
    import dash

    from dashboard.shell import page_allowed

    page = next(p for p in dash.page_registry.values() if p["path"] == "/indicators")
    allowed = {u: page_allowed(page, get_user(city, u))
               for u in ("leader", "commander", "d1_commander", "cg_staff", "sysadmin")}
    assert allowed == {"leader": True, "commander": True, "d1_commander": True,
                       "cg_staff": False, "sysadmin": False}


def test_render_answers_with_core_values(app, city: Store) -> None:
    client = app.server.test_client()
    _login(client, "leader")
    response = _call(client, "ind-geo.data", {"ind-state.data": {**STATE, "code": "D1"}})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    out = response.json["response"]
    rows = out["ind-table"]["data"]
    scope = scope_for(city, get_user(city, "leader"))
    p = period_bounds(parse_state(STATE), datetime(2026, 11, 28), 0)
    want = {v.code: v.value for v in evaluate(city, scope, "resolve_on_time", parent_code="D1",
                                               start=p.start, end=p.end)}
    assert {r["code"] for r in rows} == set(want) == {"D1S1", "D1S2"}
    for r in rows:
        assert r["value"] == pytest.approx(want[r["code"]], abs=0.01)
    assert out["ind-url"]["data"].startswith("?ind=resolve_on_time&code=D1&period=custom")
    features = out["ind-geo"]["data"]["features"]
    assert {f["properties"]["code"] for f in features} == {"D1S1", "D1S2"}
    assert all(f["properties"]["fill"].startswith("#") for f in features)


def test_crafted_state_above_the_scope_shows_nothing_and_is_audited(app, city: Store) -> None:
    client = app.server.test_client()
    _login(client, "d1_commander")
    before = len(_denials(city))
    response = _call(client, "ind-geo.data", {"ind-state.data": {**STATE, "code": "C"}})
    assert response.status_code == 200
    out = response.json["response"]
    assert out["ind-table"]["data"] == [] and out["ind-geo"]["data"] is None
    assert "不在您的管辖范围内" in json.dumps(out["ind-headline"], ensure_ascii=False)
    assert _denials(city)[before:] == [("d1_commander", "C")]
    # an export of a crafted state gives no file
    response = _call(client, "ind-download.data", {"ind-csv.n_clicks": 1,
                                                   "ind-state.data": {**STATE, "code": "D2"}})
    assert response.status_code == 204
    assert _denials(city)[-1] == ("d1_commander", "D2")


def test_drilling_only_into_shown_children(app) -> None:
    client = app.server.test_client()
    _login(client, "leader")
    state = {**STATE, "code": "C"}
    click = {"type": "Feature", "properties": {"code": "D2S1"}}   # not a child of C
    response = _call(client, "ind-state.data", {"ind-geo.clickData": click,
                                                "ind-state.data": state,
                                                "ind-values.data": ["D1", "D2"]})
    assert response.status_code == 204
    click = {"type": "Feature", "properties": {"code": "D2"}}
    response = _call(client, "ind-state.data", {"ind-geo.clickData": click,
                                                "ind-state.data": state,
                                                "ind-values.data": ["D1", "D2"]})
    assert response.json["response"]["ind-state"]["data"]["code"] == "D2"


def _download(response) -> tuple[str, bytes]:
    data = response.json["response"]["ind-download"]["data"]
    return data["filename"], base64.b64decode(data["content"])


def test_exports_are_recomputed_in_core(app, city: Store) -> None:
    from openpyxl import load_workbook

    client = app.server.test_client()
    _login(client, "leader")
    state = {**STATE, "code": "C"}
    name, body = _download(_call(client, "ind-download.data",
                                 {"ind-csv.n_clicks": 1, "ind-state.data": state}))
    assert name.startswith("resolve_on_time_C_") and name.endswith(".csv")
    table = pd.read_csv(io.BytesIO(body), encoding="utf-8-sig")
    scope = scope_for(city, get_user(city, "leader"))
    p = period_bounds(parse_state(state), datetime(2026, 11, 28), 0)
    want = {v.code: v for v in evaluate(city, scope, "resolve_on_time", parent_code="C",
                                         start=p.start, end=p.end)}
    codes, numerators = table.iloc[:, 1], table.iloc[:, 4]     # code, numerator columns
    assert set(codes) == set(want)
    for code, numerator in zip(codes, numerators, strict=True):
        assert numerator == want[code].numerator
    name, body = _download(_call(client, "ind-download.data",
                                 {"ind-xlsx.n_clicks": 1, "ind-state.data": state}))
    assert name.endswith(".xlsx")
    sheet = load_workbook(io.BytesIO(body)).active
    assert sheet.max_row == len(want) + 1
    # the list behind the number of D1: as many rows as the denominator
    name, body = _download(_call(client, "ind-download.data", {
        "ind-detail-csv.n_clicks": 1, "ind-state.data": {**state, "detail": "D1"}}))
    assert name.endswith("_list.csv")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(rows) == want["D1"].denominator and len(rows) > 0
    assert {r["jurisdiction_code"][:2] for r in rows} == {"D1"}
    assert T0.year == 2026


def test_selecting_a_row_highlights_it_everywhere(app) -> None:
    client = app.server.test_client()
    _login(client, "leader")
    state = {**STATE, "code": "C"}
    ranking = {"data": [{"type": "bar", "customdata": ["D2", "D1"]}]}
    trend_figure = {"data": [{"x": []}, {"x": []}, {"x": []}]}
    values = {"ind-table.active_cell": {"row": 0, "column": 0, "row_id": "D1"},
              "ind-state.data": state, "ind-values.data": ["D1", "D2"],
              "ind-ranking.figure": ranking, "ind-trend.figure": trend_figure}
    response = _call(client, "ind-table.style_data_conditional", values)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    out = response.json["response"]
    assert out["ind-table"]["style_data_conditional"][0]["if"]["filter_query"] == \
        '{code} = "D1"'
    text = json.dumps(out)
    assert '"D1"' in text and "[0, 3]" in text          # the D1 bar is outlined, not D2
    assert "selected" in json.dumps(out["ind-geo"]["hideout"])
    # a code that is not on screen (crafted) changes nothing
    values["ind-table.active_cell"] = {"row": 0, "column": 0, "row_id": "D2S1C1"}
    assert _call(client, "ind-table.style_data_conditional", values).status_code == 204
