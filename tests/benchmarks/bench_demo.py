"""Benchmark: build the default-size demo city into a temporary folder.

Reports the total seconds, the seconds of every stage, the readings insert rate and one
simulator tick. Run alone with ``python tests/benchmarks/bench_demo.py``.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

from core.settings import load_settings
from core.store import Store
from pipelines import simulator
from pipelines.demo import build_demo_city


def run() -> list[dict]:
    """Rows of (name, value, unit, note) for the default-size demo build."""
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-") as tmp:
        settings = load_settings(data_dir=tmp)
        store = Store.open(settings.database_path)
        try:
            report = build_demo_city(store, settings, progress=False)
            newest = store.query_one("SELECT max(ts) FROM readings")[0]
            started = time.perf_counter()
            ticked = simulator.tick(store, settings, now=newest + timedelta(seconds=10))
            tick_s = time.perf_counter() - started
        finally:
            store.close()
        size_mb = Path(settings.database_path).stat().st_size / 1e6
    sizes = (f"{settings.demo_sensors} sensors, {settings.demo_days} d, "
             f"{settings.demo_incidents} incidents")
    rows = [{"name": "build total", "value": report.total_seconds, "unit": "s", "note": sizes}]
    rows += [{"name": f"stage {name}", "value": secs, "unit": "s", "note": ""}
             for name, secs in report.seconds.items()]
    rows += [
        {"name": "readings rows", "value": report.counts["readings"], "unit": "rows", "note": ""},
        {"name": "readings insert rate", "value": report.readings_per_second, "unit": "rows/s",
         "note": "generated with numpy, inserted through Arrow"},
        {"name": "incident events", "value": report.counts["incident_events"], "unit": "rows",
         "note": ""},
        {"name": "simulator tick", "value": tick_s, "unit": "s", "note": f"{ticked} readings"},
        {"name": "database size", "value": size_mb, "unit": "MB", "note": ""},
    ]
    return rows


if __name__ == "__main__":
    from rich.console import Console
    from rich.table import Table

    table = Table("measure", "value", "unit", "note", title="demo city build")
    for row in run():
        value = row["value"]
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        table.add_row(row["name"], shown, row["unit"], row["note"])
    Console().print(table)
