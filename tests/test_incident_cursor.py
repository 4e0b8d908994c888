"""Contract C1: ``report_incident``/``transition`` with ``cursor=`` run inside the caller's open
transaction. A caller that fails after them rolls back everything: no incident, no event, no
audit entry, no notification, and the audit chain (with its signed head) still verifies."""

from __future__ import annotations

from datetime import datetime

import pytest
from test_incident_machine import city, incident_city_template, user  # noqa: F401

from core.audit import read_checkpoint, record, verify_chain
from core.incidents import Status, TransitionRefused, report_incident, transition
from core.store import Store

T0 = datetime(2026, 11, 28, 8, 0)


class CallerFailed(RuntimeError):
    pass


def _counts(store: Store) -> tuple[int, int, int, int]:
    return store.query_one(
        "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM incident_events),"
        " (SELECT count(*) FROM audit_log), (SELECT count(*) FROM incident_notifications)")


def _report(store: Store, **kw):
    return report_incident(store, None, category="garbage_overflow", title="垃圾满溢",
                           lon=0.3, lat=0.2, source="hotline", now=T0, **kw)


def test_report_in_a_rolled_back_caller_transaction_leaves_nothing(city: Store) -> None:  # noqa: F811
    record(city, "someone", "login")  # a signed head exists before
    head_before = read_checkpoint(city)
    before = _counts(city)
    seen = {}
    with pytest.raises(CallerFailed), city.transaction() as cur:
        inc = _report(city, cursor=cur)
        seen["id"] = inc.id
        # inside the caller's transaction the incident, its event and audit entry exist
        assert cur.execute("SELECT status FROM incidents WHERE id = ?",
                           [inc.id]).fetchone() == ("reported",)
        assert cur.execute("SELECT count(*) FROM audit_log WHERE target = ?",
                           [f"incident:{inc.id}"]).fetchone()[0] == 1
        transition(city, user(city, "commander"), inc.id, "dispatch", cursor=cur)
        raise CallerFailed("the caller's own work failed")
    assert _counts(city) == before
    assert city.query_one("SELECT count(*) FROM incidents WHERE id = ?", [seen["id"]]) == (0,)
    assert read_checkpoint(city) == head_before
    assert verify_chain(city).ok
    # the chain goes on from where it was: the next entries (standalone and incident) verify
    inc = _report(city)
    assert inc.id == seen["id"]  # the id was not used up by the rolled-back report
    record(city, "someone", "logout")
    check = verify_chain(city)
    assert check.ok and check.entries == before[2] + 2


def test_transition_in_a_rolled_back_caller_transaction_changes_nothing(city: Store) -> None:  # noqa: F811
    cmd = user(city, "commander")
    inc = _report(city)
    transition(city, cmd, inc.id, "dispatch", now=T0)
    before = _counts(city)
    row_before = city.query_one("SELECT * FROM incidents WHERE id = ?", [inc.id])
    with pytest.raises(CallerFailed), city.transaction() as cur:
        claimed = transition(city, user(city, "cg_staff"), inc.id, "claim", cursor=cur)
        assert claimed.status is Status.CLAIMED
        raise CallerFailed("boom")
    assert _counts(city) == before
    assert city.query_one("SELECT * FROM incidents WHERE id = ?", [inc.id]) == row_before
    assert verify_chain(city).ok
    # and the claim still works afterwards (nothing remembered from the rolled-back one)
    assert transition(city, user(city, "cg_staff"), inc.id, "claim").status is Status.CLAIMED
    assert verify_chain(city).ok


def test_committed_caller_transaction_keeps_both(city: Store) -> None:  # noqa: F811
    with city.transaction() as cur:
        inc = _report(city, cursor=cur)
        transition(city, user(city, "commander"), inc.id, "dispatch", cursor=cur)
        cur.execute("CREATE TEMP TABLE caller_marker AS SELECT 1 AS x")
    assert city.query_one("SELECT status FROM incidents WHERE id = ?", [inc.id]) == ("dispatched",)
    assert [r[0] for r in city.query("SELECT action FROM incident_events WHERE incident_id = ?"
                                     " ORDER BY seq", [inc.id])] == ["report", "dispatch"]
    assert verify_chain(city).ok


def test_refusal_with_cursor_propagates_and_the_caller_rolls_back(city: Store) -> None:  # noqa: F811
    before = _counts(city)
    with pytest.raises(TransitionRefused, match="may not claim"), city.transaction() as cur:
        inc = _report(city, cursor=cur)
        transition(city, user(city, "commander"), inc.id, "claim", cursor=cur)
    assert _counts(city) == before
    assert verify_chain(city).ok
