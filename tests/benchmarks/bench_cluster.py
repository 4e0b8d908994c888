"""Benchmark: ingest and small-transaction speed of the cluster store (DuckLake over the
machine's PostgreSQL, data files on local disk) beside the embedded DuckDB file.

Measures, for each mode: a bulk load of readings (one INSERT of 1 M rows), scheduler-sized
batches (20 transactions of 2,000 rows each) and one small read (``count(*)`` of a table),
the latency floor of a web request's query; then wall refreshes/s of ``yiwang serve`` with 1
and with 3 web processes on the demo city copied into a cluster store (``migrate-to-cluster``):
12 commander wall screens refresh back to back, as ``tests/load/dash_calls.WallScreen``
sends what the browser does. Skipped (one row saying so) without PostgreSQL
on 127.0.0.1:5432. Run alone with ``python tests/benchmarks/bench_cluster.py``.
"""

from __future__ import annotations

import socket
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from core.store import Store

PG = "postgresql://postgres@127.0.0.1:5432"
DEMO_PASSWORD = "Yiwang#2026"   # every demo account's
BULK_ROWS = 1_000_000
BATCHES, BATCH_ROWS = 20, 2_000


def _frame(n: int, offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(offset)
    start = np.datetime64("2026-11-01T00:00:00")
    return pd.DataFrame({
        "sensor_id": rng.integers(1, 2400, n, dtype=np.int32),
        "ts": start + (np.arange(n) + offset).astype("timedelta64[s]"),
        "value": rng.random(n) * 100,
    })


def _measure(store: Store) -> dict[str, float]:
    bulk = _frame(BULK_ROWS)
    t0 = time.perf_counter()
    with store.transaction() as cur:
        cur.register("bulk_frame", bulk)
        cur.execute("INSERT INTO readings SELECT * FROM bulk_frame")
        cur.unregister("bulk_frame")
    bulk_s = time.perf_counter() - t0
    frames = [_frame(BATCH_ROWS, BULK_ROWS + i * BATCH_ROWS) for i in range(BATCHES)]
    t0 = time.perf_counter()
    for frame in frames:
        with store.transaction() as cur:
            cur.register("batch_frame", frame)
            cur.execute("INSERT INTO readings SELECT * FROM batch_frame")
            cur.unregister("batch_frame")
    batch_s = time.perf_counter() - t0
    store.query("SELECT count(*) FROM incidents")
    t0 = time.perf_counter()
    for _ in range(20):
        store.query("SELECT count(*) FROM incidents")
    read_ms = (time.perf_counter() - t0) / 20 * 1000
    assert store.query("SELECT count(*) FROM readings")[0][0] == BULK_ROWS + BATCHES * BATCH_ROWS
    return {"bulk": BULK_ROWS / bulk_s, "batch": BATCHES * BATCH_ROWS / batch_s,
            "batch_tx": batch_s / BATCHES * 1000, "read": read_ms}


def _serve_throughput(url: str, workers: int, data_dir: str, seconds: float = 20.0,
                      clients: int = 12) -> tuple[float, float]:
    """Wall refreshes/s and their p95 ms against ``yiwang serve --workers N`` on the cluster
    store holding the demo city: ``clients`` wall screens (the commander's, over HTTP as
    the browser sends them, see tests/load/dash_calls.py) refreshing back to back."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "load"))
    from dash_calls import WallScreen

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YIWANG_")},
           "YIWANG_STORAGE_URL": url, "YIWANG_SCHEDULER_ENABLED": "false",
           "YIWANG_TOTP_REQUIRED": "false", "YIWANG_DATA_DIR": data_dir}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "yiwang"), "serve", "--workers",
                             str(workers), "--port", str(port)], env=env, cwd=data_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    try:
        deadline = time.time() + 180
        screens: list[WallScreen] = []
        while len(screens) < clients:
            try:
                screens.append(WallScreen(base, "commander", DEMO_PASSWORD))
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
        for screen in screens:           # every worker has computed a snapshot once
            for _ in range(workers):
                screen.refresh()
        stop_at = time.time() + seconds

        def client(screen: WallScreen) -> None:
            while time.time() < stop_at:
                t0 = time.perf_counter()
                screen.refresh()
                latencies.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=client, args=(s,)) for s in screens]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)] * 1000 if latencies else float("nan")
    return len(latencies) / seconds, p95


def _demo_in_cluster(tmp: str, url: str) -> str:
    """Build the demo city and copy it into the cluster store; the shared data folder."""
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    city, shared = Path(tmp) / "demo", Path(tmp) / "shared"
    shared.mkdir()
    subprocess.run([str(bin_dir / "yiwang"), "build-demo", "--data-dir", str(city), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(bin_dir / "yiwang"), "migrate-to-cluster", "--from",
                    str(city / "city.duckdb"), "--to", url, "--data-dir", str(shared)],
                   check=True, stdout=subprocess.DEVNULL)
    return str(shared)


def _pg_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


def run() -> list[dict]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-") as tmp:
        store = Store.open(Path(tmp) / "city.duckdb")
        try:
            results["embedded"] = _measure(store)
        finally:
            store.close()
        if _pg_up():
            import psycopg

            for key in ("cluster", "serve"):
                name = f"yiwang_bench_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
                    con.execute(f"CREATE DATABASE {name}")
                try:
                    if key == "cluster":      # the store's own speed, beside embedded
                        store = Store.open_url(f"ducklake:{PG}/{name}?data_path={tmp}/lake")
                        try:
                            results["cluster"] = _measure(store)
                        finally:
                            store.close()
                        continue
                    url = f"ducklake:{PG}/{name}?data_path={tmp}/shared/lake"
                    shared = _demo_in_cluster(tmp, url)
                    for workers in (1, 3):
                        results[f"serve{workers}"] = dict(zip(
                            ("rps", "p95"), _serve_throughput(url, workers, shared),
                            strict=True))
                finally:
                    with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
                        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    rows = []
    serving = {k: results.pop(k) for k in ("serve1", "serve3") if k in results}
    for mode, r in results.items():
        rows += [
            {"name": f"{mode} bulk ingest", "value": r["bulk"], "unit": "rows/s",
             "note": f"one INSERT of {BULK_ROWS:,} readings"},
            {"name": f"{mode} batch ingest", "value": r["batch"], "unit": "rows/s",
             "note": f"{BATCHES} transactions × {BATCH_ROWS:,} rows"},
            {"name": f"{mode} batch transaction", "value": r["batch_tx"], "unit": "ms",
             "note": f"{BATCH_ROWS:,}-row commit"},
            {"name": f"{mode} small read", "value": r["read"], "unit": "ms",
             "note": "SELECT count(*) FROM incidents"},
        ]
    for key, r in serving.items():
        rows.append({"name": f"cluster {key[-1]} web process(es)", "value": r["rps"],
                     "unit": "refreshes/s", "note": f"wall refresh of the demo city, 12"
                                                    f" screens back to back, p95 {r['p95']:.0f} ms"})
    if len(serving) == 2 and serving["serve1"]["rps"]:
        rows.append({"name": "cluster scaling 3 vs 1", "value": serving["serve3"]["rps"]
                     / serving["serve1"]["rps"], "unit": "×",
                     "note": "target ≥ 2.5× on ≥ 3 free cores; this machine has 2"})
    if "cluster" not in results:
        rows.append({"name": "cluster", "value": 0, "unit": "-",
                     "note": "skipped: no PostgreSQL on 127.0.0.1:5432"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<28} {row['value']:>14,.1f} {row['unit']:<7} {row['note']}")
