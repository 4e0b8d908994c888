"""The incident lifecycle (工单, design §5): report, the state machine, SLA escalation.

Every change goes through ``report_incident`` or ``transition``. Which role may do which action
from which state is one declared table, ``TRANSITIONS``; every transition writes an
``incident_events`` row and an audit entry in the same transaction as the change; a refused
transition raises ``TransitionRefused`` and changes nothing. ``rated`` is an event on a closed
incident, not a status.

Concurrency: DuckDB answers a write-write conflict with ``TransactionException`` instead of
waiting. A conflicting transaction is rolled back and tried again from a fresh read, so the
loser of a claim race is refused with "already claimed by <department> at <time>".

>>> inc = report_incident(store, None, category="garbage_overflow", title="垃圾满溢",
...                       lon=120.3, lat=31.9, source="hotline")          # doctest: +SKIP
>>> transition(store, commander, inc.id, "dispatch", department="cg")     # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from core import incident_rules, routing
from core.audit import signing
from core.incident_report import (
    EscalationReport,
    escalate_overdue,
    find_duplicates,
    report_incident,
)
from core.incident_rules import (
    ACTIONS,
    BACKFILL_FACTS_SQL,
    CITIZEN,
    DUPLICATE_RADIUS_M,
    FACT_COLUMNS,
    OPEN_STATUSES,
    PRIORITIES,
    RULES,
    SOURCE_NAMES_ZH,
    SOURCES,
    SYSTEM,
    TRANSITIONS,
    Incident,
    IncidentError,
    Rule,
    S,
    Status,
    TransitionRefused,
    Who,
    _actor_name,
    _check_fields,
    _commanders_over,
    _department_name,
    _department_name_cached,
    _department_users,
    _jurisdiction_path,
    _load,
    _load_for,
    _may_act,
    _notify,
    _retrying,
    _role_key,
    _scope_of,
    _state_refusal,
    _update,
    _visible,
    _write_event,
    fact_columns,
    write_transaction,
)
from core.scope import Scope
from core.sla import utcnow
from core.store import Store
from core.users import User

__all__ = [
    "ACTIONS",
    "CITIZEN",
    "SOURCE_NAMES_ZH",
    "DUPLICATE_RADIUS_M",
    "OPEN_STATUSES",
    "PRIORITIES",
    "RULES",
    "SOURCES",
    "SYSTEM",
    "TRANSITIONS",
    "EscalationReport",
    "Incident",
    "IncidentError",
    "Rule",
    "Status",
    "TransitionRefused",
    "Who",
    "FACT_COLUMNS",
    "BACKFILL_FACTS_SQL",
    "allowed_actions",
    "escalate_overdue",
    "find_duplicates",
    "report_incident",
    "transition",
    "write_transaction",
]

# The last state this process committed per incident (bounded): a writer that queued behind
# another for the same incident is answered from it without touching the database.
# Keyed by (store, incident); used only for a commit made after the queued writer's own read.
_RECENT: OrderedDict[tuple[int, int], tuple[int, Incident, str]] = OrderedDict()
_RECENT_SIZE = 4096
_TICKS = itertools.count()


def transition(store: Store, actor: User | None, incident_id: int, action: str, *,
               note: str | None = None, now: datetime | None = None, cursor=None,
               **fields: Any) -> Incident:
    """Apply ``action`` to an incident as ``actor`` (None: a citizen) and return it afterwards.

    Fields by action: dispatch ``department`` (default: the routed one; another one needs
    ``reason`` or ``note``), transfer ``department``, co_request ``department`` (a code or a
    list), request_extension ``hours``, rate ``rating``, merge ``into``. Raises
    ``TransitionRefused`` (and changes nothing) when the table, the scope, the state or the
    fields refuse it.

    ``cursor``: run on that cursor inside the caller's open transaction (no BEGIN/COMMIT, no
    retry, no lock taken); every error propagates so that the caller rolls back everything.

    >>> transition(store, cg_staff, 42, "claim").status        # doctest: +SKIP
    <Status.CLAIMED: 'claimed'>
    """
    now = now or utcnow()
    role = _role_key(actor)
    if action not in ACTIONS or action == "report":
        raise TransitionRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS[1:])}")
    if actor is not None and not actor.active:
        raise TransitionRefused(f"user {actor.username} is disabled")
    rule = TRANSITIONS.get((role, action))
    if rule is None:
        raise TransitionRefused(f"a {role} may not {action} incidents")
    _check_fields(rule, note, fields)
    scope = _scope_of(store, actor)
    name = _actor_name(actor)
    if cursor is not None:
        _RECENT.pop((id(store), incident_id), None)  # the caller's commit is not remembered
        return _transition_on(cursor, store, rule, incident_id, name, scope, now, note, fields)[0]
    seen = next(_TICKS)
    if store.url.startswith("ducklake:"):
        # other processes write too: a read before queueing for the cluster's write lock
        # answers the losers of a claim race, and any other action the state refuses
        reader = store.cursor()
        inc, visible, _in_scope = _load_for(reader, incident_id, scope, store)
        if inc is None or not visible:
            raise TransitionRefused(f"no incident {incident_id} in your scope")
        if inc.status not in rule.from_states:
            raise TransitionRefused(_state_refusal(reader, rule, inc))

    def work() -> Incident:
        with incident_rules._WRITE_LOCK:
            # the losers of a race queued here behind the winner are answered from what it
            # committed (after their own call began) without touching the database
            refusal = _refusal_from_recent(store, scope, rule, incident_id, seen)
            if refusal:
                raise TransitionRefused(refusal)
            with signing(store), store.transaction() as cur:
                after, department = _transition_on(cur, store, rule, incident_id, name, scope,
                                                   now, note, fields)
            _remember(store, after, department)
            return after

    return _retrying(work)


def _refusal_from_recent(store: Store, scope: Scope | None, rule: Rule, incident_id: int,
                         seen: int) -> str | None:
    """The refusal for a state this process committed after tick ``seen`` (None: ask the
    database). Only for an incident the scope is known to see without a query."""
    recent = _RECENT.get((id(store), incident_id))
    if recent is None or recent[0] <= seen or recent[1].status in rule.from_states:
        return None
    inc = recent[1]
    if scope is not None:
        path = _jurisdiction_path(store, store.cursor(), inc.jurisdiction_code)
        if path is None or not _visible(None, scope, inc, path)[0]:
            return None
    return _state_refusal(None, rule, inc, recent[2])


def _transition_on(cur, store: Store, rule: Rule, incident_id: int, name: str,
                   scope: Scope | None, now: datetime, note: str | None, fields: dict[str, Any]
                   ) -> tuple[Incident, str]:
    """The transition inside ``cur``'s open transaction: read, check, apply."""
    inc, visible, in_scope = _load_for(cur, incident_id, scope, store)
    if inc is None or not visible:
        raise TransitionRefused(f"no incident {incident_id} in your scope")
    why = _may_act(cur, rule, scope, inc, in_scope)
    if why:
        raise TransitionRefused(why)
    if inc.status not in rule.from_states:
        raise TransitionRefused(_state_refusal(
            cur, rule, inc, _department_name_cached(store, cur, inc.department_code)))
    after = _apply(cur, store, rule, inc, name, scope, now, note, fields)
    return after, _department_name_cached(store, cur, after.department_code)


def _remember(store: Store, inc: Incident, department_name: str) -> None:
    """Keep the state just committed (under ``_WRITE_LOCK``)."""
    key = (id(store), inc.id)
    _RECENT[key] = (next(_TICKS), inc, department_name)
    _RECENT.move_to_end(key)
    while len(_RECENT) > _RECENT_SIZE:
        _RECENT.popitem(last=False)


def _apply(cur, store: Store, rule: Rule, inc: Incident, actor: str, scope: Scope | None,
           now: datetime, note: str | None, fields: dict[str, Any]) -> Incident:
    action = rule.action
    to = rule.to_status or inc.status
    dept = inc.department_code
    detail: dict[str, Any] = {}
    cols: dict[str, Any] = {}
    if to != inc.status:
        cols["status"] = str(to)
    if action in ("dispatch", "transfer"):
        dept, detail = _dispatch_target(cur, inc, fields, note, action)
        cols["department_code"] = dept
        cols["claimed_at"] = None
        message = f"{inc.tracking_code} {inc.title}"
        _notify(cur, _department_users(cur, dept), inc.id, "dispatch", message, now)
    elif action == "claim":
        if rule.who is Who.SOCIAL:
            dept = sorted(scope.departments or ())[0]
            cols["department_code"] = dept
        cols["claimed_at"] = now
        if inc.overdue_kind == "claim":
            cols["overdue_kind"] = None
    elif action == "return":
        dept = inc.department_code
        cols["claimed_at"] = None
    elif action == "resolve":
        pending = cur.execute("SELECT list(department_code ORDER BY department_code)"
                              " FROM incident_co_tasks WHERE incident_id = ? AND status = 'pending'",
                              [inc.id]).fetchone()[0]
        if pending:
            names = "、".join(_department_name(cur, d) for d in pending)
            raise TransitionRefused(f"co-handling by {names} is not done yet")
        cols["resolved_at"] = now
        cols["overdue_kind"] = None
    elif action == "verify_failed":
        cols["resolved_at"] = None
    elif action == "close":
        cols["closed_at"] = now
        cols["supervised_at"] = None
    elif action == "supervise":
        cols["supervised_at"] = now
        _notify(cur, _department_users(cur, dept) if dept else [], inc.id, "supervise",
                f"{inc.tracking_code} 督办：{note}", now)
    elif action == "rate":
        if inc.rating is not None:
            raise TransitionRefused(f"incident {inc.tracking_code} is rated already")
        cols["rating"] = fields["rating"]
        detail["rating"] = fields["rating"]
        note = note or f"回访满意度 {fields['rating']} 星"
    elif action == "reopen":
        if inc.rating is None or inc.rating > 2:
            raise TransitionRefused("only an incident with a bad rating (1 or 2) is reopened")
        # the citizen rates again after the second closure; the old rating stays in the events
        cols.update(closed_at=None, resolved_at=None, claimed_at=None, rating=None)
        detail["previous_rating"] = inc.rating
        if dept:
            _notify(cur, _department_users(cur, dept), inc.id, "dispatch",
                    f"{inc.tracking_code} 回访不满意，重新办理", now)
    elif action == "merge":
        target = _merge_target(cur, inc, fields["into"], scope)
        cols.update(merged_into=target.id, closed_at=now)
        detail["into"] = target.id
        note = note or f"与 {target.tracking_code} 重复，合并"
    elif action == "co_request":
        dept, detail = _co_request(cur, inc, fields["department"], actor, note, now)
    elif action == "co_done":
        dept = _co_done(cur, inc, scope, actor, note, now)
    elif action == "request_extension":
        _request_extension(cur, inc, fields["hours"], actor, note, now)
        detail["hours"] = fields["hours"]
    elif action in ("approve_extension", "reject_extension"):
        ext = _decide_extension(cur, inc, action == "approve_extension", actor, note, now)
        detail.update(ext)
        if action == "approve_extension":
            cols["resolve_due"] = ext["new_due"]
            if inc.overdue_kind == "resolve" and ext["new_due"] > now:
                cols["overdue_kind"] = None
    after = _update(cur, inc, **cols, **fact_columns(inc, action, now))
    _write_event(cur, store, inc, action, to, actor, now, dept, note, detail)
    return after


def _dispatch_target(cur, inc: Incident, fields: dict[str, Any], note: str | None,
                     action: str) -> tuple[str, dict[str, Any]]:
    routed = routing.route(cur, inc.category, inc.jurisdiction_code)
    dept = fields.get("department") or routed.department_code
    if not isinstance(dept, str) or not dept:
        raise TransitionRefused("no department found by routing; choose one")
    why = routing.check_target(cur, inc.category, inc.jurisdiction_code, dept)
    if why:
        raise TransitionRefused(why)
    if action == "transfer" and dept == inc.department_code:
        raise TransitionRefused(f"incident {inc.tracking_code} is with {dept} already")
    reason = fields.get("reason") or note
    override = routed.department_code is not None and dept != routed.department_code
    if action == "dispatch" and override and not (reason and reason.strip()):
        raise TransitionRefused(
            f"routing suggests {routed.department_code}; dispatching to {dept} needs a reason")
    return dept, {"department": dept, "routed": routed.department_code,
                  **({"override_reason": reason} if override else {})}


def _merge_target(cur, inc: Incident, into: Any, scope: Scope | None) -> Incident:
    if not isinstance(into, int) or isinstance(into, bool) or into == inc.id:
        raise TransitionRefused("merge needs another incident's id")
    target = _load(cur, into)
    if target is None or (scope is not None and not _load_for(cur, into, scope)[1]):
        raise TransitionRefused(f"no incident {into} in your scope")
    if target.status == S.CLOSED:
        raise TransitionRefused(f"incident {target.tracking_code} is closed; merge into an open one")
    if target.category != inc.category:
        raise TransitionRefused("only incidents of the same category are merged")
    return target


def _co_request(cur, inc: Incident, departments: Any, actor: str, note: str | None,
                now: datetime) -> tuple[str, dict[str, Any]]:
    codes = [departments] if isinstance(departments, str) else departments
    if not isinstance(codes, list | tuple) or not codes or not all(
            isinstance(c, str) and c for c in codes):
        raise TransitionRefused("co_request needs one or more department codes")
    for code in codes:
        if code == inc.department_code:
            raise TransitionRefused(f"{code} is the lead department already")
        why = routing.check_target(cur, inc.category, inc.jurisdiction_code, code)
        if why:
            raise TransitionRefused(why)
        row = cur.execute("SELECT status FROM incident_co_tasks WHERE incident_id = ? AND"
                          " department_code = ?", [inc.id, code]).fetchone()
        if row and row[0] == "pending":
            raise TransitionRefused(f"{code} has an open co-handling task already")
        cur.execute("DELETE FROM incident_co_tasks WHERE incident_id = ? AND department_code = ?",
                    [inc.id, code])
        cur.execute("INSERT INTO incident_co_tasks (incident_id, department_code, status,"
                    " requested_at, requested_by, instruction) VALUES (?, ?, 'pending', ?, ?, ?)",
                    [inc.id, code, now, actor, note])
        _notify(cur, _department_users(cur, code), inc.id, "co_request",
                f"{inc.tracking_code} 协办：{note}", now)
    return ",".join(codes), {"co_departments": list(codes)}


def _co_done(cur, inc: Incident, scope: Scope | None, actor: str, note: str | None,
             now: datetime) -> str:
    mine = sorted((scope.departments if scope else None) or ())
    row = cur.execute("SELECT department_code FROM incident_co_tasks WHERE incident_id = ? AND"
                      " status = 'pending' AND department_code IN (SELECT unnest(?))"
                      " ORDER BY department_code LIMIT 1", [inc.id, mine]).fetchone()
    cur.execute("UPDATE incident_co_tasks SET status = 'done', done_at = ?, done_by = ?,"
                " result = ? WHERE incident_id = ? AND department_code = ?",
                [now, actor, note, inc.id, row[0]])
    return row[0]


def _request_extension(cur, inc: Incident, hours: float, actor: str, note: str | None,
                       now: datetime) -> None:
    pending = cur.execute("SELECT count(*) FROM incident_extensions WHERE incident_id = ? AND"
                          " status = 'pending'", [inc.id]).fetchone()[0]
    if pending:
        raise TransitionRefused("an extension request is waiting for a decision already")
    cur.execute("INSERT INTO incident_extensions (incident_id, department_code, requested_by,"
                " requested_at, hours, reason, status) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                [inc.id, inc.department_code, actor, now, float(hours), note])
    _notify(cur, _commanders_over(cur, inc.jurisdiction_code), inc.id, "extension",
            f"{inc.tracking_code} 申请延期 {hours:g} 小时：{note}", now)


def _decide_extension(cur, inc: Incident, approve: bool, actor: str, note: str | None,
                      now: datetime) -> dict[str, Any]:
    row = cur.execute("SELECT id, hours FROM incident_extensions WHERE incident_id = ? AND"
                      " status = 'pending' ORDER BY id LIMIT 1", [inc.id]).fetchone()
    if row is None:
        raise TransitionRefused(f"incident {inc.tracking_code} has no extension request")
    ext_id, hours = row
    cur.execute("UPDATE incident_extensions SET status = ?, decided_by = ?, decided_at = ?,"
                " decision_note = ? WHERE id = ?",
                ["approved" if approve else "rejected", actor, now, note, ext_id])
    result: dict[str, Any] = {"extension": ext_id, "hours": hours}
    if approve:
        base = inc.resolve_due or now
        result["new_due"] = base + timedelta(hours=hours)
    return result


# -- what a user may do -------------------------------------------------------------------

def allowed_actions(store: Store, actor: User | None, incident: Incident) -> list[Rule]:
    """The rules ``actor`` may apply to ``incident`` now (state and relation; not fields)."""
    role = _role_key(actor)
    scope = _scope_of(store, actor)
    cur = store.cursor()
    found = []
    for (rule_role, _action), rule in TRANSITIONS.items():
        if rule_role != role or incident.status not in rule.from_states:
            continue
        if _may_act(cur, rule, scope, incident) is None and _worth_offering(rule, incident):
            found.append(rule)
    return found


def _worth_offering(rule: Rule, inc: Incident) -> bool:
    """Hide actions the incident's data refuses anyway (a page offers only what can work)."""
    if rule.action == "rate":
        return inc.rating is None
    if rule.action == "reopen":
        return inc.rating is not None and inc.rating <= 2
    return True


