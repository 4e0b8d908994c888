"""Logging in and out: server-rendered forms, Flask-Login sessions, audit entries.

The login pages are plain HTML (no Dash, no JavaScript) styled by ``assets/yiwang.css``.
A login runs through steps kept in the signed session until all are done:

1. ``/login`` — username and password (``core.users.authenticate``: lockout after
   ``login_max_failures`` failures for ``login_lockout_minutes``);
2. ``/login/password`` — a new password when the old one is older than
   ``password_max_age_days``;
3. ``/login/enrol`` — TOTP enrolment with a QR code drawn on the server, when the role must
   use a second factor (``totp_required``/``totp_roles``) and has none yet; or
   ``/login/totp`` — the one-time code of an enrolled user.

Only then is a session opened. A failed login always shows the same message, whatever the
reason (unknown user, wrong password, disabled or locked account). Every login, failed login,
lockout, second-factor failure, idle timeout and logout goes to the audit log; if the audit
entry cannot be written, the login fails. A session carries the user's ``session_epoch``: a
disable, password reset, role change or second-factor reset ends it at the next request; so
does ``idle_timeout_minutes`` of inactivity.

>>> init_auth(server)          # doctest: +SKIP  (done by dashboard.app.create_app)
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from urllib.parse import quote, urlencode

import flask
import flask_login
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup, escape

from core import totp
from core.audit import AuditError, record
from core.scope import session_scope
from core.users import (
    LoginPolicy,
    PasswordPolicy,
    User,
    UserError,
    authenticate,
    change_password,
    clear_failures,
    get_user,
    note_failure,
    password_expired,
    session_epoch,
    sso_user,
)
from dashboard.context import current_settings, current_store
from dashboard.i18n import _, html_lang, is_local_path

__all__ = ["LOGIN_PATHS", "SessionUser", "check_idle", "init_auth", "login_page"]

_CSRF_KEY = "login_csrf"
_PENDING_KEY = "login_pending"
_SEEN_KEY = "seen"
_PENDING_SECONDS = 300
_MAX_ACTOR = 64
LOGIN_PATHS = frozenset({"/login", "/login/password", "/login/totp", "/login/enrol",
                         "/login/sso", "/login/sso/callback"})
_SSO = "yiwang_sso"


class SessionUser(flask_login.UserMixin):
    """The Flask-Login view of a ``core.users.User``, loaded afresh for every request."""

    def __init__(self, user: User, epoch: int = 0) -> None:
        self.user = user
        self.epoch = epoch

    def get_id(self) -> str:
        return f"{self.user.username}:{self.epoch}"

    @property
    def is_active(self) -> bool:
        return self.user.active


class _SessionInterface(SecureCookieSessionInterface):
    """Cookies are Secure on HTTPS (setting ``cookie_secure``: auto, always, never)."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        mode = current_settings().cookie_secure
        if mode == "always":
            return True
        if mode == "never":
            return False
        return flask.has_request_context() and flask.request.is_secure


def init_auth(server: flask.Flask) -> flask_login.LoginManager:
    """Add Flask-Login and the login/logout routes to ``server``."""
    server.session_interface = _SessionInterface()
    manager = flask_login.LoginManager()
    manager.session_protection = "strong"
    manager.init_app(server)
    manager.user_loader(_load_user)
    server.add_url_rule("/login", "login", _login, methods=["GET", "POST"])
    server.add_url_rule("/login/password", "login_password", _password_step,
                        methods=["GET", "POST"])
    server.add_url_rule("/login/totp", "login_totp", _totp_step, methods=["GET", "POST"])
    server.add_url_rule("/login/enrol", "login_enrol", _enrol_step, methods=["GET", "POST"])
    server.add_url_rule("/logout", "logout", _logout, methods=["GET", "POST"])
    server.add_url_rule("/login/sso", "login_sso", _sso_start)
    server.add_url_rule("/login/sso/callback", "login_sso_callback", _sso_callback)
    _init_sso(server)
    return manager


# -- single sign-on (OpenID Connect, authlib) ----------------------------------------------------
def _init_sso(server: flask.Flask) -> None:
    """Register the identity provider when ``oidc_issuer`` is set."""
    from dashboard.context import SETTINGS_KEY

    settings = server.config[SETTINGS_KEY]
    if not settings.oidc_issuer:
        return
    from authlib.integrations.flask_client import OAuth

    oauth = OAuth(server)
    oauth.register(_SSO, client_id=settings.oidc_client_id,
                   client_secret=settings.oidc_client_secret,
                   server_metadata_url=settings.oidc_issuer.rstrip("/")
                   + "/.well-known/openid-configuration",
                   client_kwargs={"scope": "openid profile"})
    server.extensions[_SSO] = oauth


def _sso_client():
    oauth = flask.current_app.extensions.get(_SSO)
    if oauth is None:
        flask.abort(404)
    return oauth.create_client(_SSO)


def _sso_start() -> flask.Response:
    next_path = flask.request.args.get("next", "")
    flask.session["sso_next"] = next_path if is_local_path(next_path) else "/"
    return _sso_client().authorize_redirect(flask.url_for("login_sso_callback", _external=True))


def _sso_callback() -> flask.Response | str:
    client = _sso_client()
    if flask.request.args.get("relay") != "1" and \
            flask.current_app.config["SESSION_COOKIE_NAME"] not in flask.request.cookies:
        # SameSite=Strict keeps the cookie off the provider's cross-site redirect: come back
        # once more from this site, so the browser sends it (and the login state with it).
        query = urlencode({**flask.request.args.to_dict(), "relay": "1"})
        return Markup('<!DOCTYPE html><meta http-equiv="refresh" content="0;url={}">'
                      ).format(f"/login/sso/callback?{query}")
    try:
        token = client.authorize_access_token()
    except Exception:  # noqa: BLE001 - any provider answer we cannot trust is a failed login
        _audit("-", "login_failed", method="sso", reason="token exchange or id token invalid")
        return login_page("/", _("Single sign-on failed. Please try again."))
    claims = token.get("userinfo") or {}
    settings, store = current_settings(), current_store()
    subject, username = str(claims.get("sub", "")), claims.get(settings.oidc_username_claim)
    user = sso_user(store, str(claims.get("iss", settings.oidc_issuer)), subject,
                    str(username) if username else None) if subject else None
    if user is None:
        _audit(str(username or "-"), "login_failed", method="sso", subject=subject)
        return login_page("/", _("Single sign-on failed. Please try again."))
    steps = ["totp"] if totp.is_enrolled(store, user.username) else \
        (["enrol"] if totp.required_for(user, settings) else [])
    next_path = flask.session.get("sso_next") or "/"
    flask.session.clear()
    flask.session[_PENDING_KEY] = {"user": user.username, "steps": steps, "at": time.time(),
                                   "next": next_path, "method": "sso"}
    return _next_step()


def _load_user(user_id: str) -> SessionUser | None:
    """Read the user from the store: a disabled, deleted or revoked session is out at the
    next request."""
    username, _sep, epoch = user_id.rpartition(":")
    found = session_scope(current_store(), username) if username else None
    if found is None:
        return None
    user, current_epoch, scope = found
    if not user.active or str(current_epoch) != epoch:
        return None
    if scope is not None:       # read together with the user: current_scope() needs no read
        flask.g.yiwang_scope = scope
    return SessionUser(user, int(epoch))


def _client_ip() -> str:
    return flask.request.remote_addr or "-"


def _audit(actor: str, action: str, **detail: object) -> None:
    record(current_store(), actor[:_MAX_ACTOR] or "-", action, target="session",
           detail=_audit_detail(**detail))


def _audit_detail(**detail: object) -> str:
    return json.dumps({"ip": _client_ip(), **detail}, ensure_ascii=False)


def check_idle() -> None:
    """Log out a session idle longer than ``idle_timeout_minutes`` (a before_request hook);
    otherwise note this request as activity."""
    account = flask_login.current_user
    if not account or not account.is_authenticated:
        return
    now = time.time()
    limit = current_settings().idle_timeout_minutes * 60
    seen = flask.session.get(_SEEN_KEY)
    if isinstance(seen, (int, float)) and now - seen > limit:
        _audit(account.user.username, "session_timeout", idle_seconds=round(now - seen))
        flask_login.logout_user()
        flask.session.clear()
        return
    # refresh at most every limit/4 (≤ 30 s): activity without a cookie on every response
    if not isinstance(seen, (int, float)) or now - seen > min(30.0, limit / 4):
        flask.session[_SEEN_KEY] = now


# -- step 1: username and password -------------------------------------------------------------
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
    store, settings = current_store(), current_settings()
    user = (authenticate(store, username, password, policy=LoginPolicy.from_settings(settings),
                         reset_failures=False)
            if username and password else None)
    try:
        if user is None:
            _audit(username, "login_failed")
            return login_page(next_path, _("Wrong username or password."))
    except AuditError:
        return login_page(next_path, _("Login is unavailable: the audit log cannot be "
                                       "written. Contact the system administrator."))
    steps = []
    if password_expired(store, user.username, PasswordPolicy.from_settings(settings)):
        steps.append("password")
    if totp.is_enrolled(store, user.username):
        steps.append("totp")
    elif totp.required_for(user, settings):
        steps.append("enrol")
    flask.session.clear()  # a fresh session on login: no fixation
    flask.session[_PENDING_KEY] = {"user": user.username, "steps": steps, "at": time.time(),
                                   "next": next_path}
    return _next_step()


def _pending() -> dict | None:
    pending = flask.session.get(_PENDING_KEY)
    if (not isinstance(pending, dict) or not pending.get("user")
            or time.time() - float(pending.get("at", 0)) > _PENDING_SECONDS):
        return None
    return pending


def _next_step() -> flask.Response | str:
    pending = _pending()
    if pending is None:
        flask.session.pop(_PENDING_KEY, None)
        return login_page("/", _("The sign-in step expired. Please log in again."))
    if pending["steps"]:
        return flask.redirect(f"/login/{pending['steps'][0]}")
    return _finish_login(pending)


def _step_done(pending: dict, step: str) -> flask.Response | str:
    pending = dict(pending, steps=[s for s in pending["steps"] if s != step])
    flask.session[_PENDING_KEY] = pending
    return _next_step()


def _finish_login(pending: dict) -> flask.Response | str:
    store = current_store()
    user = get_user(store, pending["user"])
    if user is None or not user.active:
        flask.session.clear()
        return login_page("/", _("Wrong username or password."))
    try:  # the failures reset and the audit entry: one transaction
        clear_failures(store, user.username, audit_detail=_audit_detail())
    except AuditError:
        flask.session.clear()
        return login_page("/", _("Login is unavailable: the audit log cannot be written. "
                                 "Contact the system administrator."))
    flask.session.clear()
    flask_login.login_user(SessionUser(user, session_epoch(store, user.username) or 0))
    flask.session.permanent = True
    flask.session[_SEEN_KEY] = time.time()
    return flask.redirect(pending.get("next") or "/")


def _step_guard(step: str) -> dict | flask.Response | str:
    """The pending login when ``step`` is its current step, else where to go instead."""
    pending = _pending()
    if pending is None or not pending["steps"] or pending["steps"][0] != step:
        return _next_step() if pending else flask.redirect("/login")
    if flask.request.method == "POST":
        sent = flask.request.form.get("csrf_token", "")
        expected = flask.session.get(_CSRF_KEY, "")
        if not expected or not hmac.compare_digest(sent, expected):
            return flask.redirect(f"/login/{step}")
    return pending


def _failed_step(pending: dict, action: str) -> bool:
    """Count a failed second step; True when it locked the account (login restarts)."""
    store = current_store()
    _audit(pending["user"], action)
    locked = note_failure(store, pending["user"],
                          policy=LoginPolicy.from_settings(current_settings()))
    if locked:
        flask.session.clear()
    return locked


# -- step 2: expired password --------------------------------------------------------------------
def _password_step() -> flask.Response | str:
    pending = _step_guard("password")
    if not isinstance(pending, dict):
        return pending
    if flask.request.method == "GET":
        return _password_page()
    form = flask.request.form
    new = form.get("new_password", "")
    if new != form.get("repeat_password", ""):
        return _password_page(_("The two new passwords differ."))
    policy = PasswordPolicy.from_settings(current_settings())
    try:
        change_password(current_store(), pending["user"], form.get("password", ""), new,
                        policy=policy)
    except UserError:
        return _password_page(_policy_text(policy))
    return _step_done(pending, "password")


def _policy_text(policy: PasswordPolicy) -> str:
    return _("The current password must be right, and the new one must differ from it, have "
             "at least {length} characters and {classes} of: lower case, upper case, digit, "
             "symbol.").format(length=policy.min_length, classes=policy.classes)


# -- step 3: second factor ----------------------------------------------------------------------
def _totp_step() -> flask.Response | str:
    pending = _step_guard("totp")
    if not isinstance(pending, dict):
        return pending
    if flask.request.method == "GET":
        return _totp_page()
    if totp.verify(current_store(), pending["user"], flask.request.form.get("code", "")):
        return _step_done(pending, "totp")
    if _failed_step(pending, "totp_failed"):
        return login_page("/", _("Wrong username or password."))
    return _totp_page(_("Wrong code. Please try again."))


def _enrol_step() -> flask.Response | str:
    pending = _step_guard("enrol")
    if not isinstance(pending, dict):
        return pending
    secret = pending.get("secret")
    if not secret:
        secret = totp.new_secret()
        pending = dict(pending, secret=secret)
        flask.session[_PENDING_KEY] = pending
    if flask.request.method == "GET":
        return _enrol_page(pending["user"], secret)
    if totp.enrol(current_store(), pending["user"], secret, flask.request.form.get("code", "")):
        return _step_done({k: v for k, v in pending.items() if k != "secret"}, "enrol")
    if _failed_step(pending, "totp_enrol_failed"):
        return login_page("/", _("Wrong username or password."))
    return _enrol_page(pending["user"], secret, _("Wrong code. Please try again."))


def _logout() -> flask.Response:
    account = flask_login.current_user
    if account.is_authenticated:
        _audit(account.user.username, "logout")
    flask_login.logout_user()
    flask.session.clear()
    return flask.redirect("/login")


# -- pages -----------------------------------------------------------------------------------
def _token() -> str:
    token = flask.session.get(_CSRF_KEY) or secrets.token_urlsafe(32)
    flask.session[_CSRF_KEY] = token
    return token


def _error_html(error: str | None) -> Markup | str:
    return (Markup('<p class="yw-login-error" role="alert">{}</p>').format(error)
            if error else "")


def login_page(next_path: str = "/", error: str | None = None) -> str:
    """The login form as HTML, in the request's language, with an optional error line."""
    back = "/login" + (f"?{urlencode({'next': next_path})}" if next_path != "/" else "")
    body = Markup(
        '<label for="username">{username_label}</label>'
        '<input id="username" name="username" autocomplete="username" required autofocus>'
        '<label for="password">{password_label}</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password"'
        ' required>'
        '<input type="hidden" name="next" value="{next}">'
    ).format(username_label=_("Username"), password_label=_("Password"), next=next_path)
    after = ""
    if current_settings().oidc_issuer:
        after = Markup('<a class="yw-login-sso" href="/login/sso?{q}">{label}</a>').format(
            q=urlencode({"next": next_path}), label=_("Sign in with the government account"))
    return _page(_("Log in"), _("Sign in to the command centre"), "/login", body,
                 _("Log in"), error, back, after=after)


def _password_page(error: str | None = None) -> str:
    policy = PasswordPolicy.from_settings(current_settings())
    body = Markup(
        '<p class="yw-login-hint">{hint}</p>'
        '<label for="password">{current}</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password"'
        ' required autofocus>'
        '<label for="new_password">{new}</label>'
        '<input id="new_password" name="new_password" type="password"'
        ' autocomplete="new-password" required>'
        '<label for="repeat_password">{repeat}</label>'
        '<input id="repeat_password" name="repeat_password" type="password"'
        ' autocomplete="new-password" required>'
    ).format(hint=_("Your password has expired. Choose a new one.") + " "
             + _("At least {length} characters and {classes} of: lower case, upper case, "
                 "digit, symbol.").format(length=policy.min_length, classes=policy.classes),
             current=_("Current password"), new=_("New password"),
             repeat=_("New password again"))
    return _page(_("Change password"), _("Change password"), "/login/password", body,
                 _("Save and continue"), error)


def _code_input() -> Markup:
    return Markup(
        '<label for="code">{label}</label>'
        '<input id="code" name="code" inputmode="numeric" pattern="[0-9 ]{{6,7}}"'
        ' autocomplete="one-time-code" maxlength="7" required autofocus>'
    ).format(label=_("6-digit code"))


def _totp_page(error: str | None = None) -> str:
    body = Markup('<p class="yw-login-hint">{}</p>').format(
        _("Enter the 6-digit code from your authenticator app.")) + _code_input()
    return _page(_("Two-step verification"), _("Two-step verification"), "/login/totp", body,
                 _("Verify"), error)


def _enrol_page(username: str, secret: str, error: str | None = None) -> str:
    svg = totp.qr_svg(totp.provisioning_uri(secret, username))
    svg = svg[svg.index("<svg"):]  # drop the XML declaration: it is inline in HTML
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    body = Markup(
        '<p class="yw-login-hint">{hint}</p>'
        '<div class="yw-totp-qr" style="background:#fff;padding:12px;width:220px;'
        'height:220px;margin:8px 0">{svg}</div>'
        '<p class="yw-login-hint">{key_label} <code id="totp-secret">{key}</code></p>'
    ).format(hint=_("Your role needs two-step verification. Scan this code with an "
                    "authenticator app (or type the key by hand), then enter the 6-digit code "
                    "it shows."),
             svg=Markup(svg.replace('width="', 'data-w="').replace('height="', 'data-h="')
                        .replace("<svg ", '<svg style="width:100%;height:100%" ', 1)),
             key_label=_("Key:"), key=grouped) + _code_input()
    return _page(_("Set up two-step verification"), _("Set up two-step verification"),
                 "/login/enrol", body, _("Confirm"), error)


def _page(title: str, heading: str, action: str, body: Markup, submit: str,
          error: str | None, back: str | None = None, after: Markup | str = "") -> str:
    return _LOGIN_TEMPLATE.format(
        lang=html_lang(),
        title=escape(title),
        product=escape(_("One-network unified city management")),
        tagline=escape(_("City operations command centre")),
        lang_next=escape(quote(back or action, safe="")),
        heading=escape(heading),
        action=escape(action),
        error=_error_html(error),
        body=body,
        submit=escape(submit),
        after=after,
        token=escape(_token()),
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
  <form class="yw-login-card" method="post" action="{action}" autocomplete="off">
    <h2>{heading}</h2>
    {error}
    {body}
    <input type="hidden" name="csrf_token" value="{token}">
    <button type="submit">{submit}</button>
    {after}
  </form>
</main>
<footer class="yw-login-footer">{notice}</footer>
</body>
</html>
"""
