"""Rollups of sensor readings: ``sensor_latest``, ``readings_hourly`` (contract A) and
``sensor_hours`` (migration 011).

Readers (layers, wall screen, indicators) never scan raw ``readings``. The load path
(``core.ingest.load``) calls ``stage_deltas`` inside the transaction that inserts readings:
it aggregates just that batch per (hour, kind, community) into ``rollup_deltas`` and keeps
each sensor's newest reading in ``latest_deltas``. ``refresh_rollups`` then merges the
staged deltas into ``readings_hourly`` (n and totals add up, min/max combine) at every
level and moves ``sensor_latest`` forward, deleting what it merged, in one transaction.
So a refresh costs in proportion to what arrived, not to the size of an hour or of
``readings``; the staged rows are merged exactly once (they are written and consumed in
the same transactions as the readings and the rollups).

``readings_hourly`` has one row per (hour, kind, jurisdiction) at EVERY level: a district's
row aggregates the readings of all sensors in its subtree (a sensor stands in a community;
its ancestors come from ``jurisdictions.path``). ``sensor_hours`` has one row per
(hour, sensor) that reported in that hour: distinct sensors per hour in any scope (the wall
screen's "sensors online yesterday"), staged in ``sensor_hour_deltas`` by the load path like
the other deltas. ``full=True`` (or ``since``) recomputes from raw readings — for bulk loads
that bypass the load path, like the demo build.

>>> stats = refresh_rollups(store)                    # doctest: +SKIP  incremental
>>> stats = refresh_rollups(store, full=True)         # doctest: +SKIP  rebuild everything
>>> stats.hours, stats.rows                           # doctest: +SKIP
(1, 4821)
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.store import Store

__all__ = ["RollupStats", "refresh_rollups", "stage_deltas", "stage_ordered"]

# one refresh at a time per store: two concurrent refreshes would write the same rows
_LOCKS: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class RollupStats:
    """What a refresh did: hours touched, hourly rows written, sensors whose latest reading
    moved, seconds taken, and whether it was a full rebuild."""

    hours: int
    rows: int
    sensors: int
    seconds: float
    full: bool


def _lock(store: Store) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(store, threading.Lock())


# aggregated per (hour, sensor) on integer keys first (also the sensor-hours rollup) ...
_PER_SENSOR = """
SELECT date_trunc('hour', r.ts) AS hour, r.sensor_id, count(*) AS n,
       sum(r.value) AS total, min(r.value) AS min_value, max(r.value) AS max_value,
       count(*) FILTER (WHERE r.value >= t.warn) AS warn_n,
       count(*) FILTER (WHERE r.value >= t.alarm) AS alarm_n{extra}
FROM {source} r
JOIN (SELECT s.id, k.warn, k.alarm FROM sensors s JOIN sensor_kinds k ON k.kind = s.kind) t
  ON t.id = r.sensor_id
WHERE {where}
GROUP BY 1, 2
"""

# ... then per community
_FROM_PER_SENSOR = """
SELECT p.hour, s.kind, s.jurisdiction_code AS community, sum(p.n)::BIGINT AS n,
       sum(p.total) AS total, min(p.min_value) AS min_value, max(p.max_value) AS max_value,
       sum(p.warn_n)::BIGINT AS warn_n, sum(p.alarm_n)::BIGINT AS alarm_n
FROM ({per_sensor}) p JOIN sensors s ON s.id = p.sensor_id
GROUP BY ALL
"""

# per-community partial aggregates rolled up to every ancestor by the community's path
_TO_EVERY_LEVEL = """
WITH per_community AS ({per_community}), ancestors AS (
    SELECT c.code AS community, a.code AS ancestor
    FROM jurisdictions c JOIN jurisdictions a ON starts_with(c.path, a.path)
    WHERE c.code IN (SELECT DISTINCT community FROM per_community)
)
SELECT p.hour, p.kind, a.ancestor AS jurisdiction_code, sum(p.n)::BIGINT AS n,
       sum(p.total) AS total, min(p.min_value) AS min_value, max(p.max_value) AS max_value,
       sum(p.warn_n)::BIGINT AS warn_n, sum(p.alarm_n)::BIGINT AS alarm_n
FROM per_community p JOIN ancestors a ON a.community = p.community
GROUP BY ALL
"""

_STATE = """
CASE WHEN v.value >= k.alarm THEN 'alarm' WHEN v.value >= k.warn THEN 'warning'
     ELSE 'normal' END
"""

# MERGE, not INSERT … ON CONFLICT: cluster mode runs the same SQL on DuckLake. A reading
# older than the one kept is filtered out in the source (no conditional WHEN clause).
_UPSERT_LATEST = f"""
MERGE INTO sensor_latest AS t
USING (
    SELECT v.sensor_id, v.ts, v.value, {_STATE} AS state
    FROM ({{latest}}) v
    JOIN sensors s ON s.id = v.sensor_id JOIN sensor_kinds k ON k.kind = s.kind
    LEFT JOIN sensor_latest o ON o.sensor_id = v.sensor_id
    WHERE o.ts IS NULL OR v.ts >= o.ts
) AS v ON t.sensor_id = v.sensor_id
WHEN MATCHED THEN UPDATE SET ts = v.ts, value = v.value, state = v.state
WHEN NOT MATCHED THEN INSERT VALUES (v.sensor_id, v.ts, v.value, v.state)
"""

_MARK_REFRESHED = """
MERGE INTO rollup_state AS t
USING (SELECT 'readings' AS name, now()::TIMESTAMP AS refreshed_at) AS s ON t.name = s.name
WHEN MATCHED THEN UPDATE SET refreshed_at = s.refreshed_at
WHEN NOT MATCHED THEN INSERT VALUES (s.name, s.refreshed_at)
"""


def stage_deltas(cur: duckdb.DuckDBPyConnection, relation: str) -> None:
    """Stage the rollup deltas of the NEW readings in ``relation`` (sensor_id, ts, value).
    Call it inside the transaction that inserts exactly those readings.

    One pass over the batch: its per-(hour, sensor) aggregate (a few thousand rows) also
    carries each sensor-hour's newest reading, and the three deltas are read from it."""
    per_sensor = _PER_SENSOR.format(
        source=relation, where="true",
        extra=", max(r.ts) AS last_ts, arg_max(r.value, r.ts) AS last_value")
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _stage_per_sensor AS {per_sensor}")
    _stage_from_per_sensor(cur)


def stage_ordered(cur: duckdb.DuckDBPyConnection, batch: pa.Table) -> bool:
    """``stage_deltas`` for an Arrow batch (sensor_id, ts µs, value) of NEW readings in
    time order, aggregated with numpy on dense (hour, sensor) slots: a feed's batch spans
    few hours, and this is several times cheaper than a scan joining every row to its
    sensor's thresholds. False, with nothing staged, when a sensor of the batch is unknown
    or has no kind, or the batch spans too many hours for dense slots."""
    if batch.num_rows == 0:
        return False
    kinds = cur.execute("SELECT s.id, k.warn, k.alarm FROM sensors s"
                        " JOIN sensor_kinds k ON k.kind = s.kind ORDER BY s.id").fetchnumpy()
    ids = np.asarray(kinds["id"])
    at = _positions(batch.column("sensor_id"), ids)
    if at is None:
        return False
    ts = batch.column("ts").cast(pa.int64()).to_numpy()
    hour = ts // _HOUR_US
    first, width = int(hour[0]), len(ids)
    slots = (int(hour[-1]) - first + 1) * width
    if slots > max(batch.num_rows, 1 << 16):
        return False
    key = (hour - first) * width + at
    value = batch.column("value").to_numpy()
    n = np.bincount(key, minlength=slots)
    used = np.flatnonzero(n)
    low, high = np.full(slots, np.inf), np.full(slots, -np.inf)
    np.minimum.at(low, key, value)
    np.maximum.at(high, key, value)
    last = np.full(slots, -1)
    np.maximum.at(last, key, np.arange(len(key)))   # the newest row: the batch is in time order
    last = last[used]

    def reaching(threshold: str) -> np.ndarray:    # a missing threshold is never reached
        limit = np.ma.filled(np.ma.asarray(kinds[threshold], dtype=float), np.inf)
        return np.bincount(key[value >= limit[at]], minlength=slots)[used].astype(np.int64)

    per = pa.table({
        "hour": pa.array((first + used // width) * _HOUR_US, pa.timestamp("us")),
        "sensor_id": pa.array(ids[used % width], pa.int32()), "n": n[used],
        "total": np.bincount(key, weights=value, minlength=slots)[used],
        "min_value": low[used], "max_value": high[used],
        "warn_n": reaching("warn"), "alarm_n": reaching("alarm"),
        "last_ts": pa.array(ts[last], pa.timestamp("us")), "last_value": value[last]})
    cur.register("_stage_arrow", per)
    try:
        cur.execute("CREATE OR REPLACE TEMP TABLE _stage_per_sensor AS SELECT * FROM _stage_arrow")
    finally:
        cur.unregister("_stage_arrow")
    _stage_from_per_sensor(cur)
    return True


def _positions(sensor: pa.ChunkedArray, ids: np.ndarray) -> np.ndarray | None:
    """Each row's position in ``ids`` (sorted sensor ids), or None when one is not there.
    Ids up to a few million (any real city) are looked up in a dense table, larger ones
    hashed.

    >>> _positions(pa.chunked_array([[7, 3, 7]]), np.array([3, 7])).tolist()
    [1, 0, 1]
    >>> _positions(pa.chunked_array([[7, 4]]), np.array([3, 7])) is None
    True
    """
    if len(ids) == 0:
        return None
    if ids[0] >= 0 and ids[-1] < 1 << 22:
        lo, hi = pc.min_max(sensor).values()
        if lo.as_py() < 0 or hi.as_py() > ids[-1]:
            return None
        table = np.full(int(ids[-1]) + 1, -1, dtype=np.int64)
        table[ids] = np.arange(len(ids))
        at = table[sensor.to_numpy()]
        return None if (at < 0).any() else at
    at = pc.index_in(sensor, value_set=pa.array(ids).cast(sensor.type))
    return None if at.null_count else at.to_numpy()


def _stage_from_per_sensor(cur: duckdb.DuckDBPyConnection) -> None:
    """The three deltas from ``_stage_per_sensor`` (one row per hour and sensor)."""
    try:
        cur.execute(f"INSERT INTO rollup_deltas "
                    f"{_FROM_PER_SENSOR.format(per_sensor='SELECT * FROM _stage_per_sensor')}")
        cur.execute("INSERT INTO latest_deltas SELECT sensor_id, max(last_ts),"
                    " arg_max(last_value, last_ts) FROM _stage_per_sensor GROUP BY sensor_id")
        cur.execute("INSERT INTO sensor_hour_deltas SELECT hour, sensor_id FROM _stage_per_sensor")
    finally:
        cur.execute("DROP TABLE IF EXISTS _stage_per_sensor")


def refresh_rollups(store: Store, since: datetime | None = None, *, full: bool = False,
                    cursor: duckdb.DuckDBPyConnection | None = None) -> RollupStats:
    """Bring ``sensor_latest`` and ``readings_hourly`` up to date, in one transaction.

    Incremental by default: merges what the load path staged since the last refresh.
    ``since`` also recomputes every hour from ``since`` on from raw readings; ``full=True``
    — or a store whose rollups were never built — rebuilds everything (use it after a bulk
    load that bypassed the load path). With ``cursor`` the work joins the caller's open
    transaction.

    >>> refresh_rollups(store).hours        # doctest: +SKIP
    1
    """
    started = time.perf_counter()
    with _lock(store):
        if cursor is not None:
            hours, rows, sensors, was_full = _refresh(cursor, since, full)
        else:
            with store.transaction() as cur:
                hours, rows, sensors, was_full = _refresh(cur, since, full)
    return RollupStats(hours, rows, sensors, time.perf_counter() - started, was_full)


def _refresh(cur: duckdb.DuckDBPyConnection, since: datetime | None,
             full: bool) -> tuple[int, int, int, bool]:
    never = cur.execute("SELECT count(*) FROM rollup_state WHERE name = 'readings'"
                        ).fetchone()[0] == 0
    full = full or never
    if full:
        for table in ("rollup_deltas", "latest_deltas", "sensor_hour_deltas", "readings_hourly",
                      "sensor_latest", "sensor_hours"):
            cur.execute(f"DELETE FROM {table}")
        _from_raw(cur, "true", {})
        cur.execute(_UPSERT_LATEST.format(
            latest="SELECT sensor_id, max(ts) AS ts, arg_max(value, ts) AS value"
                   " FROM readings GROUP BY sensor_id"))
        hours = cur.execute("SELECT count(DISTINCT hour) FROM readings_hourly").fetchone()[0]
        rows = cur.execute("SELECT count(*) FROM readings_hourly").fetchone()[0]
        sensors = cur.execute("SELECT count(*) FROM sensor_latest").fetchone()[0]
    else:
        hours, rows, sensors = _merge(cur)
        if since is not None:
            h, r = _recompute_since(cur, since)
            hours, rows = hours + h, rows + r
    cur.execute(_MARK_REFRESHED)
    return hours, rows, sensors, full


def _from_raw(cur: duckdb.DuckDBPyConnection, where: str, params: dict) -> int:
    """Insert the hourly rows and the sensor-hours of the raw readings matching ``where``
    (one pass over ``readings``: the per-sensor-hour aggregate serves both); hourly rows
    written."""
    per_sensor = _PER_SENSOR.format(source="readings", where=where, extra="")
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _per_sensor AS {per_sensor}", params)
    try:
        per = _FROM_PER_SENSOR.format(per_sensor="SELECT * FROM _per_sensor")
        rows = cur.execute(f"INSERT INTO readings_hourly"
                           f" {_TO_EVERY_LEVEL.format(per_community=per)}").fetchone()[0]
        cur.execute("INSERT INTO sensor_hours SELECT hour, sensor_id FROM _per_sensor"
                    " ORDER BY hour, sensor_id")
    finally:
        cur.execute("DROP TABLE IF EXISTS _per_sensor")
    return rows


def _merge(cur: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """Merge the staged deltas (only rows visible now; later appends wait for next time)."""
    cur.execute("CREATE OR REPLACE TEMP TABLE _rollup_delta AS SELECT * FROM rollup_deltas")
    cur.execute("CREATE OR REPLACE TEMP TABLE _latest_delta AS SELECT * FROM latest_deltas")
    cur.execute("CREATE OR REPLACE TEMP TABLE _hours_delta AS"
                " SELECT DISTINCT hour, sensor_id FROM sensor_hour_deltas")
    cur.execute("DELETE FROM rollup_deltas")
    cur.execute("DELETE FROM latest_deltas")
    cur.execute("DELETE FROM sensor_hour_deltas")
    try:
        cur.execute(f"""
            CREATE OR REPLACE TEMP TABLE _rollup_merged AS
            WITH delta AS ({_TO_EVERY_LEVEL.format(per_community='SELECT * FROM _rollup_delta')})
            SELECT hour, kind, jurisdiction_code, sum(n)::BIGINT AS n, sum(total) AS total,
                   min(min_value) AS min_value, max(max_value) AS max_value,
                   sum(warn_n)::BIGINT AS warn_n, sum(alarm_n)::BIGINT AS alarm_n
            FROM (SELECT * FROM delta
                  UNION ALL
                  SELECT h.* FROM readings_hourly h
                  WHERE h.hour IN (SELECT DISTINCT hour FROM _rollup_delta)
                    AND (h.hour, h.kind, h.jurisdiction_code) IN
                        (SELECT hour, kind, jurisdiction_code FROM delta))
            GROUP BY ALL""")
        cur.execute("""
            DELETE FROM readings_hourly
            WHERE hour IN (SELECT DISTINCT hour FROM _rollup_merged)
              AND (hour, kind, jurisdiction_code) IN
                  (SELECT hour, kind, jurisdiction_code FROM _rollup_merged)""")
        rows = cur.execute("INSERT INTO readings_hourly SELECT * FROM _rollup_merged"
                           ).fetchone()[0]
        hours = cur.execute("SELECT count(DISTINCT hour) FROM _rollup_merged").fetchone()[0]
        moved = cur.execute(_UPSERT_LATEST.format(
            latest="SELECT sensor_id, max(ts) AS ts, arg_max(value, ts) AS value"
                   " FROM _latest_delta GROUP BY sensor_id")).fetchone()[0]
        _merge_sensor_hours(cur)
    finally:
        for temp in ("_rollup_delta", "_latest_delta", "_rollup_merged", "_hours_delta"):
            cur.execute(f"DROP TABLE IF EXISTS {temp}")
    return hours, rows, moved


def _merge_sensor_hours(cur: duckdb.DuckDBPyConnection) -> None:
    """Add the staged (hour, sensor) pairs not yet in ``sensor_hours`` (a set: a sensor
    reporting many times in an hour, over many loads, is one row). Only the hours of the
    delta are compared; the table grows in time order, so the rest is skipped unread."""
    first = cur.execute("SELECT min(hour) FROM _hours_delta").fetchone()[0]
    if first is None:
        return
    cur.execute("""
        INSERT INTO sensor_hours
        SELECT d.hour, d.sensor_id FROM _hours_delta d
        WHERE NOT EXISTS (SELECT 1 FROM sensor_hours h
                          WHERE h.hour >= $first AND h.hour = d.hour
                            AND h.sensor_id = d.sensor_id)
        ORDER BY d.hour, d.sensor_id""", {"first": first})


def _recompute_since(cur: duckdb.DuckDBPyConnection, since: datetime) -> tuple[int, int]:
    """Recompute every hour from ``since`` on from raw readings."""
    start = cur.execute("SELECT date_trunc('hour', ?::TIMESTAMP)", [since]).fetchone()[0]
    cur.execute("DELETE FROM readings_hourly WHERE hour >= ?", [start])
    cur.execute("DELETE FROM sensor_hours WHERE hour >= ?", [start])
    rows = _from_raw(cur, "r.ts >= $start", {"start": start})
    hours = cur.execute("SELECT count(DISTINCT hour) FROM readings_hourly WHERE hour >= ?",
                        [start]).fetchone()[0]
    return hours, rows
