"""Authentication hardening through Flask's test client on the tiny city: lockout, password
policy and expiry, TOTP enrolment and checks (no replay), idle timeout, session revocation,
cookie flags, CSRF (Origin, JSON)."""

from __future__ import annotations

import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from conftest import TINY_PASSWORD
from flask.testing import FlaskClient

from core.settings import load_settings
from core.store import Store
from core.users import (
    LoginPolicy,
    PasswordPolicy,
    UserError,
    authenticate,
    create_user,
    lock_state,
    reset_password,
    set_active,
)
from dashboard.app import create_app

NEW_PASSWORD = "Fresh#Start2027"


@pytest.fixture
def make_client(tiny_city: Store, tmp_path: Path):
    def make(**overrides) -> FlaskClient:
        app = create_app(tiny_city, load_settings(data_dir=tmp_path, **overrides))
        return app.server.test_client()

    return make


def token_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def login(client: FlaskClient, username: str, password: str = TINY_PASSWORD):
    token = token_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token, "next": "/"})


def post_step(client: FlaskClient, path: str, **fields):
    token = token_of(client.get(path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **fields})


def actions(store: Store, actor: str | None = None) -> list[str]:
    if actor:
        return [r[0] for r in store.query("SELECT action FROM audit_log WHERE actor = ?"
                                          " ORDER BY seq", [actor])]
    return [r[0] for r in store.query("SELECT action FROM audit_log ORDER BY seq")]


def logged_in(client: FlaskClient) -> bool:
    return client.get("/_dash-layout").status_code == 200


# -- lockout ---------------------------------------------------------------------------------
def test_core_lockout_after_max_failures_then_unlock(tiny_city: Store) -> None:
    policy = LoginPolicy(max_failures=3, lockout_minutes=15)
    for _ in range(3):
        assert authenticate(tiny_city, "commander", "Wrong#Pass123", policy=policy) is None
    assert lock_state(tiny_city, "commander") is not None
    assert authenticate(tiny_city, "commander", TINY_PASSWORD, policy=policy) is None
    assert actions(tiny_city, "commander") == ["account_locked", "login_locked"]
    later = lock_state(tiny_city, "commander") + timedelta(seconds=1)
    assert authenticate(tiny_city, "commander", TINY_PASSWORD, policy=policy,
                        now=later) is not None


def test_web_lockout_uses_settings_and_shows_the_generic_message(make_client,
                                                                 tiny_city: Store) -> None:
    client = make_client(totp_required=False, login_max_failures=2)
    for _ in range(2):
        assert "用户名或密码错误" in login(client, "commander", "nope-nope").get_data(True)
    page = login(client, "commander").get_data(as_text=True)
    assert "用户名或密码错误" in page and not logged_in(client)
    assert actions(tiny_city, "commander") == ["login_failed", "account_locked", "login_failed",
                                               "login_locked", "login_failed"]


# -- password policy and expiry ----------------------------------------------------------------
@pytest.mark.parametrize(("password", "problem"), [
    ("Sh0rt!", "at least 10"), ("alllowercase1", "3 of"), ("commander#Pass1", "username"),
])
def test_password_policy(password: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        PasswordPolicy().check(password, "commander")
    PasswordPolicy().check("Good#Password9", "commander")
    assert PasswordPolicy(min_length=8, classes=1).problems("lowercase") == []


def test_expired_password_must_be_changed_before_the_session(make_client,
                                                             tiny_city: Store) -> None:
    tiny_city.query("UPDATE users SET password_changed_at = now()::TIMESTAMP - INTERVAL 100 DAY"
                    " WHERE username = 'cg_staff'")
    client = make_client(totp_required=False)
    response = login(client, "cg_staff")
    assert response.headers["Location"] == "/login/password" and not logged_in(client)
    weak = post_step(client, "/login/password", password=TINY_PASSWORD, new_password="weak",
                     repeat_password="weak")
    assert "至少" in weak.get_data(as_text=True) and not logged_in(client)
    done = post_step(client, "/login/password", password=TINY_PASSWORD,
                     new_password=NEW_PASSWORD, repeat_password=NEW_PASSWORD)
    assert done.headers["Location"] == "/" and logged_in(client)
    assert actions(tiny_city, "cg_staff")[-2:] == ["password_changed", "login"]
    assert authenticate(tiny_city, "cg_staff", NEW_PASSWORD) is not None


def test_steps_cannot_be_skipped(make_client) -> None:
    client = make_client()
    assert client.get("/login/totp").headers["Location"] == "/login"
    login(client, "commander")  # must enrol first
    assert client.get("/login/totp").headers["Location"] == "/login/enrol"
    assert not logged_in(client)


# -- TOTP -----------------------------------------------------------------------------------
def enrol(client: FlaskClient) -> str:
    assert login(client, "commander").headers["Location"] == "/login/enrol"
    page = client.get("/login/enrol").get_data(as_text=True)
    assert "<svg" in page and "<path" in page and "http" not in page.split("<svg")[1][:20]
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    wrong = post_step(client, "/login/enrol", code="000000")
    assert "验证码错误" in wrong.get_data(as_text=True) and not logged_in(client)
    ok = post_step(client, "/login/enrol", code=pyotp.TOTP(secret).now())
    assert ok.headers["Location"] == "/" and logged_in(client)
    return secret


def test_commander_enrols_then_needs_a_fresh_code(make_client, tiny_city: Store) -> None:
    client = make_client()
    secret = enrol(client)
    assert actions(tiny_city, "commander")[-3:] == ["totp_enrol_failed", "totp_enrolled",
                                                    "login"]
    client.get("/logout")
    assert login(client, "commander").headers["Location"] == "/login/totp"
    used = pyotp.TOTP(secret).now()  # the code used at enrolment: a replay
    replay = post_step(client, "/login/totp", code=used)
    assert "验证码错误" in replay.get_data(as_text=True) and not logged_in(client)
    tiny_city.query("UPDATE users SET totp_last_step = totp_last_step - 2"
                    " WHERE username = 'commander'")  # pretend the next period has come
    fresh = post_step(client, "/login/totp", code=pyotp.TOTP(secret).at(time.time()))
    assert fresh.headers["Location"] == "/" and logged_in(client)


def test_second_factor_failures_lock_the_account(make_client, tiny_city: Store) -> None:
    client = make_client(login_max_failures=3)
    enrol(client)  # one failure counted during enrolment, cleared by the login
    client.get("/logout")
    for attempt in range(3):
        login(client, "commander")
        post_step(client, "/login/totp", code="123456")
        if attempt < 2:
            assert not logged_in(client)
    assert lock_state(tiny_city, "commander") is not None
    assert "account_locked" in actions(tiny_city, "commander")


def test_roles_without_totp_requirement_log_in_with_a_password(make_client) -> None:
    client = make_client()
    assert login(client, "cg_staff").headers["Location"] == "/" and logged_in(client)


# -- sessions -------------------------------------------------------------------------------
def test_idle_session_is_logged_out_and_audited(make_client, tiny_city: Store) -> None:
    client = make_client(totp_required=False, idle_timeout_minutes=10)
    login(client, "commander")
    assert logged_in(client)
    with client.session_transaction() as session:
        session["seen"] = time.time() - 9 * 60
    assert logged_in(client)  # activity within the limit refreshes it
    with client.session_transaction() as session:
        session["seen"] = time.time() - 11 * 60
    assert not logged_in(client) and client.get("/").status_code == 302
    assert "session_timeout" in actions(tiny_city, "commander")


@pytest.mark.parametrize("revoke", [
    lambda s: set_active(s, "commander", False),
    lambda s: reset_password(s, "commander", NEW_PASSWORD),
])
def test_revocation_ends_existing_sessions(make_client, tiny_city: Store, revoke) -> None:
    client = make_client(totp_required=False)
    login(client, "commander")
    assert logged_in(client)
    revoke(tiny_city)
    assert not logged_in(client)


def test_cookie_is_secure_on_https(make_client) -> None:
    client = make_client(totp_required=False)
    client.environ_base["wsgi.url_scheme"] = "https"
    page = client.get("/login", base_url="https://localhost")
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_cross_site_posts_are_refused_and_audited(make_client, tiny_city: Store) -> None:
    client = make_client(totp_required=False)
    login(client, "commander")
    body = {"output": "x.y", "outputs": [], "inputs": [], "changedPropIds": [], "state": []}
    evil = client.post("/_dash-update-component", json=body,
                       headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    form = client.post("/_dash-update-component", data="a=1",
                       content_type="application/x-www-form-urlencoded",
                       headers={"Origin": "http://localhost"})
    assert form.status_code == 403
    login_csrf = client.post("/login", data={"username": "x"},
                             headers={"Referer": "http://evil.example/page"})
    assert login_csrf.status_code == 403
    refusals = tiny_city.query("SELECT detail FROM audit_log WHERE action = 'refused'")
    assert len(refusals) == 3 and "evil.example" in refusals[0][0]


def test_login_fails_when_the_audit_log_cannot_be_written(make_client, tiny_city: Store,
                                                          tmp_path: Path) -> None:
    client = make_client(totp_required=False)
    tiny_city.query("ALTER TABLE audit_log RENAME TO audit_log_gone")
    page = login(client, "commander").get_data(as_text=True)
    assert "审计日志" in page and not logged_in(client)


def test_new_users_must_meet_the_policy(tiny_city: Store) -> None:
    with pytest.raises(UserError, match="3 of"):
        create_user(tiny_city, "weak.user", "onlylowercase", role="leader",
                    jurisdiction_code="C")


def test_template_is_unchanged(tiny_city_template: Path, tmp_path: Path) -> None:
    """Tests here work on copies: the session template keeps no audit entries."""
    shutil.copy(tiny_city_template, tmp_path / "copy.duckdb")
    store = Store.open(tmp_path / "copy.duckdb")
    try:
        assert store.query_one("SELECT count(*) FROM audit_log") == (0,)
    finally:
        store.close()


def test_totp_secrets_are_sealed_at_rest(tiny_city: Store, tmp_path: Path) -> None:
    """The database holds no usable TOTP secret: it is encrypted with a key file beside the
    audit key; a secret stored in clear before (an older database) is sealed at its next use;
    without the key file nobody passes the second factor."""
    from core import totp

    secret = totp.new_secret()
    now = time.time()
    assert totp.enrol(tiny_city, "commander", secret, pyotp.TOTP(secret).at(now), now=now)
    stored = tiny_city.query_one("SELECT totp_secret FROM users WHERE username = 'commander'")[0]
    assert secret not in stored and stored.startswith("fernet:")
    assert (tmp_path / totp.SECRET_KEY_FILE).stat().st_mode & 0o077 == 0
    later = now + 60
    assert totp.verify(tiny_city, "commander", pyotp.TOTP(secret).at(later), now=later)
    # an older database with a secret in clear: still accepted once, then sealed
    with tiny_city.transaction() as cur:
        cur.execute("UPDATE users SET totp_secret = ?, totp_last_step = NULL"
                    " WHERE username = 'commander'", [secret])
    later += 60
    assert totp.verify(tiny_city, "commander", pyotp.TOTP(secret).at(later), now=later)
    assert tiny_city.query_one("SELECT totp_secret FROM users WHERE username = 'commander'"
                               )[0].startswith("fernet:")
    # another key (the key file lost or replaced): the sealed secret opens no more
    (tmp_path / totp.SECRET_KEY_FILE).unlink()
    totp._FERNETS.clear()
    later += 60
    assert not totp.verify(tiny_city, "commander", pyotp.TOTP(secret).at(later), now=later)
