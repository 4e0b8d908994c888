"""The authorization and audit guard around every Dash callback (contract D).

Every server-side callback is one public endpoint (``/_dash-update-component``) fed by the
browser, so ``create_app`` wraps EVERY entry of ``app.callback_map`` (and the ones Dash adds
later, such as the pages router) with ``guard``:

- deny by default: nobody logged in → 401 and an audit entry;
- a callback defined in a page module runs only for the roles that page allows;
- ids the browser sends are re-checked on the server before the callback runs: a
  pattern-matching id with a ``code``/``jurisdiction`` key, and values registered with
  ``check_input`` (e.g. the home map's ``clickData``), must be inside the user's scope;
  keys named ``jurisdiction``/``incident``/``dataset`` (and ``…_id``/``…_code``) are
  checked in every pattern-matching id; an ambiguous key such as ``code`` only for the id
  types declared with ``check_pattern``. Each kind has a check (``register_kind``): scope
  subtree for jurisdictions, ``core.incident_views.visible_filter`` for incidents, the
  catalog for datasets; a kind with no check is refused (deny by default). Anything outside → nothing is returned (HTTP 204) and the refusal is
  audited;
- every call of a ``vendor_tech`` account is recorded in full (操作留痕): page, callback,
  parameters, result size. If that entry cannot be written, the result is not delivered.

Pages still re-check every id through scoped ``core`` reads; this is the second lock.

>>> guard_callbacks(app)           # doctest: +SKIP  (done by dashboard.app.create_app)
3
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

import dash
import flask
from dash.exceptions import PreventUpdate

from core.audit import AuditError, record
from core.roles import Role
from core.scope import Scope, ScopeError
from core.store import Store
from core.users import User
from dashboard.context import current_scope, current_store, maybe_current_user

__all__ = ["GUARD_MARK", "check_input", "check_pattern", "guard_callbacks", "is_guarded", "register_kind",
           "unguarded"]

GUARD_MARK = "_yiwang_guard"
_MAX_PARAMS = 4000
# pattern-matching id keys whose name says what they hold: checked in every id
_ID_KINDS = {"jurisdiction": "jurisdiction", "jurisdiction_code": "jurisdiction",
             "incident": "incident", "incident_id": "incident", "dataset": "dataset",
             "dataset_id": "dataset"}
# (id type, key) -> kind, for ambiguous keys such as "code" (opt-in per id type)
_TYPED_KEYS: dict[tuple[str, str], str] = {}

# (component id, property) -> function(value) -> [(kind, value), …]
_INPUT_CHECKS: dict[tuple[str, str], Callable[[Any], list[tuple[str, Any]]]] = {}
# kind -> function(store, user, scope, values) -> the values the user may NOT choose
_KIND_CHECKS: dict[str, Callable[[Store, User, Scope, set], set]] = {}


def check_input(component_id: str, prop: str,
                extract: Callable[[Any], list[tuple[str, Any]]]) -> None:
    """Declare that ``component_id.prop`` carries ids of some kind to re-check.

    >>> check_input("home-geo", "clickData",
    ...             lambda v: [("jurisdiction", ((v or {}).get("properties") or {}).get("code"))])
    """
    _INPUT_CHECKS[(component_id, prop)] = extract


def check_pattern(id_type: str, key: str, kind: str) -> None:
    """Declare that pattern-matching ids ``{"type": id_type, key: value}`` hold ``kind`` ids.

    >>> check_pattern("home-child", "code", "jurisdiction")
    """
    _TYPED_KEYS[(id_type, key)] = kind


def register_kind(kind: str, forbidden: Callable[[Store, User, Scope, set], set]) -> None:
    """How to re-check ids of ``kind``: ``forbidden(store, user, scope, values)`` returns the
    values outside what the user may see (e.g. the incidents module registers ``incident``)."""
    _KIND_CHECKS[kind] = forbidden


def _forbidden_jurisdictions(store: Store, _user: User, scope: Scope, values: set) -> set:
    return scope.outside(store, values)


def _forbidden_incidents(store: Store, _user: User, scope: Scope, values: set) -> set:
    return scope.invisible_incidents(store, values)


def _forbidden_datasets(store: Store, user: User, _scope: Scope, values: set) -> set:
    from core.sharing import get_dataset

    return {v for v in values if get_dataset(store, user, str(v)) is None}


register_kind("jurisdiction", _forbidden_jurisdictions)
register_kind("incident", _forbidden_incidents)
register_kind("dataset", _forbidden_datasets)
check_pattern("home-child", "code", "jurisdiction")
check_pattern("home-crumb", "code", "jurisdiction")
check_input("home-geo", "clickData",
            lambda v: [("jurisdiction", ((v or {}).get("properties") or {}).get("code"))]
            if isinstance(v, dict) else [])


def is_guarded(entry: dict[str, Any]) -> bool:
    return bool(getattr(entry.get("callback"), GUARD_MARK, False))


def unguarded(app: dash.Dash) -> list[str]:
    """Ids of server callbacks NOT wrapped by the guard (a test asserts it is empty)."""
    return [key for key, entry in app.callback_map.items()
            if entry.get("callback") is not None and not is_guarded(entry)]


def guard_callbacks(app: dash.Dash) -> int:
    """Wrap every callback of ``app`` not wrapped yet; returns how many were wrapped."""
    wrapped = 0
    for key, entry in list(app.callback_map.items()):
        func = entry.get("callback")
        if func is None or getattr(func, GUARD_MARK, False):
            continue
        entry["callback"] = _guard(key, func)
        wrapped += 1
    return wrapped


def _page_of(func: Callable) -> dict[str, Any] | None:
    module = getattr(inspect.unwrap(func), "__module__", None)
    for page in dash.page_registry.values():
        if page.get("module") == module:
            return page
    return None


def _flat(items: Iterable) -> Iterable[dict]:
    for item in items or []:
        if isinstance(item, list):
            yield from _flat(item)
        elif isinstance(item, dict):
            yield item


def _requested(g: Any) -> dict[str, set]:
    """Every id the browser sent that needs a re-check, by kind."""
    wanted: dict[str, set] = {}
    for item in _flat(list(g.get("inputs_list") or []) + list(g.get("states_list") or [])):
        cid, prop = item.get("id"), item.get("property")
        if isinstance(cid, dict):
            for key, value in cid.items():
                kind = _ID_KINDS.get(key) or _TYPED_KEYS.get((str(cid.get("type")), key))
                if kind and isinstance(value, (str, int)) and not isinstance(value, bool):
                    wanted.setdefault(kind, set()).add(value)
        elif isinstance(cid, str) and (cid, prop) in _INPUT_CHECKS:
            try:
                found = _INPUT_CHECKS[(cid, prop)](item.get("value"))
            except (AttributeError, TypeError, KeyError):
                found = [("malformed", repr(item.get("value"))[:200])]
            for kind, value in found:
                if value is not None:
                    wanted.setdefault(kind, set()).add(
                        value if isinstance(value, (str, int)) else json.dumps(value)[:200])
    return wanted


def _refused(store: Store, user: User | None, key: str, page: dict | None, reason: str,
             **detail: Any) -> None:
    actor = user.username if user else "-"
    try:
        record(store, actor, "refused", target=f"callback:{key}"[:500],
               detail=json.dumps({"reason": reason, "page": (page or {}).get("path"),
                                  "path": _referrer_path(), **detail},
                                 ensure_ascii=False, default=str))
    except AuditError:
        flask.abort(503)


def _referrer_path() -> str | None:
    ref = flask.request.referrer if flask.has_request_context() else None
    if not ref:
        return None
    from urllib.parse import urlsplit

    return urlsplit(ref).path


def _parameters(g: Any) -> str:
    body = {"inputs": g.get("inputs_list"), "state": g.get("states_list"),
            "triggered": [t.get("prop_id") for t in g.get("triggered_inputs") or []]}
    text = json.dumps(body, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if len(text) <= _MAX_PARAMS else text[:_MAX_PARAMS] + "…"


def _guard(key: str, func: Callable) -> Callable:
    page = _page_of(func)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        g = kwargs.get("callback_context") or {}
        store = current_store()
        user = maybe_current_user()
        if user is None:
            _refused(store, None, key, page, "not logged in")
            flask.abort(401)
        if page is not None and page.get("roles") is not None and \
                user.role not in {Role(r) for r in page["roles"]}:
            _refused(store, user, key, page, "role may not use this page", role=user.role.value)
            raise PreventUpdate
        wanted = _requested(g)
        if wanted:
            try:
                scope = current_scope()
            except ScopeError:
                _refused(store, user, key, page, "no usable scope")
                raise PreventUpdate from None
            bad: dict[str, list] = {}
            for kind, values in wanted.items():
                check = _KIND_CHECKS.get(kind)
                outside = values if check is None else check(store, user, scope, values)
                if outside:
                    bad[kind] = sorted(map(str, outside))[:20]
            if bad:
                _refused(store, user, key, page, "id outside the user's scope", ids=bad)
                raise PreventUpdate
        if user.role is not Role.VENDOR_TECH:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except PreventUpdate:
            _operation(store, user, key, page, g, None)
            raise
        _operation(store, user, key, page, g, result)
        return result

    setattr(guarded, GUARD_MARK, True)
    return guarded


def _operation(store: Store, user: User, key: str, page: dict | None, g: Any,
               result: Any) -> None:
    """操作留痕: one full entry per vendor_tech call; no entry → no result."""
    size = None if result is None else len(result if isinstance(result, (str, bytes))
                                           else json.dumps(result, default=str))
    try:
        record(store, user.username, "operation", target=f"callback:{key}"[:500],
               detail=json.dumps({"page": (page or {}).get("path") or _referrer_path(),
                                  "parameters": _parameters(g), "result_bytes": size},
                                 ensure_ascii=False, default=str))
    except AuditError:
        flask.abort(503)
