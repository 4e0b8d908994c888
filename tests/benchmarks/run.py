"""`make bench`: run every tests/benchmarks/bench_*.py and print one table.

Each module offers ``run() -> list[dict]`` with keys name, value, unit and optionally note.
Select modules with arguments: ``python tests/benchmarks/run.py demo``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent.parent))
    console = Console()
    wanted = set(argv)
    table = Table("benchmark", "measure", "value", "unit", "note", title="Yiwang benchmarks")
    failed = 0
    for path in sorted(HERE.glob("bench_*.py")):
        short = path.stem.removeprefix("bench_")
        if wanted and short not in wanted:
            continue
        console.print(f"[bold]running {short}…[/]")
        started = time.perf_counter()
        try:
            rows = _load(path).run()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed += 1
            table.add_row(short, "FAILED", "", "", repr(exc)[:120])
            continue
        for row in rows:
            value = row["value"]
            shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
            table.add_row(short, row["name"], shown, row.get("unit", ""), row.get("note", ""))
        console.print(f"  {short} took {time.perf_counter() - started:.1f} s")
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
