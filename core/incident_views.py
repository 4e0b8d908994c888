"""Scoped reads of incidents: one incident, the department inbox, the dispatch board, the
timeline, nearby sensors, notifications. Every read takes the acting user.

Who sees which incidents (design §3): commanders, leaders, street and grid staff their
jurisdiction subtree; department staff what is assigned to their department or has a co-task
for it; social organisations also open social-help incidents in their area; platform roles
nothing. Reporter contacts are masked for everyone but the commander and the lead department.

>>> rows = inbox(store, cg_staff, now=datetime(2026, 11, 28, 12))     # doctest: +SKIP
>>> rows[0]["overdue"]                                                # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.incident_rules import _cached, _scope_of
from core.incidents import Incident
from core.roles import Role
from core.scope import Scope
from core.sla import utcnow
from core.store import Store
from core.users import User

__all__ = ["IncidentDetail", "board", "co_tasks", "extensions", "get_incident", "inbox",
           "inbox_counts", "inbox_page", "incident_detail", "list_incidents", "mark_read",
           "mask_contact", "nearby_sensors", "notifications", "timeline", "unread_count",
           "visible_filter"]

NEARBY_RADIUS_M = 1000.0   # the incident page's "nearby sensors"
NEARBY_LIMIT = 30


def visible_filter(scope: Scope, alias: str = "i") -> tuple[str, list]:
    """SQL condition on ``incidents <alias>`` keeping what the scope may see."""
    if not scope.business_data:
        return "FALSE", []
    where, params = scope.jurisdiction_filter(f"{alias}.jurisdiction_code")
    if scope.departments is None:
        return where, params
    depts = sorted(scope.departments)
    # list_contains and an uncorrelated IN: half the time of IN (SELECT unnest(…)) and a
    # correlated EXISTS, for a page that checks one incident several times
    own = (f"list_contains(?, {alias}.department_code) OR {alias}.id IN (SELECT incident_id"
           " FROM incident_co_tasks WHERE list_contains(?, department_code))")
    extra: list = [depts, depts]
    if scope.role is Role.SOCIAL_ORG:
        own += (f" OR ({alias}.status = 'dispatched' AND {alias}.category IN"
                " (SELECT code FROM incident_categories WHERE social_help))")
    return f"({where}) AND ({own})", params + extra


def mask_contact(contact: str | None) -> str | None:
    """'13812345678' → '138****5678'.

    >>> mask_contact("13812345678")
    '138****5678'
    """
    if not contact:
        return contact
    if len(contact) <= 4:
        return "*" * len(contact)
    return contact[:3] + "*" * max(len(contact) - 7, 1) + contact[-4:]


def _sees_contact(scope: Scope, inc: Incident) -> bool:
    if scope.role is Role.COMMANDER:
        return True
    return bool(scope.departments and inc.department_code in scope.departments)


def get_incident(store: Store, user: User, incident_id: int) -> Incident | None:
    """One incident the user may see (contact masked unless they need it), else None."""
    from core.incident_rules import _SELECT

    scope = _scope_of(store, user)
    where, params = visible_filter(scope, "i")
    row = store.query_one(_SELECT.replace("FROM incidents", "FROM incidents i")
                          + f" WHERE i.id = ? AND {where}", [incident_id, *params])
    if row is None:
        return None
    inc = Incident.from_row(row)
    if not _sees_contact(scope, inc):
        inc = Incident(**{**inc.__dict__, "reporter_contact": mask_contact(inc.reporter_contact)})
    return inc


_ROW = ("i.id, i.tracking_code, i.category, c.name_zh AS category_zh, c.name_en AS category_en,"
        " i.priority, i.status, i.title, i.jurisdiction_code, j.name_zh AS place_zh,"
        " j.name_en AS place_en, i.department_code, d.name_zh AS department_zh,"
        " d.name_en AS department_en, i.reported_at, i.claim_due, i.resolve_due,"
        " i.supervised_at, i.overdue_kind")
_JOINS = (" FROM incidents i LEFT JOIN incident_categories c ON c.code = i.category"
          " LEFT JOIN jurisdictions j ON j.code = i.jurisdiction_code"
          " LEFT JOIN departments d ON d.code = i.department_code")
_DUE = ("CASE WHEN i.status IN ('reported', 'dispatched', 'returned') THEN i.claim_due"
        " ELSE i.resolve_due END")


_OPEN_INBOX = ("i.status IN ('dispatched', 'claimed', 'in_progress', 'reopened', 'resolved')")
# the inbox order as one sortable key: overdue first, then the nearest deadline, then id
_LATE = f"coalesce({_DUE} < ?, false)"
_DUE_KEY = f"coalesce({_DUE}, TIMESTAMP '9999-12-31 00:00:00')"  # NULL deadlines last


def _inbox_where(store: Store, scope: Scope) -> tuple[str, list, frozenset[int]]:
    """The inbox's condition on ``incidents i`` without joins: lead department, a pending
    co-task (ids read first: few), social-help categories for a social organisation, and the
    jurisdiction subtree (skipped when it is the whole city). Also the co-task ids."""
    depts = sorted(scope.departments or ())
    co = [r[0] for r in store.query(
        "SELECT DISTINCT incident_id FROM incident_co_tasks WHERE status = 'pending'"
        " AND department_code IN (SELECT unnest(?::VARCHAR[]))", [depts])]
    mine = ["list_contains(?, i.department_code)"]
    params: list = [depts]
    if co:
        mine.append("list_contains(?, i.id)")
        params.append(co)
    if scope.role is Role.SOCIAL_ORG:
        social = [r[0] for r in store.query(
            "SELECT code FROM incident_categories WHERE social_help")]
        mine.append("(i.status = 'dispatched' AND list_contains(?, i.category))")
        params.append(social)
    where = f"{_OPEN_INBOX} AND ({' OR '.join(mine)})"
    if not _whole_city(store, scope):
        jwhere, jparams = scope.jurisdiction_filter("i.jurisdiction_code")
        where += f" AND {jwhere}"
        params += jparams
    return where, params, frozenset(co)


def _whole_city(store: Store, scope: Scope) -> bool:
    """Does the scope's subtree hold every jurisdiction (then no filter is needed)?"""
    return _cached(store, ("whole", scope.root_path), lambda: store.query_one(
        "SELECT count(*) FROM jurisdictions WHERE NOT starts_with(path, ?)",
        [scope.root_path])[0] == 0)


def _box(row: dict[str, Any], depts: frozenset[str], co: frozenset[int]) -> str:
    status, lead = row["status"], row["department_code"] in depts
    if lead and status in ("claimed", "in_progress"):
        return "mine"
    if lead and status == "resolved":
        return "waiting"
    if lead and status in ("dispatched", "reopened"):
        return "claimable"
    if status == "dispatched" and row["id"] not in co:
        return "claimable"  # a social organisation's social-help incident
    return "co"


def inbox(store: Store, user: User, *, now: datetime | None = None, limit: int = 200,
          after: tuple | None = None) -> list[dict[str, Any]]:
    """The department's open work: claimable, mine (claimed/in progress/reopened), resolved
    awaiting verification and co-tasks; overdue first, then the nearest deadline.

    Each row has ``box`` ('claimable' | 'mine' | 'co' | 'waiting'), ``due``, ``overdue`` and
    ``key``; pass the last row's ``key`` as ``after`` for the next page (keyset pagination).
    Users without a department see nothing here (the dispatch board is theirs).
    """
    return _inbox(store, user, now or utcnow(), limit, after)[0]


def inbox_counts(store: Store, user: User, *, now: datetime | None = None) -> dict[str, int]:
    """How many incidents the inbox holds in all (``open``) and how many are ``overdue``
    (the inbox itself shows a page)."""
    return _inbox(store, user, now or utcnow(), 1, None)[1]


def inbox_page(store: Store, user: User, *, now: datetime | None = None, limit: int = 200
               ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The inbox's first page (as ``inbox``) and the counts of the whole inbox (as
    ``inbox_counts``), from one read: the inbox page refreshes every 20 s on every desk."""
    return _inbox(store, user, now or utcnow(), limit, None)


# name columns of an inbox row: prefix → (reference table, the row's code column)
_NAMED = {"category": ("incident_categories", "category"),
          "place": ("jurisdictions", "jurisdiction_code"),
          "department": ("departments", "department_code")}


def _inbox(store: Store, user: User, now: datetime, limit: int, after: tuple | None
           ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One top-N read of the narrow incident columns with the whole inbox's counts as window
    aggregates (taken before the LIMIT); names come from cached code → name maps."""
    none = {"open": 0, "overdue": 0}
    scope = _scope_of(store, user)
    if scope is None or not scope.business_data or not scope.departments:
        return [], none
    where, params, co = _inbox_where(store, scope)
    keyset, kparams = "", []
    if after is not None:
        late, due_key, last_id = after
        keyset = (f" AND (NOT {_LATE}, {_DUE_KEY}, i.id) > (?, ?, ?)")
        kparams = [now, not late, due_key, last_id]
    rows = store.query_dicts(
        f"SELECT {_COLUMNS}, {_DUE} AS due, {_LATE} AS late, {_DUE_KEY} AS due_key,"
        f" count(*) OVER () AS n_open, count(*) FILTER (WHERE {_DUE} < ?) OVER () AS n_late"
        f" FROM incidents i WHERE {where}{keyset} ORDER BY late DESC, due_key, i.id LIMIT ?",
        [now, now, *params, *kparams, max(1, int(limit))])
    counts = ({"open": rows[0]["n_open"], "overdue": rows[0]["n_late"]} if rows and after is None
              else none)
    depts = frozenset(scope.departments)
    names = {kind: _names(store, table) for kind, (table, _column) in _NAMED.items()}
    for row in rows:
        for kind, (table, column) in _NAMED.items():
            code = row[column]
            if code is not None and code not in names[kind]:  # made a moment ago: read again
                names[kind] = _names(store, table, fresh=True)
            row[f"{kind}_zh"], row[f"{kind}_en"] = names[kind].get(code, (None, None))
        late, due_key = row.pop("late"), row.pop("due_key")
        del row["n_open"], row["n_late"]
        row["box"] = _box(row, depts, co)
        row["overdue"] = bool(late)
        row["key"] = (bool(late), due_key, row["id"])
    return rows, counts


_COLUMNS = ("i.id, i.tracking_code, i.category, i.priority, i.status, i.title,"
            " i.jurisdiction_code, i.department_code, i.reported_at, i.claim_due, i.resolve_due,"
            " i.supervised_at, i.overdue_kind")


def _names(store: Store, table: str, *, fresh: bool = False) -> dict[str, tuple]:
    """``code → (name_zh, name_en)`` of a small reference table, cached like the scopes
    (``fresh``: read now, for a code the cached map lacks)."""
    def read() -> dict[str, tuple]:
        return {code: (zh, en) for code, zh, en in
                store.query(f"SELECT code, name_zh, name_en FROM {table}")}

    return read() if fresh else _cached(store, ("names", table), read)


def list_incidents(store: Store, user: User, *, status: str | None = None,
                   query: str | None = None, now: datetime | None = None, limit: int = 100
                   ) -> list[dict[str, Any]]:
    """The newest incidents the user may see, optionally one status and/or a text search
    in the tracking code and title."""
    now = now or utcnow()
    scope = _scope_of(store, user)
    where, params = visible_filter(scope, "i")
    if status is not None:
        where += " AND i.status = ?"
        params = [*params, status]
    if query:
        where += " AND (i.tracking_code = ? OR contains(i.title, ?))"
        params = [*params, query.strip(), query.strip()]
    return store.query_dicts(
        f"SELECT {_ROW}, {_DUE} AS due, ({_DUE} < ? AND i.status NOT IN ('resolved', 'verified',"
        f" 'closed')) AS overdue{_JOINS} WHERE {where} ORDER BY i.reported_at DESC, i.id DESC"
        " LIMIT ?", [now, *params, limit])


BOARD_SECTIONS = ("unassigned", "returned", "overdue", "supervised", "extensions", "resolved")


def board(store: Store, user: User, *, now: datetime | None = None, limit: int = 100
          ) -> dict[str, list[dict[str, Any]]]:
    """The command centre's dispatch board inside the user's jurisdiction: unassigned
    (reported), returned, overdue (open past its deadline), supervised, pending extension
    requests, resolved awaiting verification."""
    now = now or utcnow()
    scope = _scope_of(store, user)
    result: dict[str, list[dict[str, Any]]] = {k: [] for k in BOARD_SECTIONS}
    if not scope.business_data or scope.departments is not None:
        return result
    where, params = scope.jurisdiction_filter("i.jurisdiction_code")
    # one scan of the open incidents; each row is tagged with every section it belongs to,
    # and each section keeps its first ``limit`` rows (overdue first, nearest deadline next)
    rows = store.query_dicts(
        f"WITH c AS (SELECT {_ROW}, {_DUE} AS due, {_DUE} < ? AS overdue,"
        "   i.id IN (SELECT incident_id FROM incident_extensions WHERE status = 'pending') AS ext"
        f" {_JOINS} WHERE i.status <> 'closed' AND {where}),"
        " t AS (SELECT *, unnest(list_filter(["
        "   CASE WHEN status = 'reported' THEN 'unassigned' END,"
        "   CASE WHEN status = 'returned' THEN 'returned' END,"
        "   CASE WHEN overdue AND status <> 'resolved' THEN 'overdue' END,"
        "   CASE WHEN supervised_at IS NOT NULL THEN 'supervised' END,"
        "   CASE WHEN ext THEN 'extensions' END,"
        "   CASE WHEN status = 'resolved' THEN 'resolved' END], x -> x IS NOT NULL)) AS section"
        "   FROM c)"
        " SELECT * FROM t QUALIFY row_number() OVER (PARTITION BY section"
        "   ORDER BY overdue DESC, due ASC NULLS LAST, id) <= ?"
        " ORDER BY section, overdue DESC, due ASC NULLS LAST, id",
        [now, *params, limit])
    for row in rows:
        section = row.pop("section")
        row.pop("ext", None)
        result[section].append(row)
    return result


def timeline(store: Store, user: User, incident_id: int) -> list[dict[str, Any]]:
    """The incident's events, oldest first (empty when the user may not see it)."""
    return [] if get_incident(store, user, incident_id) is None else _timeline(store, incident_id)


def co_tasks(store: Store, user: User, incident_id: int) -> list[dict[str, Any]]:
    return [] if get_incident(store, user, incident_id) is None else _co_tasks(store, incident_id)


def extensions(store: Store, user: User, incident_id: int) -> list[dict[str, Any]]:
    if get_incident(store, user, incident_id) is None:
        return []
    return store.query_dicts("SELECT * FROM incident_extensions WHERE incident_id = ? ORDER BY id",
                             [incident_id])


def nearby_sensors(store: Store, user: User, incident_id: int, *,
                   radius_m: float = NEARBY_RADIUS_M, limit: int = NEARBY_LIMIT
                   ) -> list[dict[str, Any]]:
    """Sensors within ``radius_m`` of the incident that the user's scope covers."""
    inc = get_incident(store, user, incident_id)
    if inc is None:
        return []
    return _nearby(store, _scope_of(store, user), inc, radius_m, limit)


@dataclass(frozen=True)
class IncidentDetail:
    """What the incident page shows, read with one visibility check."""

    incident: Incident
    timeline: list[dict[str, Any]]
    co_tasks: list[dict[str, Any]]
    nearby: list[dict[str, Any]]


def incident_detail(store: Store, user: User, incident_id: int) -> IncidentDetail | None:
    """The incident (as ``get_incident``), its timeline, co-tasks and nearby sensors, or None
    when the user may not see it. The page needs all four: checking the user's right once
    instead of four times halves its reads."""
    inc = get_incident(store, user, incident_id)
    if inc is None:
        return None
    return IncidentDetail(inc, _timeline(store, inc.id), _co_tasks(store, inc.id),
                          _nearby(store, _scope_of(store, user), inc, NEARBY_RADIUS_M,
                                  NEARBY_LIMIT))


# -- the reads behind them, for an incident the caller has checked the user may see ---------
def _timeline(store: Store, incident_id: int) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT e.seq, e.ts, e.action, e.from_status, e.to_status, e.actor, e.department_code,"
        " d.name_zh AS department_zh, d.name_en AS department_en, e.note"
        " FROM incident_events e LEFT JOIN departments d ON d.code = e.department_code"
        " WHERE e.incident_id = ? ORDER BY e.seq", [incident_id])


def _co_tasks(store: Store, incident_id: int) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT t.*, d.name_zh AS department_zh, d.name_en AS department_en"
        " FROM incident_co_tasks t LEFT JOIN departments d ON d.code = t.department_code"
        " WHERE t.incident_id = ? ORDER BY t.requested_at, t.department_code", [incident_id])


def _nearby(store: Store, scope: Scope, inc: Incident, radius_m: float, limit: int
            ) -> list[dict[str, Any]]:
    where, params = scope.jurisdiction_filter("s.jurisdiction_code")
    dlat = radius_m / 111_320.0
    dlon = dlat * 1.5
    return store.query_dicts(
        "SELECT * FROM (SELECT s.sensor_id, s.code, s.kind, s.name, s.lon, s.lat, s.value,"
        " s.state, s.ts, 2 * 6371008.8 * asin(sqrt(pow(sin(radians(s.lat - ?) / 2), 2)"
        " + cos(radians(?)) * cos(radians(s.lat)) * pow(sin(radians(s.lon - ?) / 2), 2))) AS dist"
        " FROM sensor_status s WHERE s.lat BETWEEN ? AND ? AND s.lon BETWEEN ? AND ?"
        f" AND {where}) WHERE dist <= ? ORDER BY dist LIMIT ?",
        [inc.lat, inc.lat, inc.lon, inc.lat - dlat, inc.lat + dlat, inc.lon - dlon,
         inc.lon + dlon, *params, radius_m, limit])


def departments_for_dispatch(store: Store, user: User) -> list[dict[str, Any]]:
    """Departments a commander may dispatch to (not the command centre or the vendor)."""
    scope = _scope_of(store, user)
    if scope.role is not Role.COMMANDER:
        return []
    return store.query_dicts(
        "SELECT d.code, d.name_zh, d.name_en, d.kind FROM departments d"
        " JOIN jurisdictions dj ON dj.code = d.jurisdiction_code"
        " JOIN jurisdictions r ON r.code = ?"
        " WHERE d.kind NOT IN ('vendor', 'command')"
        "   AND (starts_with(dj.path, r.path) OR starts_with(r.path, dj.path))"
        " ORDER BY d.kind, d.code", [scope.root_code])


def notifications(store: Store, user: User, *, unread_only: bool = False, limit: int = 50
                  ) -> list[dict[str, Any]]:
    """The user's in-app notifications, newest first."""
    cond = " AND read_at IS NULL" if unread_only else ""
    return store.query_dicts(
        "SELECT n.id, n.incident_id, n.kind, n.created_at, n.message, n.read_at,"
        " i.tracking_code FROM incident_notifications n LEFT JOIN incidents i"
        f" ON i.id = n.incident_id WHERE n.username = ?{cond}"
        " ORDER BY n.created_at DESC, n.id DESC LIMIT ?", [user.username, limit])


def unread_count(store: Store, user: User) -> int:
    return store.query_one("SELECT count(*) FROM incident_notifications WHERE username = ? AND"
                           " read_at IS NULL", [user.username])[0]


def mark_read(store: Store, user: User, ids: list[int] | None = None,
              now: datetime | None = None) -> int:
    """Mark the user's notifications read (all when ``ids`` is None); returns how many."""
    now = now or utcnow()
    with store.transaction() as cur:
        if ids is None:
            sql, params = "username = ?", [user.username]
        else:
            sql, params = "username = ? AND id IN (SELECT unnest(?::BIGINT[]))", [user.username,
                                                                               list(ids)]
        n = cur.execute(f"SELECT count(*) FROM incident_notifications WHERE {sql} AND"
                        " read_at IS NULL", params).fetchone()[0]
        cur.execute(f"UPDATE incident_notifications SET read_at = ? WHERE {sql} AND"
                    " read_at IS NULL", [now, *params])
    return n
