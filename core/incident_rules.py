"""The incident model and its one transition table (design §5), shared by
``core.incidents`` (transitions), ``core.incident_report`` (report, SLA escalation) and
``core.incident_views``. Import the public names from ``core.incidents``.

Also the low-level writing helpers every incident write uses: the event row with its audit
entry, the fact columns (C2), notifications, and the retry of a write-write conflict.

>>> Status("claimed") in OPEN_STATUSES
True
>>> PRIORITIES[0]
'emergency'
>>> TRANSITIONS[(Role.DEPT_STAFF, "claim")].to_status
<Status.CLAIMED: 'claimed'>
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from core.audit import record, signing
from core.cache import cached as _cached
from core.roles import Role
from core.scope import Scope, scope_for
from core.store import Store, write_conflict
from core.users import User


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

# Contract C2 (migration 007): what the event log says, kept on the incident.
FACT_COLUMNS = ("first_dispatched_at", "first_claimed_at", "returned_count", "reopened_count",
                "supervised_count")
_COUNTED = {"return": "returned_count", "reopen": "reopened_count",
            "supervise": "supervised_count"}
_FIRST = {"dispatch": "first_dispatched_at", "claim": "first_claimed_at"}
# The facts of every incident recomputed from incident_events (migration 007 runs the same;
# the demo builder runs it after writing its events).
BACKFILL_FACTS_SQL = """
MERGE INTO incidents AS i
USING (
    SELECT incident_id,
           min(ts) FILTER (WHERE action = 'dispatch') AS first_dispatched_at,
           min(ts) FILTER (WHERE action = 'claim') AS first_claimed_at,
           count(*) FILTER (WHERE action = 'return') AS returned_count,
           count(*) FILTER (WHERE action = 'reopen') AS reopened_count,
           count(*) FILTER (WHERE action = 'supervise') AS supervised_count
    FROM incident_events GROUP BY incident_id
) AS f ON i.id = f.incident_id
WHEN MATCHED THEN UPDATE SET
    first_dispatched_at = f.first_dispatched_at,
    first_claimed_at = f.first_claimed_at,
    returned_count = f.returned_count,
    reopened_count = f.reopened_count,
    supervised_count = f.supervised_count
"""

_COLUMNS = ("id", "tracking_code", "category", "priority", "status", "source", "title",
            "description", "lon", "lat", "jurisdiction_code", "department_code", "reported_at",
            "claim_due", "resolve_due", "claimed_at", "resolved_at", "closed_at", "rating",
            "reporter_contact", "version", "overdue_kind", "escalated_at", "supervised_at",
            "merged_into", *FACT_COLUMNS)
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
    first_dispatched_at: datetime | None = None
    first_claimed_at: datetime | None = None
    returned_count: int = 0
    reopened_count: int = 0
    supervised_count: int = 0
    duplicates: tuple[int, ...] = field(default=())

    @classmethod
    def from_row(cls, row: tuple) -> Incident:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["status"] = Status(values["status"])
        for name in ("version", *_COUNTED.values()):
            values[name] = values[name] or 0
        return cls(**values)


def fact_columns(inc: Incident, action: str, now: datetime) -> dict[str, Any]:
    """The C2 fact columns an ``action`` event at ``now`` changes on ``inc`` (as read inside
    the transaction that writes the event).

    >>> inc = Incident(*[None] * 25, returned_count=1)
    >>> fact_columns(inc, "return", datetime(2026, 1, 1))
    {'returned_count': 2}
    >>> fact_columns(inc, "claim", datetime(2026, 1, 1))
    {'first_claimed_at': datetime.datetime(2026, 1, 1, 0, 0)}
    """
    if action in _COUNTED:
        name = _COUNTED[action]
        return {name: getattr(inc, name) + 1}
    if action in _FIRST and getattr(inc, _FIRST[action]) is None:
        return {_FIRST[action]: now}
    return {}


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


def _retrying(work):
    """Run ``work()`` (one transaction) again after a write-write conflict, from a fresh read."""
    for attempt in range(_MAX_ATTEMPTS):
        try:
            return work()
        except TransitionRefused:
            raise
        except Exception as exc:
            if not write_conflict(exc):
                raise
            if attempt == _MAX_ATTEMPTS - 1:
                raise TransitionRefused(
                    "the incident is being changed by someone else; please try again") from exc
            time.sleep(random.uniform(0.001, 0.004) * min(attempt + 1, 10))
    raise AssertionError("unreachable")


def write_transaction(store: Store, work):
    """Run ``work(cur)`` in one transaction of its own and return its result: taking turns
    with this process's other incident writes, signing the audit head once committed, and run
    again from scratch after a write-write conflict (so ``work`` must not keep state between
    attempts). For callers that combine ``report_incident``/``transition(cursor=cur)`` with
    rows of their own, all or nothing.

    >>> write_transaction(store, lambda cur: report_incident(store, None, ..., cursor=cur))
    ... # doctest: +SKIP
    """
    def attempt():
        with _WRITE_LOCK, signing(store), store.transaction() as cur:
            return work(cur)

    return _retrying(attempt)


def _write_event(cur, store: Store, inc: Incident, action: str, to_status: Status, actor: str,
                 now: datetime, department: str | None, note: str | None,
                 detail: dict[str, Any]) -> None:
    """The event row and the audit entry of one transition (inside ``cur``'s transaction;
    the audit head is signed once the transaction is seen committed).

    The event's ``seq`` is the incident's version after the change (``_update`` bumps it)."""
    from_status = None if action == "report" else str(inc.status)
    cur.execute("INSERT INTO incident_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [inc.id, inc.version + 1, now, action, from_status, str(to_status), actor,
                 department, note])
    audit = {"from": str(inc.status), "to": str(to_status), "tracking_code": inc.tracking_code,
             **({"note": note} if note else {}), **detail}
    record(store, actor, f"incident.{action}", target=f"incident:{inc.id}",
           detail=json.dumps(audit, ensure_ascii=False, default=str), cursor=cur)


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



def _load_for(cur, incident_id: int, scope: Scope | None, store: Store | None = None
              ) -> tuple[Incident | None, bool, bool]:
    """The incident, whether the scope sees it, whether it lies in the scope's subtree.

    The same rules as ``core.incident_views.visible_filter``, decided for one row (one
    query in the common case, the jurisdiction's path coming from the cache when ``store``
    is given: this is on the path of every claim)."""
    inc = _load(cur, incident_id)
    if inc is None:
        return None, False, False
    if scope is None:
        return inc, True, True
    path = _jurisdiction_path(store, cur, inc.jurisdiction_code)
    return (inc, *_visible(cur, scope, inc, path))


def _visible(cur, scope: Scope, inc: Incident, path: str | None) -> tuple[bool | None, bool]:
    """(the scope sees ``inc``, ``inc`` lies in the scope's subtree); ``path``: the path of
    the incident's jurisdiction. ``cur`` None: undecided without a query (returns None)."""
    in_scope = path is not None and path.startswith(scope.root_path)
    if not scope.business_data or not in_scope:
        return False, in_scope
    if scope.departments is None or inc.department_code in scope.departments:
        return True, in_scope
    if cur is None:
        return None, in_scope
    depts = sorted(scope.departments)
    co = cur.execute("SELECT count(*) FROM incident_co_tasks WHERE incident_id = ? AND"
                     " list_contains(?, department_code)", [inc.id, depts]).fetchone()[0]
    if co:
        return True, in_scope
    if scope.role is Role.SOCIAL_ORG and inc.status == S.DISPATCHED:
        social = cur.execute("SELECT social_help FROM incident_categories WHERE code = ?",
                             [inc.category]).fetchone()
        return bool(social and social[0]), in_scope
    return False, in_scope


# -- small caches of what hardly changes (core.cache) ----------------------------------------
def _scope_of(store: Store, actor: User | None) -> Scope | None:
    """``scope_for(store, actor)`` (None for a citizen), cached a few seconds."""
    if actor is None:
        return None
    key = ("scope", actor.username, str(actor.role), actor.jurisdiction_code,
           actor.department_code)
    return _cached(store, key, lambda: scope_for(store, actor))


def _jurisdiction_path(store: Store | None, cur, code: str) -> str | None:
    def read() -> str | None:
        row = cur.execute("SELECT path FROM jurisdictions WHERE code = ?", [code]).fetchone()
        return row[0] if row else None

    return _cached(store, ("path", code), read)


def _department_name_cached(store: Store | None, cur, code: str | None) -> str:
    return _cached(store, ("department", code), lambda: _department_name(cur, code))


def _update(cur, inc: Incident, **columns: Any) -> Incident:
    """Write the incident's columns and bump its version (the write-write conflict point);
    returns the incident as it is now."""
    sets = ", ".join(f"{k} = ?" for k in columns)
    sql = f"UPDATE incidents SET {sets}{', ' if sets else ''}version = ? WHERE id = ?"
    cur.execute(sql, [*columns.values(), inc.version + 1, inc.id])
    if "status" in columns:
        columns["status"] = Status(columns["status"])
    return replace(inc, **columns, version=inc.version + 1)


