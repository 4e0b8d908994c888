"""The incident state machine, table-driven: every (role, state, action) is tried, allowed or
refused; a refusal changes nothing. Also: routing, SLA deadlines, duplicates, report input.

``incident_city`` (also used by the other tests/test_incident_*.py files) is the tiny city of
conftest.py plus departments, categories and one user per role.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import TINY_PASSWORD

from core.audit import record, verify_chain
from core.incidents import (
    ACTIONS,
    CITIZEN,
    TRANSITIONS,
    IncidentError,
    Status,
    TransitionRefused,
    report_incident,
    transition,
)
from core.roles import Role
from core.store import Store
from core.users import create_user, get_user

T0 = datetime(2026, 11, 28, 8, 0)

DEPARTMENTS = [
    ("gov_D1", "1区人民政府", "District 1 Government", "government", "D1"),
    ("gov_D2", "2区人民政府", "District 2 Government", "government", "D2"),
    ("cyzx", "城市运行管理中心", "City Operations Centre", "command", "C"),
    ("shzz", "志愿者联合会", "Volunteers' Federation", "social_org", "C"),
    ("vendor", "驻场运维服务团队", "On-site Vendor Team", "vendor", "C"),
    ("street_s1", "D1S1街道办", "Street office D1S1", "department", "D1S1"),
]
CATEGORIES = [
    # code, zh, en, department, priority, claim h, resolve h, district_only, social_help
    ("garbage_overflow", "垃圾满溢", "Overflowing garbage", "cg", "normal", 2, 24, False, True),
    ("road_waterlogging", "道路积水", "Road waterlogging", "sw", "high", 2, 24, False, False),
    ("illegal_construction", "违法建设", "Illegal construction", "cg", "normal", 24, 360, True,
     False),
    ("manhole_cover", "井盖缺失", "Missing manhole cover", "cg", "normal", 8, 168, False, False),
]
# role -> (username, jurisdiction, department)
ROLE_USERS = {
    Role.COMMANDER: ("commander", None, None),        # exists in the tiny city (C)
    Role.LEADER: ("leader", "C", None),
    Role.DEPT_STAFF: ("cg_staff", None, None),        # exists (cg)
    Role.DEPT_ADMIN: ("cg_admin", None, "cg"),
    Role.GRASSROOTS: ("street_1", "D1S1", None),
    Role.GRID_WORKER: ("grid_1", "D1S1C1", None),
    Role.SOCIAL_ORG: ("social_1", None, "shzz"),
    Role.VENDOR_TECH: ("vendor_1", None, "vendor"),
    Role.SYSADMIN: ("sysadmin", None, None),          # exists
    Role.SECADMIN: ("secadmin", "C", None),
    Role.AUDITOR: ("auditor", "C", None),
}
EXTRA_USERS = [("sw_staff", "dept_staff", None, "sw"), ("gov1_staff", "dept_staff", None, "gov_D1")]


def setup_incident_city(store: Store) -> None:
    """Departments, categories and users on top of conftest's tiny city."""
    with store.transaction() as cur:
        cur.executemany("INSERT INTO departments VALUES (?, ?, ?, ?, ?)", DEPARTMENTS)
        cur.executemany("INSERT INTO incident_categories VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        CATEGORIES)
    for role, (name, jur, dept) in ROLE_USERS.items():
        if get_user(store, name) is None:
            create_user(store, name, TINY_PASSWORD, role=role, jurisdiction_code=jur,
                        department_code=dept)
    for name, role, jur, dept in EXTRA_USERS:
        create_user(store, name, TINY_PASSWORD, role=role, jurisdiction_code=jur,
                    department_code=dept)


@pytest.fixture(scope="session")
def incident_city_template(tiny_city_template: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("incident-template") / "city.duckdb"
    shutil.copy(tiny_city_template, path)
    store = Store.open(path)
    setup_incident_city(store)
    store.close()
    return path


@pytest.fixture
def city(incident_city_template: Path, tmp_path: Path) -> Iterator[Store]:
    shutil.copy(incident_city_template, tmp_path / "city.duckdb")
    store = Store.open(tmp_path / "city.duckdb")
    yield store
    store.close()


def user(store: Store, name: str):
    return get_user(store, name)


# -- table-driven: every (role, state, action) ---------------------------------------------

ALL_ROLES = [*Role, CITIZEN]
STATES = list(Status)
TRANSITION_ACTIONS = [a for a in ACTIONS if a != "report"]
FIELDS = {
    "dispatch": {"department": "cg"},
    "transfer": {"department": "sw"},
    "co_request": {"department": "sw"},
    "request_extension": {"hours": 24},
    "rate": {"rating": 2},
    "merge": {"into": 1},
}
# a point inside community D1S1C1 (all role users' scopes include it)
LON, LAT = 0.3, 0.2


def _actor(store: Store, role):
    if role == CITIZEN:
        return None
    return user(store, ROLE_USERS[role][0])


def _incident_in(store: Store, state: Status, action: str, role) -> int:
    """A fresh incident in ``state`` (a copy of incident 1) with whatever the action needs."""
    social = role == Role.SOCIAL_ORG
    lead = "shzz" if social and action != "claim" else "cg"
    with store.transaction() as cur:
        new_id = cur.execute("SELECT max(id) + 1 FROM incidents").fetchone()[0]
        cur.execute("INSERT INTO incidents SELECT * REPLACE (? AS id, ? AS tracking_code,"
                    " ? AS status, ? AS department_code, ? AS rating, ? AS claimed_at)"
                    " FROM incidents WHERE id = 1",
                    [new_id, f"T{new_id}", str(state), lead, 1 if action == "reopen" else None,
                     T0 if state in (Status.CLAIMED, Status.IN_PROGRESS) else None])
        if action == "co_done":
            cur.execute("INSERT INTO incident_co_tasks (incident_id, department_code, status,"
                        " requested_at, requested_by) VALUES (?, ?, 'pending', ?, 'x')",
                        [new_id, lead, T0])
        if action in ("approve_extension", "reject_extension"):
            cur.execute("INSERT INTO incident_extensions (incident_id, department_code,"
                        " requested_by, requested_at, hours, reason, status)"
                        " VALUES (?, 'cg', 'cg_staff', ?, 24, 'r', 'pending')", [new_id, T0])
    return new_id


def _snapshot(store: Store, incident_id: int) -> tuple:
    return store.query_one(
        "SELECT (SELECT md5(string_agg(i::VARCHAR, '')) FROM incidents i WHERE id = ?),"
        " (SELECT count(*) FROM incident_events), (SELECT count(*) FROM audit_log),"
        " (SELECT md5(coalesce(string_agg(t::VARCHAR, '' ORDER BY t::VARCHAR), ''))"
        "  FROM incident_co_tasks t WHERE incident_id = ?),"
        " (SELECT md5(coalesce(string_agg(x::VARCHAR, '' ORDER BY x::VARCHAR), ''))"
        "  FROM incident_extensions x WHERE incident_id = ?),"
        " (SELECT count(*) FROM incident_notifications)", [incident_id] * 3)


def _expected(role, state: Status, action: str) -> bool:
    rule = TRANSITIONS.get((str(role), action))
    return rule is not None and state in rule.from_states


@pytest.fixture(scope="module")
def table_city(incident_city_template: Path, tmp_path_factory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("table") / "city.duckdb"
    shutil.copy(incident_city_template, path)
    store = Store.open(path)
    # the merge target: an open incident of the same category
    report_incident(store, None, category="garbage_overflow", title="合并目标", lon=LON,
                    lat=LAT, source="hotline", now=T0)
    yield store
    store.close()


@pytest.mark.parametrize("role", ALL_ROLES, ids=str)
def test_every_role_state_action(table_city: Store, role) -> None:
    """For one role: every state × every action, checked against the table."""
    store = table_city
    actor = _actor(store, role)
    wrong = []
    ready: dict[tuple, int] = {}  # a refused try changes nothing, so its incident is reused
    special = ("co_done", "approve_extension", "reject_extension", "reopen", "claim")
    for state in STATES:
        for action in TRANSITION_ACTIONS:
            key = (state, action if action in special else "")
            if key not in ready:
                ready[key] = _incident_in(store, state, action, role)
            incident_id = ready[key]
            before = _snapshot(store, incident_id)
            expected = _expected(role, state, action)
            try:
                after = transition(store, actor, incident_id, action, note="说明",
                                   now=T0 + timedelta(minutes=5), **FIELDS.get(action, {}))
            except TransitionRefused as exc:
                if expected:
                    wrong.append(f"{state}/{action}: refused ({exc.reason})")
                if _snapshot(store, incident_id) != before:
                    wrong.append(f"{state}/{action}: refused but something changed")
                continue
            del ready[key]
            if not expected:
                wrong.append(f"{state}/{action}: allowed but the table says no")
                continue
            rule = TRANSITIONS[(str(role), action)]
            assert after.status == (rule.to_status or state)
            last = store.query_one("SELECT action, from_status, to_status, actor FROM"
                                   " incident_events WHERE incident_id = ? ORDER BY seq DESC"
                                   " LIMIT 1", [incident_id])
            name = "citizen" if actor is None else actor.username
            assert last == (action, str(state), str(after.status), name)
            audit = store.query_one("SELECT actor, target FROM audit_log ORDER BY seq DESC"
                                    " LIMIT 1")
            assert audit == (name, f"incident:{incident_id}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)
    record(store, "test", "checkpoint")  # a standalone entry signs the chain's head
    assert verify_chain(store).ok


def test_table_covers_every_role_that_acts() -> None:
    acting = {role for role, _ in TRANSITIONS}
    assert {"commander", "dept_staff", "dept_admin", "social_org", "grid_worker", "leader",
            CITIZEN, "system"} == acting
    for role in ("vendor_tech", "sysadmin", "secadmin", "auditor", "grassroots"):
        assert role not in acting


# -- refusals with reasons -----------------------------------------------------------------

def test_refusals_say_why_and_change_nothing(city: Store) -> None:
    cmd, cg, sw = user(city, "commander"), user(city, "cg_staff"), user(city, "sw_staff")
    inc = report_incident(city, None, category="garbage_overflow", title="垃圾", lon=0.3,
                          lat=0.2, source="hotline", now=T0)
    with pytest.raises(TransitionRefused, match="a dept_staff may not dispatch"):
        transition(city, cg, inc.id, "dispatch", department="cg")
    with pytest.raises(TransitionRefused, match="unknown action"):
        transition(city, cmd, inc.id, "explode")
    with pytest.raises(TransitionRefused, match="no incident 999999"):
        transition(city, cmd, 999999, "dispatch")
    with pytest.raises(TransitionRefused, match="routing suggests cg; dispatching to sw needs"):
        transition(city, cmd, inc.id, "dispatch", department="sw")
    with pytest.raises(TransitionRefused, match="does not handle incidents"):
        transition(city, cmd, inc.id, "dispatch", department="cyzx", reason="test")
    with pytest.raises(TransitionRefused, match="unknown department"):
        transition(city, cmd, inc.id, "dispatch", department="nope", reason="test")
    transition(city, cmd, inc.id, "dispatch")
    # sw staff cannot even see cg's incident
    with pytest.raises(TransitionRefused, match="no incident .* in your scope"):
        transition(city, sw, inc.id, "claim")
    with pytest.raises(TransitionRefused, match="return needs a reason"):
        transition(city, cg, inc.id, "return")
    with pytest.raises(TransitionRefused, match="cannot resolve .* it is dispatched"):
        transition(city, cg, inc.id, "resolve", note="done")
    # a district commander acts only inside their district
    d2 = report_incident(city, None, category="garbage_overflow", title="D2", lon=1.5,
                         lat=0.2, source="hotline", now=T0)
    with pytest.raises(TransitionRefused, match="no incident .* in your scope"):
        transition(city, user(city, "d1_commander"), d2.id, "dispatch")
    events = city.query_one("SELECT count(*) FROM incident_events WHERE incident_id = ?",
                            [inc.id])[0]
    assert events == 2  # report + the one dispatch


def test_return_and_redispatch_with_override_reason(city: Store) -> None:
    cmd, cg, sw = user(city, "commander"), user(city, "cg_staff"), user(city, "sw_staff")
    inc = report_incident(city, None, category="garbage_overflow", title="垃圾", lon=0.3,
                          lat=0.2, source="hotline", now=T0)
    transition(city, cmd, inc.id, "dispatch")
    returned = transition(city, cg, inc.id, "return", note="非本部门职责")
    assert returned.status is Status.RETURNED
    again = transition(city, cmd, inc.id, "dispatch", department="sw", reason="实为排水问题")
    assert (again.status, again.department_code) == (Status.DISPATCHED, "sw")
    assert transition(city, sw, inc.id, "claim").department_code == "sw"
    detail = city.query_one("SELECT detail FROM audit_log WHERE action = 'incident.dispatch'"
                            " ORDER BY seq DESC LIMIT 1")[0]
    assert "实为排水问题" in detail and '"routed": "cg"' in detail


def test_rating_and_reopen_after_a_bad_rating(city: Store) -> None:
    cmd, cg = user(city, "commander"), user(city, "cg_staff")
    inc = report_incident(city, None, category="garbage_overflow", title="垃圾", lon=0.3,
                          lat=0.2, source="hotline", now=T0)
    for actor, action, kw in [(cmd, "dispatch", {}), (cg, "claim", {}), (cg, "start", {}),
                              (cg, "resolve", {"note": "已清运"}), (cmd, "verify", {}),
                              (cmd, "close", {})]:
        transition(city, actor, inc.id, action, **kw)
    with pytest.raises(TransitionRefused, match="bad rating"):
        transition(city, cmd, inc.id, "reopen", note="x")
    with pytest.raises(TransitionRefused, match="whole number from 1 to 5"):
        transition(city, None, inc.id, "rate", rating=7)
    assert transition(city, None, inc.id, "rate", rating=1).rating == 1
    with pytest.raises(TransitionRefused, match="rated already"):
        transition(city, None, inc.id, "rate", rating=5)
    reopened = transition(city, cmd, inc.id, "reopen", note="回访不满意")
    assert reopened.status is Status.REOPENED and reopened.closed_at is None
    assert reopened.rating is None  # the citizen rates again after the second closure
    assert transition(city, cg, inc.id, "claim").status is Status.CLAIMED
    for actor, action, kw in [(cg, "start", {}), (cg, "resolve", {"note": "再次清运"}),
                              (cmd, "verify", {}), (cmd, "close", {})]:
        transition(city, actor, inc.id, action, **kw)
    assert transition(city, None, inc.id, "rate", rating=5).rating == 5
    with pytest.raises(TransitionRefused, match="rated already"):
        transition(city, None, inc.id, "rate", rating=4)
    with pytest.raises(TransitionRefused, match="bad rating"):
        transition(city, cmd, inc.id, "reopen", note="x")
    events = city.query("SELECT action, note FROM incident_events WHERE incident_id = ?"
                        " ORDER BY seq", [inc.id])
    assert [a for a, _ in events] == [
        "report", "dispatch", "claim", "start", "resolve", "verify", "close", "rate", "reopen",
        "claim", "start", "resolve", "verify", "close", "rate"]
    ratings = [n for a, n in events if a == "rate"]  # the old rating stays in the events
    assert "1 星" in ratings[0] and "5 星" in ratings[1]
    assert city.query_one("SELECT rating FROM incidents WHERE id = ?", [inc.id]) == (5,)


def test_social_org_claims_social_help_incidents_only(city: Store) -> None:
    cmd, social = user(city, "commander"), user(city, "social_1")
    help_inc = report_incident(city, None, category="garbage_overflow", title="垃圾", lon=0.3,
                               lat=0.2, source="hotline", now=T0)
    other = report_incident(city, None, category="road_waterlogging", title="积水", lon=0.3,
                            lat=0.2, source="hotline", now=T0)
    transition(city, cmd, help_inc.id, "dispatch")
    transition(city, cmd, other.id, "dispatch")
    claimed = transition(city, social, help_inc.id, "claim")
    assert (claimed.status, claimed.department_code) == (Status.CLAIMED, "shzz")
    with pytest.raises(TransitionRefused, match="no incident .* in your scope"):
        transition(city, social, other.id, "claim")


def test_merge_a_duplicate(city: Store) -> None:
    cmd = user(city, "commander")
    first = report_incident(city, None, category="manhole_cover", title="井盖", lon=0.3,
                            lat=0.2, source="hotline", now=T0)
    second = report_incident(city, None, category="manhole_cover", title="井盖2", lon=0.3005,
                             lat=0.2005, source="citizen_app", now=T0)
    assert second.duplicates == (first.id,)
    merged = transition(city, cmd, second.id, "merge", into=first.id)
    assert (merged.status, merged.merged_into) == (Status.CLOSED, first.id)
    with pytest.raises(TransitionRefused, match="closed; merge into an open one"):
        transition(city, cmd, report_incident(
            city, None, category="manhole_cover", title="3", lon=0.3, lat=0.2, source="hotline",
            now=T0).id, "merge", into=second.id)


# -- report, routing, deadlines, duplicates ------------------------------------------------

def test_report_finds_the_community_sets_deadlines_and_codes(city: Store) -> None:
    inc = report_incident(city, None, category="road_waterlogging", title="积水", lon=1.2,
                          lat=0.7, source="hotline", contact="13812345678", now=T0)
    assert inc.jurisdiction_code == "D2S2C1" and inc.status is Status.REPORTED
    assert inc.department_code == "sw"  # suggested by the category, waits for the commander
    assert inc.priority == "high"
    assert (inc.claim_due, inc.resolve_due) == (T0 + timedelta(hours=2), T0 + timedelta(hours=24))
    assert inc.tracking_code == "YW2026112800001"
    urgent = report_incident(city, None, category="road_waterlogging", title="积水", lon=1.2,
                             lat=0.7, source="hotline", priority="emergency", now=T0)
    assert urgent.tracking_code == "YW2026112800002"
    assert (urgent.claim_due, urgent.resolve_due) == (T0 + timedelta(minutes=30),
                                                      T0 + timedelta(hours=2))
    assert urgent.duplicates == (inc.id,)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"category": "nope"}, "unknown incident category"),
    ({"source": "fax"}, "unknown source"),
    ({"priority": "asap"}, "unknown priority"),
    ({"title": "  "}, "title"),
    ({"lon": 5.0}, "outside every community"),
    ({"lon": float("nan")}, "WGS84"),
])
def test_bad_reports_are_refused_and_write_nothing(city: Store, kwargs, message) -> None:
    args = {"category": "garbage_overflow", "title": "t", "lon": 0.3, "lat": 0.2,
            "source": "hotline", **kwargs}
    with pytest.raises(IncidentError, match=message):
        report_incident(city, None, **args)
    assert city.query_one("SELECT count(*) FROM incidents")[0] == 0


def test_platform_roles_cannot_report(city: Store) -> None:
    with pytest.raises(TransitionRefused, match="sysadmin may not report"):
        report_incident(city, user(city, "sysadmin"), category="garbage_overflow", title="t",
                        lon=0.3, lat=0.2, source="department")
    with pytest.raises(TransitionRefused, match="outside your jurisdiction"):
        report_incident(city, user(city, "grid_1"), category="garbage_overflow", title="t",
                        lon=1.3, lat=0.2, source="grid_patrol")


def test_routing_rules_fallback_and_negative_list(city: Store) -> None:
    from core.routing import route

    assert route(city, "garbage_overflow", "D1S1C1").department_code == "cg"
    # negative list: district government, never below district
    neg = route(city, "illegal_construction", "D1S1C1")
    assert (neg.department_code, neg.reason) == ("gov_D1", "negative_list")
    # unknown category: the district government is the fallback owner
    assert route(city, "unknown", "D2S1C1").department_code == "gov_D2"
    with city.transaction() as cur:
        cur.execute("INSERT INTO incident_routing_rules (category, jurisdiction_code,"
                    " department_code) VALUES ('garbage_overflow', 'D1S1', 'street_s1'),"
                    " ('illegal_construction', 'D1S1', 'street_s1'), (NULL, 'D2', 'gov_D2')")
    rule = route(city, "garbage_overflow", "D1S1C1")
    assert (rule.department_code, rule.auto_dispatch) == ("street_s1", True)
    # the street office may not take a negative-list category: the rule is skipped
    assert route(city, "illegal_construction", "D1S1C1").department_code == "gov_D1"
    assert route(city, "road_waterlogging", "D2S1C1").department_code == "gov_D2"
    # an explicit rule dispatches at once, and notifies nobody in particular here
    inc = report_incident(city, None, category="garbage_overflow", title="垃圾", lon=0.3,
                          lat=0.2, source="hotline", now=T0)
    assert (inc.status, inc.department_code) == (Status.DISPATCHED, "street_s1")
    with pytest.raises(TransitionRefused, match="negative list"):
        transition(city, user(city, "commander"), report_incident(
            city, None, category="illegal_construction", title="违建", lon=0.3, lat=0.2,
            source="hotline", now=T0).id, "dispatch", department="street_s1", reason="试试")


def test_dispatch_notifies_the_department(city: Store) -> None:
    from core.incident_views import mark_read, notifications, unread_count

    cmd, cg = user(city, "commander"), user(city, "cg_staff")
    inc = report_incident(city, None, category="garbage_overflow", title="垃圾满溢", lon=0.3,
                          lat=0.2, source="hotline", now=T0)
    transition(city, cmd, inc.id, "dispatch")
    notes = notifications(city, cg)
    assert [(n["incident_id"], n["kind"]) for n in notes] == [(inc.id, "dispatch")]
    assert unread_count(city, cg) == 1 and unread_count(city, cmd) == 0
    assert mark_read(city, cg) == 1 and unread_count(city, cg) == 0
