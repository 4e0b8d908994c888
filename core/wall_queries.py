"""The wall screen's (大屏) scoped reads: incident, sensor and alert counts for the KPI tiles,
the event ticker and stale sources. ``layers.wall`` turns them into tiles and one refresh.

Counts are taken for now and for the same moment yesterday in one pass over the scoped rows
(conditional aggregates). "Today" is the local day in ``LOCAL_UTC_OFFSET`` (China Standard
Time: one zone for every Chinese city).

>>> incident_kpi_counts(store, scope, now)["open_now"]            # doctest: +SKIP
42
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.map_queries import CITIZEN_SOURCES
from core.scope import Scope
from core.store import Store

__all__ = ["LOCAL_UTC_OFFSET", "TICKER_LIMIT", "alert_counts", "incident_kpi_counts",
           "local_day_start", "sensor_online", "stale_sources", "ticker"]

LOCAL_UTC_OFFSET = timedelta(hours=8)
TICKER_LIMIT = 12


def local_day_start(now: datetime) -> datetime:
    """Start of the local day containing ``now`` (UTC, naive), in UTC.

    >>> local_day_start(datetime(2026, 11, 28, 17, 0))   # 01:00 on the 29th in Beijing
    datetime.datetime(2026, 11, 28, 16, 0)
    """
    local = now + LOCAL_UTC_OFFSET
    return datetime(local.year, local.month, local.day) - LOCAL_UTC_OFFSET


def _pct(part: float | None, whole: float | None) -> float | None:
    return None if not whole else 100.0 * (part or 0) / whole


def incident_kpi_counts(store: Store, scope: Scope, now: datetime) -> dict[str, int]:
    """Scoped incident counts for now and for yesterday at the same time, in one scan."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    yesterday = now - timedelta(days=1)
    day0 = local_day_start(now)
    yday0 = day0 - timedelta(days=1)
    open_at = "(reported_at <= {t} AND (closed_at IS NULL OR closed_at > {t}))"
    overdue_at = ("(reported_at <= {t} AND (closed_at IS NULL OR closed_at > {t})"
                  " AND resolve_due < {t} AND (resolved_at IS NULL OR resolved_at > {t}))")
    row = store.query_dicts(
        "SELECT"
        f" count_if({open_at.format(t='$now')}) AS open_now,"
        f" count_if({open_at.format(t='$yest')}) AS open_prev,"
        f" count_if({overdue_at.format(t='$now')}) AS overdue_now,"
        f" count_if({overdue_at.format(t='$yest')}) AS overdue_prev,"
        " count_if(resolved_at >= $day0 AND resolved_at < $now) AS resolved_now,"
        " count_if(resolved_at >= $day0 AND resolved_at < $now"
        "          AND resolved_at <= resolve_due) AS ontime_now,"
        " count_if(resolved_at >= $yday0 AND resolved_at < $yest) AS resolved_prev,"
        " count_if(resolved_at >= $yday0 AND resolved_at < $yest"
        "          AND resolved_at <= resolve_due) AS ontime_prev,"
        " count_if(citizen AND reported_at >= $day0 AND reported_at <= $now) AS reports_now,"
        " count_if(citizen AND reported_at >= $yday0 AND reported_at <= $yest) AS reports_prev"
        " FROM (SELECT *, source IN (SELECT unnest($sources::VARCHAR[])) AS citizen"
        f"       FROM incidents WHERE ({_numbered(where)})"
        "        AND reported_at <= $now AND (closed_at IS NULL OR closed_at >= $yday0))",
        {"now": now, "yest": yesterday, "day0": day0, "yday0": yday0,
         "sources": list(CITIZEN_SOURCES), **_named(params)},
    )[0]
    return {k: int(v or 0) for k, v in row.items()}


def _numbered(where: str) -> str:
    """Turn a scope filter's ``?`` placeholders into ``$p0, $p1…`` (named parameters)."""
    parts = where.split("?")
    return "".join(p + (f"$p{i}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def _named(params: list) -> dict[str, Any]:
    return {f"p{i}": v for i, v in enumerate(params)}


def sensor_online(store: Store, scope: Scope, now: datetime) -> tuple[float | None, float | None]:
    """Percent of scoped sensors online now (``sensor_status``) and at this time yesterday
    (sensors that reported in the clock hour of that moment or the hour before, from the
    ``sensor_hours`` rollup: raw readings are never scanned)."""
    where, params = scope.data_filter("jurisdiction_code", "department_code")
    yesterday = now - timedelta(days=1)
    hour = yesterday.replace(minute=0, second=0, microsecond=0)
    total, online, prev_total, prev_online = store.query_one(
        "WITH s AS (SELECT id, installed_at FROM sensors WHERE " + where + ")"
        " SELECT (SELECT count(*) FROM sensor_status WHERE sensor_id IN (SELECT id FROM s)),"
        "  (SELECT count_if(state <> 'offline') FROM sensor_status"
        "   WHERE sensor_id IN (SELECT id FROM s)),"
        "  (SELECT count(*) FROM s WHERE installed_at <= ?),"
        "  (SELECT count(DISTINCT h.sensor_id) FROM sensor_hours h"
        "   WHERE h.hour >= ? AND h.hour <= ? AND h.sensor_id IN (SELECT id FROM s))",
        [*params, yesterday, hour - timedelta(hours=1), hour])
    return _pct(online, total), _pct(prev_online, prev_total)


def alert_counts(store: Store, scope: Scope, now: datetime) -> dict[str, int]:
    """Active alerts now (all and alarm level) and at this time yesterday."""
    where, params = scope.data_filter("a.jurisdiction_code", "s.department_code")
    yesterday = now - timedelta(days=1)
    row = store.query_one(
        "SELECT count_if(a.opened_at <= ? AND (a.closed_at IS NULL OR a.closed_at > ?)),"
        " count_if(a.level = 'alarm' AND a.opened_at <= ?"
        "          AND (a.closed_at IS NULL OR a.closed_at > ?)),"
        " count_if(a.opened_at <= ? AND (a.closed_at IS NULL OR a.closed_at > ?))"
        " FROM alerts a JOIN sensors s ON s.id = a.sensor_id"
        f" WHERE ({where}) AND (a.closed_at IS NULL OR a.closed_at > ?)",
        [now, now, now, now, yesterday, yesterday, *params, yesterday])
    return {"now": int(row[0] or 0), "alarm": int(row[1] or 0), "prev": int(row[2] or 0)}


def ticker(store: Store, scope: Scope, now: datetime, limit: int = TICKER_LIMIT,
           ) -> list[dict[str, Any]]:
    """The latest incident events and alert openings in scope (newest first, last day)."""
    if not scope.business_data:
        return []
    iwhere, iparams = scope.data_filter("i.jurisdiction_code", "i.department_code")
    awhere, aparams = scope.data_filter("a.jurisdiction_code", "s.department_code")
    since = now - timedelta(days=1)
    # pick the newest rows first (scope applied), then look up names for those few only
    return store.query_dicts(
        "WITH ev AS ((SELECT e.ts, 'incident' AS type, e.action, i.id AS ref,"
        "   i.priority AS level, i.category AS what, i.jurisdiction_code AS place"
        "  FROM incident_events e JOIN incidents i ON i.id = e.incident_id"
        f" WHERE ({iwhere}) AND e.ts > ? AND e.ts <= ? ORDER BY e.ts DESC LIMIT ?)"
        " UNION ALL "
        " (SELECT a.opened_at, 'alert', 'alert_' || a.level, a.id, a.level, a.kind,"
        "   a.jurisdiction_code FROM alerts a JOIN sensors s ON s.id = a.sensor_id"
        f"  WHERE ({awhere}) AND a.opened_at > ? AND a.opened_at <= ?"
        "  ORDER BY a.opened_at DESC LIMIT ?)"
        " ORDER BY ts DESC LIMIT ?)"
        " SELECT ev.ts, ev.type, ev.action, ev.ref, ev.level,"
        "  coalesce(c.name_zh, k.name_zh) AS what_zh, coalesce(c.name_en, k.name_en) AS what_en,"
        "  j.name_zh AS place_zh, j.name_en AS place_en"
        " FROM ev LEFT JOIN incident_categories c ON ev.type = 'incident' AND c.code = ev.what"
        " LEFT JOIN sensor_kinds k ON ev.type = 'alert' AND k.kind = ev.what"
        " LEFT JOIN jurisdictions j ON j.code = ev.place ORDER BY ev.ts DESC",
        [*iparams, since, now, limit, *aparams, since, now, limit, limit],
    )


def stale_sources(store: Store) -> list[dict[str, Any]]:
    """Pipeline sources that stopped delivering (``source_freshness``, contract A); platform
    status, the same for every user of the wall. Lake maintenance delivers no data (and
    first runs 5 minutes after the scheduler starts): the operations page shows its runs."""
    return store.query_dicts(
        "SELECT name, kind, last_success, last_status FROM source_freshness"
        " WHERE stale AND kind <> 'maintenance' ORDER BY name")
