"""Users, their roles and bindings; passwords hashed with argon2; lockout; admin actions.

- ``authenticate`` counts failed logins: after ``LoginPolicy.max_failures`` in a row the
  account is locked for ``lockout_minutes`` (audited); it answers None for every failure.
- ``PasswordPolicy`` (from settings: length, character classes, maximum age) is checked on
  every new password; ``password_expired`` tells the web tier to ask for a new one.
- ``session_epoch`` is bumped by a password reset, a role change, a second-factor reset or a
  disable: every session of that user ends at its next request.
- ``admin_*`` functions are the same operations done by an acting user through the UI: they
  check the power (core.access: sysadmin manages users, secadmin manages roles) and record
  the change in the audit log in the same transaction.

>>> user = create_user(store, "li.wei", "S3cret!passw0rd", role="commander",
...                    display_name="李伟", jurisdiction_code="320281")   # doctest: +SKIP
>>> authenticate(store, "li.wei", "S3cret!passw0rd").role                # doctest: +SKIP
<Role.COMMANDER: 'commander'>
"""

from __future__ import annotations

import json
import random
import string
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.roles import Role
from core.store import Store, write_conflict

__all__ = [
    "ADMIN_ROLES",
    "admin_list_users",
    "binding_choices",
    "LoginPolicy",
    "PasswordPolicy",
    "USER_COLUMNS",
    "User",
    "UserError",
    "admin_create_user",
    "admin_reset_password",
    "admin_set_active",
    "admin_set_role",
    "authenticate",
    "change_password",
    "clear_failures",
    "create_user",
    "get_user",
    "row_to_user",
    "list_users",
    "lock_state",
    "note_failure",
    "password_expired",
    "reset_password",
    "session_epoch",
    "set_active",
    "sso_user",
]

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8
USER_COLUMNS = "username, display_name, role, jurisdiction_code, department_code, active"
ADMIN_ROLES = frozenset({Role.SYSADMIN, Role.SECADMIN, Role.AUDITOR})


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


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new password needs. ``from_settings`` reads the configured values.

    >>> PasswordPolicy().problems("short")[0]
    'password must have at least 10 characters'
    """

    min_length: int = 10
    classes: int = 3
    max_age_days: int = 90

    @classmethod
    def from_settings(cls, settings: Any) -> PasswordPolicy:
        return cls(settings.password_min_length, settings.password_classes,
                   settings.password_max_age_days)

    def problems(self, password: str, username: str | None = None) -> list[str]:
        found = []
        if len(password) < max(self.min_length, MIN_PASSWORD_LENGTH):
            found.append(f"password must have at least {max(self.min_length, MIN_PASSWORD_LENGTH)}"
                         " characters")
        kinds = [any(c.islower() for c in password), any(c.isupper() for c in password),
                 any(c.isdigit() for c in password),
                 any(not c.isalnum() or c in string.punctuation for c in password)]
        if sum(kinds) < self.classes:
            found.append(f"password needs {self.classes} of: lower case, upper case, digit, symbol")
        if username and len(username) >= 3 and username.lower() in password.lower():
            found.append("password must not contain the username")
        return found

    def check(self, password: str, username: str | None = None) -> None:
        found = self.problems(password, username)
        if found:
            raise UserError("; ".join(found))


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    lockout_minutes: float = 15.0

    @classmethod
    def from_settings(cls, settings: Any) -> LoginPolicy:
        return cls(settings.login_max_failures, settings.login_lockout_minutes)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def row_to_user(row: tuple) -> User:
    return User(row[0], row[1], Role(row[2]), row[3], row[4], bool(row[5]))


def _role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"unknown role {role!r}; one of {', '.join(Role)}") from None


def create_user(
    store: Store,
    username: str,
    password: str,
    *,
    role: str | Role,
    display_name: str | None = None,
    jurisdiction_code: str | None = None,
    department_code: str | None = None,
    policy: PasswordPolicy | None = None,
    cursor: Any = None,
) -> User:
    """Add a user bound to a jurisdiction and/or a department (no audit: CLI and pipelines;
    the UI uses ``admin_create_user``)."""
    role = _role(role)
    username = username.strip()
    if (not username or len(username) > 64 or any(c.isspace() for c in username)
            or not username.isprintable() or ":" in username):
        raise UserError("username must be 1–64 characters without spaces or ':'")
    (policy or PasswordPolicy()).check(password, username)
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
    params = [username, display_name or username, role.value, jurisdiction_code,
              department_code, _hasher.hash(password), now, now]
    sql = (f"INSERT INTO users ({USER_COLUMNS}, password_hash, created_at, password_changed_at) "
           "VALUES (?, ?, ?, ?, ?, true, ?, ?, ?)")
    try:
        if cursor is not None:
            cursor.execute(sql, params)
        else:
            with store.transaction() as cur:
                cur.execute(sql, params)
    except duckdb.ConstraintException:
        # another request or process created the same name between the check and the insert
        raise UserError(f"user {username!r} exists already") from None
    return User(username, display_name or username, role, jurisdiction_code, department_code)


def get_user(store: Store, username: str) -> User | None:
    row = store.query_one(f"SELECT {USER_COLUMNS} FROM users WHERE username = ?", [username])
    return row_to_user(row) if row else None


def list_users(store: Store) -> list[User]:
    return [row_to_user(r) for r in store.query(f"SELECT {USER_COLUMNS} FROM users ORDER BY username")]


def session_epoch(store: Store, username: str) -> int | None:
    """The user's session generation (None when the user does not exist)."""
    row = store.query_one("SELECT coalesce(session_epoch, 0) FROM users WHERE username = ?",
                          [username])
    return row[0] if row else None


def lock_state(store: Store, username: str, now: datetime | None = None) -> datetime | None:
    """Until when the account is locked, or None."""
    row = store.query_one("SELECT locked_until FROM users WHERE username = ?", [username])
    now = now or _now()
    return row[0] if row and row[0] is not None and row[0] > now else None


def authenticate(store: Store, username: str, password: str, *,
                 policy: LoginPolicy | None = None, now: datetime | None = None,
                 reset_failures: bool = True) -> User | None:
    """The active, unlocked user whose password matches, else None (same answer for every
    failure). Failed attempts are counted; reaching the limit locks the account (audited).
    With ``reset_failures=False`` (a second factor follows) the count is kept until
    ``clear_failures`` — so a known password cannot reset a second-factor guessing run."""
    from core.audit import record

    policy = policy or LoginPolicy()
    now = now or _now()
    row = store.query_one(
        f"SELECT {USER_COLUMNS}, password_hash, locked_until"
        " FROM users WHERE username = ?", [username]
    )
    if row is None:
        _hasher.hash(password or "-")  # spend the same time as a real check: no enumeration
        return None
    locked_until = row[7]
    try:
        _hasher.verify(row[6], password)
        matched = True
    except (VerificationError, InvalidHashError):
        matched = False
    user = row_to_user(row[:6])
    if locked_until is not None and locked_until > now:
        record(store, username, "login_locked", target="session",
               detail=json.dumps({"locked_until": locked_until.isoformat()}))
        return None
    if not matched:
        note_failure(store, username, policy=policy, now=now)
        return None
    if not user.active:
        return None
    rehash = _hasher.check_needs_rehash(row[6])
    if reset_failures or rehash:  # nothing to write otherwise (no empty write transaction)
        with store.transaction() as cur:
            if reset_failures:
                cur.execute("UPDATE users SET last_login_at = ?, failed_logins = 0,"
                            " locked_until = NULL WHERE username = ?", [now, username])
            if rehash:
                cur.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                            [_hasher.hash(password), username])
    return user


# Logins of one account update its row: take turns in this process, and run again after a
# write-write conflict with another process. A conflict must neither answer a login with an
# error nor drop a failure from the lockout count.
_LOGIN_WRITES = threading.Lock()


def _login_write(work):
    for attempt in range(30):
        try:
            with _LOGIN_WRITES:
                return work()
        except Exception as exc:
            if attempt == 29 or not write_conflict(exc):
                raise
            time.sleep(random.uniform(0.002, 0.01) * (attempt + 1))
    raise AssertionError("unreachable")


def clear_failures(store: Store, username: str, now: datetime | None = None, *,
                   audit_detail: str | None = None) -> None:
    """A login completed: forget failed attempts, remember when. With ``audit_detail`` the
    audit entry ``login`` is appended in the same transaction (raises ``AuditError`` and
    changes nothing when it cannot be): one write per login instead of two, each of which
    holds the cluster-wide write lock in cluster mode."""
    from core.audit import record, signing

    now = now or _now()

    def work() -> None:
        with signing(store), store.transaction() as cur:
            cur.execute("UPDATE users SET last_login_at = ?, failed_logins = 0,"
                        " locked_until = NULL WHERE username = ?", [now, username])
            if audit_detail is not None:
                record(store, username, "login", target="session", detail=audit_detail,
                       cursor=cur)

    _login_write(work)


def note_failure(store: Store, username: str, *, policy: LoginPolicy | None = None,
                 now: datetime | None = None) -> bool:
    """Count one failed login step (password or second factor); lock the account when the
    limit is reached (audited). Returns True when this failure locked the account."""
    from core.audit import record

    policy = policy or LoginPolicy()
    now = now or _now()

    def work() -> bool:
        with store.transaction() as cur:
            row = cur.execute("SELECT coalesce(failed_logins, 0) FROM users"
                              " WHERE username = ?", [username]).fetchone()
            if row is None:
                return False
            failures = row[0] + 1
            if failures >= policy.max_failures:
                until = now + timedelta(minutes=policy.lockout_minutes)
                cur.execute("UPDATE users SET failed_logins = 0, locked_until = ?"
                            " WHERE username = ?", [until, username])
                record(store, username, "account_locked", target="session", cursor=cur,
                       detail=json.dumps({"failures": failures, "until": until.isoformat()}))
                return True
            cur.execute("UPDATE users SET failed_logins = ? WHERE username = ?",
                        [failures, username])
        return False

    return _login_write(work)


def password_expired(store: Store, username: str, policy: PasswordPolicy | None = None,
                     now: datetime | None = None) -> bool:
    policy = policy or PasswordPolicy()
    if policy.max_age_days <= 0:
        return False
    row = store.query_one("SELECT password_changed_at FROM users WHERE username = ?", [username])
    return bool(row) and row[0] < (now or _now()) - timedelta(days=policy.max_age_days)


def reset_password(store: Store, username: str, password: str, *,
                   policy: PasswordPolicy | None = None, cursor: Any = None) -> None:
    """Set a new password; every session of the user ends."""
    (policy or PasswordPolicy()).check(password, username)
    if get_user(store, username) is None:
        raise UserError(f"no user {username!r}")
    sql = ("UPDATE users SET password_hash = ?, password_changed_at = ?, failed_logins = 0,"
           " locked_until = NULL, session_epoch = coalesce(session_epoch, 0) + 1"
           " WHERE username = ?")
    params = [_hasher.hash(password), _now(), username]
    if cursor is not None:
        cursor.execute(sql, params)
    else:
        with store.transaction() as cur:
            cur.execute(sql, params)


def change_password(store: Store, username: str, old: str, new: str, *,
                    policy: PasswordPolicy | None = None) -> None:
    """The user's own change: the old password must match and the new one differ."""
    from core.audit import record

    row = store.query_one("SELECT password_hash FROM users WHERE username = ?", [username])
    try:
        if row is None or not _hasher.verify(row[0], old):
            raise UserError("the current password is wrong")
    except (VerificationError, InvalidHashError):
        raise UserError("the current password is wrong") from None
    if old == new:
        raise UserError("the new password must differ from the current one")
    with store.transaction() as cur:
        reset_password(store, username, new, policy=policy, cursor=cur)
        record(store, username, "password_changed", target=f"user:{username}", cursor=cur)


def set_active(store: Store, username: str, active: bool, *, cursor: Any = None) -> None:
    if get_user(store, username) is None:
        raise UserError(f"no user {username!r}")
    sql = ("UPDATE users SET active = ?, session_epoch = coalesce(session_epoch, 0) + 1"
           " WHERE username = ?")
    if cursor is not None:
        cursor.execute(sql, [active, username])
    else:
        with store.transaction() as cur:
            cur.execute(sql, [active, username])


# -- the same, done by an acting admin (三权分立) ---------------------------------------------
def _audit(store: Store, cur: Any, actor: User, action: str, username: str, **detail: Any):
    from core.audit import record

    record(store, actor.username, action, target=f"user:{username}", cursor=cur,
           detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else None)


def admin_list_users(store: Store, actor: User) -> list[dict[str, Any]]:
    """Every account with what its administrators need (no password hash, no TOTP secret):
    for sysadmin (accounts) and secadmin (roles, second factors) only; refusals audited."""
    from core.access import Power, may, refuse

    if not (may(actor, Power.MANAGE_USERS) or may(actor, Power.MANAGE_ROLES)):
        raise refuse(store, actor, "list_users",
                     reason=f"role {getattr(actor, 'role', None)} manages no accounts")
    return store.query_dicts(
        "SELECT u.username, u.display_name, u.role, u.jurisdiction_code,"
        " j.name_zh AS jurisdiction_name, u.department_code, d.name_zh AS department_name,"
        " u.active, u.locked_until, u.totp_secret IS NOT NULL AS totp_enrolled,"
        " u.oidc_subject IS NOT NULL AS single_sign_on, u.last_login_at,"
        " u.password_changed_at"
        " FROM users u LEFT JOIN jurisdictions j ON j.code = u.jurisdiction_code"
        " LEFT JOIN departments d ON d.code = u.department_code ORDER BY u.username")


def binding_choices(store: Store) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(jurisdictions, departments) an account may be bound to, as (code, Chinese name)."""
    jurisdictions = store.query("SELECT code, name_zh FROM jurisdictions WHERE level IN"
                                " ('city', 'district', 'street', 'community') ORDER BY path")
    departments = store.query("SELECT code, name_zh FROM departments ORDER BY code")
    return [tuple(r) for r in jurisdictions], [tuple(r) for r in departments]


def admin_create_user(store: Store, actor: User, username: str, password: str, *,
                      role: str | Role, policy: PasswordPolicy | None = None,
                      **bindings: Any) -> User:
    """sysadmin adds an account; the three admin roles are granted only by secadmin."""
    from core.access import Power, refuse, require

    require(store, actor, Power.MANAGE_USERS, target=f"user:{username}")
    if _role(role) in ADMIN_ROLES:
        raise refuse(store, actor, "create_user", target=f"user:{username}",
                     reason="admin roles are granted by the security administrator")
    with store.transaction() as cur:
        user = create_user(store, username, password, role=role, policy=policy, cursor=cur,
                           **bindings)
        _audit(store, cur, actor, "user_created", user.username, role=user.role.value,
               jurisdiction=user.jurisdiction_code, department=user.department_code)
    return user


def admin_set_active(store: Store, actor: User, username: str, active: bool) -> None:
    """sysadmin disables or enables an account (not their own); sessions end at once."""
    from core.access import Power, refuse, require

    require(store, actor, Power.MANAGE_USERS, target=f"user:{username}")
    if username == actor.username:
        raise refuse(store, actor, "set_active", target=f"user:{username}",
                     reason="nobody may disable or enable their own account")
    with store.transaction() as cur:
        set_active(store, username, active, cursor=cur)
        _audit(store, cur, actor, "user_enabled" if active else "user_disabled", username)


def admin_reset_password(store: Store, actor: User, username: str, password: str, *,
                         policy: PasswordPolicy | None = None) -> None:
    from core.access import Power, require

    require(store, actor, Power.MANAGE_USERS, target=f"user:{username}")
    with store.transaction() as cur:
        reset_password(store, username, password, policy=policy, cursor=cur)
        _audit(store, cur, actor, "password_reset", username)


def admin_set_role(store: Store, actor: User, username: str, role: str | Role) -> None:
    """secadmin changes a role (never their own); the user's sessions end."""
    from core.access import Power, refuse, require

    require(store, actor, Power.MANAGE_ROLES, target=f"user:{username}")
    role = _role(role)
    target = get_user(store, username)
    if target is None:
        raise UserError(f"no user {username!r}")
    if username == actor.username:
        raise refuse(store, actor, "set_role", target=f"user:{username}",
                     reason="nobody may change their own role")
    if role.needs_department and target.department_code is None:
        raise UserError(f"role {role} needs a department")
    with store.transaction() as cur:
        cur.execute("UPDATE users SET role = ?, session_epoch = coalesce(session_epoch, 0) + 1"
                    " WHERE username = ?", [role.value, username])
        _audit(store, cur, actor, "role_changed", username, old=target.role.value,
               new=role.value)


def sso_user(store: Store, issuer: str, subject: str, username: str | None) -> User | None:
    """The active Yiwang account a single-sign-on identity maps to, else None.

    The first login binds the provider's ``issuer|subject`` to the account named by the
    username claim (audited); from then on only that subject opens it, whatever name the
    provider sends. Roles and jurisdictions stay managed in Yiwang (三权分立).
    """
    from core.audit import record

    key = f"{issuer}|{subject}"
    row = store.query_one("SELECT username FROM users WHERE oidc_subject = ?", [key])
    if row is None:
        if not username:
            return None
        bound = store.query_one("SELECT oidc_subject FROM users WHERE username = ?",
                                [username])
        if bound is None or bound[0] is not None:
            return None  # no such account, or it belongs to another provider identity
        with store.transaction() as cur:
            cur.execute("UPDATE users SET oidc_subject = ? WHERE username = ?"
                        " AND oidc_subject IS NULL", [key, username])
            record(store, username, "sso_bound", target=f"user:{username}", cursor=cur,
                   detail=json.dumps({"issuer": issuer, "subject": subject}))
        row = (username,)
    user = get_user(store, row[0])
    return user if user is not None and user.active else None
