"""The pipeline scheduler that runs inside the serving process (embedded mode).

Registered as the ``yiwang.services`` entry point ``scheduler``: the web server calls
``start_scheduler(store, settings)`` at start-up and ``.shutdown()`` on the result at exit.
Jobs come from ``JOBS``, a list of ``JobSpec`` (id, function of (store, settings), interval);
the simulator is the first entry. A new job is one more entry.

>>> scheduler = start_scheduler(store, settings)   # doctest: +SKIP
>>> [job.id for job in scheduler.get_jobs()]       # doctest: +SKIP
['simulator']
>>> scheduler.shutdown()                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from core.settings import Settings
from core.store import Store
from pipelines import simulator

__all__ = ["JOBS", "JOB_DEFAULTS", "JobSpec", "start_scheduler"]

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}


@dataclass(frozen=True)
class JobSpec:
    """A periodic pipeline job: ``func(store, settings)`` every ``seconds``."""

    id: str
    func: Callable[[Store, Settings], object]
    seconds: float
    description: str = ""


JOBS: list[JobSpec] = [
    JobSpec("simulator", simulator.tick, simulator.SIMULATOR_SECONDS,
            "live demo feed: one reading per online sensor"),
]


def start_scheduler(store: Store, settings: Settings, jobs: Sequence[JobSpec] | None = None,
                    ) -> BackgroundScheduler | None:
    """Start a background scheduler running ``jobs`` (default ``JOBS``), each first right
    away; None when ``settings.scheduler_enabled`` is off.

    >>> start_scheduler(store, load_settings(scheduler_enabled=False)) is None   # doctest: +SKIP
    True
    """
    if not settings.scheduler_enabled:
        log.info("scheduler disabled by setting scheduler_enabled")
        return None
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
    for job in JOBS if jobs is None else jobs:
        scheduler.add_job(job.func, IntervalTrigger(seconds=job.seconds, timezone=UTC),
                          args=(store, settings), id=job.id, name=job.description or job.id,
                          next_run_time=datetime.now(UTC), replace_existing=True)
    scheduler.start()
    return scheduler
