"""Incidents enter here (``report_incident``: every source), duplicates are suggested
(``find_duplicates``), and the SLA job escalates overdue incidents (``escalate_overdue``).
Import these from ``core.incidents``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from core import incident_rules, routing
from core.audit import signing
from core.incident_rules import (
    _LOCAL_OFFSET,
    _REPORTERS,
    CITIZEN,
    DUPLICATE_RADIUS_M,
    PRIORITIES,
    SOURCE_NAMES_ZH,
    SOURCES,
    SYSTEM,
    Incident,
    IncidentError,
    S,
    TransitionRefused,
    _actor_name,
    _commanders_over,
    _department_users,
    _fmt,
    _jurisdiction_path,
    _load,
    _notify,
    _retrying,
    _scope_of,
    _update,
    _write_event,
)
from core.sla import deadlines, utcnow
from core.store import Store
from core.users import User

__all__ = ["EscalationReport", "escalate_overdue", "find_duplicates", "report_incident"]


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
                    on_behalf_of: str | None = None, now: datetime | None = None,
                    cursor=None) -> Incident:
    """Create an incident (every source enters here) and route it.

    The jurisdiction is the community containing (lon, lat). SLA deadlines come from the
    category and priority. An explicit routing rule dispatches at once (by ``system``);
    otherwise the routed department is suggested and the incident waits for the commander.
    The returned incident's ``duplicates`` lists open incidents of the same category within
    ``DUPLICATE_RADIUS_M`` (suggested for merging).

    ``cursor``: run on that cursor inside the caller's open transaction (no BEGIN/COMMIT, no
    retry, no lock taken); every error propagates so that the caller rolls back everything.
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
    reader = cursor if cursor is not None else store.cursor()
    cat = reader.execute("SELECT default_priority FROM incident_categories WHERE code = ?",
                         [category]).fetchone()
    if cat is None:
        raise IncidentError(f"unknown incident category {category!r}")
    priority = priority or cat[0]
    row = reader.execute(
        "SELECT code FROM jurisdictions WHERE level = 'community' AND ? BETWEEN min_lon AND"
        " max_lon AND ? BETWEEN min_lat AND max_lat AND ST_Contains(geom, ST_Point(?, ?))"
        " ORDER BY code LIMIT 1", [lon, lat, lon, lat]).fetchone()
    if row is None:
        raise IncidentError(f"({lon}, {lat}) lies outside every community of the city")
    jurisdiction = row[0]
    scope = _scope_of(store, actor)
    path = _jurisdiction_path(store, reader, jurisdiction)
    if scope is not None and not (path or "").startswith(scope.root_path):
        raise TransitionRefused(f"({lon}, {lat}) is outside your jurisdiction")
    due = deadlines(cursor if cursor is not None else store, category, priority, now)
    reporter = _actor_name(actor) if actor else ("system" if source == "sensor_alert" else CITIZEN)
    note = f"{SOURCE_NAMES_ZH[source]}受理" + (f"（代 {on_behalf_of} 登记）" if on_behalf_of else "")

    def work() -> Incident:
        with incident_rules._WRITE_LOCK, signing(store), store.transaction() as cur:
            return on(cur)

    def on(cur) -> Incident:
        new_id = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM incidents").fetchone()[0]
        prefix = "YW" + (now + _LOCAL_OFFSET).strftime("%Y%m%d")
        last = cur.execute("SELECT max(tracking_code) FROM incidents WHERE"
                           " starts_with(tracking_code, ?)", [prefix]).fetchone()[0]
        number = int(last[len(prefix):]) + 1 if last else 1
        routed = routing.route(cur, category, jurisdiction)
        cur.execute(
            "INSERT INTO incidents (id, tracking_code, category, priority, status, source,"
            " title, description, lon, lat, jurisdiction_code, department_code, reported_at,"
            " claim_due, resolve_due, reporter_contact, version, returned_count,"
            " reopened_count, supervised_count)"
            " VALUES (?, ?, ?, ?, 'reported', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, 0, 0)",
            [new_id, f"{prefix}{number:05d}", category, priority, source, title,
             description, float(lon), float(lat), jurisdiction, routed.department_code,
             now, due.claim_due, due.resolve_due, contact])
        inc = _load(cur, new_id)
        _write_event(cur, store, replace(inc, version=0), "report", S.REPORTED, reporter,
                     now, None, note, {"category": category, "source": source,
                                       "routed": routed.department_code,
                                       "route": routed.reason})
        if routed.auto_dispatch and routed.department_code:
            inc = _load(cur, new_id)
            _update(cur, inc, status=str(S.DISPATCHED), first_dispatched_at=now)
            _write_event(cur, store, inc, "dispatch", S.DISPATCHED, SYSTEM, now,
                         routed.department_code, f"按规则自动派单（{routed.reason}）",
                         {"department": routed.department_code})
            _notify(cur, _department_users(cur, routed.department_code), new_id,
                    "dispatch", f"{inc.tracking_code} {title}", now)
        dups = find_duplicates(cur, category, lon, lat, exclude_id=new_id)
        return replace(_load(cur, new_id), duplicates=tuple(d["id"] for d in dups))

    if cursor is not None:
        return on(cursor)
    return _retrying(work)


# -- SLA escalation -----------------------------------------------------------------------

@dataclass(frozen=True)
class EscalationReport:
    claim_overdue: tuple[int, ...]
    resolve_overdue: tuple[int, ...]

    @property
    def total(self) -> int:
        return len(self.claim_overdue) + len(self.resolve_overdue)


def escalate_overdue(store: Store, now: datetime | None = None, *, batch: int | None = None
                     ) -> EscalationReport:
    """Mark incidents past their claim-by / resolve-by deadline overdue and escalate them to
    the commanders over their jurisdiction (an ``escalate`` event, a notification, an audit
    entry). Each incident is escalated once per kind of lateness; an approved extension that
    moves the deadline clears the mark. Meant for the scheduler (every few minutes).

    >>> escalate_overdue(store, now=datetime(2026, 11, 28, 12)).total     # doctest: +SKIP
    3
    """
    now = now or utcnow()
    # one transaction per batch; on a lake each holds the cluster-wide write lock that every
    # interactive write (a login's audit entry, a claim) waits for, at ~20-50 ms a statement
    batch = batch or (500 if store.mode == "embedded" else 10)
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
        with incident_rules._WRITE_LOCK, signing(store), store.transaction() as cur:
            for incident_id in ids:
                inc = _load(cur, incident_id)
                due = getattr(inc, due_col)
                if (inc is None or str(inc.status) not in states or due is None or due >= now
                        or inc.overdue_kind == kind):
                    continue  # changed since the scan
                _update(cur, inc, overdue_kind=kind, escalated_at=now)
                what = "签收" if kind == "claim" else "办结"
                note = f"超过{what}时限（{_fmt(due)}），升级至指挥中心"
                _write_event(cur, store, inc, "escalate", inc.status, SYSTEM, now,
                             inc.department_code, note, {"overdue": kind, "due": due})
                _notify(cur, _commanders_over(cur, inc.jurisdiction_code), inc.id, "escalate",
                        f"{inc.tracking_code} {note}", now)
                done.append(incident_id)
        return done

    return _retrying(work)

