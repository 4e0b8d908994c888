"""`make soak`: the wall screen left running, measuring for leaks (not part of `make test`).

Builds a demo city (or uses ``--data-dir``), starts a real ``yiwang serve`` (scheduler on: the
simulator keeps data moving), opens ``/wall?refresh=1`` in headless Chromium as the city
commander and samples, every ``--sample`` seconds after a forced garbage collection:
the page's JS heap (CDP ``Performance.getMetrics``: JSHeapUsedSize), its DOM node count and
the server's resident memory (``/proc/<pid>/status`` VmRSS).

Growth is measured from the first sample after warm-up (``--warmup``, default 10 % of the
run) to the median of the last three samples. Bounds (``--heap-mb``, ``--rss-mb``, defaults
16 MB and 64 MB) fail the run with exit status 1; so do console errors and requests to any
host but 127.0.0.1. The samples go to tests/artifacts/soak.json.

    python tests/soak.py                      # 20 minutes at 1 s refresh
    python tests/soak.py --minutes 3 --refresh 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-background-timer-throttling",
                 "--disable-renderer-backgrounding"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"yiwang serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"yiwang serve not healthy at {url}")


def _build_city(data_dir: Path) -> None:
    if (data_dir / "city.duckdb").exists():
        return
    print(f"building the demo city into {data_dir} …", flush=True)
    yiwang = Path(sys.executable).with_name("yiwang")
    subprocess.run([str(yiwang), "build-demo", "--data-dir", str(data_dir)], check=True,
                   stdout=subprocess.DEVNULL)


def soak(args: argparse.Namespace) -> int:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from pipelines.demo.catalog import DEMO_PASSWORD

    tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="yiwang-soak-")
        data_dir = Path(tmp.name)
    _build_city(data_dir)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIWANG_")}
    env["YIWANG_TOTP_REQUIRED"] = "false"
    env["YIWANG_IDLE_TIMEOUT_MINUTES"] = str(max(30, args.minutes * 2))
    log = (data_dir / "soak-serve.log").open("w")
    yiwang = Path(sys.executable).with_name("yiwang")
    proc = subprocess.Popen([str(yiwang), "serve", "--data-dir", str(data_dir), "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    problems: list[str] = []
    samples: list[dict] = []
    try:
        _wait_healthy(url, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1920, "height": 1080},
                                          locale="zh-CN", timezone_id="Asia/Shanghai")

            def guard(route) -> None:
                if urlsplit(route.request.url).hostname != "127.0.0.1":
                    problems.append(f"request to another host: {route.request.url}")
                    route.abort()
                else:
                    route.continue_()

            context.route("**/*", guard)
            page = context.new_page()
            page.on("console", lambda m: m.type == "error"
                    and problems.append(f"console: {m.text}"))
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{url}/login?next=/wall%3Frefresh%3D{args.refresh}%26dwell%3D{args.dwell}")
            page.fill("#username", "commander")
            page.fill("#password", DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector(".yw-wall-kpi", timeout=60_000)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            started = time.monotonic()
            end = started + args.minutes * 60
            while True:
                cdp.send("HeapProfiler.collectGarbage")
                metrics = {m["name"]: m["value"]
                           for m in cdp.send("Performance.getMetrics")["metrics"]}
                seq = page.evaluate("window.yiwangWallState ? window.yiwangWallState.seq : 0")
                sample = {"t": round(time.monotonic() - started, 1),
                          "heap_mb": round(metrics["JSHeapUsedSize"] / 2**20, 2),
                          "nodes": int(metrics["Nodes"]),
                          "rss_mb": round(_rss_mb(proc.pid), 1), "refreshes": seq}
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                if time.monotonic() >= end:
                    break
                page.wait_for_timeout(min(args.sample, max(0.1, end - time.monotonic())) * 1000)
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if tmp is not None:
            tmp.cleanup()
    return _report(args, samples, problems)


def _report(args: argparse.Namespace, samples: list[dict], problems: list[str]) -> int:
    warm = args.warmup if args.warmup is not None else args.minutes * 60 * 0.1
    steady = [s for s in samples if s["t"] >= warm] or samples
    first, tail = steady[0], steady[-3:]
    heap_growth = statistics.median(s["heap_mb"] for s in tail) - first["heap_mb"]
    rss_growth = statistics.median(s["rss_mb"] for s in tail) - first["rss_mb"]
    refreshes = samples[-1]["refreshes"] if samples else 0
    summary = {"minutes": args.minutes, "refresh_s": args.refresh, "refreshes": refreshes,
               "heap_mb_first": first["heap_mb"], "heap_mb_growth": round(heap_growth, 2),
               "heap_bound_mb": args.heap_mb, "rss_mb_first": first["rss_mb"],
               "rss_mb_growth": round(rss_growth, 1), "rss_bound_mb": args.rss_mb,
               "nodes_first": first["nodes"], "nodes_last": samples[-1]["nodes"],
               "problems": problems[:20]}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "soak.json").write_text(json.dumps({"summary": summary, "samples": samples},
                                                    indent=1))
    print(json.dumps(summary, indent=1))
    failed = []
    if heap_growth > args.heap_mb:
        failed.append(f"JS heap grew {heap_growth:.1f} MB > {args.heap_mb} MB")
    if rss_growth > args.rss_mb:
        failed.append(f"server RSS grew {rss_growth:.1f} MB > {args.rss_mb} MB")
    if problems:
        failed.append(f"{len(problems)} browser problems (console errors or off-host requests)")
    if refreshes < args.minutes * 60 / args.refresh * 0.5:
        failed.append(f"only {refreshes} refreshes in {args.minutes} min")
    for line in failed:
        print("SOAK FAILED:", line)
    if not failed:
        print("soak passed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the run")
    parser.add_argument("--refresh", type=int, default=1, help="wall refresh, seconds")
    parser.add_argument("--dwell", type=int, default=15, help="rotation dwell, seconds")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before the baseline sample (default 10 %% of the run)")
    parser.add_argument("--heap-mb", type=float, default=16.0, help="allowed JS heap growth")
    parser.add_argument("--rss-mb", type=float, default=64.0, help="allowed server RSS growth")
    parser.add_argument("--data-dir", help="use this city instead of building a demo city")
    return soak(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
