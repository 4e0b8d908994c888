"""Benchmark: file/Arrow ingest through the contract path vs DuckDB's own COPY.

The same Parquet file of readings (2,400 sensors; ``YIWANG_BENCH_INGEST_ROWS``, default
2 M rows) is loaded twice into fresh databases: once by ``COPY readings FROM 'x.parquet'``
(no checks at all), once by the pipeline (read with pyarrow, typed and validated, unknown
sensors and duplicates refused, rollup deltas staged, one transaction). Each is run three
times, alternating, and the best time of each counts. Reports both rates and their ratio (target ≥ 0.6 of COPY and ≥ 1 M rows/s).
Run alone with ``python tests/benchmarks/bench_ingest.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.ingest import READINGS, load  # noqa: E402
from core.store import Store  # noqa: E402

SENSORS = 2400
REPEATS = 3


def _store(path: Path) -> Store:
    store = Store.open(path)
    with store.transaction() as cur:
        cur.execute("INSERT INTO sensor_kinds VALUES ('pm25', 'PM2.5', 'PM2.5', 'µg/m³',"
                    " 'sthj', 75, 115)")
        cur.execute(f"INSERT INTO sensors SELECT i, 'AQ-' || i, 'pm25', 's' || i, 120, 31,"
                    f" 'X', 'sthj', TIMESTAMP '2026-01-01' FROM range(1, {SENSORS + 1}) t(i)")
    return store


def _parquet(path: Path, rows: int) -> None:
    steps = rows // SENSORS
    start = np.datetime64("2026-11-01T00:00:00", "s")
    ts = np.repeat(start + np.arange(steps) * np.timedelta64(10, "s"), SENSORS)
    ids = np.tile(np.arange(1, SENSORS + 1, dtype=np.int32), steps)
    values = np.random.default_rng(1).uniform(0, 150, len(ids))
    pq.write_table(pa.table({"sensor_id": ids, "ts": ts.astype("datetime64[us]"),
                             "value": values}), path)


def run() -> list[dict]:
    rows = int(os.environ.get("YIWANG_BENCH_INGEST_ROWS", 2_000_000))
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-ingest-") as tmp:
        tmp = Path(tmp)
        parquet = tmp / "readings.parquet"
        _parquet(parquet, rows)
        rows = pq.read_metadata(parquet).num_rows
        copy_s = ours_s = again_s = float("inf")
        for attempt in range(REPEATS):  # alternating, best of each: the machine is shared
            copy_store = _store(tmp / f"copy{attempt}.duckdb")
            try:
                started = time.perf_counter()
                with copy_store.transaction() as cur:
                    cur.execute(f"COPY readings FROM '{parquet}' (FORMAT parquet)")
                copy_s = min(copy_s, time.perf_counter() - started)
            finally:
                copy_store.close()
            ours = _store(tmp / f"ours{attempt}.duckdb")
            try:
                started = time.perf_counter()
                table = pq.read_table(parquet)
                stats = load(ours, READINGS, table, run_id=1, source="bench")
                ours_s = min(ours_s, time.perf_counter() - started)
                assert stats.loaded == rows, stats
                started = time.perf_counter()
                again = load(ours, READINGS, table, run_id=2, source="bench")
                again_s = min(again_s, time.perf_counter() - started)
                assert again.loaded == 0
                # the rollup deltas of every row were staged, once
                assert ours.query_one("SELECT sum(n) FROM rollup_deltas") == (rows,)
            finally:
                ours.close()
    copy_rate, ours_rate = rows / copy_s, rows / ours_s
    note = f"{rows:,} readings, {SENSORS} sensors, same Parquet file"
    return [
        {"name": "DuckDB COPY from Parquet", "value": copy_rate, "unit": "rows/s", "note": note},
        {"name": "pipeline load (validate + upsert)", "value": ours_rate, "unit": "rows/s",
         "note": "pyarrow read, contract checks, duplicate check, one transaction"},
        {"name": "pipeline / COPY", "value": ours_rate / copy_rate, "unit": "ratio",
         "note": "target >= 0.6"},
        {"name": "re-load of the same file", "value": rows / again_s, "unit": "rows/s",
         "note": "every row recognised as a duplicate; 0 added"},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<40} {row['value']:>16,.3f} {row['unit']:<8} {row['note']}")
