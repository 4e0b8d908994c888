"""Users, their roles and bindings; passwords hashed with argon2.

>>> user = create_user(store, "li.wei", "S3cret!pass", role="commander",
...                    display_name="李伟", jurisdiction_code="320281")   # doctest: +SKIP
>>> authenticate(store, "li.wei", "S3cret!pass").role                    # doctest: +SKIP
<Role.COMMANDER: 'commander'>
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.roles import Role
from core.store import Store

__all__ = [
    "User",
    "UserError",
    "authenticate",
    "create_user",
    "get_user",
    "list_users",
    "reset_password",
    "set_active",
]

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8
_COLUMNS = "username, display_name, role, jurisdiction_code, department_code, active"


class UserError(ValueError):
    """A user operation was refused; the message says why."""


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: Role
    jurisdiction_code: str | None
    department_code: str | None
    active: bool = True


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _row_to_user(row: tuple) -> User:
    return User(row[0], row[1], Role(row[2]), row[3], row[4], bool(row[5]))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")


def create_user(
    store: Store,
    username: str,
    password: str,
    *,
    role: str | Role,
    display_name: str | None = None,
    jurisdiction_code: str | None = None,
    department_code: str | None = None,
) -> User:
    """Add a user bound to a jurisdiction and/or a department."""
    try:
        role = Role(role)
    except ValueError:
        raise UserError(f"unknown role {role!r}; one of {', '.join(Role)}") from None
    username = username.strip()
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise UserError("username must be 1–64 characters without spaces")
    _check_password(password)
    if jurisdiction_code is None and department_code is None:
        raise UserError("a user needs a jurisdiction, a department, or both")
    if role.needs_department and department_code is None:
        raise UserError(f"role {role} needs a department")
    if jurisdiction_code is not None and not store.query_one(
        "SELECT 1 FROM jurisdictions WHERE code = ?", [jurisdiction_code]
    ):
        raise UserError(f"unknown jurisdiction {jurisdiction_code!r}")
    if department_code is not None:
        dept = store.query_one(
            "SELECT jurisdiction_code FROM departments WHERE code = ?", [department_code]
        )
        if not dept:
            raise UserError(f"unknown department {department_code!r}")
        jurisdiction_code = jurisdiction_code or dept[0]
    if get_user(store, username) is not None:
        raise UserError(f"user {username!r} exists already")
    now = _now()
    with store.transaction() as cur:
        cur.execute(
            f"INSERT INTO users ({_COLUMNS}, password_hash, created_at, password_changed_at) "
            "VALUES (?, ?, ?, ?, ?, true, ?, ?, ?)",
            [username, display_name or username, role.value, jurisdiction_code,
             department_code, _hasher.hash(password), now, now],
        )
    return User(username, display_name or username, role, jurisdiction_code, department_code)


def get_user(store: Store, username: str) -> User | None:
    row = store.query_one(f"SELECT {_COLUMNS} FROM users WHERE username = ?", [username])
    return _row_to_user(row) if row else None


def list_users(store: Store) -> list[User]:
    return [_row_to_user(r) for r in store.query(f"SELECT {_COLUMNS} FROM users ORDER BY username")]


def authenticate(store: Store, username: str, password: str) -> User | None:
    """The active user whose password matches, else None (same answer for every failure)."""
    row = store.query_one(
        f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = ?", [username]
    )
    if row is None:
        _hasher.hash(password)  # spend the same time as a real check: no user enumeration
        return None
    try:
        _hasher.verify(row[6], password)
    except (VerificationError, InvalidHashError):
        return None
    user = _row_to_user(row[:6])
    if not user.active:
        return None
    with store.transaction() as cur:
        cur.execute("UPDATE users SET last_login_at = ? WHERE username = ?", [_now(), username])
        if _hasher.check_needs_rehash(row[6]):
            cur.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?",
                [_hasher.hash(password), username],
            )
    return user


def reset_password(store: Store, username: str, password: str) -> None:
    _check_password(password)
    if get_user(store, username) is None:
        raise UserError(f"no user {username!r}")
    with store.transaction() as cur:
        cur.execute(
            "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
            [_hasher.hash(password), _now(), username],
        )


def set_active(store: Store, username: str, active: bool) -> None:
    if get_user(store, username) is None:
        raise UserError(f"no user {username!r}")
    with store.transaction() as cur:
        cur.execute("UPDATE users SET active = ? WHERE username = ?", [active, username])
