"""Logging in and out: a server-rendered form, Flask-Login sessions, audit entries.

The login page is plain HTML (no Dash, no JavaScript) styled by ``assets/yiwang.css``.
A failed login always shows the same message, whatever the reason (unknown user, wrong
password, disabled account). Every login, failed login and logout goes to the audit log.

>>> init_auth(server)          # doctest: +SKIP  (done by dashboard.app.create_app)
"""

from __future__ import annotations

import hmac
import json
import secrets
from urllib.parse import quote, urlencode

import flask
import flask_login
from markupsafe import Markup, escape

from core.audit import record
from core.users import User, authenticate, get_user
from dashboard.context import current_store
from dashboard.i18n import _, html_lang, is_local_path

__all__ = ["SessionUser", "init_auth", "login_page"]

_CSRF_KEY = "login_csrf"
_MAX_ACTOR = 64


class SessionUser(flask_login.UserMixin):
    """The Flask-Login view of a ``core.users.User``, loaded afresh for every request."""

    def __init__(self, user: User) -> None:
        self.user = user

    def get_id(self) -> str:
        return self.user.username

    @property
    def is_active(self) -> bool:
        return self.user.active


def init_auth(server: flask.Flask) -> flask_login.LoginManager:
    """Add Flask-Login and the ``/login`` and ``/logout`` routes to ``server``."""
    manager = flask_login.LoginManager()
    manager.session_protection = "strong"
    manager.init_app(server)
    manager.user_loader(_load_user)
    server.add_url_rule("/login", "login", _login, methods=["GET", "POST"])
    server.add_url_rule("/logout", "logout", _logout, methods=["GET", "POST"])
    return manager


def _load_user(username: str) -> SessionUser | None:
    """Read the user from the store: a disabled or deleted user is out at the next request."""
    user = get_user(current_store(), username)
    if user is None or not user.active:
        return None
    return SessionUser(user)


def _client_ip() -> str:
    return flask.request.remote_addr or "-"


def _login() -> flask.Response | str:
    next_path = flask.request.values.get("next", "")
    if not is_local_path(next_path):
        next_path = "/"
    if flask.request.method == "GET":
        if flask_login.current_user.is_authenticated:
            return flask.redirect(next_path)
        return login_page(next_path)
    sent = flask.request.form.get("csrf_token", "")
    expected = flask.session.get(_CSRF_KEY, "")
    if not expected or not hmac.compare_digest(sent, expected):
        return login_page(next_path, _("The login form expired. Please try again."))
    username = flask.request.form.get("username", "").strip()
    password = flask.request.form.get("password", "")
    store = current_store()
    user = authenticate(store, username, password) if username and password else None
    detail = json.dumps({"ip": _client_ip()})
    if user is None:
        record(store, username[:_MAX_ACTOR] or "-", "login_failed", target="session",
               detail=detail)
        return login_page(next_path, _("Wrong username or password."))
    flask.session.clear()  # a fresh session on login: no fixation
    flask_login.login_user(SessionUser(user))
    flask.session.permanent = True
    record(store, user.username, "login", target="session", detail=detail)
    return flask.redirect(next_path)


def _logout() -> flask.Response:
    account = flask_login.current_user
    if account.is_authenticated:
        record(current_store(), account.user.username, "logout", target="session",
               detail=json.dumps({"ip": _client_ip()}))
    flask_login.logout_user()
    flask.session.clear()
    return flask.redirect("/login")


def login_page(next_path: str = "/", error: str | None = None) -> str:
    """The login form as HTML, in the request's language, with an optional error line."""
    token = flask.session.get(_CSRF_KEY) or secrets.token_urlsafe(32)
    flask.session[_CSRF_KEY] = token
    error_html = (Markup('<p class="yw-login-error" role="alert">{}</p>').format(error)
                  if error else "")
    back = "/login" + (f"?{urlencode({'next': next_path})}" if next_path != "/" else "")
    lang_next = escape(quote(back, safe=""))
    return _LOGIN_TEMPLATE.format(
        lang=html_lang(),
        title=escape(_("Log in")),
        product=escape(_("One-network unified city management")),
        tagline=escape(_("City operations command centre")),
        lang_next=lang_next,
        heading=escape(_("Sign in to the command centre")),
        error=error_html,
        username_label=escape(_("Username")),
        password_label=escape(_("Password")),
        submit=escape(_("Log in")),
        next=escape(next_path),
        token=escape(token),
        notice=escape(_("For authorised personnel only. Every operation is recorded.")),
    )


_LOGIN_TEMPLATE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · 一网统管</title>
<link rel="icon" type="image/svg+xml" href="/assets/favicon.svg">
<link rel="stylesheet" href="/assets/yiwang.css">
</head>
<body class="yw-login-body">
<nav class="yw-login-lang" aria-label="language">
  <a href="/lang/zh_CN?next={lang_next}" lang="zh-CN">中文</a>
  <span>|</span>
  <a href="/lang/en?next={lang_next}" lang="en">English</a>
</nav>
<main class="yw-login">
  <section class="yw-login-brand">
    <img src="/assets/favicon.svg" alt="" class="yw-login-logo">
    <h1>一网统管</h1>
    <p class="yw-login-product">{product}</p>
    <p class="yw-login-tagline">{tagline}</p>
  </section>
  <form class="yw-login-card" method="post" action="/login" autocomplete="off">
    <h2>{heading}</h2>
    {error}
    <label for="username">{username_label}</label>
    <input id="username" name="username" autocomplete="username" required autofocus>
    <label for="password">{password_label}</label>
    <input id="password" name="password" type="password" autocomplete="current-password"
           required>
    <input type="hidden" name="next" value="{next}">
    <input type="hidden" name="csrf_token" value="{token}">
    <button type="submit">{submit}</button>
  </form>
</main>
<footer class="yw-login-footer">{notice}</footer>
</body>
</html>
"""
