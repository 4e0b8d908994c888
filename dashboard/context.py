"""What a request works with: the store, the settings, the logged-in user and their scope.

Everything is reached through the Flask app of the request (``create_app`` puts the store
and settings into ``server.config``), never through module globals, so several apps can
live in one process (tests do).

>>> scope = current_scope()          # doctest: +SKIP  (inside a logged-in request)
>>> scope.root_code                  # doctest: +SKIP
'320281'
"""

from __future__ import annotations

import flask
import flask_login

from core.scope import Scope, scope_for
from core.settings import Settings
from core.store import Store
from core.users import User

__all__ = ["STORE_KEY", "SETTINGS_KEY", "current_scope", "current_settings", "current_store",
           "current_user", "maybe_current_user"]

STORE_KEY = "YIWANG_STORE"
SETTINGS_KEY = "YIWANG_SETTINGS"


def current_store() -> Store:
    """The store of the app handling this request."""
    return flask.current_app.config[STORE_KEY]


def current_settings() -> Settings:
    """The settings of the app handling this request."""
    return flask.current_app.config[SETTINGS_KEY]


def maybe_current_user() -> User | None:
    """The logged-in user (loaded from the store for this request), or None."""
    if not flask.has_request_context():
        return None
    account = flask_login.current_user
    if not account or not account.is_authenticated:
        return None
    return account.user


def current_user() -> User:
    """The logged-in user; PermissionError when nobody is logged in."""
    user = maybe_current_user()
    if user is None:
        raise PermissionError("login required")
    return user


def current_scope() -> Scope:
    """The logged-in user's scope, computed once per request."""
    scope = flask.g.get("yiwang_scope")
    if scope is None:
        scope = scope_for(current_store(), current_user())
        flask.g.yiwang_scope = scope
    return scope
