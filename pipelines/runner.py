"""Runs of pipeline jobs, each recorded in ``ingest_runs``.

``execute`` records a run ('running'), calls the job with the run id available through
``current_run_id()``, then closes the run with its row counts or its error. Jobs decorated
with ``@recorded(name)`` can also be called directly (tests, the CLI): they then open and
close a run of their own.

>>> execute(store, "rollups", lambda: refresh_rollups(store), trigger="manual")  # doctest: +SKIP
LoadStats(rows_in=0, loaded=4821, rejected=0)
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable
from typing import Any

from core.ingest import LoadStats, finish_run, start_run
from core.rollups import RollupStats
from core.store import Store

__all__ = ["as_stats", "current_run_id", "execute", "recorded"]

log = logging.getLogger(__name__)
_CURRENT: contextvars.ContextVar[int | None] = contextvars.ContextVar("yiwang_run", default=None)


def current_run_id() -> int | None:
    """The id of the run this code executes in (None outside ``execute``)."""
    return _CURRENT.get()


def as_stats(result: Any) -> LoadStats:
    """A job's return value as row counts: LoadStats, an int (rows loaded), RollupStats."""
    if isinstance(result, LoadStats):
        return result
    if isinstance(result, RollupStats):
        return LoadStats(0, result.rows, 0)
    if isinstance(result, int) and not isinstance(result, bool):
        return LoadStats(result, result, 0)
    return LoadStats()


def execute(store: Store, source: str, fn: Callable[[], Any], *, trigger: str = "schedule",
            ) -> LoadStats:
    """Run ``fn`` as one recorded run of ``source``; re-raise its error after recording it."""
    run_id = start_run(store, source, trigger)
    token = _CURRENT.set(run_id)
    try:
        stats = as_stats(fn())
    except BaseException as exc:
        _CURRENT.reset(token)
        try:
            finish_run(store, run_id, error=f"{type(exc).__name__}: {exc}")
        except Exception:  # the run row stays 'running'; the error matters more
            log.exception("could not record the failure of run %s", run_id)
        raise
    _CURRENT.reset(token)
    finish_run(store, run_id, stats)
    return stats


def recorded(source: str) -> Callable:
    """Decorator for ``job(store, settings, ...)``: inside ``execute`` it just runs; called
    directly it records a 'manual' run of ``source`` around itself."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(store: Store, *args: Any, **kwargs: Any) -> Any:
            if _CURRENT.get() is not None:
                return fn(store, *args, **kwargs)
            box: list[Any] = []

            def call() -> Any:
                box.append(fn(store, *args, **kwargs))
                return box[0]

            execute(store, source, call, trigger="manual")
            return box[0]

        return wrapper

    return deco
