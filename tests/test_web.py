"""The web tier through Flask's test client: login, sessions, 401s, redirects, scope, language."""

from __future__ import annotations

import json
import re
import shutil
import stat
from pathlib import Path

import pytest
from conftest import TINY_PASSWORD, build_tiny_city
from flask.testing import FlaskClient

from core.settings import load_settings
from core.store import Store
from core.users import get_user, set_active
from dashboard.app import create_app, secret_key_for
from dashboard.cli import stop_services
from dashboard.shell import page_allowed

DASH_ENDPOINTS = [("GET", "/_dash-layout"), ("GET", "/_dash-dependencies"),
                  ("POST", "/_dash-update-component")]
DRILL_OUTPUTS = [("home-geo", "data"), ("home-geo", "hideout"), ("home-map", "viewport"),
                 ("home-panel", "children"), ("home-focus", "data")]


@pytest.fixture(scope="module")
def tiny_city_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny city built once per module (argon2 hashing is slow on purpose)."""
    path = tmp_path_factory.mktemp("tiny") / "city.duckdb"
    store = Store.open(path)
    build_tiny_city(store)
    store.close()
    return path


@pytest.fixture
def tiny_city(tiny_city_file: Path, tmp_path: Path) -> Store:
    """A private copy of the tiny city for one test."""
    shutil.copy(tiny_city_file, tmp_path / "city.duckdb")
    store = Store.open(tmp_path / "city.duckdb")
    yield store
    store.close()


@pytest.fixture
def client(tiny_city: Store, tmp_path: Path) -> FlaskClient:
    app = create_app(tiny_city, load_settings(data_dir=tmp_path, totp_required=False))
    return app.server.test_client()


def login(client: FlaskClient, username: str, password: str = TINY_PASSWORD, next_path: str = "/"):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token, "next": next_path})


def audit_actions(store: Store) -> list[tuple[str, str]]:
    return [tuple(r) for r in store.query("SELECT actor, action FROM audit_log ORDER BY seq")]


def dash_post(client: FlaskClient, output: str, outputs: list, inputs: list, changed: list):
    """POST what the Dash renderer posts to run one callback."""
    body = {"output": output, "outputs": outputs, "inputs": inputs, "changedPropIds": changed,
            "state": []}
    return client.post("/_dash-update-component", json=body)


def drill(client: FlaskClient, *, click_code: str | None = None, child_code: str | None = None):
    """Run the home page's drill-down callback as the browser would."""
    deps = client.get("/_dash-dependencies").json
    output = next(d["output"] for d in deps if "home-geo.data" in d["output"])
    click = {"type": "Feature", "properties": {"code": click_code}} if click_code else None
    children = ([{"id": {"type": "home-child", "code": child_code}, "property": "n_clicks",
                  "value": 1}] if child_code else [])
    if child_code:
        changed = [json.dumps({"code": child_code, "type": "home-child"},
                              separators=(",", ":")) + ".n_clicks"]
    else:
        changed = ["home-geo.clickData"]
    return dash_post(
        client, output, [{"id": i, "property": p} for i, p in DRILL_OUTPUTS],
        [{"id": "home-geo", "property": "clickData", "value": click}, children, []], changed,
    )


def route(client: FlaskClient, pathname: str = "/") -> str:
    """The page layout Dash's router returns for ``pathname``, as JSON text."""
    client.get("/")  # Dash registers its router callback at the first request
    response = dash_post(
        client, ".._pages_content.children..._pages_store.data..",
        [{"id": "_pages_content", "property": "children"},
         {"id": "_pages_store", "property": "data"}],
        [{"id": "_pages_location", "property": "pathname", "value": pathname},
         {"id": "_pages_location", "property": "search", "value": ""}],
        ["_pages_location.pathname"],
    )
    assert response.status_code == 200, response.data
    return json.dumps(response.json, ensure_ascii=False)


def layout_text(client: FlaskClient) -> str:
    response = client.get("/_dash-layout")
    assert response.status_code == 200
    return json.dumps(response.json, ensure_ascii=False)


def test_login_page_renders_in_chinese_by_default(client: FlaskClient) -> None:
    response = client.get("/login")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="zh-CN">' in page and "一网统管" in page and "登录" in page
    assert 'name="username"' in page and 'type="password"' in page
    assert 'href="/assets/yiwang.css"' in page
    assert client.get("/assets/yiwang.css").status_code == 200


def test_healthz_is_public_and_reports_schema(client: FlaskClient, tiny_city: Store) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"ok": True, "schema_version": tiny_city.schema_version()}


def test_wrong_password_and_unknown_user_get_one_generic_error(
    client: FlaskClient, tiny_city: Store
) -> None:
    wrong = login(client, "commander", "not-the-password").get_data(as_text=True)
    unknown = login(client, "nobody", "not-the-password").get_data(as_text=True)
    for page in (wrong, unknown):
        assert "用户名或密码错误。" in page
    assert client.get("/").status_code == 302
    actions = audit_actions(tiny_city)
    assert ("commander", "login_failed") in actions and ("nobody", "login_failed") in actions
    assert not any(action == "login" for _, action in actions)


def test_right_password_redirects_and_shows_home(client: FlaskClient, tiny_city: Store) -> None:
    response = login(client, "commander")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert ("commander", "login") in audit_actions(tiny_city)
    index = client.get("/")
    assert index.status_code == 200 and b"_dash-config" in index.data
    header = layout_text(client)
    assert "市值班员" in header and "指挥中心值班员" in header and "示范市" in header
    home = route(client, "/")
    assert "home-map" in home and "1区" in home and "2区" in home


def test_session_cookie_is_httponly_strict_and_expires(client: FlaskClient) -> None:
    response = login(client, "commander")
    cookie = next(c for c in response.headers.getlist("Set-Cookie")
                  if c.startswith("yiwang_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # plain HTTP here; HTTPS requests get Secure (test_security_web)


def test_login_without_form_token_is_refused(client: FlaskClient, tiny_city: Store) -> None:
    response = client.post("/login", data={"username": "commander", "password": TINY_PASSWORD})
    assert "登录页面已过期" in response.get_data(as_text=True)
    assert client.get("/_dash-layout").status_code == 401


@pytest.mark.parametrize(("method", "path"), DASH_ENDPOINTS)
def test_dash_endpoints_answer_401_without_login(client: FlaskClient, method: str,
                                                 path: str) -> None:
    response = client.open(path, method=method, json={} if method == "POST" else None)
    assert response.status_code == 401
    assert response.json["error"] == "login required"


def test_pages_redirect_to_login_and_private_assets_are_refused(client: FlaskClient) -> None:
    response = client.get("/incidents?status=open")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/incidents%3Fstatus%3Dopen"
    assert client.get("/assets/yiwang.js").status_code == 401
    assert client.get("/_dash-component-suites/dash/dash-renderer/build/dash_renderer.min.js"
                      ).status_code == 401


def test_login_goes_to_the_requested_local_page(client: FlaskClient) -> None:
    assert login(client, "commander", next_path="/incidents").headers["Location"] == "/incidents"


@pytest.mark.parametrize("target", ["http://evil.example", "//evil.example/x",
                                    "/\\evil.example", "https:evil.example"])
def test_open_redirect_refused(client: FlaskClient, target: str) -> None:
    assert login(client, "commander", next_path=target).headers["Location"] == "/"
    switched = client.get(f"/lang/en?next={target}")
    assert switched.headers["Location"] == "/"
    from_elsewhere = client.get("/lang/en", headers={"Referer": "http://evil.example/x"})
    assert from_elsewhere.headers["Location"] == "/"


def test_logout_ends_the_session(client: FlaskClient, tiny_city: Store) -> None:
    login(client, "commander")
    assert client.get("/_dash-layout").status_code == 200
    response = client.get("/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/_dash-layout").status_code == 401
    assert ("commander", "logout") in audit_actions(tiny_city)


def test_disabled_user_is_out_at_the_next_request(client: FlaskClient, tiny_city: Store) -> None:
    login(client, "commander")
    assert client.get("/_dash-layout").status_code == 200
    set_active(tiny_city, "commander", False)
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/").status_code == 302


def test_d1_commander_cannot_drill_into_d2(client: FlaskClient) -> None:
    login(client, "d1_commander")
    home = route(client, "/")
    assert "D1S1街道" in home and "2区" not in home and "District 2" not in home
    allowed = drill(client, click_code="D1S1")
    assert allowed.status_code == 200 and "D1S1C1" in json.dumps(allowed.json)
    for response in (drill(client, click_code="D2"), drill(client, child_code="D2"),
                     drill(client, click_code="D2S1"), drill(client, click_code="C")):
        text = response.get_data(as_text=True)
        assert response.status_code == 204, text
        assert "D2" not in text and "2区" not in text


def test_drill_from_the_side_list_shows_the_subdivision(client: FlaskClient) -> None:
    login(client, "commander")
    response = drill(client, child_code="D2")
    data = response.json["response"]
    assert data["home-focus"]["data"] == "D2"
    codes = [f["properties"]["code"] for f in data["home-geo"]["data"]["features"]]
    assert codes == ["D2S1", "D2S2"]
    assert data["home-map"]["viewport"]["bounds"] == [[0.0, 1.0], [1.0, 2.0]]


def test_platform_role_sees_boundaries_and_a_note(client: FlaskClient) -> None:
    login(client, "sysadmin")
    home = route(client, "/")
    assert "1区" in home and "平台运维角色" in home


def test_language_switch_changes_strings(client: FlaskClient) -> None:
    login(client, "commander")
    assert "退出" in layout_text(client)
    response = client.get("/lang/en", headers={"Referer": "http://localhost/"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "lang=en" in response.headers["Set-Cookie"]
    english = layout_text(client)
    assert "Log out" in english and "Commander" in english and "Demo City" in english
    assert '<html lang="en">' in client.get("/").get_data(as_text=True)
    assert "District 1" in route(client, "/")
    assert client.get("/lang/fr").status_code == 404


def test_secret_key_generated_once_with_private_mode(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    key = secret_key_for(settings)
    path = tmp_path / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key_for(settings) == key and len(key) >= 32
    assert secret_key_for(load_settings(data_dir=tmp_path, secret_key="x" * 40)) == "x" * 40


def test_security_headers(client: FlaskClient) -> None:
    headers = client.get("/login").headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"


def test_role_restricted_pages_are_hidden_and_refused(tiny_city: Store) -> None:
    commander = get_user(tiny_city, "commander")
    assert page_allowed({"roles": None}, commander)
    assert page_allowed({"roles": ["commander", "leader"]}, commander)
    assert not page_allowed({"roles": ["auditor"]}, commander)


def test_two_apps_in_one_process_keep_their_own_store(tiny_city_file: Path,
                                                      tmp_path: Path) -> None:
    apps = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(tiny_city_file, tmp_path / name / "city.duckdb")
        store = Store.open(tmp_path / name / "city.duckdb")
        settings = load_settings(data_dir=tmp_path / name, totp_required=False)
        apps.append((store, create_app(store, settings)))
    try:
        for store, app in apps:
            client = app.server.test_client()
            login(client, "commander")
            assert drill(client, click_code="D1").json["response"]["home-focus"]["data"] == "D1"
            assert [a for _, a in audit_actions(store)] == ["login"]
    finally:
        for store, _ in apps:
            store.close()


def test_user_bound_to_a_vanished_jurisdiction_gets_an_actionable_page(
    client: FlaskClient, tiny_city: Store
) -> None:
    login(client, "d1_commander")
    with tiny_city.transaction() as cur:
        cur.execute("UPDATE users SET jurisdiction_code = 'GONE' WHERE username = 'd1_commander'")
    assert client.get("/_dash-layout").status_code == 200
    assert "系统管理员" in route(client, "/")


def test_stopping_services_survives_one_that_fails() -> None:
    stopped: list[str] = []

    class Service:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        def shutdown(self) -> None:
            stopped.append(self.name)
            if self.fail:
                raise RuntimeError("stuck")

    stop_services([("a", Service("a")), ("b", Service("b", fail=True)), ("c", Service("c"))])
    assert stopped == ["c", "b", "a"]
