"""The database source against real PostgreSQL and MariaDB on 127.0.0.1 (department
databases), through DuckDB's postgres/mysql scanner extensions loaded from their wheels:
incremental pulls by a watermark column, re-runs add nothing, bad rows are quarantined."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import require_service
from test_pipeline_support import build_sensor_city, settings_for

from core.store import Store
from pipelines.config import load_config
from pipelines.scheduler import all_jobs, run_job

pytestmark = pytest.mark.services

ENGINES = {
    "postgres": ("PostgreSQL", 5432, "host=127.0.0.1 port=5432 user=postgres dbname=test",
                 ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v",
                  "ON_ERROR_STOP=1", "-q", "-c"], "public"),
    "mysql": ("MariaDB", 3306, "host=127.0.0.1 port=3306 user=root database=test",
              ["mysql", "-h", "127.0.0.1", "-u", "root", "test", "-e"], "test"),
}


def _sql(engine: str, sql: str) -> None:
    subprocess.run([*ENGINES[engine][3], sql], check=True, capture_output=True, timeout=60)


CONFIG = """
[datasets.gauges]
table = "ds_gauges"
department = "sw"
key = ["gauge_id"]
jurisdiction = "area_code"
fields = [
  {{ name = "gauge_id", type = "VARCHAR", required = true }},
  {{ name = "area_code", type = "VARCHAR", required = true }},
  {{ name = "level_m", type = "DOUBLE", min = 0, max = 20 }},
  {{ name = "updated_at", type = "TIMESTAMP", required = true }},
]

[sources.sw_db]
kind = "database"
engine = "{engine}"
dsn = "{dsn}"
table = "{schema}.{table}"
dataset = "gauges"
watermark = "updated_at"
seconds = 300
"""


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_incremental_pulls_by_watermark(engine: str, tmp_path: Path) -> None:
    name, port, dsn, _, schema = ENGINES[engine]
    require_service(name, "127.0.0.1", port)
    table = f"yw_gauges_{uuid.uuid4().hex[:8]}"
    _sql(engine, f"CREATE TABLE {table} (gauge_id VARCHAR(20) PRIMARY KEY,"
                 f" area_code VARCHAR(20), level_m DOUBLE PRECISION, updated_at TIMESTAMP)")
    try:
        _sql(engine, f"INSERT INTO {table} VALUES ('G1', 'D1S1C1', 1.5, '2026-11-28 08:00:00'),"
                     f" ('G2', 'D2', 2.5, '2026-11-28 08:00:00'),"
                     f" ('G3', 'NOWHERE', 1.0, '2026-11-28 08:30:00'),"
                     f" ('G4', 'D1', 99, '2026-11-28 08:40:00')")
        settings = settings_for(tmp_path)
        (tmp_path / "pipelines.toml").write_text(
            CONFIG.format(engine=engine, dsn=dsn, schema=schema, table=table))
        store = build_sensor_city(Store.open(settings.database_path))
        job = {j.id: j for j in all_jobs(settings)}["sw_db"]
        assert load_config(settings).sources["sw_db"].kind == "database"
        try:
            first = run_job(store, settings, job)
            assert (first.rows_in, first.loaded, first.rejected) == (4, 2, 2)
            assert store.query("SELECT gauge_id, level_m FROM ds_gauges ORDER BY 1") == [
                ("G1", 1.5), ("G2", 2.5)]
            reasons = sorted(r[0] for r in store.query("SELECT reason FROM quarantine"))
            assert reasons == ["area_code: unknown jurisdiction", "level_m: above 20"]
            assert store.query_one("SELECT watermark FROM pipeline_state")[0].startswith(
                "2026-11-28 08:40:00")
            # nothing new: only the boundary row is read again, and it changes nothing
            again = run_job(store, settings, job)
            assert again.loaded == 0 and again.rows_in == 1
            assert store.query_one("SELECT count(*) FROM quarantine")[0] == 2
            # a new row and an update arrive in the department's database
            _sql(engine, f"INSERT INTO {table} VALUES ('G5', 'D2S2C1', 3.0,"
                         f" '2026-11-28 09:00:00')")
            _sql(engine, f"UPDATE {table} SET level_m = 1.8, updated_at = '2026-11-28 09:05:00'"
                         f" WHERE gauge_id = 'G1'")
            third = run_job(store, settings, job)
            assert (third.rows_in, third.loaded) == (3, 2)         # + the boundary row G4
            assert store.query("SELECT gauge_id, level_m FROM ds_gauges ORDER BY 1") == [
                ("G1", 1.8), ("G2", 2.5), ("G5", 3.0)]
            assert store.query("SELECT status, rows_in FROM ingest_runs ORDER BY id") == [
                ("success", 4), ("success", 1), ("success", 3)]
            assert store.query_one("SELECT count(*) FROM quarantine")[0] == 2
        finally:
            store.close()
    finally:
        _sql(engine, f"DROP TABLE {table}")
