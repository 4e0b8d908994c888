"""The permission matrix: role × object kind × action, allowed and refused — the three admin
powers, the audit log, the catalog with every classification and sharing mode, the
subscription lifecycle, masking; property tests on inputs reaching SQL."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import TINY_PASSWORD, build_tiny_city
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import totp
from core.access import POWERS, AccessDenied, Power, may
from core.audit import search, verify_chain
from core.roles import Role
from core.sharing import (
    SharingError,
    classify,
    decide_subscription,
    holdings,
    list_datasets,
    read_dataset,
    register_dataset,
    request_subscription,
    revoke_subscription,
    scoreboard,
    set_sharing,
)
from core.store import Store
from core.users import (
    admin_create_user,
    admin_reset_password,
    admin_set_active,
    admin_set_role,
    create_user,
    get_user,
)

# username -> (role, jurisdiction, department)
PEOPLE = {
    "commander": ("commander", "C", None),
    "d1_commander": ("commander", "D1", None),
    "leader_d1": ("leader", "D1", None),
    "street_d1s1": ("grassroots", "D1S1", None),
    "cg_staff": ("dept_staff", None, "cg"),
    "cg_admin": ("dept_admin", None, "cg"),
    "sw_staff": ("dept_staff", None, "sw"),
    "sw_admin": ("dept_admin", None, "sw"),
    "social": ("social_org", "D1", "shzz"),
    "vendor": ("vendor_tech", None, "vendor"),
    "sysadmin": ("sysadmin", "C", None),
    "secadmin": ("secadmin", "C", None),
    "auditor": ("auditor", "C", None),
}
DATASETS = {"care_backflow": ("sensitive", "backflow"),
            "care_sub": ("internal", "subscription"),
            "care_owner": ("internal", "owner_only"),
            "care_public": ("public", "backflow"),
            "care_secret": ("secret", "owner_only")}
RESIDENTS = [(1, "王芳", "13912345678", "320281199001011234", "meals", "D1S1C1"),
             (2, "李伟", "13800001111", "320281195505051111", "visits", "D1S2C1"),
             (3, "张强", "13700002222", "320281194404042222", "meals", "D2S1C1"),
             (4, "赵敏", "13600003333", "320281193303033333", "repairs", "D2S2C1")]


@pytest.fixture(scope="module")
def city_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("matrix") / "city.duckdb"
    store = Store.open(path)
    build_tiny_city(store)
    with store.transaction() as cur:
        cur.execute("INSERT INTO departments VALUES ('shzz', '志愿者联合会', 'Volunteers',"
                    " 'social_org', 'C'), ('vendor', '运维团队', 'Vendor', 'vendor', 'C')")
        cur.execute("CREATE TABLE residents_care (id INTEGER, name VARCHAR, phone VARCHAR,"
                    " id_number VARCHAR, need VARCHAR, jurisdiction_code VARCHAR)")
        cur.executemany("INSERT INTO residents_care VALUES (?, ?, ?, ?, ?, ?)", RESIDENTS)
    for username, (role, jur, dept) in PEOPLE.items():
        if get_user(store, username) is None:
            create_user(store, username, TINY_PASSWORD, role=role, jurisdiction_code=jur,
                        department_code=dept)
    for ds_id, (classification, sharing) in DATASETS.items():
        register_dataset(store, id=ds_id, table_name="residents_care", name_zh=ds_id,
                         name_en=ds_id, owner_department="cg", classification=classification,
                         sharing=sharing, sensitive_columns=["name", "phone", "id_number"])
    store.close()
    return path


@pytest.fixture
def city(city_file: Path, tmp_path: Path) -> Iterator[Store]:
    shutil.copy(city_file, tmp_path / "city.duckdb")
    store = Store.open(tmp_path / "city.duckdb")
    yield store
    store.close()


def u(store: Store, username: str):
    return get_user(store, username)


def refusals(store: Store) -> int:
    return store.query_one("SELECT count(*) FROM audit_log WHERE action = 'refused'")[0]


# -- the three powers --------------------------------------------------------------------------
@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("power", list(Power))
def test_power_matrix(role: Role, power: Power) -> None:
    expected = {Role.SYSADMIN: {Power.MANAGE_USERS, Power.MANAGE_SETTINGS},
                Role.SECADMIN: {Power.MANAGE_ROLES, Power.MANAGE_POLICIES},
                Role.AUDITOR: {Power.READ_AUDIT}}.get(role, set())
    user = type("U", (), {"role": role, "active": True, "username": "x"})()
    assert may(user, power) is (power in expected)
    assert sum(power in p for p in POWERS.values()) == 1  # each power has exactly one holder


ADMIN_ACTIONS = {
    "create_user": lambda s, a: admin_create_user(s, a, "new.one", "Fresh#Start2027",
                                                  role="leader", jurisdiction_code="D2"),
    "disable_user": lambda s, a: admin_set_active(s, a, "cg_staff", False),
    "reset_password": lambda s, a: admin_reset_password(s, a, "cg_staff", "Fresh#Start2027"),
    "set_role": lambda s, a: admin_set_role(s, a, "cg_staff", "dept_admin"),
    "reset_totp": lambda s, a: totp.reset(s, a, "commander"),
    "classify": lambda s, a: classify(s, a, "care_owner", "sensitive"),
    "read_audit": lambda s, a: search(s, a, limit=10),
}
ADMIN_ALLOWED = {"create_user": "sysadmin", "disable_user": "sysadmin",
                 "reset_password": "sysadmin", "set_role": "secadmin",
                 "reset_totp": "secadmin", "classify": "secadmin", "read_audit": "auditor"}


@pytest.mark.parametrize("action", sorted(ADMIN_ACTIONS))
@pytest.mark.parametrize("actor", ["sysadmin", "secadmin", "auditor", "commander", "cg_admin",
                                   "vendor"])
def test_admin_action_matrix(city: Store, action: str, actor: str) -> None:
    before = refusals(city)
    if ADMIN_ALLOWED[action] == actor:
        ADMIN_ACTIONS[action](city, u(city, actor))
        assert refusals(city) == before
    else:
        with pytest.raises(AccessDenied):
            ADMIN_ACTIONS[action](city, u(city, actor))
        assert refusals(city) == before + 1
    assert verify_chain(city).ok


def test_admin_changes_are_audited_and_limited(city: Store) -> None:
    sysadmin, secadmin = u(city, "sysadmin"), u(city, "secadmin")
    with pytest.raises(AccessDenied):  # admin roles are granted by secadmin only
        admin_create_user(city, sysadmin, "root2", "Fresh#Start2027", role="auditor",
                          jurisdiction_code="C")
    with pytest.raises(AccessDenied):
        admin_set_active(city, sysadmin, "sysadmin", False)
    with pytest.raises(AccessDenied):
        admin_set_role(city, secadmin, "secadmin", "auditor")
    admin_set_role(city, secadmin, "d1_commander", "leader")
    assert u(city, "d1_commander").role is Role.LEADER
    entry = city.query_one("SELECT actor, target, detail FROM audit_log"
                           " WHERE action = 'role_changed'")
    assert entry[0] == "secadmin" and entry[1] == "user:d1_commander" and "leader" in entry[2]


# -- catalog × classification × sharing mode --------------------------------------------------
# user -> dataset -> (listed, rows readable or None for refused, name column masked)
VISIBLE_ALL = {"care_backflow", "care_sub", "care_owner", "care_public"}
READ_MATRIX = {
    "commander": {"care_backflow": 4, "care_public": 4},
    "d1_commander": {"care_backflow": 2, "care_public": 2},
    "leader_d1": {"care_backflow": 2, "care_public": 2},
    "street_d1s1": {"care_backflow": 1, "care_public": 1},
    "sw_staff": {"care_backflow": 4, "care_public": 4},
    "cg_staff": {d: 4 for d in DATASETS},
    "cg_admin": {d: 4 for d in DATASETS},
    "social": {},
    "vendor": {},
    "sysadmin": {},
    "secadmin": {},
    "auditor": {},
}


@pytest.mark.parametrize("username", sorted(READ_MATRIX))
def test_catalog_listing_and_read_matrix(city: Store, username: str) -> None:
    user = u(city, username)
    listed = {d.id for d in list_datasets(city, user)}
    owner = username.startswith("cg_")
    if username == "social":
        assert listed == set()
    else:
        assert listed == (set(DATASETS) if owner else VISIBLE_ALL), listed
    for ds_id in DATASETS:
        expected = READ_MATRIX[username].get(ds_id)
        if expected is None:
            before = refusals(city)
            with pytest.raises(AccessDenied):
                read_dataset(city, user, ds_id)
            assert refusals(city) == before + 1
            continue
        columns, rows = read_dataset(city, user, ds_id)
        assert len(rows) == expected
        names = {r[columns.index("name")] for r in rows}
        phones = {r[columns.index("phone")] for r in rows}
        if owner:
            assert names <= {r[1] for r in RESIDENTS}
        else:
            assert all(n.startswith("***") for n in names)
            assert all(p.startswith("***") and len(p) == 5 for p in phones)


def test_secret_cannot_be_shared_or_reached(city: Store) -> None:
    with pytest.raises(SharingError, match="cannot be shared"):
        register_dataset(city, id="x_secret", table_name="residents_care", name_zh="x",
                         name_en="x", owner_department="cg", classification="secret",
                         sharing="backflow")
    with pytest.raises(AccessDenied):
        set_sharing(city, u(city, "cg_admin"), "care_secret", "backflow")
    with pytest.raises(Exception, match="(?i)constraint"):
        city.query("UPDATE datasets SET sharing = 'backflow' WHERE id = 'care_secret'")
    with pytest.raises(AccessDenied):
        request_subscription(city, u(city, "sw_staff"), "care_secret", scope_code="C",
                             columns=["id"], purpose="p", until=datetime.now() + timedelta(1))
    assert all(row["backflow"] + row["subscription"] + row["owner_only"] == 4
               for row in scoreboard(city, u(city, "commander")) if row["department"] == "cg")


@pytest.mark.parametrize(("actor", "allowed"), [("cg_admin", True), ("cg_staff", False),
                                                ("sw_admin", False), ("secadmin", False)])
def test_only_the_owner_admin_sets_the_sharing_mode(city: Store, actor: str,
                                                    allowed: bool) -> None:
    if allowed:
        set_sharing(city, u(city, actor), "care_owner", "backflow")
        assert len(read_dataset(city, u(city, "d1_commander"), "care_owner")[1]) == 2
    else:
        with pytest.raises(AccessDenied):
            set_sharing(city, u(city, actor), "care_owner", "backflow")


def test_classifying_secret_revokes_and_hides(city: Store) -> None:
    sw = u(city, "sw_staff")
    sub = request_subscription(city, sw, "care_sub", scope_code="D1", columns=["id"],
                               purpose="巡访", until=datetime.now() + timedelta(days=30))
    decide_subscription(city, u(city, "cg_admin"), sub.id, True)
    assert len(read_dataset(city, sw, "care_sub")[1]) == 2
    classify(city, u(city, "secadmin"), "care_sub", "secret")
    assert "care_sub" not in {d.id for d in list_datasets(city, sw)}
    with pytest.raises(AccessDenied):
        read_dataset(city, sw, "care_sub")


# -- subscriptions ---------------------------------------------------------------------------
def test_subscription_lifecycle(city: Store) -> None:
    sw_staff, sw_admin, cg_admin = u(city, "sw_staff"), u(city, "sw_admin"), u(city, "cg_admin")
    until = datetime.now() + timedelta(days=30)
    with pytest.raises(AccessDenied):
        read_dataset(city, sw_staff, "care_sub")
    sub = request_subscription(city, sw_staff, "care_sub", scope_code="D1",
                               columns=["id", "need", "phone"], purpose="独居老人巡访",
                               until=until)
    assert sub.status == "requested" and holdings(city, sw_staff) == []
    for outsider in (sw_admin, u(city, "cg_staff")):
        with pytest.raises(AccessDenied):
            decide_subscription(city, outsider, sub.id, True)
    decide_subscription(city, cg_admin, sub.id, True, note="同意")
    with pytest.raises(SharingError):
        decide_subscription(city, cg_admin, sub.id, False)
    for holder in (sw_staff, sw_admin):  # the unit holds it
        columns, rows = read_dataset(city, holder, "care_sub")
        assert columns == ["id", "phone", "need"] and sorted(r[0] for r in rows) == [1, 2]
        assert {r[1] for r in rows} == {"13912345678", "13800001111"}  # approved: unmasked
    with pytest.raises(AccessDenied):
        read_dataset(city, sw_staff, "care_sub", columns=["name"])
    with pytest.raises(AccessDenied):
        read_dataset(city, sw_staff, "care_sub", now=until + timedelta(seconds=1))
    assert [h.id for h in holdings(city, sw_staff)] == [sub.id]
    with pytest.raises(AccessDenied):
        revoke_subscription(city, u(city, "commander"), sub.id)
    revoke_subscription(city, sw_admin, sub.id)
    with pytest.raises(AccessDenied):
        read_dataset(city, sw_staff, "care_sub")
    actions = [r[0] for r in city.query(
        "SELECT action FROM audit_log WHERE action LIKE 'subscription_%' ORDER BY seq")]
    assert actions == ["subscription_requested", "subscription_approved",
                       "subscription_revoked"]
    board = {r["department"]: r for r in scoreboard(city, u(city, "leader_d1"))}
    assert (board["cg"]["received"], board["cg"]["answered"], board["cg"]["refused"]) == (1, 1, 0)
    assert board["cg"]["median_answer_hours"] is not None


def test_subscription_requests_are_checked(city: Store) -> None:
    d1 = u(city, "d1_commander")
    until = datetime.now() + timedelta(days=10)
    with pytest.raises(AccessDenied):  # outside their scope
        request_subscription(city, d1, "care_sub", scope_code="D2", columns=["id"],
                             purpose="p", until=until)
    with pytest.raises(AccessDenied):  # backflow datasets need no subscription
        request_subscription(city, d1, "care_backflow", scope_code="D1", columns=["id"],
                             purpose="p", until=until)
    for kwargs, message in [({"columns": ["salary"]}, "columns"), ({"purpose": " "}, "purpose"),
                            ({"until": datetime.now() - timedelta(1)}, "until"),
                            ({"until": datetime.now() + timedelta(days=400)}, "until")]:
        args = {"scope_code": "D1", "columns": ["id"], "purpose": "p", "until": until, **kwargs}
        with pytest.raises(SharingError, match=message):
            request_subscription(city, d1, "care_sub", **args)
    sub = request_subscription(city, d1, "care_sub", scope_code="D1S1", columns=["id"],
                               purpose="p", until=until)
    decide_subscription(city, u(city, "cg_admin"), sub.id, False, note="无必要")
    with pytest.raises(AccessDenied):
        read_dataset(city, d1, "care_sub")
    board = {r["department"]: r for r in scoreboard(city, u(city, "commander"))}
    assert board["cg"]["refused"] == 1
    with pytest.raises(AccessDenied):
        scoreboard(city, u(city, "social"))


def test_backflow_reads_are_counted_for_the_scoreboard(city: Store) -> None:
    read_dataset(city, u(city, "d1_commander"), "care_backflow")
    read_dataset(city, u(city, "street_d1s1"), "care_backflow")
    read_dataset(city, u(city, "cg_staff"), "care_backflow")  # the owner's read is not sharing
    board = {r["department"]: r for r in scoreboard(city, u(city, "commander"))}
    assert board["cg"]["backflow_rows"] == 3
    assert city.query_one("SELECT count(*) FROM audit_log WHERE action = 'shared_read'"
                          ) == (2,)


# -- property tests: no input reaches SQL as text --------------------------------------------
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scope_code=st.text(max_size=40), columns=st.lists(st.text(max_size=20), max_size=4),
       purpose=st.text(max_size=80), dataset=st.sampled_from([*DATASETS, "x'; DROP TABLE x"]))
def test_any_subscription_input_is_answered_cleanly(city: Store, scope_code: str,
                                                    columns: list, purpose: str,
                                                    dataset: str) -> None:
    with contextlib.suppress(SharingError, AccessDenied):
        request_subscription(city, u(city, "sw_staff"), dataset, scope_code=scope_code,
                             columns=columns, purpose=purpose,
                             until=datetime.now() + timedelta(days=5))
    assert city.query_one("SELECT count(*) FROM residents_care") == (4,)
    assert verify_chain(city).ok


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.none() | st.text(max_size=40), actor=st.none() | st.text(max_size=20),
       action=st.none() | st.text(max_size=20))
def test_any_audit_search_is_answered_cleanly(city: Store, text, actor, action) -> None:
    entries = search(city, u(city, "auditor"), text=text, actor=actor, action=action)
    assert all(e.action == action for e in entries) if action else True
    assert verify_chain(city).ok
