"""What every browser test shares: Debian's Chromium, a real `yiwang serve` subprocess on a
free port, and a guard that fails the test on any request off 127.0.0.1 or console error.

>>> with serving(data_dir) as url:                       # doctest: +SKIP
...     page = open_page(browser, problems, viewport=VIEWPORT)
...     page.goto(url + "/login")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VIEWPORT = {"width": 1920, "height": 1080}


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    msg = f"{CHROMIUM} not installed (apt-get install -y chromium fonts-noto-cjk)"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(msg + " and REQUIRE_SERVICES=1")
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"yiwang serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"yiwang serve not healthy at {url} after {timeout}s")


def yiwang_env(**settings: str) -> dict[str, str]:
    """This process's environment without YIWANG_* settings, plus ``settings``
    (``scheduler_enabled="false"`` → ``YIWANG_SCHEDULER_ENABLED=false``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIWANG_")}
    env.update({f"YIWANG_{name.upper()}": value for name, value in settings.items()})
    return env


@contextmanager
def serving(data_dir: Path, *, check_exit: bool = True, **settings: str) -> Iterator[str]:
    """`yiwang serve` over ``data_dir`` on a free port; yields its URL, stops it with SIGTERM.

    TOTP is off unless ``settings`` says otherwise: test cities log in with a password.
    """
    settings.setdefault("totp_required", "false")
    port = free_port()
    yiwang = Path(sys.executable).with_name("yiwang")
    log_path = data_dir / "serve.log"
    log = log_path.open("a")
    proc = subprocess.Popen(
        [str(yiwang), "serve", "--data-dir", str(data_dir), "--port", str(port), "--threads", "4"],
        cwd=data_dir, env=yiwang_env(**settings), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    if check_exit:
        output = log_path.read_text()
        assert proc.returncode == 0, output
        assert "Yiwang stopped" in output, output


def open_page(browser, problems: list[str], label: str = "", **context_args):
    """A new page in a new context that aborts (and records in ``problems``) every request
    to a host other than 127.0.0.1, and records console errors and page errors."""
    context = browser.new_context(**context_args)

    def guard(route) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            problems.append(f"{label}request to another host: {route.request.url}")
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(
        f"{label}console: {m.text}"))
    page.on("pageerror", lambda exc: problems.append(f"{label}page error: {exc}"))
    return page
