"""Incidents end to end: the claim race, joint handling, SLA escalation with an injected clock,
extensions, the inbox and the dispatch board."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

import pytest
import test_incident_machine as machine
from test_incident_machine import T0, user

import core.incident_rules as incidents_module
from core.incident_views import (
    board,
    co_tasks,
    get_incident,
    inbox,
    inbox_counts,
    inbox_page,
    incident_detail,
    nearby_sensors,
    notifications,
    timeline,
)
from core.incidents import Status, TransitionRefused, escalate_overdue, report_incident, transition
from core.store import Store

# the incident city fixtures of test_incident_machine.py
incident_city_template = machine.incident_city_template
city = machine.city


def _dispatched(store: Store, category: str = "garbage_overflow", **kw) -> int:
    inc = report_incident(store, None, category=category, title="测试", lon=0.3, lat=0.2,
                          source="hotline", now=kw.pop("now", T0), **kw)
    transition(store, user(store, "commander"), inc.id, "dispatch", now=T0)
    return inc.id


@pytest.mark.parametrize("process_lock", [True, False], ids=["process-lock", "duckdb-only"])
def test_one_hundred_threads_claim_one_incident(city: Store, process_lock: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """One winner, 99 clear refusals, one claim event. Without the in-process write lock (as
    between processes) DuckDB's write-write conflict alone decides, turned into the refusal."""
    conflicts = []
    if not process_lock:
        monkeypatch.setattr(incidents_module, "_WRITE_LOCK", contextlib.nullcontext())
        real = incidents_module.write_conflict

        def counting(exc: BaseException) -> bool:
            found = real(exc)
            conflicts.append(found)
            return found

        monkeypatch.setattr(incidents_module, "write_conflict", counting)
    incident_id = _dispatched(city)
    staff = user(city, "cg_staff")
    barrier = threading.Barrier(100)
    results: list[object] = [None] * 100

    def claim(i: int) -> None:
        barrier.wait()
        try:
            results[i] = transition(city, staff, incident_id, "claim")
        except TransitionRefused as exc:
            results[i] = exc
        except Exception as exc:  # anything else is a bug: record it for the assertion
            results[i] = RuntimeError(repr(exc))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if not isinstance(r, Exception)]
    refusals = [r for r in results if isinstance(r, TransitionRefused)]
    assert len(winners) == 1, [r for r in results if isinstance(r, RuntimeError)]
    assert len(refusals) == 99
    claimed_at = winners[0].claimed_at.strftime("%Y-%m-%d %H:%M")
    assert {r.reason for r in refusals} == {f"already claimed by 城管局 at {claimed_at}"}
    claims = city.query_one("SELECT count(*) FROM incident_events WHERE incident_id = ? AND"
                            " action = 'claim'", [incident_id])[0]
    assert claims == 1
    assert city.query_one("SELECT count(*) FROM audit_log WHERE action = 'incident.claim'")[0] == 1
    seqs = [r[0] for r in city.query("SELECT seq FROM incident_events WHERE incident_id = ?"
                                     " ORDER BY seq", [incident_id])]
    assert seqs == [1, 2, 3]
    if not process_lock:  # the TransactionException path was really taken
        assert any(conflicts)


def test_concurrent_transitions_on_different_incidents_all_land(city: Store) -> None:
    """Different incidents conflict only on the audit log; retries make every one land."""
    ids = [_dispatched(city) for _ in range(12)]
    staff = user(city, "cg_staff")
    errors: list[str] = []

    def claim(incident_id: int) -> None:
        try:
            transition(city, staff, incident_id, "claim")
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=claim, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    statuses = {r[0] for r in city.query("SELECT status FROM incidents WHERE id IN (SELECT"
                                         " unnest(?))", [ids])}
    assert statuses == {"claimed"}


def test_joint_handling_end_to_end(city: Store) -> None:
    cmd, cg, sw = user(city, "commander"), user(city, "cg_staff"), user(city, "sw_staff")
    incident_id = _dispatched(city)
    transition(city, cg, incident_id, "claim")
    transition(city, cg, incident_id, "start")
    with pytest.raises(TransitionRefused, match="cg is the lead department already"):
        transition(city, cg, incident_id, "co_request", department="cg", note="x")
    transition(city, cg, incident_id, "co_request", department="sw", note="请水务局疏通管道")
    # the co-department now sees the incident and has a task in its inbox
    assert get_incident(city, sw, incident_id) is not None
    assert [(r["id"], r["box"]) for r in inbox(city, sw, now=T0)] == [(incident_id, "co")]
    assert notifications(city, sw)[0]["kind"] == "co_request"
    with pytest.raises(TransitionRefused, match="co-handling by 水务局 is not done yet"):
        transition(city, cg, incident_id, "resolve", note="已清理")
    with pytest.raises(TransitionRefused, match="no open co-handling task"):
        transition(city, cg, incident_id, "co_done", note="x")
    with pytest.raises(TransitionRefused, match="not assigned to your department"):
        transition(city, sw, incident_id, "resolve", note="x")
    transition(city, sw, incident_id, "co_done", note="管道已疏通")
    with pytest.raises(TransitionRefused, match="no open co-handling task"):
        transition(city, sw, incident_id, "co_done", note="again")
    resolved = transition(city, cg, incident_id, "resolve", note="已清理完毕")
    assert resolved.status is Status.RESOLVED
    transition(city, cmd, incident_id, "verify")
    closed = transition(city, cmd, incident_id, "close")
    assert closed.status is Status.CLOSED and closed.closed_at is not None
    events = [(e["action"], e["to_status"], e["actor"]) for e in timeline(city, cmd, incident_id)]
    assert events == [
        ("report", "reported", "citizen"), ("dispatch", "dispatched", "commander"),
        ("claim", "claimed", "cg_staff"), ("start", "in_progress", "cg_staff"),
        ("co_request", "in_progress", "cg_staff"), ("co_done", "in_progress", "sw_staff"),
        ("resolve", "resolved", "cg_staff"), ("verify", "verified", "commander"),
        ("close", "closed", "commander")]
    task = city.query_one("SELECT status, done_by, result FROM incident_co_tasks")
    assert task == ("done", "sw_staff", "管道已疏通")


def test_sla_escalation_with_an_injected_clock(city: Store) -> None:
    cmd, cg = user(city, "commander"), user(city, "cg_staff")
    late_claim = _dispatched(city)                         # claim due T0 + 2 h
    late_resolve = _dispatched(city)                       # resolve due T0 + 24 h
    transition(city, cg, late_resolve, "claim", now=T0 + timedelta(minutes=10))
    on_time = _dispatched(city, now=T0 + timedelta(hours=24))  # claim due T0 + 26 h
    assert escalate_overdue(city, now=T0 + timedelta(hours=1)).total == 0
    report = escalate_overdue(city, now=T0 + timedelta(hours=3))
    assert (report.claim_overdue, report.resolve_overdue) == ((late_claim,), ())
    assert escalate_overdue(city, now=T0 + timedelta(hours=4)).total == 0  # once only
    report = escalate_overdue(city, now=T0 + timedelta(hours=25))
    assert report.resolve_overdue == (late_resolve,)
    assert on_time not in report.claim_overdue
    row = city.query_one("SELECT overdue_kind, escalated_at FROM incidents WHERE id = ?",
                         [late_resolve])
    assert row == ("resolve", T0 + timedelta(hours=25))
    event = city.query_one("SELECT action, actor, to_status FROM incident_events WHERE"
                           " incident_id = ? ORDER BY seq DESC LIMIT 1", [late_resolve])
    assert event == ("escalate", "system", "claimed")
    kinds = {(n["incident_id"], n["kind"]) for n in notifications(city, cmd)}
    assert {(late_claim, "escalate"), (late_resolve, "escalate")} <= kinds
    # the commanders' board lists them as overdue, overdue first
    overdue = [r["id"] for r in board(city, cmd, now=T0 + timedelta(hours=25))["overdue"]]
    assert late_claim in overdue and late_resolve in overdue
    # the d1 commander is notified too (D1 holds the incidents)
    assert any(n["kind"] == "escalate" for n in notifications(city, user(city, "d1_commander")))


def test_extension_moves_the_deadline_only_when_approved(city: Store) -> None:
    cmd, cg = user(city, "commander"), user(city, "cg_staff")
    incident_id = _dispatched(city)
    transition(city, cg, incident_id, "claim")
    due = get_incident(city, cmd, incident_id).resolve_due
    transition(city, cg, incident_id, "request_extension", hours=48, note="需采购配件")
    with pytest.raises(TransitionRefused, match="waiting for a decision"):
        transition(city, cg, incident_id, "request_extension", hours=8, note="again")
    assert get_incident(city, cmd, incident_id).resolve_due == due
    transition(city, cmd, incident_id, "reject_extension", note="时限内完成")
    assert get_incident(city, cmd, incident_id).resolve_due == due
    transition(city, cg, incident_id, "request_extension", hours=12, note="雨天")
    escalate_overdue(city, now=due + timedelta(hours=1))
    assert get_incident(city, cmd, incident_id).overdue_kind == "resolve"
    approved = transition(city, cmd, incident_id, "approve_extension",
                          now=due + timedelta(hours=2))
    assert approved.resolve_due == due + timedelta(hours=12)
    assert approved.overdue_kind is None
    with pytest.raises(TransitionRefused, match="no extension request"):
        transition(city, cmd, incident_id, "approve_extension")


def test_inbox_puts_overdue_first_and_scopes_by_department(city: Store) -> None:
    cg, sw = user(city, "cg_staff"), user(city, "sw_staff")
    early = _dispatched(city, now=T0 - timedelta(hours=5))   # claim due T0 - 3 h: overdue
    fresh = _dispatched(city, now=T0)
    mine = _dispatched(city, now=T0 - timedelta(hours=1))
    transition(city, cg, mine, "claim")
    water = _dispatched(city, category="road_waterlogging")
    rows = inbox(city, cg, now=T0 + timedelta(minutes=30))
    assert [r["id"] for r in rows] == [early, fresh, mine]
    assert [r["box"] for r in rows] == ["claimable", "claimable", "mine"]
    assert rows[0]["overdue"] and not rows[1]["overdue"]
    assert [r["id"] for r in inbox(city, sw, now=T0)] == [water]
    assert inbox(city, user(city, "commander"), now=T0) == []  # commanders use the board


def test_the_inbox_page_is_the_inbox_with_its_counts(city: Store) -> None:
    """The inbox page's one read gives the rows of ``inbox`` and the counts of
    ``inbox_counts`` (of the whole inbox, not the page), with names from the reference
    tables, also a department's made after the names were cached."""
    cg = user(city, "cg_staff")
    late = [_dispatched(city, now=T0 - timedelta(hours=5)) for _ in range(3)]
    ontime = [_dispatched(city, now=T0) for _ in range(2)]
    now = T0 + timedelta(minutes=30)
    rows, counts = inbox_page(city, cg, now=now, limit=2)
    assert counts == inbox_counts(city, cg, now=now) == {"open": 5, "overdue": 3}
    assert rows == inbox(city, cg, now=now, limit=2)
    assert [r["id"] for r in rows] == late[:2] and all(r["overdue"] for r in rows)
    rest = inbox(city, cg, now=now, after=rows[-1]["key"])
    assert [r["id"] for r in rest] == [late[2], *ontime]
    place, dept = city.query_one(
        "SELECT j.name_zh, d.name_zh FROM incidents i JOIN jurisdictions j ON"
        " j.code = i.jurisdiction_code JOIN departments d ON d.code = i.department_code"
        " WHERE i.id = ?", [rows[0]["id"]])
    assert (rows[0]["place_zh"], rows[0]["department_zh"]) == (place, dept)
    assert rows[0]["category_zh"] and rows[0]["category_en"]
    with city.transaction() as cur:    # a new department and an incident moved to it
        cur.execute("INSERT INTO departments (code, name_zh, name_en, kind, jurisdiction_code)"
                    " SELECT 'cg2', '城管二队', 'Urban mgmt 2', kind, jurisdiction_code"
                    " FROM departments WHERE code = 'cg'")
        cur.execute("UPDATE incidents SET department_code = 'cg2' WHERE id = ?", [late[0]])
        cur.execute("UPDATE users SET department_code = 'cg2' WHERE username = 'cg_staff'")
    moved, counts = inbox_page(city, user(city, "cg_staff"), now=now)
    assert [(r["id"], r["department_zh"]) for r in moved] == [(late[0], "城管二队")]
    assert counts == {"open": 1, "overdue": 1}
    assert inbox_page(city, user(city, "commander"), now=now) == ([], {"open": 0, "overdue": 0})


def test_the_incident_detail_is_its_parts_read_with_one_check(city: Store) -> None:
    cg, sw = user(city, "cg_staff"), user(city, "sw_staff")
    incident_id = _dispatched(city)
    transition(city, cg, incident_id, "claim")
    detail = incident_detail(city, cg, incident_id)
    assert detail.incident == get_incident(city, cg, incident_id)
    assert detail.timeline == timeline(city, cg, incident_id)
    assert [e["action"] for e in detail.timeline][-1] == "claim"
    assert detail.co_tasks == co_tasks(city, cg, incident_id)
    assert detail.nearby == nearby_sensors(city, cg, incident_id)
    assert incident_detail(city, sw, incident_id) is None      # not their department's
    assert incident_detail(city, user(city, "sysadmin"), incident_id) is None


def test_contacts_are_masked_for_those_without_need(city: Store) -> None:
    inc = report_incident(city, None, category="garbage_overflow", title="t", lon=0.3, lat=0.2,
                          source="hotline", contact="13812345678", now=T0)
    assert get_incident(city, user(city, "commander"), inc.id).reporter_contact == "13812345678"
    assert get_incident(city, user(city, "leader"), inc.id).reporter_contact == "138****5678"
    assert get_incident(city, user(city, "sysadmin"), inc.id) is None
    assert get_incident(city, user(city, "grid_1"), inc.id) is not None
    assert get_incident(city, user(city, "sw_staff"), inc.id) is None


def test_board_sections(city: Store) -> None:
    cmd, cg = user(city, "commander"), user(city, "cg_staff")
    unassigned = report_incident(city, None, category="garbage_overflow", title="t", lon=0.3,
                                 lat=0.2, source="hotline", now=T0).id
    returned = _dispatched(city)
    transition(city, cg, returned, "return", note="不属于本部门")
    supervised = _dispatched(city)
    transition(city, cmd, supervised, "supervise", note="尽快处理")
    b = board(city, cmd, now=T0 + timedelta(minutes=5))
    assert [r["id"] for r in b["unassigned"]] == [unassigned]
    assert [r["id"] for r in b["returned"]] == [returned]
    assert [r["id"] for r in b["supervised"]] == [supervised]
    d2 = board(city, user(city, "d1_commander"), now=T0)
    assert [r["id"] for r in d2["unassigned"]] == [unassigned]  # D1 holds it
    assert board(city, cg, now=T0)["unassigned"] == []


def test_demo_history_numbers_events_the_way_the_state_machine_does(tmp_path) -> None:
    """The demo generator's ``version`` is the event count, so the next event is version + 1;
    ``supervised_at`` is set only on open incidents that were supervised."""
    from datetime import datetime

    import numpy as np

    from core.settings import load_settings
    from pipelines.demo.catalog import categories_frame, departments_frame
    from pipelines.demo.geography import make_geography
    from pipelines.demo.incidents import make_incidents

    settings = load_settings(data_dir=tmp_path, demo_days=10, demo_incidents=1500,
                             demo_districts=3, demo_streets=6, demo_communities=30)
    geo = make_geography(np.random.default_rng(1), settings)
    districts = geo.jurisdictions[geo.jurisdictions["level"] == "district"]
    rows, events = make_incidents(np.random.default_rng(2), geo, categories_frame(),
                                  departments_frame(districts, "320281"),
                                  datetime(2026, 11, 28, 8), settings)
    last_seq = events.groupby("incident_id")["seq"].max()
    assert (rows.set_index("id")["version"] == last_seq).all()
    supervised = rows["supervised_at"].notna()
    assert supervised.any()
    assert (rows.loc[supervised, "status"] != "closed").all()
