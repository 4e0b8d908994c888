"""What the wall screen (大屏) shows, as scoped queries: KPI tiles, the event ticker, stale
sources, the rotation views and one call that refreshes all of it.

The reads are scoped queries of ``core.wall_queries``: KPIs are computed for now and for the
same moment yesterday in one pass over the scoped incidents (conditional aggregates), so each
tile carries its change from yesterday; the threshold colour (``ok``/``warn``/``alarm``)
follows the rules in ``KPI_RULES``. "Today" is the local day in ``LOCAL_UTC_OFFSET`` (China
Standard Time: one zone for every Chinese city).

>>> snap = wall_snapshot(store, scope, "city", LayerRequest((120, 31.6, 120.6, 32.2), 10))
...                                                              # doctest: +SKIP
>>> [k.id for k in snap.kpis]                                    # doctest: +SKIP
['open', 'overdue', 'on_time', 'online', 'alerts', 'reports']
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime
from typing import Any

from core import shared_cache
from core.scope import Scope
from core.store import Store
from core.wall_queries import (
    LOCAL_UTC_OFFSET,
    alert_counts,
    incident_kpi_counts,
    local_day_start,
    sensor_online,
    stale_sources,
    ticker,
)
from layers.builtin import indicator_values
from layers.registry import LayerAccessError, LayerRequest, empty_collection, layer_features

__all__ = ["KPI_RULES", "LOCAL_UTC_OFFSET", "NO_RESOLVED_TODAY", "NO_SENSORS", "VIEWS", "Kpi",
           "WallSnapshot", "WallView",
           "choropleth_values", "kpi_level", "local_day_start", "shared_wall_snapshot",
           "stale_sources", "ticker", "wall_kpis", "wall_snapshot"]

WALL_THREADS = 3  # reads of one refresh run side by side (2-core machines: 3 keeps both busy)


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


def _pct(part: float | None, whole: float | None) -> float | None:
    return None if not whole else 100.0 * (part or 0) / whole


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
    ``sensor_online`` (tests check they agree), computed inside the scans of
    ``core.wall_queries`` the other tiles need anyway, and coloured by the indicators'
    thresholds."""
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


def _shared_name(key: tuple) -> str:
    """The key as the same text in every process (sets sorted: their order follows each
    process's hash seed), hashed."""
    def plain(value: Any) -> Any:
        if isinstance(value, (set, frozenset)):
            return sorted(map(str, value))
        if is_dataclass(value) and not isinstance(value, type):
            return asdict(value)
        return str(value)

    text = json.dumps(key[1:], default=plain, sort_keys=True, ensure_ascii=False)
    return "wall:" + hashlib.sha256(text.encode()).hexdigest()


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
        # cluster mode: one computation per key across the web processes too
        cache = shared_cache.for_store(store)
        name = _shared_name(key) if cache is not None else ""
        found = cache.get(name, seconds) if cache is not None else None
        if found is not None:
            snap, taken = pickle.loads(found[0]), time.monotonic() - found[1]
        else:
            snap, taken = wall_snapshot(store, scope, view_id, request, hidden), time.monotonic()
            if cache is not None:
                cache.put(name, pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL))
        with _shared_lock:
            _shared[key] = (taken, snap)
            _shared.move_to_end(key)
            while len(_shared) > _SHARED_MAX:
                _shared.popitem(last=False)
            _computing.pop(key, None)
    return snap

