"""The one load path: contracts, vectorised validation, quarantine, idempotent upserts,
CRS conversion, jurisdiction by point, all-or-nothing loads (also across a real crash),
reprocessing, recorded runs and the `yiwang pipelines` commands."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from test_pipeline_support import build_sensor_city, settings_for

from core import ingest
from core.ingest import READINGS, Contract, ContractError, Field, LoadStats, load, start_run
from core.store import Store
from pipelines.cli import pipelines_group
from pipelines.config import ConfigError, parse_config
from pipelines.quarantine import reprocess
from pipelines.runner import execute

HYDRANTS = Contract(
    "hydrants", "ds_hydrants",
    (Field("hydrant_id", "VARCHAR", required=True), Field("lon", "DOUBLE", required=True),
     Field("lat", "DOUBLE", required=True), Field("pressure", "DOUBLE", min=0, max=2),
     Field("status", "VARCHAR", choices=("ok", "broken"))),
    key=("hydrant_id",), lon="lon", lat="lat", jurisdiction="point", department="cg")

GOOD = {"hydrant_id": ["H1", "H2"], "lon": ["0.5", "1.5"], "lat": ["0.2", "0.8"],
        "pressure": ["0.4", "1.1"], "status": ["ok", "broken"]}


@pytest.fixture
def city(store: Store) -> Store:
    return build_sensor_city(store)


def _count(store: Store, table: str) -> int:
    return store.query_one(f"SELECT count(*) FROM {table}")[0]


def test_good_rows_load_with_their_community_and_reload_adds_nothing(city: Store) -> None:
    run = start_run(city, "test")
    assert load(city, HYDRANTS, pa.table(GOOD), run_id=run, source="test") == LoadStats(2, 2, 0)
    rows = city.query("SELECT hydrant_id, jurisdiction_code, pressure, _run_id"
                      " FROM ds_hydrants ORDER BY 1")
    assert rows == [("H1", "D1S1C1", 0.4, run), ("H2", "D2S2C1", 1.1, run)]
    again = load(city, HYDRANTS, pa.table(GOOD), run_id=run, source="test")
    assert again == LoadStats(2, 0, 0) and _count(city, "ds_hydrants") == 2
    changed = dict(GOOD, status=["broken", "broken"])
    assert load(city, HYDRANTS, pa.table(changed), run_id=run, source="test").loaded == 1
    assert city.query("SELECT status FROM ds_hydrants ORDER BY 1") == [("broken",), ("broken",)]


def test_each_broken_rule_quarantines_the_row_with_its_reason(city: Store) -> None:
    bad = {"hydrant_id": ["B1", "B2", "B3", "B4", None, "B6", "OK"],
           "lon": ["0.5", "abc", "0.5", "0.5", "0.5", "9.0", "0.6"],
           "lat": ["0.2", "0.2", "0.2", "0.2", "0.2", "9.0", "0.3"],
           "pressure": ["-1", "0.5", "0.5", "0.5", "0.5", "0.5", "0.5"],
           "status": ["ok", "ok", "melted", "ok", "ok", "ok", "ok"]}
    bad["lat"][3] = None
    run = start_run(city, "test")
    stats = load(city, HYDRANTS, pa.table(bad), run_id=run, source="test")
    assert stats == LoadStats(7, 1, 6)
    reasons = dict(city.query("SELECT json_extract_string(raw, '$.hydrant_id'), reason"
                              " FROM quarantine WHERE run_id = ?", [run]))
    assert reasons["B1"] == "pressure: below 0"
    assert reasons["B2"] == "lon: not a valid double"
    assert reasons["B3"] == "status: not one of ok/broken"
    assert reasons["B4"] == "lat: required"
    assert reasons[None] == "hydrant_id: required"
    assert reasons["B6"] == "location: outside every community"
    assert city.query("SELECT hydrant_id FROM ds_hydrants") == [("OK",)]
    # the raw row is kept as it came, and the same bad batch again adds no duplicates
    raw = city.query_one("SELECT raw FROM quarantine WHERE reason LIKE 'lon:%'")[0]
    assert '"lon":"abc"' in raw
    load(city, HYDRANTS, pa.table(bad), run_id=run, source="test")
    assert _count(city, "quarantine") == 6


def test_a_batch_without_a_required_column_is_refused_whole(city: Store) -> None:
    with pytest.raises(ContractError, match="required column.*lat"):
        load(city, HYDRANTS, pa.table({"hydrant_id": ["H"], "lon": ["1"]}), run_id=1,
             source="t")
    assert _count(city, "quarantine") == 0


def test_contracts_are_checked_when_declared() -> None:
    with pytest.raises(ContractError, match="key column nope"):
        Contract("x", "ds_x", (Field("a", "VARCHAR"),), key=("nope",))
    with pytest.raises(ContractError, match="belongs to the platform"):
        Contract("x", "users", (Field("a", "VARCHAR"),), key=("a",))
    with pytest.raises(ContractError, match="not a lower-case identifier"):
        Contract("x", "ds_x; DROP TABLE users", (Field("a", "VARCHAR"),), key=("a",))
    with pytest.raises(ConfigError, match="kind must be one of"):
        parse_config({"sources": {"s": {"kind": "ftp"}}})


def test_readings_resolve_codes_skip_duplicates_and_mark_hours(city: Store) -> None:
    table = pa.table({"sensor": ["WL-1", "WL-2", "NOPE", "WL-1", "WL-1"],
                      "ts": ["2026-11-28T10:00:00Z", "2026-11-28T18:05:00+08:00",
                             "2026-11-28T10:00:00Z", "yesterday", "2026-11-28T10:00:00Z"],
                      "value": ["4.2", "4.3", "1", "1", "4.2"]})
    stats = load(city, READINGS, table, run_id=1, source="t")
    assert stats == LoadStats(5, 2, 2)
    assert city.query("SELECT sensor_id, ts::VARCHAR, value FROM readings ORDER BY 1") == [
        (1, "2026-11-28 10:00:00", 4.2), (2, "2026-11-28 10:05:00", 4.3)]
    assert city.query("SELECT hour::VARCHAR, kind, community, n FROM rollup_deltas"
                      " ORDER BY community") == [
        ("2026-11-28 10:00:00", "water_level", "D1S1C1", 1),
        ("2026-11-28 10:00:00", "water_level", "D1S2C1", 1)]
    assert load(city, READINGS, table, run_id=1, source="t").loaded == 0
    assert _count(city, "readings") == 2
    reasons = {r[0] for r in city.query("SELECT reason FROM quarantine")}
    assert reasons == {"sensor: unknown code NOPE", "ts: not a valid timestamp"}


def test_gcj02_and_cgcs2000_coordinates_become_wgs84(city: Store) -> None:
    gcj = Contract("poi", "ds_poi", (Field("id", "VARCHAR", required=True),
                                     Field("lon", "DOUBLE"), Field("lat", "DOUBLE")),
                   key=("id",), lon="lon", lat="lat", crs="GCJ-02")
    load(city, gcj, pa.table({"id": ["a"], "lon": [120.30], "lat": [31.90]}), run_id=1,
         source="t")
    lon, lat = city.query_one("SELECT lon, lat FROM ds_poi")
    # GCJ-02 is shifted a few hundred metres from WGS84 around Wuxi
    assert 0.003 < 120.30 - lon < 0.007 and -0.004 < 31.90 - lat < 0.0
    cgcs = Contract("poi2", "ds_poi2", gcj.fields, key=("id",), lon="lon", lat="lat",
                    crs="EPSG:4490")
    load(city, cgcs, pa.table({"id": ["a"], "lon": [120.30], "lat": [31.90]}), run_id=1,
         source="t")
    lon, lat = city.query_one("SELECT lon, lat FROM ds_poi2")
    assert abs(lon - 120.30) < 1e-6 and abs(lat - 31.90) < 1e-6


def test_an_error_before_commit_changes_nothing(city: Store, monkeypatch) -> None:
    load(city, HYDRANTS, pa.table(GOOD), run_id=1, source="t")
    before = {t: _count(city, t) for t in ("ds_hydrants", "quarantine", "readings",
                                           "rollup_deltas", "latest_deltas")}

    def boom(cur):
        raise RuntimeError("injected crash")

    monkeypatch.setattr(ingest, "_before_commit", boom)
    batch = dict(GOOD, hydrant_id=["H8", "H9"], status=["ok", "bad"])
    with pytest.raises(RuntimeError, match="injected"):
        load(city, HYDRANTS, pa.table(batch), run_id=2, source="t")
    with pytest.raises(RuntimeError, match="injected"):
        load(city, READINGS, pa.table({"sensor_id": [1], "ts": ["2026-11-28 10:00"],
                                       "value": [1.0]}), run_id=2, source="t")
    assert {t: _count(city, t) for t in before} == before
    monkeypatch.undo()
    assert load(city, HYDRANTS, pa.table(batch), run_id=3, source="t") == LoadStats(2, 1, 1)


CRASH = textwrap.dedent("""
    import os, sys
    import pyarrow as pa
    from core import ingest
    from core.store import Store
    from core.ingest import READINGS, load
    store = Store.open(sys.argv[1])
    def die(cur):
        os._exit(3)        # the process dies mid-transaction, nothing is flushed
    ingest._before_commit = die
    n = 200_000
    load(store, READINGS, pa.table({"sensor_id": pa.array([1, 2] * (n // 2), pa.int32()),
         "ts": pa.array(range(n), pa.timestamp("s")), "value": pa.array([1.0] * n)}),
         run_id=9, source="crash")
""")


def test_a_process_killed_mid_load_leaves_the_database_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "city.duckdb"
    store = build_sensor_city(Store.open(path))
    load(store, READINGS, pa.table({"sensor_id": [1], "ts": ["2026-11-28 10:00"],
                                    "value": [1.0]}), run_id=1, source="t")
    store.close()
    done = subprocess.run([sys.executable, "-c", CRASH, str(path)], cwd=Path.cwd(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    store = Store.open(path)
    try:
        assert store.query("SELECT sensor_id, value FROM readings") == [(1, 1.0)]
        assert _count(store, "quarantine") == 0
        assert store.query("SELECT count(*) FROM rollup_deltas")[0][0] == 1
    finally:
        store.close()


def test_reprocess_loads_rows_once_the_contract_is_fixed(city: Store, tmp_path: Path) -> None:
    strict = {"datasets": {"hydrants": {
        "table": "ds_hydrants", "key": ["hydrant_id"], "lon": "lon", "lat": "lat",
        "jurisdiction": "point", "fields": [
            {"name": "hydrant_id", "type": "VARCHAR", "required": True},
            {"name": "lon", "type": "DOUBLE", "required": True},
            {"name": "lat", "type": "DOUBLE", "required": True},
            {"name": "status", "type": "VARCHAR", "choices": ["ok", "broken"]}]}}}
    config = parse_config(strict)
    rows = pa.table({"hydrant_id": ["H1", "H2", "H3"], "lon": ["0.5", "0.6", "x"],
                     "lat": ["0.2", "0.3", "0.3"], "status": ["ok", "leaking", "ok"]})
    execute(city, "files:cg", lambda: load(city, config.datasets["hydrants"].contract, rows,
                                           run_id=ingest_run(city), source="files:cg"))
    assert _count(city, "ds_hydrants") == 1
    # the department adds 'leaking' to the contract; the bad longitude stays bad
    strict["datasets"]["hydrants"]["fields"][3]["choices"].append("leaking")
    fixed = parse_config(strict)
    result = reprocess(city, settings_for(tmp_path), config=fixed)
    assert result["hydrants"] == LoadStats(2, 1, 1)
    assert city.query("SELECT hydrant_id FROM ds_hydrants ORDER BY 1") == [("H1",), ("H2",)]
    assert city.query("SELECT status, reason FROM quarantine ORDER BY status") == [
        ("open", "lon: not a valid double"), ("reprocessed", "status: not one of ok/broken")]
    runs = city.query("SELECT source, trigger, status FROM ingest_runs ORDER BY id")
    assert runs[-1] == ("reprocess", "reprocess", "success")


def ingest_run(store: Store) -> int:
    return store.query_one("SELECT max(id) FROM ingest_runs")[0]


def test_runs_are_recorded_with_counts_or_errors(city: Store) -> None:
    stats = execute(city, "demo", lambda: LoadStats(5, 4, 1), trigger="manual")
    assert stats == LoadStats(5, 4, 1)
    with pytest.raises(ValueError, match="bad feed"):
        execute(city, "demo", lambda: (_ for _ in ()).throw(ValueError("bad feed")))
    rows = city.query("SELECT source, trigger, rows_in, rows_loaded, rows_rejected, status,"
                      " error, finished_at IS NOT NULL FROM ingest_runs ORDER BY id")
    assert rows == [("demo", "manual", 5, 4, 1, "success", None, True),
                    ("demo", "schedule", 0, 0, 0, "failed", "ValueError: bad feed", True)]


def test_cli_lists_and_runs_jobs(tmp_path: Path) -> None:
    store = build_sensor_city(Store.open(tmp_path / "city.duckdb"))
    store.close()
    runner = CliRunner()
    listed = runner.invoke(pipelines_group, ["list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "simulator" in listed.output and "rollups" in listed.output
    ran = runner.invoke(pipelines_group, ["run", "rollups", "--data-dir", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    unknown = runner.invoke(pipelines_group, ["run", "nope", "--data-dir", str(tmp_path)])
    assert unknown.exit_code != 0 and "no job nope" in unknown.output
    store = Store.open(tmp_path / "city.duckdb")
    try:
        assert store.query("SELECT source, trigger, status FROM ingest_runs") == [
            ("rollups", "manual", "success")]
        fresh = dict(store.query("SELECT name, stale FROM source_freshness"))
        assert fresh["rollups"] is False and fresh["simulator"] is True
    finally:
        store.close()


def test_typed_batches_take_the_arrow_checks_and_fall_back_on_a_bad_row(city: Store) -> None:
    def typed(ids, values, minutes):
        return pa.table({"sensor_id": pa.array(ids, pa.int32()),
                         "ts": pa.array([f"2026-11-28T10:{m:02d}:00" for m in minutes],
                                        pa.string()).cast(pa.timestamp("s")),
                         "value": pa.array(values, pa.float64())})

    assert load(city, READINGS, typed([1, 2], [1.0, 2.0], [0, 0]), run_id=1,
                source="t") == LoadStats(2, 2, 0)
    bad = typed([1, 99, 2, 1, 1], [1.5, 2.0, float("nan"), 3.0, 3.5], [1, 1, 1, 2, 2])
    assert load(city, READINGS, bad, run_id=2, source="t") == LoadStats(5, 2, 2)
    assert sorted(r[0] for r in city.query("SELECT reason FROM quarantine")) == [
        "sensor_id: unknown sensor 99", "value: not finite"]
    # the key twice in one batch: the later row wins (general path), exactly one stored
    assert city.query("SELECT value FROM readings WHERE sensor_id = 1 AND ts = ?",
                      ["2026-11-28 10:02:00"]) == [(3.5,)]
