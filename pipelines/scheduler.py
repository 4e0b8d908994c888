"""The pipeline scheduler that runs inside the serving process (embedded mode).

Registered as the ``yiwang.services`` entry point ``scheduler``: the web server calls
``start_scheduler(store, settings)`` at start-up and ``.shutdown()`` on the result at exit.
Jobs come from ``JOBS``, a list of ``JobSpec`` (id, function of (store, settings), interval);
the simulator is the first entry. A new job is one more entry. Sources declared in
``<data_dir>/pipelines.toml`` (``pipelines.config``) are added as jobs too. Every run is
recorded in ``ingest_runs`` (``pipelines.runner.execute`` wraps each job) and a listener
records the runs APScheduler had to skip (missed, or still running) as 'missed'; every job
is listed in ``pipeline_sources`` with its interval, which ``source_freshness`` compares
against.

>>> scheduler = start_scheduler(store, settings)   # doctest: +SKIP
>>> [job.id for job in scheduler.get_jobs()]       # doctest: +SKIP
['simulator']
>>> scheduler.shutdown()                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_SHUTDOWN,
    JobEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from core.cluster import LeaderElection, maintain_job
from core.incidents import escalate_overdue
from core.ingest import finish_run, start_run
from core.rollups import refresh_rollups
from core.settings import Settings
from core.store import Store
from pipelines import alerts, simulator
from pipelines.runner import execute

__all__ = ["JOBS", "JOB_DEFAULTS", "JobSpec", "all_jobs", "register_sources", "run_job",
           "start_scheduler"]

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}


@dataclass(frozen=True)
class JobSpec:
    """A periodic pipeline job: ``func(store, settings)`` every ``seconds``."""

    id: str
    func: Callable[[Store, Settings], object]
    seconds: float
    description: str = ""
    kind: str = "job"
    first_after: float = 0.0   # seconds from the scheduler's start to the first run


def _rollups(store: Store, settings: Settings):
    return refresh_rollups(store)


def _incident_sla(store: Store, settings: Settings):
    return escalate_overdue(store)


JOBS: list[JobSpec] = [
    JobSpec("simulator", simulator.tick, simulator.SIMULATOR_SECONDS,
            "live demo feed: one reading per online sensor", "simulator"),
    JobSpec("rollups", _rollups, 60.0,
            "sensor_latest and hourly rollups of hours loaded since the last refresh", "rollups"),
    JobSpec("alerts", alerts.evaluate_job, 60.0,
            "alert rules (threshold, duration, hysteresis) over recent readings", "alerts"),
    JobSpec("incident_sla", _incident_sla, 300.0,
            "SLA clocks: mark overdue incidents and escalate them to the commanders", "incidents"),
    # not at start: a new leader starts with the web processes, when every user logs in
    JobSpec("lake_maintenance", maintain_job, 900.0,
            "DuckLake compaction and snapshot expiry (nothing in embedded mode)", "maintenance",
            first_after=300.0),
]


def all_jobs(settings: Settings) -> list[JobSpec]:
    """``JOBS`` plus one job per source declared in ``pipelines.toml``."""
    from pipelines.sources import source_jobs

    return [*JOBS, *source_jobs(settings)]


def register_sources(store: Store, jobs: Sequence[JobSpec]) -> None:
    """List every job in ``pipeline_sources`` (name, kind, expected interval)."""
    with store.transaction() as cur:
        for job in jobs:
            # MERGE, not INSERT OR REPLACE: cluster mode runs the same SQL on DuckLake
            cur.execute("MERGE INTO pipeline_sources AS t"
                        " USING (SELECT ? AS name, ? AS kind, ?::DOUBLE AS expected_seconds,"
                        "        ? AS description) AS s ON t.name = s.name"
                        " WHEN MATCHED THEN UPDATE SET kind = s.kind,"
                        "  expected_seconds = s.expected_seconds, description = s.description"
                        " WHEN NOT MATCHED THEN INSERT VALUES (s.name, s.kind,"
                        "  s.expected_seconds, s.description)",
                        [job.id, job.kind, float(job.seconds), job.description])


def run_job(store: Store, settings: Settings, job: JobSpec, trigger: str = "schedule"):
    """Run one job now as a recorded run (the scheduler and `yiwang pipelines run` use it).
    The thread takes the job's name, so lock diagnostics say which job holds what."""
    threading.current_thread().name = f"job {job.id}"
    try:
        return execute(store, job.id, lambda: job.func(store, settings), trigger=trigger)
    finally:
        store.release_cursor()   # no result left open on an idle pool thread


def _stop_subscribers() -> None:
    mqtt = sys.modules.get("pipelines.sources.mqtt")
    if mqtt is not None:
        mqtt.stop_all()


def _record_skipped(store: Store, event: JobEvent) -> None:
    why = ("missed its start by more than the grace time" if event.code == EVENT_JOB_MISSED
           else "skipped: the previous run was still going")
    try:
        run_id = start_run(store, event.job_id, "schedule")
        finish_run(store, run_id, error=why, status="missed")
    except Exception:  # a listener must never break the scheduler
        log.exception("could not record a skipped run of %s", event.job_id)


def start_scheduler(store: Store, settings: Settings, jobs: Sequence[JobSpec] | None = None,
                    ) -> BackgroundScheduler | LeaderElection | None:
    """Start a background scheduler running ``jobs`` (default ``JOBS``), each first right
    away; None when ``settings.scheduler_enabled`` is off.

    >>> start_scheduler(store, load_settings(scheduler_enabled=False)) is None   # doctest: +SKIP
    True
    """
    if not settings.scheduler_enabled:
        log.info("scheduler disabled by setting scheduler_enabled")
        return None
    jobs = all_jobs(settings) if jobs is None else list(jobs)
    if getattr(store, "mode", "embedded") == "cluster":
        # Many web processes, one scheduler: only the holder of the advisory lock runs jobs;
        # another candidate takes over when the leader dies.
        return LeaderElection(store.dsn, "scheduler",
                              start=lambda: _start_scheduler(store, settings, jobs),
                              stop=lambda s: s.shutdown(wait=True) if s else None).begin()
    return _start_scheduler(store, settings, jobs)


def _start_scheduler(store: Store, settings: Settings, jobs: list[JobSpec]) -> BackgroundScheduler:
    register_sources(store, jobs)
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
    scheduler.add_listener(lambda event: _record_skipped(store, event),
                           EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    scheduler.add_listener(lambda event: _stop_subscribers(), EVENT_SCHEDULER_SHUTDOWN)
    for job in jobs:
        scheduler.add_job(run_job, IntervalTrigger(seconds=job.seconds, timezone=UTC),
                          args=(store, settings, job), id=job.id,
                          name=job.description or job.id,
                          next_run_time=datetime.now(UTC) + timedelta(seconds=job.first_after),
                          replace_existing=True)
    scheduler.start()
    return scheduler
