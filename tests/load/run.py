"""`make load`: 50 wall screens and 200 department users against one embedded-mode server
(issue 9). Target: p95 ≤ 300 ms, 0 errors.

Builds the demo city in a temporary folder (or reuses ``--data-dir``; a kept city ages: its
incidents stop at the time it was built, and the department's work gets done by earlier runs),
starts a real ``yiwang serve`` on a free 127.0.0.1 port (TOTP off, password logins), runs
Locust headless (``tests/load/locustfile.py``, as a subprocess) against it, then prints per
request type: requests, errors, p50/p95/max over the whole run and over the steady state
(from when the last user had logged in and loaded its page), with the machine's load average and CPU count
and the CPU the server used. Server and load generator run under ``nice`` and share the
machine: the numbers are those of one box doing both.

Exit status 1 when any request failed (an HTTP error, a callback refused with 204, a login
that did not succeed, a confirm that neither did nor refused the action) or when not every
user got through its login and first page in the run time (requests still waiting when
Locust stops are not counted by it), 2 when the server or Locust could not run. A lost claim race (200 "Refused: already claimed …") is not an
error: it is counted apart.

    python tests/load/run.py                          # 5 minutes, 50 walls + 200 staff
    python tests/load/run.py --minutes 5 --walls 50 --staff 200 --data-dir /tmp/city
    python tests/load/run.py --cluster 3              # the same against 3 web processes

``--cluster N`` copies the city into a DuckLake store on the machine's PostgreSQL
(``YIWANG_LOAD_PG``, default postgresql://postgres@127.0.0.1:5432; a database made and
dropped for the run) and serves it with ``yiwang serve --workers N`` (gunicorn; the scheduler
runs on the elected leader). The server CPU then counts the workers too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TARGET_P95_MS = 300.0
REFUSED = "incident: confirm (refused, raced)"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, its live children (gunicorn's workers) and its reaped
    children so far (from /proc)."""
    fields = _stat(pid)
    if fields is None:
        return float("nan")
    total = sum(int(v) for v in fields[11:15])
    for entry in Path("/proc").iterdir():
        child = _stat(int(entry.name)) if entry.name.isdigit() else None
        if child is not None and child[1] == str(pid):      # field 4: the parent's pid
            total += sum(int(v) for v in child[11:13])
    return total / os.sysconf("SC_CLK_TCK")


PG = os.environ.get("YIWANG_LOAD_PG", "postgresql://postgres@127.0.0.1:5432")


def _cluster(data_dir: Path, console) -> tuple[str, Path, str]:
    """A fresh PostgreSQL database holding a DuckLake copy of the city (``yiwang
    migrate-to-cluster``); (storage url, cluster data folder, database name)."""
    import uuid

    import psycopg

    name = f"yiwang_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    shared = data_dir / f"cluster-{name}"
    shared.mkdir()
    url = f"ducklake:{PG}/{name}?data_path={shared / 'lake'}"
    console.print(f"copying the city into the cluster store {PG}/{name} …")
    subprocess.run([str(BIN / "yiwang"), "migrate-to-cluster", "--from",
                    str(data_dir / "city.duckdb"), "--to", url, "--data-dir", str(shared)],
                   check=True, stdout=subprocess.DEVNULL)
    return url, shared, name


def _drop_cluster(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class LoadSampler(threading.Thread):
    """The 1-minute load average every ``every`` seconds while the test runs."""

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [], threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.samples.append(os.getloadavg()[0])


def _build_city(data_dir: Path) -> None:
    if (data_dir / "city.duckdb").exists():
        print(f"reusing the city in {data_dir}", flush=True)
        return
    print(f"building the demo city into {data_dir} …", flush=True)
    subprocess.run([str(BIN / "yiwang"), "build-demo", "--data-dir", str(data_dir), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)


def _summarise(record: Path) -> tuple[dict, list[dict]]:
    lines = record.read_text().splitlines()
    head = json.loads(lines[0]) if lines else {"marks": {}}
    rows = [json.loads(line) for line in lines[1:]]
    return head["marks"], rows


def _stats(rows: list[list], since: float | None = None) -> dict[str, dict]:
    by_name: dict[str, dict] = {}
    for t, name, ms, ok, error in rows:
        if since is not None and t < since:
            continue
        entry = by_name.setdefault(name, {"times": [], "errors": 0, "messages": {}})
        entry["times"].append(ms)
        if not ok:
            entry["errors"] += 1
            entry["messages"][error] = entry["messages"].get(error, 0) + 1
    return by_name


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(ROOT / "tests"))
    from browser_support import free_port, wait_healthy, yiwang_env

    console = Console(width=None if sys.stdout.isatty() else 150)
    tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
    elif args.keep:
        data_dir = Path(tempfile.mkdtemp(prefix="yiwang-load-"))
    else:
        tmp = tempfile.TemporaryDirectory(prefix="yiwang-load-")
        data_dir = Path(tmp.name)
    nice = ["nice", "-n", str(args.nice)] if args.nice else []
    lake_db = None
    try:
        _build_city(data_dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = {"totp_required": "false",
                    "idle_timeout_minutes": str(max(30, args.minutes * 2)),
                    "scheduler_enabled": "true" if args.scheduler else "false"}
        serve_dir = data_dir
        if args.cluster:
            storage_url, serve_dir, lake_db = _cluster(data_dir, console)
            settings["storage_url"] = storage_url
        serve_cmd = [*nice, str(BIN / "yiwang"), "serve", "--data-dir", str(serve_dir),
                     "--host", "127.0.0.1", "--port", str(port)]
        if args.cluster:
            serve_cmd += ["--workers", str(args.cluster)]
        if args.threads:
            serve_cmd += ["--threads", str(args.threads)]
        log_path = serve_dir / "load-serve.log"
        log = log_path.open("w")
        server = subprocess.Popen(serve_cmd, cwd=serve_dir, env=yiwang_env(**settings),
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(url, server, timeout=120)
        except AssertionError as exc:
            console.print(f"[red]server did not start: {exc}[/]; log: {log_path}")
            server.kill()
            return 2
        users = args.walls + args.staff
        rate = args.spawn_rate or max(1.0, users / 30)
        record = data_dir / "load-requests.jsonl"
        env = {**os.environ, "YIWANG_LOAD_WALLS": str(args.walls),
               "YIWANG_LOAD_STAFF_WAIT": args.staff_wait,
               "YIWANG_LOAD_STAFF": str(args.staff), "YIWANG_LOAD_RECORD": str(record)}
        locust_cmd = [*nice, str(BIN / "locust"), "-f", str(HERE / "locustfile.py"),
                      "--headless", "--host", url, "-u", str(users), "-r", f"{rate:g}",
                      "-t", f"{int(args.minutes * 60)}s", "--only-summary",
                      "--loglevel", "WARNING", "--exit-code-on-error", "0"]
        console.print(f"server {url} (pid {server.pid}, log {log_path}); {args.walls} walls +"
                      f" {args.staff} staff, spawning {rate:g}/s, {args.minutes:g} min;"
                      f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} before", highlight=False)
        sampler = LoadSampler()
        cpu_before, wall_before = _cpu_seconds(server.pid), time.monotonic()
        sampler.start()
        locust_out = data_dir / "load-locust.log"
        with locust_out.open("w") as out:
            result = subprocess.run(locust_cmd, cwd=HERE, env=env, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    timeout=args.minutes * 60 + 300)
        sampler.done.set()
        elapsed = time.monotonic() - wall_before
        server_cpu = _cpu_seconds(server.pid) - cpu_before
        load_end = os.getloadavg()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        server_log = log_path.read_text(errors="replace")
        if not record.exists():
            console.print(f"[red]locust wrote no record (exit {result.returncode});"
                          f" see {locust_out}[/]")
            console.print(locust_out.read_text()[-3000:])
            return 2

        marks, rows = _summarise(record)
        steady_from = marks.get("ready")
        everything = _stats(rows)
        steady = _stats(rows, steady_from) if steady_from else {}
        mode = (f"cluster mode ({args.cluster} web processes, DuckLake on PostgreSQL)"
                if args.cluster else "embedded mode")
        table = Table(title=f"Yiwang load test: {args.walls} wall screens + {args.staff}"
                            f" department users, {mode}, {args.minutes:g} min")
        for column in ("request", "requests", "errors", "p50 ms", "p95 ms", "max ms",
                       "steady n", "steady p50", "steady p95"):
            table.add_column(column, justify="left" if column == "request" else "right")
        total_errors = 0
        all_times: list[float] = []
        steady_times: list[float] = []
        for name in sorted(everything):
            e, s = everything[name], steady.get(name)
            total_errors += e["errors"]
            all_times += e["times"]
            steady_p95 = _pct(s["times"], 0.95) if s else None
            if s:
                steady_times += s["times"]
            p95_style = "red" if steady_p95 is not None and steady_p95 > TARGET_P95_MS \
                else "green"
            table.add_row(name, f"{len(e['times']):,}",
                          f"[red]{e['errors']}[/]" if e["errors"] else "0",
                          _ms(_pct(e["times"], 0.5)), _ms(_pct(e["times"], 0.95)),
                          _ms(max(e["times"])), f"{len(s['times']):,}" if s else "0",
                          _ms(_pct(s["times"], 0.5) if s else None),
                          f"[{p95_style}]{_ms(steady_p95)}[/]")
        if all_times:
            table.add_section()
            table.add_row("[b]all requests[/]", f"{len(all_times):,}", str(total_errors),
                          _ms(_pct(all_times, 0.5)), _ms(_pct(all_times, 0.95)),
                          _ms(max(all_times)), f"{len(steady_times):,}",
                          _ms(_pct(steady_times, 0.5) if steady_times else None),
                          _ms(_pct(steady_times, 0.95) if steady_times else None))
        console.print(table)
        span = (max(r[0] for r in rows) - min(r[0] for r in rows)) if rows else 0
        loads = sampler.samples or [load_end[0]]
        console.print(
            f"machine: {os.cpu_count()} CPUs; load average (1 min) during the run min"
            f" {min(loads):.2f} / max {max(loads):.2f}; at the end {load_end[0]:.2f}"
            f" {load_end[1]:.2f} {load_end[2]:.2f}; server CPU {server_cpu:.0f} s over"
            f" {elapsed:.0f} s = {server_cpu / max(elapsed, 1e-9):.2f} cores;"
            f" {len(rows) / max(span, 1e-9):.1f} requests/s", highlight=False)
        steady_note = (f"steady state from {time.strftime('%H:%M:%S', time.localtime(steady_from))}"
                       f" (all users logged in, page loaded)" if steady_from else f"only {marks.get('ready_users', 0)}"
                       f" of {users} users got through login and page load: no steady state")
        console.print(f"{steady_note}; lost claim races (not errors):"
                      f" {len(everything.get(REFUSED, {}).get('times', []))};"
                      f" server log {log_path}", highlight=False)
        tracebacks = server_log.count("Traceback")
        if tracebacks:
            console.print(f"[red]server log holds {tracebacks} traceback(s)[/]")
        if "Yiwang stopped" not in server_log or server.returncode != 0:
            console.print(f"[yellow]server exit {server.returncode}, clean stop not logged[/]")
        for name, e in sorted(everything.items()):
            for message, n in sorted(e["messages"].items(), key=lambda kv: -kv[1])[:3]:
                console.print(f"[red]{n} × {name}: {message}[/]", highlight=False)
        steady_p95 = _pct(steady_times, 0.95) if steady_times else None
        verdict = ("[green]meets[/]" if total_errors == 0 and steady_p95 is not None
                   and steady_p95 <= TARGET_P95_MS else "[red]misses[/]")
        console.print(f"target p95 ≤ {TARGET_P95_MS:.0f} ms and 0 errors: {verdict}"
                      f" (steady p95 {_ms(steady_p95)} ms, {total_errors} errors)")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "mode": mode, "walls": args.walls, "staff": args.staff, "minutes": args.minutes,
                "cpus": os.cpu_count(), "load": loads, "server_cores": server_cpu / elapsed,
                "requests": {n: {"n": len(e["times"]), "errors": e["errors"],
                                 "p50": _pct(e["times"], 0.5), "p95": _pct(e["times"], 0.95)}
                             for n, e in everything.items()}}, indent=2))
        if not rows:
            return 2
        return 1 if total_errors or not steady_from else 0
    finally:
        if lake_db is not None:
            _drop_cluster(lake_db)
        if tmp is not None:
            tmp.cleanup()
        elif args.keep:
            console.print(f"kept {data_dir}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="run time (default 5: the 250 logins take the first minute)")
    parser.add_argument("--walls", type=int, default=50, help="wall screens (default 50)")
    parser.add_argument("--staff", type=int, default=200,
                        help="department users (default 200)")
    parser.add_argument("--spawn-rate", type=float, default=None,
                        help="users started per second (default: all in 30 s)")
    parser.add_argument("--staff-wait", default="10,30",
                        help="seconds between a department user's actions, MIN,MAX"
                             " (default 10,30: the inbox page itself refreshes every 20 s)")
    parser.add_argument("--data-dir", help="reuse (or build once into) this city folder")
    parser.add_argument("--threads", type=int, default=None,
                        help="server worker threads (default: the threads setting)")
    parser.add_argument("--no-scheduler", dest="scheduler", action="store_false",
                        help="do not run the pipeline scheduler (the data simulator)")
    parser.add_argument("--nice", type=int, default=10,
                        help="niceness of server and load generator (0: none)")
    parser.add_argument("--cluster", type=int, default=0, metavar="N",
                        help="cluster mode: copy the city into a DuckLake store on the"
                             " machine's PostgreSQL (a database made and dropped for the run)"
                             " and serve it with N web processes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary city folder")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
