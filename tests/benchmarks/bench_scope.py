"""Benchmark: the cost of scoping. The same query over the demo city with and without the
user's scope filter (core.scope), for the city commander (sees every row: pure overhead) and
a district commander (fewer rows). Target ratio scoped/unscoped ≤ 1.2 for the city scope.

Run alone with ``python tests/benchmarks/bench_scope.py``.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from core.scope import scope_for
from core.settings import load_settings
from core.store import Store
from core.users import get_user
from pipelines.demo import build_demo_city

REPEAT = 15
QUERIES = {
    "incidents by status": (
        "SELECT status, count(*) FROM incidents i WHERE {where} GROUP BY status",
        "i.jurisdiction_code", "i.department_code"),
    "hourly pm2.5 by jurisdiction": (
        "SELECT jurisdiction_code, sum(total) / sum(n) FROM readings_hourly r"
        " WHERE kind = 'pm25' AND {where} GROUP BY jurisdiction_code",
        "r.jurisdiction_code", None),
}


def _median_seconds(store: Store, sql: str, params: list) -> float:
    store.query(sql, params)  # warm
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        store.query(sql, params)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run() -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-scope-") as tmp:
        settings = load_settings(data_dir=tmp, demo_days=3)
        store = Store.open(settings.database_path)
        try:
            build_demo_city(store, settings, progress=False)
            n_incidents = store.query_one("SELECT count(*) FROM incidents")[0]
            for username in ("commander", "commander_d1"):
                scope = scope_for(store, get_user(store, username))
                for name, (template, jcol, dcol) in QUERIES.items():
                    where, params = scope.data_filter(jcol, dcol)
                    plain = _median_seconds(store, template.format(where="TRUE"), [])
                    scoped = _median_seconds(store, template.format(where=where), params)
                    note = f"{username}; {n_incidents} incidents; median of {REPEAT}"
                    rows.append({"name": f"{name} unscoped", "value": plain * 1000,
                                 "unit": "ms", "note": note})
                    rows.append({"name": f"{name} scoped ({username})",
                                 "value": scoped * 1000, "unit": "ms", "note": note})
                    rows.append({"name": f"{name} ratio ({username})",
                                 "value": scoped / plain, "unit": "×",
                                 "note": "target ≤ 1.2" if username == "commander" else
                                 "fewer rows than unscoped"})
        finally:
            store.close()
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:50s} {row['value']:10.3f} {row['unit']:3s} {row['note']}")
