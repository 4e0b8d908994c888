"""The demo city generator: sizes, exact tiling, sensors in place, determinism, consistent
incident histories, demo logins, CLI behaviour and all-or-nothing builds."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core.roles import Role
from core.settings import Settings, load_settings
from core.store import Store
from core.users import authenticate
from pipelines.cli import build_demo
from pipelines.demo import (
    DEMO_PASSWORD,
    DEMO_USERS,
    DemoCityExists,
    build_demo_city,
    incidents,
)
from pipelines.demo.catalog import categories_frame, departments_frame
from pipelines.demo.geography import make_geography
from pipelines.demo.signals import signal

NOW = datetime(2026, 11, 28, 10, 7)
SMALL_SEED = load_settings().demo_seed
SMALL = {"demo_districts": 8, "demo_streets": 60, "demo_communities": 400,
         "demo_sensors": 300, "demo_days": 2, "demo_incidents": 2000}


def small_settings(data_dir: Path, **extra) -> Settings:
    return load_settings(data_dir=data_dir, **{**SMALL, **extra})


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> tuple[Store, Settings]:
    settings = small_settings(tmp_path_factory.mktemp("demo"))
    store = Store.open(settings.database_path)
    build_demo_city(store, settings, progress=False, now=NOW)
    yield store, settings
    store.close()


def test_sizes_reach_the_settings(demo) -> None:
    store, s = demo
    levels = dict(store.query("SELECT level, count(*) FROM jurisdictions GROUP BY level"))
    assert levels == {"city": 1, "district": s.demo_districts, "street": s.demo_streets,
                      "community": s.demo_communities}
    count = {t: store.query_one(f"SELECT count(*) FROM {t}")[0] for t in (
        "sensors", "incidents", "readings", "departments", "incident_categories", "sensor_kinds")}
    assert count["sensors"] == s.demo_sensors
    assert count["incidents"] == s.demo_incidents
    steps = s.demo_days * 24 * 60 // s.demo_reading_minutes
    assert 0.95 * steps * s.demo_sensors < count["readings"] < steps * s.demo_sensors
    assert count["departments"] >= 12 + 3 + s.demo_districts
    assert count["incident_categories"] >= 12 and count["sensor_kinds"] >= 6
    pops = store.query("SELECT min(population), max(population) FROM jurisdictions"
                       " WHERE level = 'community'")[0]
    assert pops[0] >= 3000 and pops[1] <= 15000


def test_codes_are_hierarchical_and_names_unique(demo) -> None:
    store, _ = demo
    bad = store.query("SELECT c.code FROM jurisdictions c JOIN jurisdictions p"
                      " ON p.code = c.parent_code WHERE NOT starts_with(c.code, p.code)"
                      " OR length(c.code) <> length(p.code) + 3")
    assert bad == []
    dup = store.query("SELECT name_zh FROM jurisdictions GROUP BY 1 HAVING count(*) > 1"
                      " UNION ALL SELECT name_en FROM jurisdictions GROUP BY 1 HAVING count(*) > 1")
    assert dup == []


def test_children_tile_their_parent_without_gap_or_overlap(demo) -> None:
    store, _ = demo
    gaps = dict(store.query("""
        WITH kids AS (SELECT parent_code, ST_Union_Agg(geom) AS u FROM jurisdictions
                      WHERE parent_code IS NOT NULL GROUP BY parent_code)
        SELECT p.level, max(ST_Area(ST_SymDifference(k.u, p.geom)) / ST_Area(p.geom))
        FROM kids k JOIN jurisdictions p ON p.code = k.parent_code GROUP BY p.level"""))
    overlaps = dict(store.query("""
        SELECT p.level, max(o.area / ST_Area(p.geom)) FROM (
            SELECT a.parent_code, sum(ST_Area(ST_Intersection(a.geom, b.geom))) AS area
            FROM jurisdictions a JOIN jurisdictions b ON a.parent_code = b.parent_code
             AND a.code < b.code AND ST_Intersects(a.geom, b.geom) GROUP BY 1
        ) o JOIN jurisdictions p ON p.code = o.parent_code GROUP BY 1"""))
    assert set(gaps) == {"city", "district", "street"}
    assert max(gaps.values()) < 1e-9, gaps
    assert max(overlaps.values()) < 1e-9, overlaps
    assert store.query_one("SELECT bool_and(ST_IsValid(geom)) FROM jurisdictions")[0]


@pytest.mark.parametrize("table", ["sensors", "incidents"])
def test_every_point_lies_in_exactly_its_own_community(demo, table: str) -> None:
    store, _ = demo
    rows = store.query(f"""
        SELECT t.id, t.jurisdiction_code, count(j.code), any_value(j.code)
        FROM {table} t LEFT JOIN jurisdictions j
          ON j.level = 'community' AND ST_Contains(j.geom, ST_Point(t.lon, t.lat))
        GROUP BY ALL""")
    assert len(rows) == store.query_one(f"SELECT count(*) FROM {table}")[0]
    wrong = [r for r in rows if r[2] != 1 or r[3] != r[1]]
    assert wrong == []


def _checksum(store: Store) -> str:
    juris = store.query("SELECT code, name_zh, population, md5(ST_AsHEXWKB(geom)) FROM"
                        " jurisdictions ORDER BY code")
    readings = store.query("SELECT sensor_id, ts, value FROM readings WHERE sensor_id % 37 = 1"
                           " ORDER BY sensor_id, ts")
    incidents_ = store.query("SELECT tracking_code, status, lon FROM incidents ORDER BY id")
    return hashlib.sha256(repr((juris, readings, incidents_)).encode()).hexdigest()


def test_same_seed_same_city_other_seed_other_city(demo, tmp_path: Path) -> None:
    store, _ = demo
    again = Store.open(tmp_path / "again.duckdb")
    build_demo_city(again, small_settings(tmp_path), progress=False, now=NOW)
    assert _checksum(again) == _checksum(store)
    other = small_settings(tmp_path, demo_seed=7)
    a = make_geography(np.random.default_rng(other.demo_seed), other).jurisdictions
    b = make_geography(np.random.default_rng(SMALL_SEED), other).jurisdictions
    assert not a.geometry.geom_equals_exact(b.geometry, 1e-9).all()
    ids, keys, t = np.arange(1, 50), np.zeros(49, int), np.arange(0, 86400, 900.0)
    assert not np.allclose(signal("pm25", ids, keys, t, seed=7, tz_hours=8),
                           signal("pm25", ids, keys, t, seed=SMALL_SEED, tz_hours=8))


def test_readings_are_ordered_unique_and_cyclic(demo) -> None:
    store, s = demo
    out_of_order = store.query_one("SELECT count(*) FROM (SELECT ts < lag(ts) OVER"
                                   " (ORDER BY rowid) AS back FROM readings) WHERE back")[0]
    assert out_of_order == 0
    assert store.query_one("SELECT count(*) - count(DISTINCT (sensor_id, ts)) FROM readings")[0] == 0
    end = store.query_one("SELECT max(ts) FROM readings")[0]
    assert end == datetime(2026, 11, 28, 10, 0)
    # traffic at the local (UTC+8) morning rush beats the small hours
    rush, night = store.query_one("""
        SELECT avg(value) FILTER (WHERE hour(ts + INTERVAL 8 HOUR) = 8),
               avg(value) FILTER (WHERE hour(ts + INTERVAL 8 HOUR) = 3)
        FROM readings r JOIN sensors s ON s.id = r.sensor_id WHERE s.kind = 'traffic_flow'""")
    assert rush > 3 * night
    dead = store.query_one("SELECT count(*) FROM (SELECT max(ts) AS last FROM readings"
                           " GROUP BY sensor_id) WHERE last < ? - INTERVAL 1 HOUR", [end])[0]
    assert dead >= 1
    assert store.query_one("SELECT min(value) FROM readings")[0] >= 0


def test_history_has_pollution_episodes_and_rain() -> None:
    t = np.arange(0, 30 * 86400, 900.0) + 1.79e9
    ids, districts = np.arange(1, 41), np.repeat(np.arange(8), 5)
    pm = signal("pm25", ids, districts, t, seed=SMALL_SEED, tz_hours=8)
    ratio = pm / np.median(pm, axis=0)
    assert (ratio > 2.2).any()                       # some district had an episode …
    assert (ratio > 2.2).mean() < 0.1                # … but only now and then
    level = signal("water_level", ids, districts, t, seed=SMALL_SEED, tz_hours=8)
    rise = level - np.percentile(level, 10, axis=0)
    assert rise.max() > 0.8 and np.median(rise) < 0.4


def test_incident_events_agree_with_incidents(demo) -> None:
    store, _ = demo
    problems = store.query("""
        WITH e AS (SELECT *, lag(to_status) OVER w AS prev_status, lag(ts) OVER w AS prev_ts,
                          row_number() OVER w AS n, count(*) OVER (PARTITION BY incident_id) AS m
                   FROM incident_events WINDOW w AS (PARTITION BY incident_id ORDER BY seq))
        SELECT 'order', count(*) FROM e WHERE seq <> n OR ts <= prev_ts
               OR from_status IS DISTINCT FROM prev_status
        UNION ALL SELECT 'first', count(*) FROM e JOIN incidents i ON i.id = e.incident_id
               WHERE e.seq = 1 AND (e.action <> 'report' OR e.ts <> i.reported_at)
        UNION ALL SELECT 'last', count(*) FROM e JOIN incidents i ON i.id = e.incident_id
               WHERE e.n = e.m AND e.to_status <> i.status
        UNION ALL SELECT 'claim', count(*) FROM incidents i WHERE claimed_at IS DISTINCT FROM
               (SELECT max(ts) FROM incident_events WHERE incident_id = i.id AND action = 'claim')
        UNION ALL SELECT 'resolve', count(*) FROM incidents i WHERE resolved_at IS DISTINCT FROM
               (SELECT max(ts) FROM incident_events WHERE incident_id = i.id AND action = 'resolve'
                AND i.status IN ('resolved', 'verified', 'closed'))
        UNION ALL SELECT 'close', count(*) FROM incidents i WHERE closed_at IS DISTINCT FROM
               (SELECT max(ts) FROM incident_events WHERE incident_id = i.id AND action = 'close'
                AND i.status = 'closed')
        UNION ALL SELECT 'rating', count(*) FROM incidents i WHERE (rating IS NULL) <>
               NOT EXISTS (SELECT 1 FROM incident_events WHERE incident_id = i.id
                           AND action = 'rate' AND note LIKE '%' || i.rating || ' 星')
        UNION ALL SELECT 'sla', count(*) FROM incidents i JOIN incident_categories c
               ON c.code = i.category
               WHERE i.claim_due <> i.reported_at + to_microseconds((c.claim_hours * 3.6e9)::BIGINT)
                  OR i.resolve_due <> i.reported_at
                     + to_microseconds((c.resolve_hours * 3.6e9)::BIGINT)
        UNION ALL SELECT 'future', count(*) FROM e WHERE ts > ?
        UNION ALL SELECT 'department', count(*) FROM incidents i JOIN incident_categories c
               ON c.code = i.category WHERE i.claimed_at IS NOT NULL AND i.department_code <>
               CASE WHEN c.district_only THEN 'gov_' || left(i.jurisdiction_code, 9)
                    ELSE c.department_code END
        UNION ALL SELECT 'actor', count(*) FROM incident_events WHERE actor IS NULL
    """, [NOW])
    assert [p for p in problems if p[1]] == []
    codes = [r[0] for r in store.query("SELECT tracking_code FROM incidents")]
    assert all(c.startswith("YW") and len(c) == 15 and c[2:].isdigit() for c in codes)


def test_the_backlog_is_escalated_already_so_the_sla_job_starts_quiet(demo) -> None:
    from core.incidents import escalate_overdue

    store, _ = demo
    late = store.query_one("SELECT count(*) FILTER (WHERE overdue_kind = 'claim'),"
                           " count(*) FILTER (WHERE overdue_kind = 'resolve') FROM incidents")
    assert late[0] > 0 and late[1] > 0
    assert store.query_one("SELECT count(*) FROM incident_events WHERE action = 'escalate'"
                           )[0] == sum(late)
    # at the end of the history nothing is left to escalate (minutes later, only incidents
    # whose deadline passed in those minutes)
    end = store.query_one("SELECT max(ts) FROM readings")[0]
    assert escalate_overdue(store, now=end).total == 0


def test_a_month_of_incidents_looks_like_a_real_centre(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, demo_days=30, demo_incidents=4000,
                             demo_districts=3, demo_streets=6, demo_communities=30)
    geo = make_geography(np.random.default_rng(1), settings)
    districts = geo.jurisdictions[geo.jurisdictions["level"] == "district"]
    rows, events = incidents.make_incidents(
        np.random.default_rng(2), geo, categories_frame(), departments_frame(districts, "320281"),
        NOW, settings)
    share = rows["status"].value_counts(normalize=True)
    assert share["closed"] > 0.75
    for status in ("dispatched", "in_progress", "resolved", "reopened"):
        assert share.get(status, 0) > 0, status
    actions = set(events["action"])
    assert {"return", "supervise", "verify_failed", "rate", "reopen"} <= actions
    overdue = (rows["status"] != "closed") & (rows["resolve_due"] < NOW)
    assert overdue.sum() > 0
    assert 0.4 < rows["rating"].notna().mean() < 0.8
    assert (rows["reported_at"] > NOW - timedelta(days=30)).all()


def test_every_role_has_a_demo_user_who_can_log_in(demo) -> None:
    store, _ = demo
    assert {u.role for u in DEMO_USERS} == set(Role)
    for demo_user in DEMO_USERS:
        user = authenticate(store, demo_user.username, DEMO_PASSWORD)
        assert user is not None and user.role is demo_user.role, demo_user.username
    assert authenticate(store, "commander", "wrong password") is None


def test_cli_if_absent_keeps_the_city_and_plain_build_refuses(demo) -> None:
    store, s = demo
    before = _checksum(store)
    runner = CliRunner()
    kept = runner.invoke(build_demo, ["--data-dir", str(s.data_dir), "--if-absent"])
    assert kept.exit_code == 0, kept.output
    refused = runner.invoke(build_demo, ["--data-dir", str(s.data_dir), "--quiet"])
    assert refused.exit_code == 1 and "--rebuild" in refused.output
    assert _checksum(store) == before
    with pytest.raises(DemoCityExists):
        build_demo_city(store, s, progress=False)


def test_cli_builds_with_size_overrides_and_another_seed(demo, tmp_path: Path) -> None:
    store, s = demo
    sizes = ["--districts", "8", "--streets", "60", "--communities", "400", "--sensors", "40",
             "--days", "1", "--incidents", "50"]
    result = CliRunner().invoke(build_demo, ["--data-dir", str(tmp_path), "--quiet",
                                             "--seed", "7", *sizes])
    assert result.exit_code == 0, result.output
    other = Store.open(tmp_path / "city.duckdb")
    assert other.query_one("SELECT count(*) FROM sensors")[0] == 40
    assert other.query_one("SELECT count(*) FROM incidents")[0] == 50
    juris = "SELECT code, md5(ST_AsHEXWKB(geom)) FROM jurisdictions ORDER BY code"
    assert len(other.query(juris)) == len(store.query(juris))
    assert other.query(juris) != store.query(juris)
    other.close()
    bad = CliRunner().invoke(build_demo, ["--data-dir", str(tmp_path / "x"), "--streets", "5"])
    assert bad.exit_code == 1 and "demo_streets" in bad.output


def test_a_crash_mid_build_leaves_the_old_city_whole(tiny_city: Store, tmp_path: Path,
                                                      monkeypatch) -> None:
    before = {t: tiny_city.query_one(f"SELECT count(*) FROM {t}")[0]
              for t in ("jurisdictions", "departments", "users", "readings", "sensors")}

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(incidents, "make_incidents", boom)
    settings = load_settings(data_dir=tmp_path, demo_districts=2, demo_streets=2,
                             demo_communities=4, demo_sensors=30, demo_days=1,
                             demo_incidents=10)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build_demo_city(tiny_city, settings, progress=False, rebuild=True)
    after = {t: tiny_city.query_one(f"SELECT count(*) FROM {t}")[0] for t in before}
    assert after == before
    assert tiny_city.query_one("SELECT code FROM jurisdictions WHERE parent_code IS NULL")[0] == "C"
    assert tiny_city.query("SELECT * FROM duckdb_databases() WHERE database_name = 'demo_scratch'") \
        == []


def test_a_fresh_demo_city_has_full_rollups(demo) -> None:
    store, s = demo
    assert store.query_one("SELECT count(*) FROM sensor_latest")[0] == store.query_one(
        "SELECT count(DISTINCT sensor_id) FROM readings")[0]
    by_level = dict(store.query("""
        SELECT j.level, sum(h.n) FROM readings_hourly h
        JOIN jurisdictions j ON j.code = h.jurisdiction_code GROUP BY 1"""))
    total = store.query_one("SELECT count(*) FROM readings")[0]
    assert by_level == {"city": total, "district": total, "street": total, "community": total}
