"""``yiwang build-demo``: generate the demo city into the database.

Registered through the ``yiwang.commands`` entry point; ``yiwang demo`` invokes it with
``if_absent=True`` before serving.

    yiwang build-demo                       # refuses if the database holds a city
    yiwang build-demo --rebuild --sensors 5000 --days 7
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from core.cli import data_dir_option, open_store, settings_from
from pipelines.demo import DEMO_PASSWORD, DEMO_USERS, DemoCityExists, build_demo_city, has_city

__all__ = ["build_demo"]

console = Console(stderr=True)

# option name -> setting it overrides
_SIZES = {
    "seed": "demo_seed", "districts": "demo_districts", "streets": "demo_streets",
    "communities": "demo_communities", "sensors": "demo_sensors", "days": "demo_days",
    "reading_minutes": "demo_reading_minutes", "incidents": "demo_incidents",
}


@click.command("build-demo")
@data_dir_option
@click.option("--if-absent", is_flag=True, help="Do nothing when the database holds a city.")
@click.option("--rebuild", is_flag=True, help="Replace the city in the database (drops its data).")
@click.option("--seed", type=int, default=None, help="Generator seed (setting demo_seed).")
@click.option("--districts", type=int, default=None, help="Districts (demo_districts).")
@click.option("--streets", type=int, default=None, help="Streets (demo_streets).")
@click.option("--communities", type=int, default=None, help="Communities (demo_communities).")
@click.option("--sensors", type=int, default=None, help="Sensors (demo_sensors).")
@click.option("--days", type=int, default=None, help="Days of history (demo_days).")
@click.option("--reading-minutes", type=int, default=None,
              help="Minutes between historical readings (demo_reading_minutes).")
@click.option("--incidents", type=int, default=None, help="Incidents (demo_incidents).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build_demo(data_dir: Path | None, if_absent: bool = False, rebuild: bool = False,
               quiet: bool = False, **sizes: int | None) -> None:
    """Generate the demo city (seeded, sized by the demo_* settings) into the database."""
    if if_absent and rebuild:
        raise click.UsageError("--if-absent and --rebuild contradict each other; choose one")
    settings = settings_from(data_dir=data_dir, **{_SIZES[k]: v for k, v in sizes.items()})
    store = open_store(settings)
    try:
        if if_absent and has_city(store):
            console.print(f"{settings.database_path} already holds a city: kept as it is")
            return
        try:
            report = build_demo_city(store, settings, progress=not quiet, rebuild=rebuild)
        except (DemoCityExists, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    table = Table("table", "rows", title=f"demo city in {settings.database_path}")
    for name, count in report.counts.items():
        table.add_row(name, f"{count:,}")
    timing = Table("stage", "seconds", title="timings")
    for name, secs in report.seconds.items():
        timing.add_row(name, f"{secs:.2f}")
    timing.add_row("total", f"{report.total_seconds:.2f}")
    timing.add_row("readings/s", f"{report.readings_per_second:,.0f}")
    console.print(table, timing)
    users = ", ".join(u.username for u in DEMO_USERS)
    console.print(f"demo users: {users}; password for all: {DEMO_PASSWORD}")


@click.group("pipelines")
def pipelines_group() -> None:
    """List the pipeline jobs, run one by hand, retry quarantined rows."""


@pipelines_group.command("list")
@data_dir_option
def pipelines_list(data_dir: Path | None) -> None:
    """Every job with its kind, interval, last success, last status and freshness."""
    from pipelines.scheduler import all_jobs, register_sources

    settings = settings_from(data_dir=data_dir)
    store = open_store(settings)
    try:
        jobs = _jobs(settings, all_jobs)
        register_sources(store, jobs)
        fresh = {r[0]: r for r in store.query(
            "SELECT name, last_success, last_status, stale FROM source_freshness")}
        table = Table("job", "kind", "every", "last success", "last status", "stale",
                      "description", title="pipeline jobs")
        for job in jobs:
            _, last, status, stale = fresh.get(job.id, (None, None, None, True))
            table.add_row(job.id, job.kind, f"{job.seconds:g} s",
                          last.isoformat(sep=" ", timespec="seconds") if last else "never",
                          status or "", "yes" if stale else "no", job.description)
        Console().print(table)
    finally:
        store.close()


@pipelines_group.command("run")
@data_dir_option
@click.argument("name")
def pipelines_run(data_dir: Path | None, name: str) -> None:
    """Run the job NAME now (recorded in ingest_runs like a scheduled run)."""
    from pipelines.scheduler import all_jobs, register_sources, run_job

    settings = settings_from(data_dir=data_dir)
    store = open_store(settings)
    try:
        jobs = {job.id: job for job in _jobs(settings, all_jobs)}
        if name not in jobs:
            raise click.ClickException(f"no job {name}; jobs: {', '.join(sorted(jobs))}")
        register_sources(store, list(jobs.values()))
        try:
            stats = run_job(store, settings, jobs[name], trigger="manual")
        except Exception as exc:
            raise click.ClickException(f"{name} failed: {type(exc).__name__}: {exc}") from None
    finally:
        store.close()
    console.print(f"{name}: {stats.rows_in:,} rows in, {stats.loaded:,} loaded,"
                  f" {stats.rejected:,} rejected")


@pipelines_group.command("reprocess")
@data_dir_option
@click.option("--contract", default=None, help="Only this dataset's quarantined rows.")
def pipelines_reprocess(data_dir: Path | None, contract: str | None) -> None:
    """Retry open quarantine entries against the contracts as declared now."""
    from pipelines.quarantine import reprocess

    settings = settings_from(data_dir=data_dir)
    store = open_store(settings)
    try:
        results = _config_guard(lambda: reprocess(store, settings, contract))
    finally:
        store.close()
    if not results:
        console.print("nothing to reprocess")
    for name, stats in results.items():
        console.print(f"{name}: {stats.rows_in:,} retried, {stats.loaded:,} loaded,"
                      f" {stats.rejected:,} still refused")


def _config_guard(fn):
    from pipelines.config import ConfigError

    try:
        return fn()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _jobs(settings, all_jobs):
    return _config_guard(lambda: all_jobs(settings))
