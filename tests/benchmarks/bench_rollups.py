"""Benchmark: rollup refresh after one hour of new readings on a large base.

Builds a base of ``YIWANG_BENCH_ROLLUP_ROWS`` readings (default 100 M, the scale of the
issue's target; about 30 s, 3 GB of memory and 1 GB of disk on 2 cores) for 2,400 sensors in a
small city, rebuilds the rollups in full, then loads one hour of new readings (every
sensor every 10 s: 864,000 rows) through the load path and times the incremental
``refresh_rollups`` (target ≤ 100 ms).
Run alone with ``python tests/benchmarks/bench_rollups.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ingest import READINGS, load  # noqa: E402
from core.rollups import refresh_rollups  # noqa: E402
from core.store import Store  # noqa: E402

SENSORS = 2400
CHUNK = 5_000_000


def _city(store: Store) -> None:
    from conftest import build_tiny_city

    build_tiny_city(store)
    communities = [r[0] for r in store.query(
        "SELECT code FROM jurisdictions WHERE level = 'community' ORDER BY 1")]
    with store.transaction() as cur:
        cur.execute("INSERT INTO sensor_kinds VALUES ('pm25', 'PM2.5', 'PM2.5', 'µg/m³',"
                    " 'sthj', 75, 115)")
        cur.execute("INSERT INTO sensors SELECT i, 'AQ-' || i, 'pm25', 's' || i, 0.5, 0.5,"
                    " (?::VARCHAR[])[1 + i % 4], 'sthj', TIMESTAMP '2026-01-01'"
                    f" FROM range(1, {SENSORS + 1}) t(i)", [communities])


def _chunk(start: np.datetime64, steps: int, step_s: int, rng) -> pa.Table:
    ts = np.repeat(start + np.arange(steps) * np.timedelta64(step_s, "s"), SENSORS)
    return pa.table({"sensor_id": np.tile(np.arange(1, SENSORS + 1, dtype=np.int32), steps),
                     "ts": ts.astype("datetime64[us]"),
                     "value": rng.uniform(0, 150, steps * SENSORS)})


def run() -> list[dict]:
    base_rows = int(os.environ.get("YIWANG_BENCH_ROLLUP_ROWS", 100_000_000))
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-rollups-") as tmp:
        store = Store.open(Path(tmp) / "city.duckdb")
        try:
            _city(store)
            step_s = 60
            steps = base_rows // SENSORS
            end = np.datetime64("2026-11-28T00:00:00", "s")
            start = end - steps * np.timedelta64(step_s, "s")
            started = time.perf_counter()
            per = max(1, CHUNK // SENSORS)
            with store.transaction() as cur:
                for lo in range(0, steps, per):
                    chunk = _chunk(start + lo * np.timedelta64(step_s, "s"),
                                   min(per, steps - lo), step_s, rng)
                    cur.register("_bench", chunk)
                    cur.execute("INSERT INTO readings SELECT * FROM _bench")
                    cur.unregister("_bench")
            base_s = time.perf_counter() - started
            rows = store.query_one("SELECT count(*) FROM readings")[0]
            full = refresh_rollups(store, full=True)
            hour = _chunk(end, 360, 10, rng)
            started = time.perf_counter()
            stats = load(store, READINGS, hour, run_id=1, source="bench")
            load_s = time.perf_counter() - started
            inc = refresh_rollups(store)
            assert stats.loaded == hour.num_rows and inc.hours == 1, (stats, inc)
        finally:
            store.close()
    return [
        {"name": "incremental refresh after 1 h", "value": inc.seconds * 1000, "unit": "ms",
         "note": f"{hour.num_rows:,} new readings on a base of {rows:,}; target <= 100 ms"},
        {"name": "full rollup rebuild", "value": full.seconds, "unit": "s",
         "note": f"{rows:,} readings -> {full.rows:,} hourly rows (every level)"},
        {"name": "load of the hour's readings", "value": hour.num_rows / load_s,
         "unit": "rows/s", "note": "through core.ingest.load on the large base"},
        {"name": "base insert", "value": rows / base_s, "unit": "rows/s",
         "note": "plain Arrow INSERT (setup)"},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<36} {row['value']:>16,.3f} {row['unit']:<6} {row['note']}")
