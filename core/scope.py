"""Scope: what part of the city and which departments a user may see.

Every read in ``core`` takes the acting user's scope and applies it in SQL; nothing is
filtered only in the UI. A jurisdiction subtree is a prefix of the materialised ``path``.

>>> scope = scope_for(store, user)                                # doctest: +SKIP
>>> where, params = scope.jurisdiction_filter("i.jurisdiction_code")  # doctest: +SKIP
>>> store.query(f"SELECT count(*) FROM incidents i WHERE {where}", params)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.cache import cached
from core.roles import Role
from core.store import Store
from core.users import USER_COLUMNS, User, row_to_user

__all__ = ["Scope", "ScopeError", "scope_for", "session_scope"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class ScopeError(PermissionError):
    """The user has no usable scope (e.g. bound to a jurisdiction that no longer exists)."""


@dataclass(frozen=True)
class Scope:
    """The jurisdiction subtree and departments a user may see.

    ``departments`` is None when the user sees every department's work.
    """

    username: str
    role: Role
    root_code: str
    root_path: str
    root_level: str
    departments: frozenset[str] | None
    business_data: bool

    def jurisdiction_filter(self, column: str = "jurisdiction_code") -> tuple[str, list]:
        """SQL condition (and its parameters) keeping rows whose jurisdiction is in scope.

        The tree has exactly one root (``core.jurisdictions`` refuses any other), so a scope
        rooted there holds every jurisdiction: its condition is only that the row has one, and
        the city's own queries skip the subtree join (the cost of scoping, ``make bench``).
        """
        _check_identifier(column)
        if self.covers_everything:
            return f"{column} IS NOT NULL", []
        return (
            f"{column} IN (SELECT code FROM jurisdictions WHERE starts_with(path, ?))",
            [self.root_path],
        )

    @property
    def covers_everything(self) -> bool:
        """Is the scope's root the root of the tree (its path is ``/code/``)?"""
        return self.root_path.count("/") == 2

    def department_filter(self, column: str = "department_code") -> tuple[str, list]:
        """SQL condition keeping rows of departments in scope (always true when unbound)."""
        _check_identifier(column)
        if self.departments is None:
            return "TRUE", []
        if not self.departments:
            return "FALSE", []
        return f"{column} IN (SELECT unnest(?::VARCHAR[]))", [sorted(self.departments)]

    def data_filter(
        self, jurisdiction_column: str = "jurisdiction_code", department_column: str | None = None
    ) -> tuple[str, list]:
        """Both filters for business data; nothing at all for platform roles."""
        if not self.business_data:
            return "FALSE", []
        where, params = self.jurisdiction_filter(jurisdiction_column)
        if department_column is not None:
            dwhere, dparams = self.department_filter(department_column)
            where, params = f"({where}) AND ({dwhere})", params + dparams
        return where, params

    def contains(self, store: Store, jurisdiction_code: str) -> bool:
        """Is this jurisdiction inside the user's subtree?"""
        row = store.query_one(
            "SELECT starts_with(path, ?) FROM jurisdictions WHERE code = ?",
            [self.root_path, jurisdiction_code],
        )
        return bool(row and row[0])


    def outside(self, store: Store, codes: set | list) -> set:
        """The jurisdiction codes among ``codes`` NOT inside this scope (unknown codes too).

        >>> scope.outside(store, {"D1S1", "D2"})     # doctest: +SKIP
        {'D2'}
        """
        wanted = sorted({str(c) for c in codes})
        inside = {r[0] for r in store.query(
            "SELECT code FROM jurisdictions WHERE code IN (SELECT unnest(?::VARCHAR[]))"
            " AND starts_with(path, ?)", [wanted, self.root_path])}
        return {c for c in codes if str(c) not in inside}

    def invisible_incidents(self, store: Store, incident_ids: set | list) -> set:
        """The ids among ``incident_ids`` this scope may not see (malformed ids too), by the
        incidents module's visibility rule (``core.incident_views.visible_filter``)."""
        try:
            from core.incident_views import visible_filter
        except ImportError:  # no incidents module: nothing is visible
            return set(incident_ids)
        numbers = {v for v in incident_ids
                   if (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63)
                   or (isinstance(v, str) and v.isdigit() and int(v) < 2**63)}
        where, params = visible_filter(self, "i")
        seen = {r[0] for r in store.query(
            "SELECT i.id FROM incidents i WHERE i.id IN (SELECT unnest(?::BIGINT[]))"
            f" AND {where}", [sorted({int(v) for v in numbers}), *params])}
        return {v for v in incident_ids if v not in numbers or int(v) not in seen}


def _check_identifier(column: str) -> None:
    if not _IDENTIFIER.match(column):
        raise ValueError(f"not a column name: {column!r}")


def scope_for(store: Store, user: User) -> Scope:
    """The scope of a user, from their jurisdiction and department bindings."""
    code = user.jurisdiction_code
    if code is None and user.department_code is not None:
        row = store.query_one(
            "SELECT jurisdiction_code FROM departments WHERE code = ?", [user.department_code]
        )
        code = row[0] if row else None
    row = store.query_one("SELECT path, level FROM jurisdictions WHERE code = ?", [code])
    if row is None:
        raise ScopeError(f"user {user.username!r} is bound to unknown jurisdiction {code!r}")
    return _scope(user, code, row[0], row[1])


def _scope(user: User, code: str, path: str, level: str) -> Scope:
    departments = None
    if user.role.department_bound or user.role is Role.SOCIAL_ORG:
        departments = frozenset({user.department_code} if user.department_code else ())
    return Scope(
        username=user.username,
        role=user.role,
        root_code=code,
        root_path=path,
        root_level=level,
        departments=departments,
        business_data=user.role.sees_business_data,
    )


def session_scope(store: Store, username: str) -> tuple[User, int, Scope | None] | None:
    """The user, their session epoch and their scope (None when their binding names no
    known jurisdiction; ``scope_for`` says why), or None for an unknown user. Every web
    request needs all three: the user's row is read each time (its epoch ends sessions),
    where it sits in the tree comes from a cache (``core.cache``, 30 s)."""
    row = store.query_one(
        f"SELECT {', '.join('u.' + c for c in USER_COLUMNS.split(', '))},"
        " coalesce(u.session_epoch, 0) FROM users u WHERE u.username = ?", [username])
    if row is None:
        return None
    user = row_to_user(row[:6])
    code = user.jurisdiction_code
    if code is None and user.department_code is not None:
        code = cached(store, ("department_jurisdiction", user.department_code), lambda: (
            store.query_one("SELECT jurisdiction_code FROM departments WHERE code = ?",
                            [user.department_code]) or (None,))[0])
    place = None if code is None else cached(store, ("jurisdiction", code), lambda: (
        store.query_one("SELECT path, level FROM jurisdictions WHERE code = ?", [code])))
    return user, row[6], None if place is None else _scope(user, code, place[0], place[1])
