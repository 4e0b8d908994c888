"""Benchmark: one full wall-screen refresh at demo scale (and, with YIWANG_BENCH_LARGE=1, at
100 M readings / 1 M incidents generated with DuckDB SQL).

Reports per scale:
- server time of ``layers.wall.wall_snapshot`` (every query of a refresh) p50/p95, as the city
  commander at city zoom;
- the same SQL statements run raw on the cursor (recorded from one refresh), and the ratio;
- the whole Dash callback through Flask (login, JSON encoding) p50/p95, and the bytes it
  sends per refresh at city, district and street zoom (every view of the playlist: the
  largest is reported).

Targets (issue 4): p95 ≤ 150 ms, ratio ≤ 2, ≤ 300 KB per refresh at any zoom.
Run alone: ``python tests/benchmarks/bench_wall.py`` (``YIWANG_BENCH_LARGE=1`` for the big one).
``YIWANG_BENCH_WALL_DATA=DIR`` keeps the large city in DIR and reuses it on the next run (the
demo-scale measures are then skipped; building 100 M readings takes minutes on 2 cores). A
kept city ages: its incidents and readings stop at the time it was built.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from core.scope import scope_for
from core.settings import load_settings
from core.store import Store
from core.users import get_user
from layers import LayerRequest
from layers.wall import VIEWS, wall_snapshot
from pipelines.demo import build_demo_city
from pipelines.demo.catalog import DEMO_PASSWORD

RUNS = int(os.environ.get("YIWANG_BENCH_WALL_RUNS", "20"))
WIDTH_PX = 1100  # map width on a 1920×1080 wall


class RecordingStore:
    """Passes reads to the store and records each (sql, params) for the raw comparison."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.statements: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _record(self, sql: str, params: Any) -> None:
        self.statements.append((sql, params))

    def query(self, sql, params=()):
        self._record(sql, params)
        return self._store.query(sql, params)

    def query_one(self, sql, params=()):
        self._record(sql, params)
        return self._store.query_one(sql, params)

    def query_dicts(self, sql, params=()):
        self._record(sql, params)
        return self._store.query_dicts(sql, params)

    def query_df(self, sql, params=()):
        self._record(sql, params)
        return self._store.query_df(sql, params)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _zoom_for(row: dict) -> float:
    span = max(row["max_lon"] - row["min_lon"], 1e-6)
    return math.log2(WIDTH_PX * 360.0 / (256.0 * span))


def _request(row: dict) -> LayerRequest:
    return LayerRequest((row["min_lon"], row["min_lat"], row["max_lon"], row["max_lat"]),
                        _zoom_for(row))


def _extent(store: Store, where: str) -> dict:
    return store.query_dicts("SELECT code, min_lon, min_lat, max_lon, max_lat FROM jurisdictions"
                             f" WHERE {where} ORDER BY code LIMIT 1")[0]


def _time_snapshot(store: Store, scope, request: LayerRequest) -> list[float]:
    times = []
    for view in list(VIEWS) * max(1, RUNS // len(VIEWS)):
        started = time.perf_counter()
        wall_snapshot(store, scope, view, request)
        times.append(time.perf_counter() - started)
    return times


def _time_raw(store: Store, scope, request: LayerRequest) -> list[float]:
    times = []
    for view in list(VIEWS) * max(1, RUNS // len(VIEWS)):
        recorder = RecordingStore(store)
        wall_snapshot(recorder, scope, view, request)
        cur = store.cursor()
        started = time.perf_counter()
        for sql, params in recorder.statements:
            cur.execute(sql, params).fetchall()
        times.append(time.perf_counter() - started)
    return times


def _http_refresh(client, viewport: dict, view: str, deps: list) -> tuple[float, int]:
    dep = next(d for d in deps if "wall-kpis.children" in d["output"])
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1]}
               for o in dep["output"].strip(".").split("...")]
    body = {"output": dep["output"], "outputs": outputs,
            "inputs": [{"id": "wall-trigger", "property": "data", "value": 1},
                       {"id": "wall-view", "property": "data", "value": view},
                       {"id": "wall-viewport", "property": "data", "value": viewport},
                       {"id": "wall-toggles", "property": "value",
                        "value": ["jurisdictions", "sensors", "incidents", "alerts", "reports"]}],
            "state": [{"id": "wall-seq", "property": "data", "value": 1}],
            "changedPropIds": ["wall-trigger.data"]}
    started = time.perf_counter()
    response = client.post("/_dash-update-component", json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"wall refresh answered {response.status_code}: {response.data[:200]}")
    return elapsed, len(response.data)


def _client(store: Store, data_dir: str):
    from dashboard.app import create_app

    app = create_app(store, load_settings(data_dir=data_dir, totp_required=False,
                                          scheduler_enabled=False))
    client = app.server.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "commander", "password": DEMO_PASSWORD,
                                           "csrf_token": token, "next": "/"})
    if response.status_code != 302:
        raise RuntimeError("benchmark login failed")
    client.get("/")
    return client


def measure(store: Store, data_dir: str, label: str) -> list[dict]:
    scope = scope_for(store, get_user(store, "commander"))
    city = _extent(store, "parent_code IS NULL")
    district = _extent(store, "level = 'district'")
    street = _extent(store, "level = 'street'")
    request = _request(city)
    _time_snapshot(store, scope, request)  # warm caches once
    snap = _time_snapshot(store, scope, request)
    raw = _time_raw(store, scope, request)
    rows = [
        {"name": f"{label}: wall refresh p50", "value": statistics.median(snap) * 1e3,
         "unit": "ms", "note": "wall_snapshot, city commander, city zoom, all views"},
        {"name": f"{label}: wall refresh p95", "value": _pct(snap, 0.95) * 1e3, "unit": "ms",
         "note": "target ≤ 150 ms"},
        {"name": f"{label}: same SQL raw p50", "value": statistics.median(raw) * 1e3,
         "unit": "ms", "note": "recorded statements on the cursor"},
        {"name": f"{label}: refresh / raw SQL", "value":
         statistics.median(snap) / max(statistics.median(raw), 1e-9), "unit": "×",
         "note": "target ≤ 2"},
    ]
    client = _client(store, data_dir)
    deps = client.get("/_dash-dependencies").json
    http_times = []
    for name, row in (("city", city), ("district", district), ("street", street)):
        viewport = {"bbox": [row["min_lon"], row["min_lat"], row["max_lon"], row["max_lat"]],
                    "zoom": round(_zoom_for(row), 2)}
        sizes = []
        for view in VIEWS:
            elapsed, size = _http_refresh(client, viewport, view, deps)
            sizes.append(size)
            if name == "city":
                http_times.append(elapsed)
        rows.append({"name": f"{label}: bytes per refresh, {name} zoom", "value": max(sizes),
                     "unit": "B", "note": f"largest of {len(sizes)} views; target ≤ 300 KB"})
    for _ in range(max(0, RUNS - len(http_times))):
        http_times.append(_http_refresh(client, {"bbox": [city["min_lon"], city["min_lat"],
                                                          city["max_lon"], city["max_lat"]],
                                                 "zoom": round(_zoom_for(city), 2)},
                                        "city", deps)[0])
    rows += [
        {"name": f"{label}: HTTP refresh p50", "value": statistics.median(http_times) * 1e3,
         "unit": "ms", "note": "Dash callback through Flask, JSON included"},
        {"name": f"{label}: HTTP refresh p95", "value": _pct(http_times, 0.95) * 1e3,
         "unit": "ms", "note": ""},
    ]
    return rows


@contextmanager
def _data_dir(keep: str | None) -> Iterator[str]:
    """``keep`` when the city is to be kept, else a temporary folder removed afterwards."""
    if keep and os.environ.get("YIWANG_BENCH_LARGE") == "1":
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-wall-") as tmp:
        yield tmp


def grow(store: Store, readings: int = 100_000_000, incidents: int = 1_000_000) -> None:
    """Scale the demo city up with DuckDB SQL: copies of the incidents (new ids, spread over
    the same month) and synthetic readings of every sensor, appended in time order."""
    n_inc = store.query_one("SELECT count(*) FROM incidents")[0]
    copies = max(0, math.ceil(incidents / max(n_inc, 1)) - 1)
    top = store.query_one("SELECT max(id) FROM incidents")[0]
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO incidents SELECT i.* REPLACE (i.id + c.k * ? AS id,"
            " 'X' || c.k || '-' || i.tracking_code AS tracking_code,"
            " i.lon + (hash(i.id, c.k) % 1000) / 1e5 AS lon,"
            " i.lat + (hash(c.k, i.id) % 1000) / 1e5 AS lat)"
            " FROM incidents i, range(1, ? + 1) c(k)", [top, copies])
    have = store.query_one("SELECT count(*) FROM readings")[0]
    extra = max(0, readings - have)
    if extra:
        sensors = store.query_one("SELECT count(*) FROM sensors")[0]
        oldest = store.query_one("SELECT min(ts) FROM readings")[0]
        steps = extra // sensors
        with store.transaction() as cur:
            # older history before the demo's month, in time order (one step = one minute)
            cur.execute(
                "INSERT INTO readings SELECT s.id, ?::TIMESTAMP - to_minutes((? - t.k)::BIGINT),"
                " 10 + (hash(s.id, t.k) % 1000) / 10.0"
                " FROM range(?) t(k), (SELECT id FROM sensors) s ORDER BY t.k",
                [oldest, steps, steps])


def _kept(data_dir: str) -> list[dict] | None:
    """Measure a large city kept by an earlier run in ``data_dir`` (None: there is none)."""
    settings = load_settings(data_dir=data_dir)
    if not settings.database_path.exists():
        return None
    store = Store.open(settings.database_path)
    try:
        counts = store.query_one("SELECT (SELECT count(*) FROM readings),"
                                 " (SELECT count(*) FROM incidents)")
        if counts[0] < 100_000_000:
            return None
        return measure(store, data_dir, f"large, kept ({counts[0] / 1e6:.0f} M readings,"
                                        f" {counts[1] / 1e6:.1f} M incidents)")
    finally:
        store.close()


def run() -> list[dict]:
    rows: list[dict] = []
    keep = os.environ.get("YIWANG_BENCH_WALL_DATA")
    if keep and os.environ.get("YIWANG_BENCH_LARGE") == "1":
        kept = _kept(keep)
        if kept is not None:
            return kept
        os.makedirs(keep, exist_ok=True)
        for name in os.listdir(keep):
            os.remove(os.path.join(keep, name))
    with _data_dir(keep) as tmp:
        settings = load_settings(data_dir=tmp)
        store = Store.open(settings.database_path)
        try:
            build_demo_city(store, settings, progress=False,
                            now=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1))
            counts = store.query_one("SELECT (SELECT count(*) FROM readings),"
                                     " (SELECT count(*) FROM incidents)")
            label = f"demo ({counts[0] / 1e6:.1f} M readings, {counts[1]:,} incidents)"
            rows += measure(store, tmp, label)
            if os.environ.get("YIWANG_BENCH_LARGE") == "1":
                started = time.perf_counter()
                grow(store)
                counts = store.query_one("SELECT (SELECT count(*) FROM readings),"
                                         " (SELECT count(*) FROM incidents)")
                rows.append({"name": "large: generate", "value": time.perf_counter() - started,
                             "unit": "s", "note": f"{counts[0]:,} readings, {counts[1]:,} incidents"})
                rows += measure(store, tmp, f"large ({counts[0] / 1e6:.0f} M readings,"
                                            f" {counts[1] / 1e6:.1f} M incidents)")
        finally:
            store.close()
    return rows


if __name__ == "__main__":
    from rich.console import Console
    from rich.table import Table

    table = Table("measure", "value", "unit", "note", title="wall screen refresh")
    for row in run():
        value = row["value"]
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        table.add_row(row["name"], shown, row["unit"], row["note"])
    Console().print(table)
