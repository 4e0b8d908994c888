"""Benchmark: the indicators drill-down (city → district → street → community).

For each drill step it times the server's answer (``core.indicators.evaluate`` with the
user's scope: scope check, SQL, Python values) and the very same SQL run directly on the
cursor, p50 and p95 over repeated runs, and the page's whole view (``build_view``: children now
and before, the focus, the trend, the map). First at demo scale, then with the incidents
replaced by ``BENCH_INCIDENTS`` (default 1,000,000) generated in DuckDB SQL.

Sensor indicators read ``readings_hourly`` only, whose size is hours × kinds × jurisdictions
and does not grow with the number of raw readings; they are timed on the demo's rollups.

Run alone with ``python tests/benchmarks/bench_indicators.py`` (``BENCH_INCIDENTS=200000`` for
a quicker run).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from core import indicators as ind_mod
from core.indicators import INDICATORS, evaluate
from core.scope import Scope, scope_for
from core.settings import load_settings
from core.store import Store
from core.users import get_user
from dashboard.indicator_view import ViewState, build_view
from pipelines.demo import build_demo_city

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
BIG = int(os.environ.get("BENCH_INCIDENTS", "1000000"))
STEP_INDICATORS = ("resolve_on_time", "claim_on_time", "pm25_mean")

# Incidents and their events, vectorised in SQL: a month before ``$end``; communities drawn
# uniformly; SLA tiers as in the demo catalogue; exponential delays.
_GENERATE = """
CREATE OR REPLACE TEMP TABLE gen AS
WITH codes AS (SELECT list(code ORDER BY code) AS c FROM jurisdictions WHERE level = 'community'),
base AS (
    SELECT i AS id, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
           random() AS r5, random() AS r6, random() AS r7,
           (SELECT c FROM codes) AS c
    FROM range(1, $n + 1) t(i)
)
SELECT id, c[1 + floor(r1 * len(c))::INT] AS jurisdiction_code,
       $end - to_microseconds((r2 * 30 * 86400e6)::BIGINT) AS reported_at,
       [0.5, 2.0, 8.0, 24.0][1 + floor(r3 * 4)::INT] AS claim_h,
       [2.0, 24.0, 168.0, 360.0][1 + floor(r3 * 4)::INT] AS resolve_h,
       r4 < 0.97 AS dispatched, r4 < 0.05 AS returned,
       -ln(greatest(r5, 1e-9)) * 0.3 AS claim_f, -ln(greatest(r6, 1e-9)) * 0.35 AS resolve_f,
       r7 AS r7
FROM base;
CREATE OR REPLACE TEMP TABLE gen2 AS
SELECT *, reported_at + to_microseconds((claim_f * claim_h * 3600e6)::BIGINT)
              + INTERVAL 10 MINUTE AS claim_ts,
       reported_at + to_microseconds(((claim_f * claim_h + resolve_f * resolve_h)
              * 3600e6)::BIGINT) + INTERVAL 40 MINUTE AS resolve_ts
FROM gen;
DELETE FROM incident_events;
DELETE FROM incidents;
INSERT INTO incidents BY NAME
SELECT id, 'B' || id AS tracking_code, 'garbage_overflow' AS category, 'normal' AS priority,
       CASE WHEN dispatched AND resolve_ts < $end THEN
                (CASE WHEN r7 < 0.7 THEN 'closed' ELSE 'verified' END)
            WHEN dispatched AND claim_ts < $end THEN 'in_progress'
            WHEN dispatched THEN 'dispatched' ELSE 'reported' END AS status,
       'hotline' AS source, '基准工单' AS title, 0.0 AS lon, 0.0 AS lat, jurisdiction_code,
       'cg' AS department_code, reported_at,
       reported_at + to_microseconds((claim_h * 3600e6)::BIGINT) AS claim_due,
       reported_at + to_microseconds((resolve_h * 3600e6)::BIGINT) AS resolve_due,
       CASE WHEN dispatched AND claim_ts < $end THEN claim_ts END AS claimed_at,
       CASE WHEN dispatched AND resolve_ts < $end THEN resolve_ts END AS resolved_at,
       CASE WHEN dispatched AND resolve_ts < $end AND r7 < 0.7 THEN resolve_ts END AS closed_at,
       CASE WHEN dispatched AND resolve_ts < $end AND r7 < 0.45
            THEN 1 + floor(r7 * 11.1)::INT END AS rating,
       -- the event facts of contract C2, as the events below say
       CASE WHEN dispatched THEN reported_at + INTERVAL 5 MINUTE END AS first_dispatched_at,
       CASE WHEN dispatched AND claim_ts < $end THEN claim_ts END AS first_claimed_at,
       returned::INT AS returned_count,
       (dispatched AND resolve_ts < $end AND r7 < 0.01)::INT AS reopened_count,
       (dispatched AND claim_ts < $end AND r7 > 0.95)::INT AS supervised_count
FROM gen2;
INSERT INTO incident_events BY NAME
SELECT id AS incident_id, seq, ts, action, action AS to_status, 'bench' AS actor
FROM (
    SELECT id, 1 AS seq, reported_at AS ts, 'report' AS action FROM gen2
    UNION ALL SELECT id, 2, reported_at + INTERVAL 5 MINUTE, 'dispatch' FROM gen2 WHERE dispatched
    UNION ALL SELECT id, 3, reported_at + INTERVAL 8 MINUTE, 'return' FROM gen2 WHERE returned
    UNION ALL SELECT id, 4, claim_ts, 'claim' FROM gen2 WHERE dispatched AND claim_ts < $end
    UNION ALL SELECT id, 5, claim_ts + INTERVAL 5 MINUTE, 'supervise' FROM gen2
        WHERE dispatched AND claim_ts < $end AND r7 > 0.95
    UNION ALL SELECT id, 6, resolve_ts, 'resolve' FROM gen2 WHERE dispatched AND resolve_ts < $end
    UNION ALL SELECT id, 7, resolve_ts + INTERVAL 1 HOUR, 'close' FROM gen2
        WHERE dispatched AND resolve_ts < $end AND r7 < 0.7
    UNION ALL SELECT id, 8, resolve_ts + INTERVAL 2 HOUR, 'reopen' FROM gen2
        WHERE dispatched AND resolve_ts < $end AND r7 < 0.01
);
"""


def _times(fn: Callable[[], object], runs: int = RUNS) -> tuple[float, float]:
    fn()  # warm up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return statistics.median(samples), p95


def _direct(store: Store, scope: Scope, ind_id: str, parent: str, start: datetime,
            end: datetime) -> Callable[[], object]:
    """The SQL ``evaluate`` runs, built by the same code, executed straight on a cursor."""
    ind = INDICATORS[ind_id]
    sql = ind_mod._BUILDERS[ind.source](ind, scope, "c.parent_code = $code", None)
    values = ind_mod._params(ind, scope, start, end, end, parent)
    used = set(ind_mod._PARAM.findall(sql))
    params = {k: v for k, v in values.items() if k in used}
    cur = store.cursor()
    return lambda: cur.execute(sql, params).fetchall()


def _drill_path(store: Store) -> list[tuple[str, str]]:
    """(level label, code) from the city down to the street holding the most communities."""
    city = store.query_one("SELECT code FROM jurisdictions WHERE level = 'city'")[0]
    street, district = store.query_one(
        "SELECT s.code, s.parent_code FROM jurisdictions s JOIN jurisdictions c"
        " ON c.parent_code = s.code WHERE s.level = 'street'"
        " GROUP BY s.code, s.parent_code ORDER BY count(*) DESC, s.code LIMIT 1")
    return [("city→districts", city), ("district→streets", district),
            ("street→communities", street)]


def _measure(store: Store, label: str, note: str) -> list[dict]:
    scope = scope_for(store, get_user(store, "leader"))
    end = store.query_one("SELECT max(reported_at) FROM incidents")[0] + timedelta(minutes=1)
    start = end - timedelta(days=30)
    rows = []
    for step, code in _drill_path(store):
        for ind_id in STEP_INDICATORS:
            p50, p95 = _times(lambda ind_id=ind_id, code=code: evaluate(
                store, scope, ind_id, parent_code=code, start=start, end=end, now=end))
            d50, d95 = _times(_direct(store, scope, ind_id, code, start, end))
            name = f"{label} {step} {ind_id}"
            rows += [
                {"name": f"{name} server p50/p95", "value": p95, "unit": "ms p95",
                 "note": f"p50 {p50:.1f} ms; {note}; load {os.getloadavg()[0]:.1f}"},
                {"name": f"{name} direct SQL p50/p95", "value": d95, "unit": "ms p95",
                 "note": f"p50 {d50:.1f} ms"},
                {"name": f"{name} ratio server/direct", "value": p95 / d95 if d95 else 0.0,
                 "unit": "× (p95)", "note": "target ≤ 2"},
            ]
        state = ViewState("resolve_on_time", code, "30d", compare=True)
        v50, v95 = _times(lambda state=state: build_view(store, scope, state, end), runs=5)
        rows.append({"name": f"{label} {step} whole view (resolve_on_time)", "value": v95,
                     "unit": "ms p95", "note": f"p50 {v50:.1f} ms; 4 evaluations, trend, map"})
    return rows


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-ind-") as tmp:
        settings = load_settings(data_dir=tmp)
        store = Store.open(settings.database_path)
        try:
            build_demo_city(store, settings, progress=False)
            counts = store.query_one(
                "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM incident_events),"
                " (SELECT count(*) FROM readings), (SELECT count(*) FROM readings_hourly)")
            rows = _measure(store, "demo", f"{counts[0]:,} incidents, {counts[1]:,} events, "
                                           f"{counts[2]:,} readings, {counts[3]:,} hourly rows")
            if BIG:
                end = store.query_one("SELECT max(reported_at) FROM incidents")[0]
                started = time.perf_counter()
                with store.transaction() as cur:
                    cur.execute("SELECT setseed(0.5)")
                    for statement in filter(str.strip, _GENERATE.split(";\n")):
                        used = set(ind_mod._PARAM.findall(statement))
                        cur.execute(statement, {k: v for k, v in {"n": BIG, "end": end}.items()
                                                if k in used})
                gen_s = time.perf_counter() - started
                events = store.query_one("SELECT count(*) FROM incident_events")[0]
                rows.append({"name": f"generate {BIG:,} incidents in SQL", "value": gen_s,
                             "unit": "s", "note": f"{events:,} events"})
                rows += _measure(store, f"{BIG // 1000}k", f"{BIG:,} incidents, {events:,} events")
        finally:
            store.close()
    return rows


if __name__ == "__main__":
    from rich.console import Console
    from rich.table import Table

    table = Table("measure", "value", "unit", "note", title="indicators drill-down")
    for row in run():
        value = row["value"]
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        table.add_row(row["name"], shown, row["unit"], row["note"])
    Console().print(table)
