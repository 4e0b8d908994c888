"""The scheduler in the serving process and the live simulator it runs."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from core.store import Store
from pipelines import simulator
from pipelines.demo import build_demo_city
from pipelines.scheduler import JOB_DEFAULTS, JOBS, start_scheduler


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> tuple[Store, Settings]:
    settings = load_settings(data_dir=tmp_path_factory.mktemp("live"), demo_districts=2,
                             demo_streets=3, demo_communities=6, demo_sensors=60, demo_days=1,
                             demo_incidents=20)
    store = Store.open(settings.database_path)
    build_demo_city(store, settings, progress=False)
    yield store, settings
    store.close()


def _newest(store: Store):
    return store.query_one("SELECT max(ts) FROM readings")[0]


def test_a_tick_adds_one_reading_per_online_sensor(live) -> None:
    store, settings = live
    newest = _newest(store)
    last = dict(store.query("SELECT sensor_id, max(ts) FROM readings GROUP BY 1"))
    online = {sid for sid, ts in last.items() if ts >= newest - simulator.OFFLINE_AFTER}
    assert 0 < len(online) < len(last)              # the demo has a sensor that went silent
    now = newest + timedelta(seconds=1)
    written = simulator.tick(store, settings, now=now)
    assert written == len(online)
    rows = store.query("SELECT sensor_id, count(*) FROM readings WHERE ts = ? GROUP BY 1", [now])
    assert {sid for sid, _ in rows} == online and {n for _, n in rows} == {1}
    assert simulator.tick(store, settings, now=now) == 0      # never two readings at one time
    # the live value carries on the sensor's pattern: no jump from its last history reading
    jumps = dict(store.query("""
        SELECT s.kind, max(abs(n.value - p.value)) FROM readings n
        JOIN readings p ON p.sensor_id = n.sensor_id AND p.ts = ?
        JOIN sensors s ON s.id = n.sensor_id
        WHERE n.ts = ? GROUP BY 1""", [newest, now]))
    limits = {"water_level": 0.15, "noise": 8.0, "manhole_tilt": 2.0, "pm25": 25.0}
    assert set(limits) <= set(jumps), jumps
    assert all(jumps[kind] < limit for kind, limit in limits.items()), jumps


def test_the_simulator_leaves_a_real_city_alone(tiny_city: Store) -> None:
    before = tiny_city.query_one("SELECT count(*) FROM readings")[0]
    assert simulator.tick(tiny_city, load_settings()) == 0
    assert tiny_city.query_one("SELECT count(*) FROM readings")[0] == before


def test_scheduler_feeds_readings_until_shut_down(live) -> None:
    store, settings = live
    assert JOBS[0].id == "simulator" and JOBS[0].seconds == simulator.SIMULATOR_SECONDS
    before = store.query_one("SELECT count(*) FROM readings")[0]
    start = _newest(store)
    scheduler = start_scheduler(store, settings, jobs=[replace(JOBS[0], seconds=0.3)])
    try:
        job = scheduler.get_job("simulator")
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (
            JOB_DEFAULTS["coalesce"], JOB_DEFAULTS["max_instances"],
            JOB_DEFAULTS["misfire_grace_time"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ticks = store.query_one("SELECT count(DISTINCT ts) FROM readings WHERE ts > ?",
                                    [start])[0]
            if ticks >= 2:
                break
            time.sleep(0.1)
        assert ticks >= 2
    finally:
        scheduler.shutdown()
    assert not scheduler.running
    assert store.query_one("SELECT count(*) FROM readings")[0] > before


def test_lake_maintenance_waits_after_the_scheduler_starts(tmp_path: Path) -> None:
    """A new leader starts with the web processes, when users log in: maintenance (which
    fails other processes' reads now and then on DuckLake 1.5.5) runs first 5 minutes later;
    the other jobs run at once."""
    from datetime import UTC, datetime, timedelta

    store = Store.open(tmp_path / "city.duckdb")
    settings = load_settings(data_dir=tmp_path)
    maintenance = next(j for j in JOBS if j.id == "lake_maintenance")
    assert maintenance.first_after == 300.0
    assert all(j.first_after == 0.0 for j in JOBS if j.id != "lake_maintenance")
    t0 = datetime.now(UTC)
    scheduler = start_scheduler(store, settings, jobs=[maintenance])
    try:
        first = scheduler.get_job("lake_maintenance").next_run_time
    finally:
        scheduler.shutdown()
        store.close()
    assert t0 + timedelta(seconds=299) <= first <= datetime.now(UTC) + timedelta(seconds=300)


def test_scheduler_off_by_setting(live, tmp_path: Path) -> None:
    store, _ = live
    assert start_scheduler(store, load_settings(data_dir=tmp_path, scheduler_enabled=False)) is None


def test_scheduled_runs_are_recorded_and_feed_the_rollups(live) -> None:
    store, settings = live
    runs_before = store.query_one("SELECT count(*) FROM ingest_runs WHERE status = 'success'"
                                  " AND source = 'simulator'")[0]
    newest = store.query_one("SELECT max(ts) FROM sensor_latest")[0]
    scheduler = start_scheduler(store, settings, jobs=[replace(JOBS[0], seconds=0.3)])
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            runs = store.query_one("SELECT count(*) FROM ingest_runs WHERE status = 'success'"
                                   " AND source = 'simulator'")[0]
            moved = store.query_one("SELECT max(ts) FROM sensor_latest")[0] > newest
            if runs >= runs_before + 2 and moved:
                break
            time.sleep(0.1)
    finally:
        scheduler.shutdown()
    assert runs >= runs_before + 2 and moved
    # ticks within one second write nothing (one reading per sensor and second)
    row = store.query("SELECT rows_in, rows_loaded, rows_rejected, trigger FROM ingest_runs"
                      " WHERE source = 'simulator' AND status = 'success'"
                      " AND trigger = 'schedule' ORDER BY rows_loaded DESC LIMIT 1")[0]
    assert row[0] == row[1] > 0 and row[2] == 0 and row[3] == "schedule"
    # the simulator's readings moved sensor_latest (above) and the hourly rollup
    latest_hour = store.query_one("SELECT max(ts) FROM readings")[0].replace(
        minute=0, second=0, microsecond=0)
    n_rollup = store.query_one("SELECT sum(n) FROM readings_hourly h JOIN jurisdictions j"
                               " ON j.code = h.jurisdiction_code WHERE j.level = 'city'"
                               " AND hour = ?", [latest_hour])[0]
    n_raw = store.query_one("SELECT count(*) FROM readings WHERE ts >= ?", [latest_hour])[0]
    assert n_rollup == n_raw
    assert store.query("SELECT name, kind FROM pipeline_sources") == [("simulator", "simulator")]
    fresh = store.query_one("SELECT stale, last_status FROM source_freshness"
                            " WHERE name = 'simulator'")
    assert fresh == (False, "success")


def test_a_missed_run_is_recorded_by_the_listener(live) -> None:
    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

    from pipelines.scheduler import _record_skipped

    store, _ = live
    _record_skipped(store, JobExecutionEvent(EVENT_JOB_MISSED, "alerts", None, None))
    assert store.query("SELECT source, status, error FROM ingest_runs WHERE status = 'missed'"
                       " AND source = 'alerts'") == [("alerts", "missed",
                              "missed its start by more than the grace time")]
