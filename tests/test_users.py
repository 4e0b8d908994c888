"""core.users: create, authenticate, reset, disable; argon2 hashes; bindings checked."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import build_tiny_city

from core.roles import Role
from core.store import Store
from core.users import (
    UserError,
    authenticate,
    create_user,
    get_user,
    list_users,
    reset_password,
    set_active,
)

PASSWORD = "Correct-Horse-9"


@pytest.fixture(scope="module")
def tiny_city_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny city built once per module (its four argon2 hashes are the slow part)."""
    path = tmp_path_factory.mktemp("tiny") / "city.duckdb"
    store = Store.open(path)
    build_tiny_city(store)
    store.close()
    return path


@pytest.fixture
def tiny_city(tiny_city_file: Path, tmp_path: Path) -> Iterator[Store]:
    """A fresh copy of the tiny city for each test (shadows conftest's, same content)."""
    shutil.copy(tiny_city_file, tmp_path / "city.duckdb")
    store = Store.open(tmp_path / "city.duckdb")
    yield store
    store.close()


def stored_hash(store: Store, username: str) -> str:
    return store.query_one("SELECT password_hash FROM users WHERE username = ?", [username])[0]


def test_create_and_authenticate(tiny_city: Store) -> None:
    user = create_user(tiny_city, " wang.fang ", PASSWORD, role="leader",
                       display_name="王芳", jurisdiction_code="D1")
    assert (user.username, user.role, user.jurisdiction_code) == ("wang.fang", Role.LEADER, "D1")
    assert get_user(tiny_city, "wang.fang") == user
    assert tiny_city.query_one("SELECT last_login_at FROM users WHERE username = 'wang.fang'"
                               ) == (None,)
    assert authenticate(tiny_city, "wang.fang", PASSWORD) == user
    assert tiny_city.query_one("SELECT last_login_at IS NOT NULL FROM users"
                               " WHERE username = 'wang.fang'") == (True,)
    assert "wang.fang" in [u.username for u in list_users(tiny_city)]


def test_department_user_takes_the_department_jurisdiction(tiny_city: Store) -> None:
    user = create_user(tiny_city, "sw.staff", PASSWORD, role="dept_staff", department_code="sw")
    assert (user.department_code, user.jurisdiction_code) == ("sw", "C")
    assert get_user(tiny_city, "sw.staff").jurisdiction_code == "C"


def test_wrong_password_and_unknown_user_both_get_none(tiny_city: Store) -> None:
    create_user(tiny_city, "li.wei", PASSWORD, role="commander", jurisdiction_code="C")
    assert authenticate(tiny_city, "li.wei", "Wrong-Horse-9") is None
    assert authenticate(tiny_city, "li.wei", "") is None
    assert authenticate(tiny_city, "nobody", PASSWORD) is None


def test_password_is_stored_as_argon2_hash_only(tiny_city: Store) -> None:
    create_user(tiny_city, "li.wei", PASSWORD, role="commander", jurisdiction_code="C")
    digest = stored_hash(tiny_city, "li.wei")
    assert digest.startswith("$argon2id$")
    assert PASSWORD not in digest
    all_text = str(tiny_city.query("SELECT * FROM users"))
    assert PASSWORD not in all_text


def test_reset_password(tiny_city: Store) -> None:
    create_user(tiny_city, "li.wei", PASSWORD, role="commander", jurisdiction_code="C")
    before = stored_hash(tiny_city, "li.wei")
    reset_password(tiny_city, "li.wei", "New-Password-10")
    assert stored_hash(tiny_city, "li.wei") != before
    assert authenticate(tiny_city, "li.wei", PASSWORD) is None
    assert authenticate(tiny_city, "li.wei", "New-Password-10").username == "li.wei"
    with pytest.raises(UserError, match="at least 10"):
        reset_password(tiny_city, "li.wei", "short")
    with pytest.raises(UserError, match="no user 'ghost'"):
        reset_password(tiny_city, "ghost", "New-Password-10")


def test_disabled_user_cannot_log_in(tiny_city: Store) -> None:
    create_user(tiny_city, "li.wei", PASSWORD, role="commander", jurisdiction_code="C")
    set_active(tiny_city, "li.wei", False)
    assert get_user(tiny_city, "li.wei").active is False
    assert authenticate(tiny_city, "li.wei", PASSWORD) is None
    set_active(tiny_city, "li.wei", True)
    assert authenticate(tiny_city, "li.wei", PASSWORD) is not None
    with pytest.raises(UserError, match="no user 'ghost'"):
        set_active(tiny_city, "ghost", False)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"role": "king", "jurisdiction_code": "C"}, "unknown role 'king'"),
    ({"role": "dept_staff", "jurisdiction_code": "C"}, "role dept_staff needs a department"),
    ({"role": "commander"}, "needs a jurisdiction, a department, or both"),
    ({"role": "commander", "jurisdiction_code": "D9"}, "unknown jurisdiction 'D9'"),
    ({"role": "dept_staff", "department_code": "police"}, "unknown department 'police'"),
    ({"role": "commander", "jurisdiction_code": "C", "username": "li wei"}, "without spaces"),
    ({"role": "commander", "jurisdiction_code": "C", "password": "short"}, "at least 10"),
])
def test_invalid_users_are_refused(tiny_city: Store, kwargs: dict, message: str) -> None:
    username = kwargs.pop("username", "new.user")
    password = kwargs.pop("password", PASSWORD)
    with pytest.raises(UserError, match=message):
        create_user(tiny_city, username, password, **kwargs)
    assert get_user(tiny_city, username) is None


def test_duplicate_username_is_refused(tiny_city: Store) -> None:
    with pytest.raises(UserError, match="'commander' exists already"):
        create_user(tiny_city, "commander", PASSWORD, role="leader", jurisdiction_code="D2")
    assert get_user(tiny_city, "commander").role is Role.COMMANDER


def test_concurrent_logins_and_failures_of_one_account_all_count(tiny_city) -> None:
    """Many requests of one account at once (a shared wall-screen account, or an attacker
    guessing in parallel): no login fails on a write conflict and no failure is lost from
    the lockout count."""
    from concurrent.futures import ThreadPoolExecutor

    from core.users import LoginPolicy, clear_failures, note_failure

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _i: clear_failures(tiny_city, "cg_staff"), range(64)))
    policy = LoginPolicy(max_failures=1000, lockout_minutes=15)
    with ThreadPoolExecutor(16) as pool:
        locked = list(pool.map(lambda _i: note_failure(tiny_city, "cg_staff", policy=policy),
                               range(40)))
    assert not any(locked)
    assert tiny_city.query_one("SELECT failed_logins FROM users WHERE username = 'cg_staff'"
                               ) == (40,)


def test_a_login_resets_failures_and_is_audited_in_one_transaction(tiny_city) -> None:
    """The web login's one write: the failures reset and the audit entry ``login`` commit
    together; when the entry cannot be written the failures are kept."""
    from core.audit import AuditError
    from core.users import clear_failures, note_failure

    def failures() -> int:
        return tiny_city.query_one("SELECT failed_logins FROM users WHERE username = ?",
                                   ["cg_staff"])[0]

    note_failure(tiny_city, "cg_staff")
    clear_failures(tiny_city, "cg_staff", audit_detail='{"ip": "127.0.0.1"}')
    assert failures() == 0
    assert tiny_city.query_one("SELECT actor, action, detail FROM audit_log ORDER BY seq DESC"
                               " LIMIT 1") == ("cg_staff", "login", '{"ip": "127.0.0.1"}')
    note_failure(tiny_city, "cg_staff")
    with tiny_city.transaction() as cur:   # the audit log cannot be written
        cur.execute("ALTER TABLE audit_log RENAME TO audit_log_away")
    with pytest.raises(AuditError):
        clear_failures(tiny_city, "cg_staff", audit_detail="{}")
    assert failures() == 1
