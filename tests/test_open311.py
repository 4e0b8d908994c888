"""Open311 GeoReport v2 on the real app (Flask test client over a real DuckDB file): formats,
filters, POST with an API key, abuse (size, malformed bodies, bursts, injection, unknown
codes), and a schemathesis fuzz run at a small budget against the OpenAPI description."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from public_helpers import add_categories, jpeg_with_exif

from core import api_keys
from core.settings import load_settings
from core.store import Store
from dashboard.app import create_app

API = "/open311/v2"


@pytest.fixture
def api(tiny_city: Store, tmp_path: Path):
    add_categories(tiny_city)
    _key, secret = api_keys.create_api_key(tiny_city, None, "test client", per_minute=1000)
    app = create_app(tiny_city, load_settings(data_dir=tmp_path))
    app.server.config["OPEN311_POST_LIMIT"] = "1000/minute"
    return app, app.server.test_client(), secret, tiny_city


def _post(client, secret: str, fmt: str = "json", **fields):
    data = {"api_key": secret, "service_code": "garbage_overflow", "lat": "0.25",
            "long": "0.5", "description": "垃圾满了", **fields}
    return client.post(f"{API}/requests.{fmt}", data=data)


def _counts(store: Store) -> tuple[int, int, int]:
    return tuple(store.query_one(f"SELECT count(*) FROM {t}")[0]
                 for t in ("incidents", "incident_events", "public_reports"))


def test_services_in_json_and_xml(api) -> None:
    _app, client, _secret, _store = api
    rows = client.get(f"{API}/services.json").json
    assert [r["service_code"] for r in rows] == ["garbage_overflow", "manhole_cover",
                                                 "road_waterlogging"]
    assert rows[0]["metadata"] is False and rows[0]["type"] == "realtime"
    en = client.get(f"{API}/services.json", headers={"Accept-Language": "en"}).json
    assert en[0]["service_name"] == "Overflowing garbage"
    root = ET.fromstring(client.get(f"{API}/services.xml").data)
    assert root.tag == "services"
    assert [s.findtext("service_code") for s in root.findall("service")][0] == "garbage_overflow"
    definition = client.get(f"{API}/services/garbage_overflow.json").json
    assert definition == {"service_code": "garbage_overflow", "attributes": []}


def test_post_then_read_back_by_id_token_and_filters(api) -> None:
    _app, client, secret, store = api
    response = _post(client, secret, phone="13812345678")
    assert response.status_code == 201, response.data
    created = response.json[0]
    code, token = created["service_request_id"], created["token"]
    one = client.get(f"{API}/requests/{code}.json").json[0]
    assert one["service_code"] == "garbage_overflow" and one["status"] == "open"
    assert one["lat"] == 0.25 and one["long"] == 0.5
    assert "13812345678" not in json.dumps(one, ensure_ascii=False)
    assert store.query_one("SELECT source FROM incidents")[0] == "open311"
    assert client.get(f"{API}/tokens/{token}.json").json == [
        {"service_request_id": code, "token": token}]
    listed = client.get(f"{API}/requests.json?status=open&service_code=garbage_overflow").json
    assert [r["service_request_id"] for r in listed] == [code]
    assert client.get(f"{API}/requests.json?status=closed").json == []
    assert client.get(f"{API}/requests.json?service_code=road_waterlogging").json == []
    assert client.get(f"{API}/requests.json?service_request_id={code}").json[0][
        "service_request_id"] == code
    assert client.get(f"{API}/requests.json?start_date=2000-01-01T00:00:00Z"
                      "&end_date=2000-02-01T00:00:00Z").json == []
    xml_one = ET.fromstring(client.get(f"{API}/requests/{code}.xml").data)
    assert xml_one.find("request").findtext("service_request_id") == code
    assert client.get(f"{API}/requests.json?jurisdiction_id=C").status_code == 200
    assert client.get(f"{API}/requests.json?jurisdiction_id=D2").json == []


@pytest.mark.parametrize("mimetype, body", [
    ("application/json", json.dumps({"service_code": "garbage_overflow", "lat": 0.25,
                                     "long": 0.5, "description": "JSON body"})),
    ("application/xml", "<request><service_code>garbage_overflow</service_code><lat>0.25</lat>"
                        "<long>0.5</long><description>XML body</description></request>"),
])
def test_post_json_and_xml_bodies(api, mimetype: str, body: str) -> None:
    _app, client, secret, _store = api
    response = client.post(f"{API}/requests.json?api_key={secret}", data=body,
                           content_type=mimetype)
    assert response.status_code == 201, response.data


def test_post_with_media_strips_metadata(api, tmp_path: Path) -> None:
    _app, client, secret, store = api
    import io

    data = {"api_key": secret, "service_code": "garbage_overflow", "lat": "0.25",
            "long": "0.5", "description": "with photo",
            "media": (io.BytesIO(jpeg_with_exif()), "p.jpg", "image/jpeg")}
    response = client.post(f"{API}/requests.json", data=data, content_type="multipart/form-data")
    assert response.status_code == 201, response.data
    rel = store.query_one("SELECT path FROM public_photos")[0]
    assert b"SecretCameraMaker" not in (tmp_path / "photos" / rel).read_bytes()


def _is_error_list(response, status: int) -> str:
    assert response.status_code == status, response.data
    body = response.json
    assert isinstance(body, list) and body[0]["code"] == status
    text = body[0]["description"]
    assert "Traceback" not in text and "File \"" not in text
    return text


@pytest.mark.parametrize("case, status, words", [
    ("no_key", 401, "api_key"),
    ("bad_key", 403, "api_key"),
    ("unknown_service", 404, "service_code"),
    ("no_location", 400, "lat"),
    ("bad_number", 400, "long"),
    ("outside_city", 422, "outside"),
    ("malformed_json", 400, "JSON"),
    ("malformed_xml", 400, "XML"),
    ("xml_bomb", 400, "XML"),
    ("unknown_field", 400, "unknown field"),
    ("oversized", 413, "too large"),
    ("wrong_type", 415, "unsupported"),
    ("bad_jurisdiction", 404, "jurisdiction_id"),
])
def test_abuse_gets_a_clear_4xx_and_writes_nothing(api, case: str, status: int,
                                                   words: str) -> None:
    _app, client, secret, store = api
    before = _counts(store)
    url = f"{API}/requests.json"
    good = {"api_key": secret, "service_code": "garbage_overflow", "lat": "0.25",
            "long": "0.5", "description": "x y"}
    if case == "no_key":
        response = client.post(url, data={k: v for k, v in good.items() if k != "api_key"})
    elif case == "bad_key":
        response = client.post(url, data={**good, "api_key": "yw_00000000_" + "A" * 32})
    elif case == "unknown_service":
        response = client.post(url, data={**good, "service_code": "no_such_thing"})
    elif case == "no_location":
        response = client.post(url, data={k: v for k, v in good.items() if k != "lat"})
    elif case == "bad_number":
        response = client.post(url, data={**good, "long": "east"})
    elif case == "outside_city":
        response = client.post(url, data={**good, "lat": "50", "long": "50"})
    elif case == "malformed_json":
        response = client.post(url + f"?api_key={secret}", data='{"service_code": ',
                               content_type="application/json")
    elif case == "malformed_xml":
        response = client.post(url + f"?api_key={secret}", data="<request><lat>1</request>",
                               content_type="application/xml")
    elif case == "xml_bomb":
        bomb = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
                '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r><description>&b;</description>'
                '</r>')
        response = client.post(url + f"?api_key={secret}", data=bomb,
                               content_type="application/xml")
    elif case == "unknown_field":
        response = client.post(url, data={**good, "admin": "1"})
    elif case == "oversized":
        response = client.post(url, data={**good, "description": "x" * 100_000})
    elif case == "wrong_type":
        response = client.post(url, data="abc", content_type="text/plain")
    elif case == "bad_jurisdiction":
        response = client.post(url, data={**good, "jurisdiction_id": "ZZZ"})
    text = _is_error_list(response, status)
    assert words.lower() in text.lower(), text
    assert _counts(store) == before


def test_errors_in_xml_too(api) -> None:
    _app, client, _secret, _store = api
    response = client.get(f"{API}/services/nope.xml")
    assert response.status_code == 404
    root = ET.fromstring(response.data)
    assert root.tag == "errors" and root.find("error").findtext("code") == "404"
    assert client.get(f"{API}/requests.json?start_date=yesterday").status_code == 400
    assert client.get(f"{API}/requests.json?status=maybe").status_code == 400
    assert client.get(f"{API}/whatever").status_code == 404
    assert client.delete(f"{API}/requests.json").status_code in (404, 405)


def test_script_injection_comes_back_as_data(api) -> None:
    _app, client, secret, _store = api
    script = "<script>alert(1)</script>"
    code = _post(client, secret, description=script).json[0]["service_request_id"]
    assert client.get(f"{API}/requests/{code}.json").json[0]["description"] == script
    raw = client.get(f"{API}/requests/{code}.xml").data.decode()
    assert "&lt;script&gt;" in raw and "<script>" not in raw


def test_burst_beyond_the_limits_gets_429(api) -> None:
    app, client, secret, store = api
    app.server.config["OPEN311_POST_LIMIT"] = "3/minute"
    codes = [_post(client, secret).status_code for _ in range(5)]
    assert codes[:3] == [201, 201, 201] and codes[3:] == [429, 429]
    assert _counts(store)[2] == 3
    text = _is_error_list(_post(client, secret), 429)
    assert "too many" in text.lower()
    # the per-key limit, independent of the address
    app.server.config["OPEN311_POST_LIMIT"] = "1000/minute"
    _key, slow = api_keys.create_api_key(store, None, "slow client", per_minute=2)
    assert [_post(client, slow).status_code for _ in range(3)] == [201, 201, 429]
    # reads have their own per-address limit
    app.server.config["OPEN311_IP_LIMIT"] = "5/minute"
    statuses = [client.get(f"{API}/services.json").status_code for _ in range(8)]
    assert 429 in statuses and statuses[0] == 200


# -- fuzzing -------------------------------------------------------------------------------

def test_fuzz_never_a_server_error(api) -> None:
    """schemathesis generates requests for every operation of the OpenAPI description (a small
    budget each); none may get a 5xx, and every 4xx is the spec's error list."""
    app, _client, _secret, store = api
    app.server.config["OPEN311_IP_LIMIT"] = "100000/minute"
    app.server.config["OPEN311_POST_LIMIT"] = "100000/minute"
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app.server)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    seen: list[int] = []

    for operation in operations:
        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=12, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def run(case) -> None:
            response = case.call()
            seen.append(response.status_code)
            assert response.status_code < 500, (case.path, response.text)
            if response.status_code >= 400 and response.headers.get(
                    "Content-Type", "").startswith("application/json"):
                body = response.json()
                assert isinstance(body, list) and body[0]["code"] == response.status_code

        run()
    assert any(code < 300 for code in seen) and any(400 <= code < 500 for code in seen)
    assert store.query_one("SELECT count(*) FROM incidents")[0] == store.query_one(
        "SELECT count(*) FROM public_reports")[0]


def test_staff_see_photos_of_incidents_in_their_scope_only(api, tmp_path: Path) -> None:
    import io

    from test_web import login

    from core.incidents import transition
    from core.users import create_user, get_user

    app, client, secret, store = api
    data = {"api_key": secret, "service_code": "garbage_overflow", "lat": "0.25",
            "long": "0.5", "description": "with photo",
            "media": (io.BytesIO(jpeg_with_exif()), "p.jpg", "image/jpeg")}
    assert client.post(f"{API}/requests.json", data=data,
                       content_type="multipart/form-data").status_code == 201
    photo_id, incident_id = store.query_one("SELECT id, incident_id FROM public_photos")
    assert client.get(f"/photos/{photo_id}.jpg").status_code in (302, 401)  # anonymous
    create_user(store, "sw_staff", "Tiny#City2026", role="dept_staff", department_code="sw")
    transition(store, get_user(store, "commander"), incident_id, "dispatch", department="cg")
    staff = app.server.test_client()
    login(staff, "cg_staff")
    response = staff.get(f"/photos/{photo_id}.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert b"SecretCameraMaker" not in response.data
    other = app.server.test_client()
    login(other, "sw_staff")
    assert other.get(f"/photos/{photo_id}.jpg").status_code == 404
    assert staff.get("/photos/" + "0" * 32 + ".jpg").status_code == 404


def test_api_keys_cli(tiny_city: Store, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from core.api_keys import api_keys_command as api_keys_cli

    tiny_city.close()
    runner = CliRunner()
    made = runner.invoke(api_keys_cli, ["create", "Partner app", "--per-minute", "7",
                                    "--data-dir", str(tmp_path)])
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    store = Store.open(tmp_path / "city.duckdb")
    try:
        assert api_keys.verify_api_key(store, secret).per_minute == 7
    finally:
        store.close()
    listed = runner.invoke(api_keys_cli, ["list", "--data-dir", str(tmp_path)])
    assert "Partner app" in listed.output and secret not in listed.output
    assert runner.invoke(api_keys_cli, ["revoke", "1", "--data-dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(api_keys_cli, ["revoke", "1", "--data-dir", str(tmp_path)])
    assert again.exit_code != 0 and "no active API key" in again.output


def test_public_site_needs_no_login_and_its_callbacks_are_rate_limited(api) -> None:
    app, client, _secret, _store = api
    page = client.get("/public/report", headers={"Accept": "text/html"})
    assert page.status_code == 200 and b"public.css" in page.data
    assert b"yiwang.css" not in page.data  # the staff theme is not loaded
    assert client.get("/public/_dash-layout").status_code == 200
    assert client.get("/_dash-layout").status_code == 401  # the staff app stays closed
    app.server.config["OPEN311_IP_LIMIT"] = "3/minute"
    body = {"output": "pub-photo-name.children", "outputs": {"id": "pub-photo-name",
                                                             "property": "children"},
            "inputs": [{"id": "pub-photo", "property": "filename", "value": "a.jpg"}],
            "changedPropIds": ["pub-photo.filename"], "state": []}
    codes = [client.post("/public/_dash-update-component", json=body).status_code
             for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
