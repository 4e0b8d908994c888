"""The web tier's composition root: ``create_app(store, settings)`` wires Flask, Dash,
login, languages, the shell and every page.

Rules kept here for every page:
- every route needs a logged-in user except the login steps (``/login…``), ``/logout``,
  ``/lang/<code>``, ``/healthz`` and the few assets the login page uses. A page request without login is
  redirected to ``/login?next=…``; any other request (Dash callbacks, layout, assets) gets 401.
- the store and settings live in ``server.config`` (never module globals);
- the app runs air-gapped: Dash serves its JavaScript itself, every CSS/JS/icon is in
  ``assets/``, the Content-Security-Policy forbids other hosts (except ``tile_url``'s).
- page callbacks are registered per app: a page module defines
  ``register_callbacks(app)`` (Dash's global ``dash.callback`` would bind them to whichever
  app is created first). After they are all registered, every entry of ``app.callback_map``
  (and those Dash adds at its first request, like the pages router) is wrapped by the
  authorization + audit guard (``dashboard.guard``, contract D);
- cross-site requests are refused: session cookies are SameSite=Strict, HttpOnly and Secure
  on HTTPS; a state-changing request whose Origin (or Referer) names another host gets 403
  (audited), and Dash callback POSTs must be JSON;
- a session idle longer than ``idle_timeout_minutes`` is logged out (audited).

>>> app = create_app(store, settings)          # doctest: +SKIP
>>> app.server.test_client().get("/healthz").json
{'ok': True, 'schema_version': 1}
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import dash
import flask
import flask_login

from core.audit import AuditError, record
from core.settings import Settings
from core.store import Store
from dashboard.auth import LOGIN_PATHS, check_idle, init_auth
from dashboard.context import SETTINGS_KEY, STORE_KEY, current_store, maybe_current_user
from dashboard.guard import guard_callbacks
from dashboard.i18n import html_lang, init_i18n
from dashboard.shell import guard_pages, register_shell_callbacks, shell_layout

__all__ = ["ASSETS_DIR", "PAGES_DIR", "PUBLIC_ASSETS", "create_app", "secret_key_for"]

PACKAGE_DIR = Path(__file__).resolve().parent
PAGES_DIR = PACKAGE_DIR / "pages"
ASSETS_DIR = PACKAGE_DIR.parent / "assets"
PUBLIC_PATHS = frozenset({"/logout", "/healthz"}) | LOGIN_PATHS
PUBLIC_ASSETS = frozenset({"/assets/yiwang.css", "/assets/favicon.svg"})
_LANG_PREFIX = "/lang/"

_INDEX = """<!DOCTYPE html>
<html lang="{%lang%}">
<head>
{%metas%}
<title>{%title%}</title>
<link rel="icon" type="image/svg+xml" href="/assets/favicon.svg">
{%css%}
</head>
<body>
{%app_entry%}
<footer>
{%config%}
{%scripts%}
{%renderer%}
</footer>
</body>
</html>"""


class _YiwangDash(dash.Dash):
    """Dash with the page language set per request in ``<html lang>``."""

    def interpolate_index(self, **kwargs: Any) -> str:
        return super().interpolate_index(**kwargs).replace("{%lang%}", html_lang())


def create_app(store: Store, settings: Settings) -> dash.Dash:
    """The Dash app (``.server`` is the Flask WSGI app) serving ``store`` with ``settings``.

    >>> app = create_app(store, load_settings(data_dir=tmp))   # doctest: +SKIP
    """
    server = flask.Flask(__name__, root_path=str(PACKAGE_DIR), static_folder=None)
    _configure(server, store, settings)
    init_i18n(server, settings.default_locale)
    init_auth(server)
    server.add_url_rule("/healthz", "healthz", _healthz)
    server.before_request(_check_origin)
    # a result left half read would keep its transaction (on a lake: catalog locks) open
    server.teardown_request(lambda _exc: store.release_cursor())
    server.before_request(check_idle)
    server.before_request(_require_login)
    server.after_request(_security_headers)
    app = _YiwangDash(
        name=__name__,  # has a __file__ even when the package is installed as a namespace
        server=server,
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        serve_locally=True,
        suppress_callback_exceptions=True,
        include_pages_meta=False,
        index_string=_INDEX,
        title="一网统管 · Yiwang",
        update_title=None,
    )
    app.enable_dev_tools(debug=False, dev_tools_ui=False, dev_tools_hot_reload=False,
                         dev_tools_disable_version_check=True)
    app.layout = shell_layout
    guard_pages()
    register_shell_callbacks(app)
    _register_page_callbacks(app)
    guard_callbacks(app)
    # Dash registers the pages router (and dash.callback ones) at its first request: wrap
    # those too, before any callback runs (this hook runs after Dash's own).
    server.before_request(functools.partial(_guard_late_callbacks, app))
    return app


def _guard_late_callbacks(app: dash.Dash) -> None:
    guard_callbacks(app)


def _configure(server: flask.Flask, store: Store, settings: Settings) -> None:
    server.config.update(
        {
            STORE_KEY: store,
            SETTINGS_KEY: settings,
            "SECRET_KEY": secret_key_for(settings),
            "SESSION_COOKIE_NAME": "yiwang_session",
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Strict",
            "PERMANENT_SESSION_LIFETIME": timedelta(hours=settings.session_hours),
            "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        }
    )


def secret_key_for(settings: Settings) -> str:
    """``settings.secret_key``, else a key generated once into ``<data_dir>/secret_key`` (0600).

    >>> secret_key_for(load_settings(data_dir=tmp)) == secret_key_for(load_settings(data_dir=tmp))
    True
    """
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = None
    if fd is not None:
        key = secrets.token_hex(32)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key + "\n")
        return key
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable key; delete it to generate a new one")
    return key


def _register_page_callbacks(app: dash.Dash) -> None:
    """Call ``register_callbacks(app)`` of every page module Dash has just imported."""
    for page in dash.page_registry.values():
        module = sys.modules.get(page["module"])
        register = getattr(module, "register_callbacks", None)
        if register is not None:
            register(app)


def _healthz() -> flask.Response:
    try:
        version = current_store().schema_version()
    except Exception as exc:  # the check must answer, whatever broke
        return flask.jsonify({"ok": False, "error": type(exc).__name__}), 503
    return flask.jsonify({"ok": True, "schema_version": version})


def _is_public(path: str) -> bool:
    # /public/: the citizens' own Dash app (report, track; its callbacks are public by design);
    # /open311/: the GeoReport v2 API (API keys, rate limits) — see dashboard/open311.py.
    return (path in PUBLIC_PATHS or path in PUBLIC_ASSETS
            or path.startswith((_LANG_PREFIX, "/public/", "/open311/")))


def _require_login() -> flask.Response | None:
    """Let logged-in users and public paths through; redirect pages, 401 everything else."""
    request = flask.request
    if _is_public(request.path) or flask_login.current_user.is_authenticated:
        return None
    wants_page = (
        request.method == "GET"
        and not request.path.startswith(("/_", "/assets/"))
        and "text/html" in request.headers.get("Accept", "text/html")
    )
    if wants_page:
        target = request.full_path.rstrip("?")
        return flask.redirect("/login?next=" + quote(target, safe="/"))
    response = flask.jsonify({"error": "login required", "login": "/login"})
    response.status_code = 401
    return response


_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _check_origin() -> flask.Response | None:
    """Refuse cross-site state-changing requests (CSRF): the Origin header, else the Referer,
    must name this host; Dash callback POSTs must be JSON (no form can send that)."""
    request = flask.request
    if request.method not in _UNSAFE_METHODS or request.path.startswith("/open311/"):
        return None  # the Open311 API authenticates by API key, not by cookie
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is not None and (source == "null" or urlsplit(source).netloc != request.host):
        return _forbidden("cross-site request", source)
    if request.path.startswith("/_dash-") and not request.is_json:
        return _forbidden("callback request is not JSON", request.content_type or "")
    return None


def _forbidden(reason: str, source: str) -> flask.Response:
    user = maybe_current_user()
    with contextlib.suppress(AuditError):  # refused either way
        record(current_store(), user.username if user else "-", "refused",
               target=flask.request.path[:200],
               detail=json.dumps({"reason": reason, "source": source[:200],
                                  "ip": flask.request.remote_addr}))
    response = flask.jsonify({"error": reason})
    response.status_code = 403
    return response


def _csp() -> str:
    settings: Settings = flask.current_app.config[SETTINGS_KEY]
    img = "'self' data: blob:"
    if settings.tile_url:
        parts = urlsplit(settings.tile_url.replace("{s}", "*"))
        img += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        f"style-src 'self' 'unsafe-inline'; img-src {img}; font-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def _security_headers(response: flask.Response) -> flask.Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", _csp())
    if not flask.request.path.startswith(("/assets/", "/_dash-component-suites/", "/tiles/")):
        headers["Cache-Control"] = "no-store"
    return response
