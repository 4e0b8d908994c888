"""The incident lifecycle (工单, design §5): report, the state machine, SLA escalation.

Every change goes through ``report_incident`` or ``transition``. Which role may do which action
from which state is one declared table, ``TRANSITIONS``; every transition writes an
``incident_events`` row and an audit entry in the same transaction as the change; a refused
transition raises ``TransitionRefused`` and changes nothing. ``rated`` is an event on a closed
incident, not a status.

Concurrency: DuckDB answers a write-write conflict with ``TransactionException`` instead of
waiting. A conflicting transaction is rolled back and tried again from a fresh read, so the
loser of a claim race is refused with "already claimed by <department> at <time>".

>>> Status("claimed") in OPEN_STATUSES
True
>>> PRIORITIES[0]
'emergency'
>>> TRANSITIONS[(Role.DEPT_STAFF, "claim")].to_status
<Status.CLAIMED: 'claimed'>
>>> inc = report_incident(store, None, category="garbage_overflow", title="垃圾满溢",
...                       lon=120.3, lat=31.9, source="hotline")          # doctest: +SKIP
>>> transition(store, commander, inc.id, "dispatch", department="cg")     # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import duckdb

from core import routing
from core.audit import record
from core.roles import Role
from core.scope import Scope, scope_for
from core.sla import deadlines, utcnow
from core.store import Store
from core.users import User

__all__ = [
    "ACTIONS",
    "CITIZEN",
    "SOURCE_NAMES_ZH",
    "DUPLICATE_RADIUS_M",
    "OPEN_STATUSES",
    "PRIORITIES",
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
    "allowed_actions",
    "escalate_overdue",
    "find_duplicates",
    "report_incident",
    "transition",
]


class Status(StrEnum):
    REPORTED = "reported"        # 受理
    DISPATCHED = "dispatched"    # 派单
    CLAIMED = "claimed"          # 签收
    IN_PROGRESS = "in_progress"  # 办理
    RESOLVED = "resolved"        # 办结
    VERIFIED = "verified"        # 核查
    CLOSED = "closed"            # 结案
    RETURNED = "returned"        # 退单
    REOPENED = "reopened"        # 重办


PRIORITIES = ("emergency", "high", "normal", "low")

SOURCES = ("sensor_alert", "hotline", "citizen_app", "grid_patrol", "department", "open311")

OPEN_STATUSES = frozenset(Status) - {Status.CLOSED}

SOURCE_NAMES_ZH = {"sensor_alert": "传感器告警", "hotline": "12345热线", "citizen_app": "市民App",
                   "grid_patrol": "网格员巡查", "department": "部门", "open311": "Open311接口"}

CITIZEN = "citizen"   # role key of an actor without an account (``actor=None``)
SYSTEM = "system"     # role key of the scheduler (escalation) and automatic routing
DUPLICATE_RADIUS_M = 300.0
_MAX_ATTEMPTS = 60
# Incident writes of one process take turns: they all append to the audit chain, so running
# them side by side only turns into conflicts and retries. Other processes (cluster mode) are
# kept apart by DuckDB's optimistic concurrency, which ``_retrying`` handles.
_WRITE_LOCK = threading.RLock()
# The last state this process committed per incident (bounded): a writer that queued behind
# another for the same incident is answered from it without touching the database.
# Keyed by (store, incident); used only for a commit made after the queued writer's own read.
_RECENT: OrderedDict[tuple[int, int], tuple[int, Incident, str]] = OrderedDict()
_RECENT_SIZE = 4096
_TICKS = itertools.count()
_LOCAL_OFFSET = timedelta(hours=8)  # tracking codes use China Standard Time dates


class IncidentError(ValueError):
    """Bad input for an incident operation; the message says why. Nothing was changed."""


class TransitionRefused(IncidentError):
    """A transition (or report) was refused; ``reason`` says why. Nothing was changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Who(StrEnum):
    """Which incidents an actor may act on, on top of their role."""

    JURISDICTION = "jurisdiction"    # inside the actor's jurisdiction subtree
    LEAD = "lead"                    # the actor's department is the lead (主办) department
    CO = "co"                        # the actor's department has a pending co-task (协办)
    SOCIAL = "social"                # social_help category inside the social org's area
    ANYONE = "anyone"                # citizen (by tracking code) or the system


S = Status
_ASSIGNED = (S.DISPATCHED, S.CLAIMED, S.IN_PROGRESS, S.REOPENED)
_HANDLING = (S.CLAIMED, S.IN_PROGRESS)


@dataclass(frozen=True)
class Rule:
    """One row of the transition table: ``roles`` may do ``action`` from ``from_states``.

    ``to_status`` None keeps the status (supervise, co-handling, extensions, rating).
    ``needs`` names the fields the action requires (``note`` included).
    """

    action: str
    roles: tuple[str, ...]
    from_states: tuple[Status, ...]
    to_status: Status | None
    who: Who
    needs: tuple[str, ...] = ()


_CMD = (Role.COMMANDER,)
_DEPT = (Role.DEPT_STAFF, Role.DEPT_ADMIN, Role.SOCIAL_ORG)

# The one table: role × state × action. (Roles not named may do nothing.)
RULES: tuple[Rule, ...] = (
    Rule("dispatch", _CMD, (S.REPORTED, S.RETURNED, S.REOPENED), S.DISPATCHED, Who.JURISDICTION),
    Rule("transfer", _CMD, (S.DISPATCHED, S.CLAIMED, S.IN_PROGRESS), S.DISPATCHED,
         Who.JURISDICTION, ("department", "note")),
    Rule("supervise", (Role.COMMANDER, Role.LEADER), (*_ASSIGNED, S.RETURNED), None,
         Who.JURISDICTION, ("note",)),
    Rule("claim", (Role.DEPT_STAFF, Role.DEPT_ADMIN), (S.DISPATCHED, S.REOPENED), S.CLAIMED,
         Who.LEAD),
    Rule("claim", (Role.SOCIAL_ORG,), (S.DISPATCHED,), S.CLAIMED, Who.SOCIAL),
    Rule("return", _DEPT, (S.DISPATCHED, S.CLAIMED), S.RETURNED, Who.LEAD, ("note",)),
    Rule("start", _DEPT, (S.CLAIMED,), S.IN_PROGRESS, Who.LEAD),
    Rule("resolve", _DEPT, (S.IN_PROGRESS,), S.RESOLVED, Who.LEAD, ("note",)),
    Rule("request_extension", _DEPT, _HANDLING, None, Who.LEAD, ("hours", "note")),
    Rule("approve_extension", _CMD, _HANDLING, None, Who.JURISDICTION),
    Rule("reject_extension", _CMD, _HANDLING, None, Who.JURISDICTION, ("note",)),
    Rule("co_request", _DEPT, _HANDLING, None, Who.LEAD, ("department", "note")),
    Rule("co_request", _CMD, _HANDLING, None, Who.JURISDICTION, ("department", "note")),
    Rule("co_done", _DEPT, _HANDLING, None, Who.CO, ("note",)),
    Rule("verify", (Role.COMMANDER, Role.GRID_WORKER), (S.RESOLVED,), S.VERIFIED,
         Who.JURISDICTION),
    Rule("verify_failed", (Role.COMMANDER, Role.GRID_WORKER), (S.RESOLVED,), S.IN_PROGRESS,
         Who.JURISDICTION, ("note",)),
    Rule("close", _CMD, (S.VERIFIED,), S.CLOSED, Who.JURISDICTION),
    Rule("rate", (CITIZEN, Role.COMMANDER), (S.CLOSED,), None, Who.ANYONE, ("rating",)),
    # a bad rating (1–2 stars) reopens: the citizen's own (public pages check their key) or
    # the commander's after a follow-up call
    Rule("reopen", (CITIZEN, Role.COMMANDER), (S.CLOSED,), S.REOPENED, Who.JURISDICTION,
         ("note",)),
    Rule("merge", _CMD, (S.REPORTED, S.DISPATCHED, S.RETURNED), S.CLOSED, Who.JURISDICTION,
         ("into",)),
    Rule("escalate", (SYSTEM,), tuple(OPEN_STATUSES), None, Who.ANYONE),
)

TRANSITIONS: dict[tuple[str, str], Rule] = {}
for _rule in RULES:
    for _role in _rule.roles:
        TRANSITIONS[(str(_role), _rule.action)] = _rule

ACTIONS = ("report", *dict.fromkeys(r.action for r in RULES))
_REPORTERS = frozenset({Role.COMMANDER, Role.LEADER, Role.DEPT_STAFF, Role.DEPT_ADMIN,
                        Role.GRASSROOTS, Role.GRID_WORKER, Role.SOCIAL_ORG})

_COLUMNS = ("id", "tracking_code", "category", "priority", "status", "source", "title",
            "description", "lon", "lat", "jurisdiction_code", "department_code", "reported_at",
            "claim_due", "resolve_due", "claimed_at", "resolved_at", "closed_at", "rating",
            "reporter_contact", "version", "overdue_kind", "escalated_at", "supervised_at",
            "merged_into")
_SELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM incidents"


@dataclass(frozen=True)
class Incident:
    """One incident row. ``duplicates``: open incidents suggested for merging (on report)."""

    id: int
    tracking_code: str
    category: str
    priority: str
    status: Status
    source: str
    title: str
    description: str | None
    lon: float
    lat: float
    jurisdiction_code: str
    department_code: str | None
    reported_at: datetime
    claim_due: datetime | None
    resolve_due: datetime | None
    claimed_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    rating: int | None
    reporter_contact: str | None
    version: int
    overdue_kind: str | None
    escalated_at: datetime | None
    supervised_at: datetime | None
    merged_into: int | None
    duplicates: tuple[int, ...] = field(default=())

    @classmethod
    def from_row(cls, row: tuple) -> Incident:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["status"] = Status(values["status"])
        values["version"] = values["version"] or 0
        return cls(**values)


# -- helpers ------------------------------------------------------------------------------

def _role_key(actor: User | None) -> str:
    return CITIZEN if actor is None else str(actor.role)


def _actor_name(actor: User | None) -> str:
    return CITIZEN if actor is None else actor.username


def _load(cur, incident_id: int) -> Incident | None:
    row = cur.execute(_SELECT + " WHERE id = ?", [incident_id]).fetchone()
    return Incident.from_row(row) if row else None


def _department_name(cur, code: str | None) -> str:
    if code is None:
        return "—"
    row = cur.execute("SELECT name_zh FROM departments WHERE code = ?", [code]).fetchone()
    return row[0] if row else code


def _fmt(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts else "—"


def _conflict(exc: BaseException) -> bool:
    """A write-write conflict (also when the audit log wrapped it in its own error)."""
    while exc is not None:
        if isinstance(exc, duckdb.TransactionException | duckdb.ConstraintException):
            return True
        exc = exc.__cause__
    return False


def _retrying(work):
    """Run ``work()`` (one transaction) again after a write-write conflict, from a fresh read."""
    for attempt in range(_MAX_ATTEMPTS):
        try:
            return work()
        except TransitionRefused:
            raise
        except Exception as exc:
            if not _conflict(exc):
                raise
            if attempt == _MAX_ATTEMPTS - 1:
                raise TransitionRefused(
                    "the incident is being changed by someone else; please try again") from exc
            time.sleep(random.uniform(0.001, 0.004) * min(attempt + 1, 10))
    raise AssertionError("unreachable")


def _write_event(cur, inc: Incident, action: str, to_status: Status, actor: str, now: datetime,
                 department: str | None, note: str | None, detail: dict[str, Any]) -> None:
    """The event row and the audit entry of one transition (inside ``cur``'s transaction).

    The event's ``seq`` is the incident's version after the change (``_update`` bumps it)."""
    from_status = None if action == "report" else str(inc.status)
    cur.execute("INSERT INTO incident_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [inc.id, inc.version + 1, now, action, from_status, str(to_status), actor,
                 department, note])
    audit = {"from": str(inc.status), "to": str(to_status), "tracking_code": inc.tracking_code,
             **({"note": note} if note else {}), **detail}
    record(_StoreOf(cur), actor, f"incident.{action}", target=f"incident:{inc.id}",
           detail=json.dumps(audit, ensure_ascii=False, default=str), cursor=cur)


class _StoreOf:
    """``core.audit.record`` wants a store; with ``cursor`` given it only uses the cursor."""

    def __init__(self, cur) -> None:
        self.cur = cur


def _notify(cur, usernames: list[str], incident_id: int, kind: str, message: str,
            now: datetime) -> None:
    for username in usernames:
        cur.execute("INSERT INTO incident_notifications (username, incident_id, kind, created_at,"
                    " message) VALUES (?, ?, ?, ?, ?)", [username, incident_id, kind, now, message])


def _department_users(cur, department: str) -> list[str]:
    return [r[0] for r in cur.execute(
        "SELECT username FROM users WHERE active AND department_code = ? AND role IN"
        " ('dept_staff', 'dept_admin', 'social_org') ORDER BY username", [department]).fetchall()]


def _commanders_over(cur, jurisdiction_code: str) -> list[str]:
    return [r[0] for r in cur.execute(
        "SELECT u.username FROM users u JOIN jurisdictions uj ON uj.code = u.jurisdiction_code"
        " JOIN jurisdictions j ON j.code = ? AND starts_with(j.path, uj.path)"
        " WHERE u.active AND u.role = 'commander' ORDER BY u.username",
        [jurisdiction_code]).fetchall()]


# -- the state machine --------------------------------------------------------------------

def _check_fields(rule: Rule, note: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - {"department", "rating", "hours", "into", "reason"}
    if unknown:
        raise TransitionRefused(f"unknown fields for {rule.action}: {', '.join(sorted(unknown))}")
    for name in rule.needs:
        value = note if name == "note" else fields.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            what = {"note": "a reason or note", "department": "a department",
                    "rating": "a rating (1–5)", "hours": "the extra hours",
                    "into": "the incident to merge into"}[name]
            raise TransitionRefused(f"{rule.action} needs {what}")
    if "rating" in rule.needs:
        rating = fields["rating"]
        if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
            raise TransitionRefused("a rating is a whole number from 1 to 5")
    if "hours" in rule.needs:
        hours = fields["hours"]
        if (not isinstance(hours, int | float) or isinstance(hours, bool)
                or not math.isfinite(hours) or not 0 < hours <= 24 * 90):
            raise TransitionRefused("an extension is between 0 and 2160 hours")
    if note is not None and len(note) > 2000:
        raise TransitionRefused("a note has at most 2000 characters")
    return fields


def _may_act(cur, rule: Rule, scope: Scope | None, inc: Incident,
             in_scope: bool | None = None) -> str | None:
    """Why the actor may not act on this incident (None: they may)."""
    if rule.who is Who.ANYONE or scope is None:
        return None
    if in_scope is None:
        row = cur.execute("SELECT starts_with(path, ?) FROM jurisdictions WHERE code = ?",
                          [scope.root_path, inc.jurisdiction_code]).fetchone()
        in_scope = bool(row and row[0])
    if not in_scope:
        return f"incident {inc.tracking_code} is outside your jurisdiction"
    departments = scope.departments or frozenset()
    if rule.who is Who.LEAD and inc.department_code not in departments:
        return f"incident {inc.tracking_code} is not assigned to your department"
    if rule.who is Who.CO:
        row = cur.execute("SELECT count(*) FROM incident_co_tasks WHERE incident_id = ? AND"
                          " status = 'pending' AND list_contains(?, department_code)",
                          [inc.id, sorted(departments)]).fetchone()
        if not row[0]:
            return "your department has no open co-handling task on this incident"
    if rule.who is Who.SOCIAL:
        row = cur.execute("SELECT social_help FROM incident_categories WHERE code = ?",
                          [inc.category]).fetchone()
        if not (row and row[0]):
            return f"category {inc.category} is not open to social organisations"
    return None


def _state_refusal(cur, rule: Rule, inc: Incident, department_name: str | None = None) -> str:
    if rule.action == "claim" and inc.claimed_at is not None and inc.status in (
            S.CLAIMED, S.IN_PROGRESS, S.RESOLVED, S.VERIFIED, S.CLOSED):
        name = department_name or _department_name(cur, inc.department_code)
        return f"already claimed by {name} at {_fmt(inc.claimed_at)}"
    allowed = ", ".join(str(s) for s in rule.from_states)
    return (f"cannot {rule.action} incident {inc.tracking_code}: it is {inc.status} "
            f"(allowed from: {allowed})")


def transition(store: Store, actor: User | None, incident_id: int, action: str, *,
               note: str | None = None, now: datetime | None = None, **fields: Any) -> Incident:
    """Apply ``action`` to an incident as ``actor`` (None: a citizen) and return it afterwards.

    Fields by action: dispatch ``department`` (default: the routed one; another one needs
    ``reason`` or ``note``), transfer ``department``, co_request ``department`` (a code or a
    list), request_extension ``hours``, rate ``rating``, merge ``into``. Raises
    ``TransitionRefused`` (and changes nothing) when the table, the scope, the state or the
    fields refuse it.

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
    scope = scope_for(store, actor) if actor is not None else None
    name = _actor_name(actor)

    # a read before queueing for the write: the losers of a claim race, and any other action
    # refused by the state, are answered without waiting for the writers
    seen = next(_TICKS)
    inc, visible, _in_scope = _load_for(store.cursor(), incident_id, scope)
    if inc is None or not visible:
        raise TransitionRefused(f"no incident {incident_id} in your scope")
    if inc.status not in rule.from_states:
        raise TransitionRefused(_state_refusal(store.cursor(), rule, inc))

    def work() -> Incident:
        with _WRITE_LOCK:
            recent = _RECENT.get((id(store), incident_id))
            if recent is not None and recent[0] > seen and recent[1].status not in rule.from_states:
                raise TransitionRefused(_state_refusal(None, rule, recent[1], recent[2]))
            with store.transaction() as cur:
                inc, visible, in_scope = _load_for(cur, incident_id, scope)
                if inc is None or not visible:
                    raise TransitionRefused(f"no incident {incident_id} in your scope")
                why = _may_act(cur, rule, scope, inc, in_scope)
                if why:
                    raise TransitionRefused(why)
                if inc.status not in rule.from_states:
                    raise TransitionRefused(_state_refusal(cur, rule, inc))
                after = _apply(cur, rule, inc, name, scope, now, note, fields)
                department = _department_name(cur, after.department_code)
            _remember(store, after, department)
            return after

    return _retrying(work)


def _remember(store: Store, inc: Incident, department_name: str) -> None:
    """Keep the state just committed (under ``_WRITE_LOCK``)."""
    key = (id(store), inc.id)
    _RECENT[key] = (next(_TICKS), inc, department_name)
    _RECENT.move_to_end(key)
    while len(_RECENT) > _RECENT_SIZE:
        _RECENT.popitem(last=False)


def _load_for(cur, incident_id: int, scope: Scope | None
              ) -> tuple[Incident | None, bool, bool]:
    """The incident, whether the scope sees it, whether it lies in the scope's subtree.

    The same rules as ``core.incident_views.visible_filter``, decided for one row (one
    query in the common case: this is on the path of every claim)."""
    if scope is None:
        inc = _load(cur, incident_id)
        return inc, True, True
    cols = ", ".join(f"i.{c}" for c in _COLUMNS)
    row = cur.execute(f"SELECT {cols}, starts_with(j.path, ?) FROM incidents i"
                      " JOIN jurisdictions j ON j.code = i.jurisdiction_code WHERE i.id = ?",
                      [scope.root_path, incident_id]).fetchone()
    if row is None:
        return None, False, False
    inc, in_scope = Incident.from_row(row[:-1]), bool(row[-1])
    if not scope.business_data or not in_scope:
        return inc, False, in_scope
    if scope.departments is None or inc.department_code in scope.departments:
        return inc, True, in_scope
    depts = sorted(scope.departments)
    co = cur.execute("SELECT count(*) FROM incident_co_tasks WHERE incident_id = ? AND"
                     " list_contains(?, department_code)", [incident_id, depts]).fetchone()[0]
    if co:
        return inc, True, in_scope
    if scope.role is Role.SOCIAL_ORG and inc.status == S.DISPATCHED:
        social = cur.execute("SELECT social_help FROM incident_categories WHERE code = ?",
                             [inc.category]).fetchone()
        return inc, bool(social and social[0]), in_scope
    return inc, False, in_scope


def _update(cur, inc: Incident, **columns: Any) -> Incident:
    """Write the incident's columns and bump its version (the write-write conflict point);
    returns the incident as it is now."""
    sets = ", ".join(f"{k} = ?" for k in columns)
    sql = f"UPDATE incidents SET {sets}{', ' if sets else ''}version = ? WHERE id = ?"
    cur.execute(sql, [*columns.values(), inc.version + 1, inc.id])
    if "status" in columns:
        columns["status"] = Status(columns["status"])
    return replace(inc, **columns, version=inc.version + 1)


def _apply(cur, rule: Rule, inc: Incident, actor: str, scope: Scope | None, now: datetime,
           note: str | None, fields: dict[str, Any]) -> Incident:
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
        cols.update(closed_at=None, resolved_at=None, claimed_at=None)
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
    after = _update(cur, inc, **cols)
    _write_event(cur, inc, action, to, actor, now, dept, note, detail)
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
    scope = scope_for(store, actor) if actor is not None else None
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


# -- report -------------------------------------------------------------------------------

def find_duplicates(store_or_cursor, category: str, lon: float, lat: float, *,
                    radius_m: float = DUPLICATE_RADIUS_M, exclude_id: int | None = None,
                    limit: int = 5) -> list[dict[str, Any]]:
    """Open incidents of ``category`` within ``radius_m`` metres, nearest first.

    A bounding box narrows the scan; the haversine distance decides.

    >>> [d["id"] for d in find_duplicates(store, "manhole_cover", 120.3, 31.9)]  # doctest: +SKIP
    [17]
    """
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(math.cos(math.radians(lat)), 0.01))
    sql = (
        "SELECT id, tracking_code, title, status, reported_at, dist FROM ("
        " SELECT *, 2 * 6371008.8 * asin(sqrt(pow(sin(radians(lat - ?) / 2), 2)"
        "   + cos(radians(?)) * cos(radians(lat)) * pow(sin(radians(lon - ?) / 2), 2))) AS dist"
        " FROM incidents WHERE category = ? AND status <> 'closed'"
        "   AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? AND id <> ?)"
        " WHERE dist <= ? ORDER BY dist, id LIMIT ?")
    params = [lat, lat, lon, category, lat - dlat, lat + dlat, lon - dlon, lon + dlon,
              exclude_id if exclude_id is not None else -1, radius_m, limit]
    if isinstance(store_or_cursor, Store):
        return store_or_cursor.query_dicts(sql, params)
    cur = store_or_cursor.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def report_incident(store: Store, actor: User | None, *, category: str, title: str,
                    lon: float, lat: float, source: str, description: str | None = None,
                    priority: str | None = None, contact: str | None = None,
                    on_behalf_of: str | None = None, now: datetime | None = None) -> Incident:
    """Create an incident (every source enters here) and route it.

    The jurisdiction is the community containing (lon, lat). SLA deadlines come from the
    category and priority. An explicit routing rule dispatches at once (by ``system``);
    otherwise the routed department is suggested and the incident waits for the commander.
    The returned incident's ``duplicates`` lists open incidents of the same category within
    ``DUPLICATE_RADIUS_M`` (suggested for merging).
    """
    now = now or utcnow()
    title = (title or "").strip()
    if not title or len(title) > 200:
        raise IncidentError("a title of 1–200 characters is required")
    if description is not None and len(description) > 5000:
        raise IncidentError("a description has at most 5000 characters")
    if source not in SOURCES:
        raise IncidentError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    if priority is not None and priority not in PRIORITIES:
        raise IncidentError(f"unknown priority {priority!r}; one of {', '.join(PRIORITIES)}")
    if (not isinstance(lon, int | float) or not isinstance(lat, int | float)
            or not (math.isfinite(lon) and math.isfinite(lat))
            or not (-180 <= lon <= 180 and -90 <= lat <= 90)):
        raise IncidentError("lon/lat must be WGS84 degrees")
    if contact is not None and len(contact) > 100:
        raise IncidentError("a contact has at most 100 characters")
    if actor is not None and (actor.role not in _REPORTERS or not actor.active):
        raise TransitionRefused(f"a {actor.role} may not report incidents")
    cat = store.query_one("SELECT default_priority FROM incident_categories WHERE code = ?",
                          [category])
    if cat is None:
        raise IncidentError(f"unknown incident category {category!r}")
    priority = priority or cat[0]
    row = store.query_one(
        "SELECT code FROM jurisdictions WHERE level = 'community' AND ? BETWEEN min_lon AND"
        " max_lon AND ? BETWEEN min_lat AND max_lat AND ST_Contains(geom, ST_Point(?, ?))"
        " ORDER BY code LIMIT 1", [lon, lat, lon, lat])
    if row is None:
        raise IncidentError(f"({lon}, {lat}) lies outside every community of the city")
    jurisdiction = row[0]
    scope = scope_for(store, actor) if actor is not None else None
    if scope is not None and not scope.contains(store, jurisdiction):
        raise TransitionRefused(f"({lon}, {lat}) is outside your jurisdiction")
    due = deadlines(store, category, priority, now)
    reporter = _actor_name(actor) if actor else ("system" if source == "sensor_alert" else CITIZEN)
    note = f"{SOURCE_NAMES_ZH[source]}受理" + (f"（代 {on_behalf_of} 登记）" if on_behalf_of else "")

    def work() -> Incident:
        with _WRITE_LOCK, store.transaction() as cur:
            new_id = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM incidents").fetchone()[0]
            prefix = "YW" + (now + _LOCAL_OFFSET).strftime("%Y%m%d")
            last = cur.execute("SELECT max(tracking_code) FROM incidents WHERE"
                               " starts_with(tracking_code, ?)", [prefix]).fetchone()[0]
            number = int(last[len(prefix):]) + 1 if last else 1
            routed = routing.route(cur, category, jurisdiction)
            cur.execute(
                "INSERT INTO incidents (id, tracking_code, category, priority, status, source,"
                " title, description, lon, lat, jurisdiction_code, department_code, reported_at,"
                " claim_due, resolve_due, reporter_contact, version)"
                " VALUES (?, ?, ?, ?, 'reported', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                [new_id, f"{prefix}{number:05d}", category, priority, source, title,
                 description, float(lon), float(lat), jurisdiction, routed.department_code,
                 now, due.claim_due, due.resolve_due, contact])
            inc = _load(cur, new_id)
            _write_event(cur, replace(inc, version=0), "report", S.REPORTED, reporter,
                         now, None, note, {"category": category, "source": source,
                                           "routed": routed.department_code,
                                           "route": routed.reason})
            if routed.auto_dispatch and routed.department_code:
                inc = _load(cur, new_id)
                _update(cur, inc, status=str(S.DISPATCHED))
                _write_event(cur, inc, "dispatch", S.DISPATCHED, SYSTEM, now,
                             routed.department_code, f"按规则自动派单（{routed.reason}）",
                             {"department": routed.department_code})
                _notify(cur, _department_users(cur, routed.department_code), new_id,
                        "dispatch", f"{inc.tracking_code} {title}", now)
            dups = find_duplicates(cur, category, lon, lat, exclude_id=new_id)
            return replace(_load(cur, new_id), duplicates=tuple(d["id"] for d in dups))

    return _retrying(work)


# -- SLA escalation -----------------------------------------------------------------------

@dataclass(frozen=True)
class EscalationReport:
    claim_overdue: tuple[int, ...]
    resolve_overdue: tuple[int, ...]

    @property
    def total(self) -> int:
        return len(self.claim_overdue) + len(self.resolve_overdue)


def escalate_overdue(store: Store, now: datetime | None = None, *, batch: int = 500
                     ) -> EscalationReport:
    """Mark incidents past their claim-by / resolve-by deadline overdue and escalate them to
    the commanders over their jurisdiction (an ``escalate`` event, a notification, an audit
    entry). Each incident is escalated once per kind of lateness; an approved extension that
    moves the deadline clears the mark. Meant for the scheduler (every few minutes).

    >>> escalate_overdue(store, now=datetime(2026, 11, 28, 12)).total     # doctest: +SKIP
    3
    """
    now = now or utcnow()
    claim_states = [str(s) for s in (S.REPORTED, S.DISPATCHED, S.RETURNED)]
    resolve_states = [str(s) for s in (S.CLAIMED, S.IN_PROGRESS, S.REOPENED)]
    found: dict[str, list[int]] = {"claim": [], "resolve": []}
    for kind, states, due_col in (("claim", claim_states, "claim_due"),
                                  ("resolve", resolve_states, "resolve_due")):
        ids = [r[0] for r in store.query(
            f"SELECT id FROM incidents WHERE status IN (SELECT unnest(?)) AND {due_col} < ?"
            " AND overdue_kind IS DISTINCT FROM ? ORDER BY id", [states, now, kind])]
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            found[kind] += _escalate_chunk(store, chunk, kind, states, due_col, now)
    return EscalationReport(tuple(found["claim"]), tuple(found["resolve"]))


def _escalate_chunk(store: Store, ids: list[int], kind: str, states: list[str], due_col: str,
                    now: datetime) -> list[int]:
    def work() -> list[int]:
        done = []
        with _WRITE_LOCK, store.transaction() as cur:
            for incident_id in ids:
                inc = _load(cur, incident_id)
                due = getattr(inc, due_col)
                if (inc is None or str(inc.status) not in states or due is None or due >= now
                        or inc.overdue_kind == kind):
                    continue  # changed since the scan
                _update(cur, inc, overdue_kind=kind, escalated_at=now)
                what = "签收" if kind == "claim" else "办结"
                note = f"超过{what}时限（{_fmt(due)}），升级至指挥中心"
                _write_event(cur, inc, "escalate", inc.status, SYSTEM, now, inc.department_code,
                             note, {"overdue": kind, "due": due})
                _notify(cur, _commanders_over(cur, inc.jurisdiction_code), inc.id, "escalate",
                        f"{inc.tracking_code} {note}", now)
                done.append(incident_id)
        return done

    return _retrying(work)
