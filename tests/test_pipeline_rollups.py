"""Rollups: sensor_latest, sensor_status and hourly aggregates at every jurisdiction level,
kept up to date incrementally and equal to a full rebuild."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from test_pipeline_support import build_sensor_city

from core.ingest import READINGS, load
from core.rollups import refresh_rollups, stage_deltas, stage_ordered
from core.store import Store

T0 = datetime(2026, 11, 28, 8, 0)


@pytest.fixture
def city(store: Store) -> Store:
    return build_sensor_city(store)


def _readings(start: datetime, minutes: int, step_s: int = 300, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    times = [start + timedelta(seconds=s) for s in range(0, minutes * 60, step_s)]
    ids, ts, vals = [], [], []
    for t in times:
        for sid in (1, 2, 3, 4):
            ids.append(sid)
            ts.append(t)
            vals.append(float(rng.uniform(3, 6)) if sid <= 2 else float(rng.uniform(40, 130)))
    return pa.table({"sensor_id": pa.array(ids, pa.int32()), "ts": pa.array(ts),
                     "value": pa.array(vals)})


def _hourly(store: Store) -> list[tuple]:
    return store.query("SELECT hour, kind, jurisdiction_code, n, round(total, 6),"
                       " min_value, max_value, warn_n, alarm_n FROM readings_hourly"
                       " ORDER BY ALL")


def test_hourly_rows_aggregate_every_level_from_raw_readings(city: Store) -> None:
    load(city, READINGS, _readings(T0, 120), run_id=1, source="t")
    stats = refresh_rollups(city)
    assert stats.full and stats.hours == 2
    # every level: 4 communities, 4 streets, 2 districts, 1 city (per kind where sensors are)
    levels = dict(city.query("""
        SELECT j.level, count(DISTINCT h.jurisdiction_code) FROM readings_hourly h
        JOIN jurisdictions j ON j.code = h.jurisdiction_code GROUP BY 1"""))
    assert levels == {"community": 4, "street": 4, "district": 2, "city": 1}
    expected = city.query("""
        SELECT date_trunc('hour', r.ts), s.kind, count(*), round(sum(r.value), 6),
               min(r.value), max(r.value), count(*) FILTER (WHERE r.value >= k.warn),
               count(*) FILTER (WHERE r.value >= k.alarm)
        FROM readings r JOIN sensors s ON s.id = r.sensor_id
        JOIN sensor_kinds k ON k.kind = s.kind GROUP BY ALL ORDER BY ALL""")
    city_rows = city.query("""SELECT hour, kind, n, round(total, 6), min_value, max_value,
        warn_n, alarm_n FROM readings_hourly WHERE jurisdiction_code = 'C' ORDER BY ALL""")
    assert city_rows == expected
    d1 = city.query("SELECT sum(n) FROM readings_hourly WHERE jurisdiction_code = 'D1'")[0][0]
    assert d1 == city.query("SELECT count(*) FROM readings WHERE sensor_id IN (1, 2)")[0][0]
    assert city.query("SELECT count(*) FROM (SELECT hour, kind, jurisdiction_code"
                      " FROM readings_hourly GROUP BY ALL HAVING count(*) > 1)")[0][0] == 0


def test_incremental_refresh_equals_a_full_rebuild(city: Store) -> None:
    load(city, READINGS, _readings(T0, 120), run_id=1, source="t")
    refresh_rollups(city)
    # one more hour, plus a late reading for the first hour
    load(city, READINGS, _readings(T0 + timedelta(hours=2), 60, seed=2), run_id=2, source="t")
    late = pa.table({"sensor_id": pa.array([1], pa.int32()),
                     "ts": pa.array([T0 + timedelta(minutes=7)]), "value": pa.array([9.9])})
    load(city, READINGS, late, run_id=3, source="t")
    stats = refresh_rollups(city)
    assert not stats.full and stats.hours == 2          # hour 8 (late) and hour 10
    assert city.query_one("SELECT count(*) FROM rollup_deltas")[0] == 0
    incremental = _hourly(city)
    assert refresh_rollups(city).hours == 0              # nothing new: nothing to do
    assert _hourly(city) == incremental
    # re-loading the same readings adds nothing, not even to the rollups
    load(city, READINGS, _readings(T0, 120), run_id=4, source="t")
    refresh_rollups(city)
    assert _hourly(city) == incremental
    refresh_rollups(city, full=True)
    assert _hourly(city) == incremental
    assert city.query_one("SELECT max_value, alarm_n FROM readings_hourly WHERE hour = ?"
                          " AND jurisdiction_code = 'D1S1C1'", [T0])[0] == 9.9


def test_since_recomputes_from_raw_readings(city: Store) -> None:
    load(city, READINGS, _readings(T0, 120), run_id=1, source="t")
    refresh_rollups(city)
    expected = _hourly(city)
    city.query("DELETE FROM readings_hourly WHERE hour >= ?", [T0 + timedelta(hours=1)])
    stats = refresh_rollups(city, since=T0 + timedelta(minutes=90))
    assert stats.hours == 1 and _hourly(city) == expected


def test_sensor_latest_and_status_follow_new_readings(city: Store) -> None:
    now = datetime.utcnow().replace(microsecond=0)
    table = pa.table({"sensor_id": pa.array([1, 2, 3, 1], pa.int32()),
                      "ts": pa.array([now - timedelta(minutes=5), now - timedelta(minutes=2),
                                      now - timedelta(hours=2), now - timedelta(minutes=1)]),
                      "value": pa.array([5.2, 4.6, 30.0, 4.0])})
    load(city, READINGS, table, run_id=1, source="t")
    refresh_rollups(city)
    status = {r[0]: r[1:] for r in city.query(
        "SELECT sensor_id, value, state FROM sensor_status ORDER BY 1")}
    assert status == {1: (4.0, "normal"), 2: (4.6, "warning"), 3: (30.0, "offline"),
                      4: (None, "offline")}
    # an older reading arriving late does not move sensor_latest back
    old = pa.table({"sensor_id": pa.array([2], pa.int32()),
                    "ts": pa.array([now - timedelta(minutes=50)]), "value": pa.array([5.5])})
    load(city, READINGS, old, run_id=2, source="t")
    refresh_rollups(city)
    assert city.query("SELECT value, state FROM sensor_latest WHERE sensor_id = 2") == [
        (4.6, "warning")]
    newer = pa.table({"sensor_id": pa.array([2], pa.int32()), "ts": pa.array([now]),
                      "value": pa.array([5.5])})
    load(city, READINGS, newer, run_id=3, source="t")
    refresh_rollups(city)
    assert city.query("SELECT value, state FROM sensor_latest WHERE sensor_id = 2") == [
        (5.5, "alarm")]


def _sensor_hours(store: Store) -> list[tuple]:
    return store.query("SELECT hour, sensor_id FROM sensor_hours ORDER BY ALL")


def test_sensor_hours_is_the_set_of_sensors_reporting_per_hour(city: Store) -> None:
    def from_raw() -> list[tuple]:
        return city.query("SELECT DISTINCT date_trunc('hour', ts), sensor_id FROM readings"
                          " ORDER BY ALL")

    load(city, READINGS, _readings(T0, 120), run_id=1, source="t")
    refresh_rollups(city)                                     # the first refresh is full
    assert _sensor_hours(city) == from_raw() and len(from_raw()) == 8
    # incremental: a new hour for sensor 1 only, a late reading in an hour already kept, and
    # the same readings again: each (hour, sensor) stays one row
    later = pa.table({"sensor_id": pa.array([1, 1, 3], pa.int32()),
                      "ts": pa.array([T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=5),
                                      T0 + timedelta(minutes=1)]),
                      "value": pa.array([4.0, 4.1, 50.0])})
    load(city, READINGS, later, run_id=2, source="t")
    load(city, READINGS, _readings(T0, 120), run_id=3, source="t")
    refresh_rollups(city)
    assert city.query_one("SELECT count(*) FROM sensor_hour_deltas")[0] == 0
    assert _sensor_hours(city) == from_raw() and len(from_raw()) == 9
    incremental = _sensor_hours(city)
    refresh_rollups(city, full=True)
    assert _sensor_hours(city) == incremental
    city.query("DELETE FROM sensor_hours WHERE hour >= ?", [T0 + timedelta(hours=1)])
    refresh_rollups(city, since=T0 + timedelta(minutes=90))
    assert _sensor_hours(city) == incremental


def _stage_both_ways(store: Store, batch: pa.Table) -> tuple[bool, tuple, tuple]:
    """Stage ``batch`` with the numpy path and with the SQL path, each in a transaction that
    is rolled back; the deltas each left."""
    cur = store.cursor()
    cur.execute("BEGIN")
    staged = stage_ordered(cur, batch)
    ordered = _deltas_in(cur)
    cur.execute("ROLLBACK")
    cur.execute("BEGIN")
    cur.register("_batch", batch)
    stage_deltas(cur, "_batch")
    by_sql = _deltas_in(cur)
    cur.execute("ROLLBACK")
    return staged, ordered, by_sql


def _deltas_in(cur) -> tuple:
    return tuple(cur.execute(sql).fetchall() for sql in (
        "SELECT hour, kind, community, n, round(total, 6), min_value, max_value, warn_n,"
        " alarm_n FROM rollup_deltas ORDER BY ALL",
        "SELECT * FROM latest_deltas ORDER BY ALL",
        "SELECT * FROM sensor_hour_deltas ORDER BY ALL"))


def test_ordered_batches_stage_the_same_deltas_as_the_sql_path(city: Store) -> None:
    # three hours, values crossing both thresholds; pm25 has no alarm threshold here
    city.query("UPDATE sensor_kinds SET alarm = NULL WHERE kind = 'pm25'")
    batch = _readings(T0 + timedelta(minutes=50), 150, step_s=60, seed=3)
    batch = batch.set_column(1, "ts", batch.column("ts").cast(pa.timestamp("us")))
    staged, ordered, by_sql = _stage_both_ways(city, batch)
    assert staged and by_sql[0], "nothing staged"
    assert ordered == by_sql
    assert sum(r[3] for r in by_sql[0]) == batch.num_rows
    assert {r[8] for r in by_sql[0] if r[1] == "pm25"} == {0}     # no threshold, never reached
    assert any(r[7] for r in by_sql[0] if r[1] == "pm25")          # warn is reached
    # a sensor whose kind is not declared: the numpy path declines and stages nothing
    city.query("UPDATE sensors SET kind = 'noise' WHERE id = 4")
    staged, ordered, _ = _stage_both_ways(city, batch)
    assert not staged and ordered == ([], [], [])


def test_batches_out_of_time_order_and_duplicates_take_the_checked_paths(city: Store) -> None:
    batch = _readings(T0, 60)
    reversed_batch = batch.take(pa.array(range(batch.num_rows - 1, -1, -1)))
    assert load(city, READINGS, reversed_batch, run_id=1, source="t").loaded == batch.num_rows
    refresh_rollups(city)
    incremental = _hourly(city)
    assert incremental == _hourly_from_raw(city)
    twice = pa.concat_tables([_readings(T0 + timedelta(hours=1), 10)] * 2)
    stats = load(city, READINGS, twice, run_id=2, source="t")
    assert stats.loaded == twice.num_rows // 2
    refresh_rollups(city)
    incremental = _hourly(city)
    assert incremental == _hourly_from_raw(city)


def _hourly_from_raw(store: Store) -> list[tuple]:
    refresh_rollups(store, full=True)
    return _hourly(store)


@pytest.mark.parametrize("ids", [[3, 7, 12], [3, 7, 1 << 30]])   # dense table, then hashed
def test_row_positions_of_sensor_ids(ids: list[int]) -> None:
    from core.rollups import _positions

    known = np.array(ids)
    assert _positions(pa.chunked_array([[ids[2], 3, ids[2], 7]]), known).tolist() == [2, 0, 2, 1]
    for unknown in ([4], [-1], [ids[2] + 1], [1 << 40]):
        assert _positions(pa.chunked_array([unknown], pa.int64()), known) is None
