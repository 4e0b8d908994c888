"""Build the whole demo city into a store, all or nothing.

Jurisdictions, departments and users are first written into a scratch DuckDB file through
``core`` (``save_jurisdictions``, ``create_user``: they check and hash). Then one transaction
on the target replaces every demo table: it copies the scratch tables, inserts sensors,
streams the readings in through Arrow, adds incidents and their events and records a
``demo.build`` entry in the audit log. A crash anywhere leaves the store as it was. The audit
log itself is never cleared (it is append-only). Right after the commit the rollups
(``core.rollups``) are rebuilt in full; the build's transaction clears their state, so a
crash in between still makes the next refresh a full rebuild.

>>> report = build_demo_city(Store.open("data/city.duckdb"), load_settings())  # doctest: +SKIP
>>> report.counts["readings"] > 5_000_000                                    # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.audit import record
from core.jurisdictions import save_jurisdictions
from core.rollups import refresh_rollups
from core.settings import Settings
from core.store import Store
from pipelines.demo import catalog, geography, incidents, sensors

__all__ = ["DEMO_TABLES", "DemoCityExists", "DemoReport", "build_demo_city", "has_city",
           "is_demo_city"]

# cleared and refilled by a (re)build, children first
DEMO_TABLES = ("incident_notifications", "incident_extensions", "incident_co_tasks",
               "incident_routing_rules", "alerts", "incident_events", "incidents", "readings", "sensors", "sensor_kinds",
               "incident_categories", "users", "departments", "jurisdictions")
AUDIT_ACTION = "demo.build"
_STAGES = ("geography", "catalog", "users", "sensors", "readings", "incidents", "commit",
           "rollups")


class DemoCityExists(RuntimeError):
    """The store holds a city already and no rebuild was asked for."""


@dataclass
class DemoReport:
    """What a build wrote (rows per table) and how long each stage took (seconds).

    ``readings_per_second`` counts generating and inserting the readings together.
    """

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    readings_per_second: float = 0.0


def has_city(store: Store) -> bool:
    """Does the store hold any jurisdictions (a demo or a real city)?"""
    return bool(store.query_one("SELECT count(*) FROM jurisdictions")[0])


def is_demo_city(store: Store) -> bool:
    """Was the store's city built by ``build_demo_city`` (the simulator only feeds those)?"""
    row = store.query_one("SELECT count(*) FROM audit_log WHERE action = ?", [AUDIT_ACTION])
    return bool(row[0]) and has_city(store)


def build_demo_city(store: Store, settings: Settings, progress: bool = True, *,
                    rebuild: bool = False, now: datetime | None = None) -> DemoReport:
    """Generate the demo city sized by ``settings`` (seeded by ``demo_seed``) into ``store``.

    The readings end at ``now`` (default: the current UTC time) floored to the reading
    interval; the same seed and ``now`` give the same city. Raises ``DemoCityExists`` when the
    store has a city already, unless ``rebuild``.

    >>> build_demo_city(store, load_settings(demo_sensors=300)).counts["sensors"]  # doctest: +SKIP
    300
    """
    if has_city(store) and not rebuild:
        root = store.query_one("SELECT code, name_zh FROM jurisdictions WHERE parent_code IS NULL")
        raise DemoCityExists(
            f"{store.url.removeprefix('duckdb:///')} already holds a city ({root[0]} {root[1]});"
            " rebuild it with `yiwang build-demo --rebuild` (drops its data) or keep it with"
            " --if-absent"
        )
    geography.check_sizes(settings)
    end = sensors.end_of_history(now or datetime.now(UTC), settings)
    rng_geo, rng_sensors, rng_readings, rng_incidents = np.random.default_rng(
        settings.demo_seed).spawn(4)
    report = DemoReport()
    started = time.perf_counter()
    expected_rows = sensors.reading_steps(settings) * settings.demo_sensors
    with _Stages(progress, report, {"readings": expected_rows}) as stages, \
            tempfile.TemporaryDirectory(prefix="yiwang-demo-") as tmp:
        with stages.stage("geography"):
            geo = geography.make_geography(rng_geo, settings)
        scratch_path = Path(tmp) / "scratch.duckdb"
        scratch = Store.open(scratch_path)
        try:
            with stages.stage("catalog"):
                departments = _write_catalog(scratch, geo)
            with stages.stage("users"):
                catalog.create_demo_users(scratch, _first_codes(geo))
        finally:
            scratch.close()
        history_start = end - pd.Timedelta(days=settings.demo_days)
        with stages.stage("sensors"):
            placed = sensors.place_sensors(rng_sensors, geo, catalog.sensor_kinds_frame(),
                                           settings.demo_sensors, history_start)
        _replace_city(store, scratch_path, stages, lambda cur: _fill(
            store, cur, stages, settings, geo, departments, placed, end,
            rng_readings, rng_incidents))
        with stages.stage("rollups"):
            refresh_rollups(store, full=True)
        catalog.register_demo_datasets(store)
    report.total_seconds = time.perf_counter() - started
    report.counts = {t: store.query_one(f"SELECT count(*) FROM {t}")[0] for t in DEMO_TABLES}
    report.readings_per_second = report.counts["readings"] / max(report.seconds["readings"], 1e-9)
    return report


def _write_catalog(scratch: Store, geo: geography.Geography) -> pd.DataFrame:
    save_jurisdictions(scratch, geo.jurisdictions)
    districts = geo.jurisdictions[geo.jurisdictions["level"] == "district"]
    departments = catalog.departments_frame(districts, geography.CITY_CODE)
    with scratch.transaction() as cur:
        _insert_frame(cur, "departments", departments)
    return departments


def _first_codes(geo: geography.Geography) -> dict[str, str]:
    j = geo.jurisdictions
    return {level: min(j.loc[j["level"] == level, "code"])
            for level in ("city", "district", "street", "community")}


def _replace_city(store: Store, scratch_path: Path, stages: _Stages, fill: Callable) -> None:
    cur = store.cursor()
    quoted = str(scratch_path).replace("'", "''")
    cur.execute(f"ATTACH '{quoted}' AS demo_scratch (READ_ONLY)")
    try:
        with store.transaction() as tx:
            for table in DEMO_TABLES:
                tx.execute(f"DELETE FROM {table}")
            for table in ("jurisdictions", "departments", "users"):
                tx.execute(f"INSERT INTO {table} SELECT * FROM demo_scratch.{table}")
            fill(tx)
            stages.begin("commit")
        stages.end("commit")
    finally:
        cur.execute("DETACH demo_scratch")


def _fill(store: Store, cur, stages: _Stages, settings: Settings,
          geo: geography.Geography, departments: pd.DataFrame, placed: pd.DataFrame,
          end: datetime, rng_readings: np.random.Generator,
          rng_incidents: np.random.Generator) -> None:
    categories = catalog.categories_frame()
    _insert_frame(cur, "sensor_kinds", catalog.sensor_kinds_frame())
    _insert_frame(cur, "incident_categories", categories.drop(columns="weight"))
    _insert_frame(cur, "sensors", placed.drop(columns="district_key"))
    with stages.stage("readings") as advance:
        for chunk in sensors.reading_chunks(placed, end, settings, rng_readings):
            cur.register("_demo_chunk", chunk)
            try:
                cur.execute("INSERT INTO readings SELECT sensor_id, ts, value FROM _demo_chunk")
            finally:
                cur.unregister("_demo_chunk")
            advance(chunk.num_rows)
    # the rollups are rebuilt right after the commit (faster on committed data); with the
    # state cleared here, a crash in between still makes the next refresh a full rebuild
    cur.execute("DELETE FROM rollup_state")
    with stages.stage("incidents"):
        if settings.demo_incidents:
            rows, events = incidents.make_incidents(rng_incidents, geo, categories, departments,
                                                    end, settings)
            _insert_frame(cur, "incidents", rows)
            _insert_frame(cur, "incident_events", events[[
                "incident_id", "seq", "ts", "action", "from_status", "to_status", "actor",
                "department_code", "note"]])
            _escalate_history(cur, end)
    detail = {"seed": settings.demo_seed, "end": end.isoformat(), "sensors": len(placed),
              "incidents": settings.demo_incidents, "communities": settings.demo_communities}
    record(store, "system", AUDIT_ACTION, target=geography.CITY_CODE,
           detail=json.dumps(detail), cursor=cur)


# Open incidents already past a deadline when the demo history ends were escalated back then,
# as the SLA job (core.incidents.escalate_overdue) would have done a few minutes after the
# deadline: otherwise its first run escalates the whole backlog at once and floods the
# commanders' notifications and the wall's ticker the moment the demo starts.
_ESCALATE_HISTORY = """
CREATE OR REPLACE TEMP TABLE _demo_late AS
SELECT * FROM (
SELECT i.id, i.version, i.status, i.department_code, kind, due, last_ts,
       least(greatest(due + INTERVAL 5 MINUTE, last_ts + INTERVAL 1 MINUTE), $end) AS ts
FROM (SELECT *, CASE WHEN status IN ('reported', 'dispatched', 'returned') THEN 'claim'
                     ELSE 'resolve' END AS kind,
             CASE WHEN status IN ('reported', 'dispatched', 'returned') THEN claim_due
                  ELSE resolve_due END AS due
      FROM incidents
      WHERE status IN ('reported', 'dispatched', 'returned', 'claimed', 'in_progress',
                       'reopened')) i
JOIN (SELECT incident_id, max(ts) AS last_ts FROM incident_events GROUP BY 1) e
  ON e.incident_id = i.id
WHERE due < $end) WHERE ts > last_ts;
INSERT INTO incident_events
SELECT id, version + 1, ts, 'escalate', status, status, 'system', department_code,
       CASE kind WHEN 'claim' THEN '超过签收时限（' ELSE '超过办结时限（' END
       || strftime(due, '%Y-%m-%d %H:%M') || '），升级至指挥中心'
FROM _demo_late;
UPDATE incidents SET overdue_kind = l.kind, escalated_at = l.ts, version = l.version + 1
FROM _demo_late l WHERE incidents.id = l.id;
DROP TABLE _demo_late;
"""


def _escalate_history(cur, end: datetime) -> None:
    for statement in _ESCALATE_HISTORY.split(";"):
        if statement.strip():
            cur.execute(statement, {"end": end} if "$end" in statement else None)


def _insert_frame(cur, table: str, frame: pd.DataFrame) -> None:
    cur.register("_demo_frame", frame)
    try:
        columns = ", ".join(frame.columns)
        cur.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _demo_frame")
    finally:
        cur.unregister("_demo_frame")


class _Stages:
    """One rich progress bar with a task per stage; records each stage's seconds."""

    def __init__(self, show: bool, report: DemoReport, totals: dict[str, int]) -> None:
        self.report = report
        self.progress = Progress(TextColumn("{task.description:<11}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), disable=not show)
        self.tasks = {name: self.progress.add_task(name, total=totals.get(name, 1), start=False)
                      for name in _STAGES}
        self._started: dict[str, float] = {}

    def __enter__(self) -> _Stages:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def begin(self, name: str) -> None:
        self.progress.start_task(self.tasks[name])
        self._started[name] = time.perf_counter()

    def end(self, name: str) -> None:
        task = self.tasks[name]
        self.progress.update(task, completed=self.progress.tasks[task].total)
        self.report.seconds[name] = time.perf_counter() - self._started[name]

    @contextmanager
    def stage(self, name: str) -> Iterator[Callable[[int], None]]:
        self.begin(name)
        task = self.tasks[name]

        def advance(rows: int) -> None:
            self.progress.update(task, advance=rows)

        yield advance
        self.end(name)
