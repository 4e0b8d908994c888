"""What the wall screen (大屏) shows, as scoped queries: KPI tiles, the event ticker, stale
sources, the rotation views and one call that refreshes all of it.

KPIs are computed for now and for the same moment yesterday in one pass over the scoped
incidents (conditional aggregates), so each tile carries its change from yesterday; the
threshold colour (``ok``/``warn``/``alarm``) follows the rules in ``KPI_RULES``. "Today" is
the local day in ``LOCAL_UTC_OFFSET`` (China Standard Time: one zone for every Chinese city).

>>> snap = wall_snapshot(store, scope, "city", LayerRequest((120, 31.6, 120.6, 32.2), 10))
...                                                              # doctest: +SKIP
>>> [k.id for k in snap.kpis]                                    # doctest: +SKIP
['open', 'overdue', 'on_time', 'online', 'alerts', 'reports']
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from core.scope import Scope
from core.store import Store
from layers.builtin import CITIZEN_SOURCES, indicator_values
from layers.registry import LayerAccessError, LayerRequest, empty_collection, layer_features

__all__ = ["KPI_RULES", "LOCAL_UTC_OFFSET", "NO_RESOLVED_TODAY", "NO_SENSORS", "VIEWS", "Kpi",
           "WallSnapshot", "WallView",
           "choropleth_values", "kpi_level", "shared_wall_snapshot", "stale_sources", "ticker",
           "wall_kpis", "wall_snapshot"]

LOCAL_UTC_OFFSET = timedelta(hours=8)
WALL_THREADS = 3  # reads of one refresh run side by side (2-core machines: 3 keeps both busy)
TICKER_LIMIT = 12


@dataclass(frozen=True)
class WallView:
    """One entry of the rotation playlist: which layers, with which options, and the
    indicators (first one ``core.indicators`` offers) colouring the jurisdictions."""

    id: str
    name_zh: str
    name_en: str
    layers: dict[str, dict[str, Any]]
    indicators: tuple[str, ...] = ()


VIEWS: dict[str, WallView] = {v.id: v for v in (
    WallView("city", "城市总览", "City overview",
             {"sensors": {}, "incidents": {}, "alerts": {}}, ("per_10k",)),
    WallView("flood", "防汛监测", "Flood watch",
             {"sensors": {"kinds": ["water_level"]}, "alerts": {"kinds": ["water_level"]},
              "incidents": {"categories": ["road_waterlogging"]}},
             ("water_level_peak",)),
    WallView("air", "空气质量", "Air quality",
             {"sensors": {"kinds": ["pm25"]}, "alerts": {"kinds": ["pm25"]},
              "incidents": {"categories": ["air_pollution"]}},
             ("pm25_mean", "aqi")),
    WallView("incidents", "事件态势", "Incidents",
             {"incidents": {}, "reports": {"hours": 24}},
             ("overdue",)),
)}


# -- KPIs ------------------------------------------------------------------------------
# why a tile has no value: nothing to divide by yet (the page words each reason)
NO_RESOLVED_TODAY = "no_resolved_today"
NO_SENSORS = "no_sensors"


@dataclass(frozen=True)
class Kpi:
    """A wall tile: value now, value yesterday at the same time, unit, colour level, and
    why there is no value (``NO_RESOLVED_TODAY``, ``NO_SENSORS``) when ``value`` is None."""

    id: str
    value: float | None
    previous: float | None
    unit: str  # count | percent
    level: str  # ok | warn | alarm | none
    why_none: str | None = None

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


# id: (kind of rule, warn, alarm). "share_up": value as share of a base, bad when high;
# "rise": change from yesterday as a fraction, bad when high; "below": bad when low (percent);
# "any": alarm/warning counts.
KPI_RULES: dict[str, tuple[str, float, float]] = {
    "open": ("rise", 0.10, 0.25),
    "overdue": ("share_up", 0.05, 0.15),
    "on_time": ("below", 90.0, 80.0),
    "online": ("below", 95.0, 85.0),
    "alerts": ("any", 1, 1),
    "reports": ("rise", 0.20, 0.50),
}


def kpi_level(kpi_id: str, value: float | None, previous: float | None = None,
              base: float | None = None) -> str:
    """Threshold colour of a KPI value.

    >>> kpi_level("on_time", 85.0), kpi_level("online", 99.0), kpi_level("open", 130, 100)
    ('warn', 'ok', 'alarm')
    """
    rule, warn, alarm = KPI_RULES[kpi_id]
    if value is None:
        return "none"
    if rule == "below":
        return "alarm" if value < alarm else "warn" if value < warn else "ok"
    if rule == "rise":
        if not previous:
            return "ok"
        rise = (value - previous) / previous
        return "alarm" if rise > alarm else "warn" if rise > warn else "ok"
    if rule == "share_up":
        share = value / base if base else 0.0
        return "alarm" if share >= alarm else "warn" if share >= warn else "ok"
    return "ok" if not value else "warn"


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


def indicator_level(indicator_id: str, value: float | None) -> str | None:
    """Colour of a value by the thresholds ``core.indicators`` declares for ``indicator_id``
    (None when that module or indicator is not there)."""
    try:
        from core.indicators import INDICATORS
    except ImportError:
        return None
    indicator = INDICATORS.get(indicator_id)
    level = indicator.level_of(value) if indicator is not None else None
    return {"good": "ok", "warn": "warn", "bad": "alarm"}.get(level or "")


def wall_kpis(store: Store, scope: Scope, now: datetime) -> list[Kpi]:
    """The six wall tiles for the user's scope at ``now`` (UTC, naive).

    On-time resolution and sensors online are the figures of ``core.indicators``'
    ``resolve_on_time`` (resolved in the local day so far, at or before ``resolve_due``) and
    ``sensor_online`` (tests check they agree), computed here inside the scans the other tiles
    need anyway, and coloured by the indicators' thresholds."""
    if not scope.business_data:
        return []
    c = incident_kpi_counts(store, scope, now)
    online, online_prev = sensor_online(store, scope, now)
    alerts = alert_counts(store, scope, now)
    on_time = _pct(c["ontime_now"], c["resolved_now"])
    on_time_prev = _pct(c["ontime_prev"], c["resolved_prev"])
    on_time_level = indicator_level("resolve_on_time", on_time) or kpi_level("on_time", on_time)
    online_level = indicator_level("sensor_online", online) or kpi_level("online", online)
    alert_level = "alarm" if alerts["alarm"] else ("warn" if alerts["now"] else "ok")
    return [
        Kpi("open", c["open_now"], c["open_prev"], "count",
            kpi_level("open", c["open_now"], c["open_prev"])),
        Kpi("overdue", c["overdue_now"], c["overdue_prev"], "count",
            kpi_level("overdue", c["overdue_now"], base=c["open_now"])),
        Kpi("on_time", on_time, on_time_prev, "percent", on_time_level,
            None if on_time is not None else NO_RESOLVED_TODAY),
        Kpi("online", online, online_prev, "percent", online_level,
            None if online is not None else NO_SENSORS),
        Kpi("alerts", alerts["now"], alerts["prev"], "count", alert_level),
        Kpi("reports", c["reports_now"], c["reports_prev"], "count",
            kpi_level("reports", c["reports_now"], c["reports_prev"])),
    ]


# -- ticker, freshness -----------------------------------------------------------------
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
    """Pipeline sources that stopped delivering (``source_freshness``, contract A)."""
    return store.query_dicts(
        "SELECT name, kind, last_success, last_status FROM source_freshness"
        " WHERE stale ORDER BY name")


def choropleth_values(store: Store, scope: Scope, view: WallView, parent_code: str,
                      now: datetime) -> tuple[str | None, dict[str, float | None]]:
    """The first of the view's indicators that ``core.indicators`` offers, and its value per
    child of ``parent_code`` over the local day so far."""
    if not scope.business_data or not view.indicators:
        return None, {}
    try:
        from core.indicators import INDICATORS
    except ImportError:
        return None, {}
    for indicator in view.indicators:
        if indicator in INDICATORS:
            return indicator, indicator_values(store, scope, indicator, parent_code,
                                               local_day_start(now), now)
    return None, {}


# -- one refresh -----------------------------------------------------------------------
@dataclass
class WallSnapshot:
    """Everything one wall refresh sends: KPIs, ticker, each layer's features, the
    choropleth values and stale sources."""

    now: datetime
    view: WallView
    kpis: list[Kpi]
    events: list[dict[str, Any]]
    layers: dict[str, dict[str, Any]]
    indicator: str | None
    values: dict[str, float | None]
    stale: list[dict[str, Any]] = field(default_factory=list)


def wall_snapshot(store: Store, scope: Scope, view_id: str, request: LayerRequest,
                  hidden: frozenset[str] = frozenset()) -> WallSnapshot:
    """One full wall refresh for the user's scope (layers in ``hidden`` come back empty).

    Its reads are independent: they run side by side, each on its thread's own cursor (DuckDB
    releases the GIL), in threads that end with the call and close their cursors with them.
    """
    view = VIEWS.get(view_id) or VIEWS["city"]
    now = request.when

    def layer(layer_id: str, options: dict[str, Any]) -> dict[str, Any]:
        if layer_id in hidden:
            return empty_collection()
        try:
            return layer_features(store, scope, layer_id,
                                  LayerRequest(request.bbox, request.zoom, now, options))
        except LayerAccessError:
            return empty_collection()

    with ThreadPoolExecutor(WALL_THREADS, thread_name_prefix="yiwang-wall") as pool:
        kpis = pool.submit(wall_kpis, store, scope, now)
        events = pool.submit(ticker, store, scope, now)
        choropleth = pool.submit(choropleth_values, store, scope, view, scope.root_code, now)
        pending = {layer_id: pool.submit(layer, layer_id, options)
                   for layer_id, options in view.layers.items()}
        stale = stale_sources(store)
        layers = {layer_id: future.result() for layer_id, future in pending.items()}
        indicator, values = choropleth.result()
        return WallSnapshot(now, view, kpis.result(), events.result(), layers, indicator,
                            values, stale)


# -- one snapshot for every screen of the same scope ------------------------------------------
# A command centre runs many wall screens (and leaders' offices some more) on the same few
# scopes and views. A snapshot is computed once per (scope, view, map extent, hidden layers)
# and shared for SHARE_SECONDS; screens arriving together wait for the one computation. The
# key is everything the scope decides (not the user name, which no query uses), so users of
# different scopes never share (tests/test_wall.py proves it).
SHARE_SECONDS = 5.0
_SHARED_MAX = 256
_shared: OrderedDict[tuple, tuple[float, WallSnapshot]] = OrderedDict()
_shared_lock = threading.Lock()
_computing: dict[tuple, threading.Lock] = {}


def _share_key(store: Store, scope: Scope, view_id: str, request: LayerRequest,
               hidden: frozenset[str]) -> tuple:
    bbox = tuple(round(v, 4) for v in request.bbox)
    return (id(store), replace(scope, username=""), view_id, bbox, round(request.zoom, 2),
            request.at, hidden)


def shared_wall_snapshot(store: Store, scope: Scope, view_id: str, request: LayerRequest,
                         hidden: frozenset[str] = frozenset(), *,
                         seconds: float = SHARE_SECONDS) -> WallSnapshot:
    """``wall_snapshot`` for the same scope and view, at most ``seconds`` old."""
    key = _share_key(store, scope, view_id, request, hidden)
    with _shared_lock:
        hit = _shared.get(key)
        if hit is not None and time.monotonic() - hit[0] < seconds:
            return hit[1]
        gate = _computing.setdefault(key, threading.Lock())
    with gate:  # one computation per key; the others take its result
        with _shared_lock:
            hit = _shared.get(key)
            if hit is not None and time.monotonic() - hit[0] < seconds:
                return hit[1]
        snap = wall_snapshot(store, scope, view_id, request, hidden)
        with _shared_lock:
            _shared[key] = (time.monotonic(), snap)
            _shared.move_to_end(key)
            while len(_shared) > _SHARED_MAX:
                _shared.popitem(last=False)
            _computing.pop(key, None)
    return snap

