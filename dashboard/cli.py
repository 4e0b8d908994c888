"""``yiwang serve``: open the store, start the in-process services, serve the web app.

Services register under the ``yiwang.services`` entry point group: each is
``fn(store, settings)`` returning an object with ``.shutdown()`` (or None). A service that
fails to load or start is logged and skipped: the web app still comes up.

Embedded mode (one DuckDB file) serves from one process with waitress. Cluster mode
(``storage_url = "ducklake:postgresql://…"``, docs/cluster.md) may run ``--workers N``
processes under gunicorn; each worker opens its own store and starts the services (the
scheduler runs only on the elected leader).

    $ yiwang serve --data-dir data --port 8050
    Yiwang serving http://127.0.0.1:8050/
    $ YIWANG_STORAGE_URL="ducklake:postgresql://yiwang@db/yiwang?data_path=/srv/lake" \
        yiwang serve --workers 3
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from core.cli import console, data_dir_option, settings_from
from core.settings import Settings
from core.store import Store, StoreError

__all__ = ["serve", "start_services", "stop_services"]

log = logging.getLogger("yiwang.serve")


def start_services(store: Store, settings: Settings) -> list[tuple[str, Any]]:
    """Start every ``yiwang.services`` entry point; return (name, handle) of those running."""
    running = []
    for ep in entry_points(group="yiwang.services"):
        try:
            handle = ep.load()(store, settings)
        except Exception as exc:  # a broken service must not keep the web app down
            log.warning("service %s not started: %s: %s", ep.name, type(exc).__name__, exc)
            console.print(f"[yellow]service {ep.name} not started:[/] {exc}")
            continue
        if handle is not None:
            running.append((ep.name, handle))
            log.info("service %s started", ep.name)
    return running


def stop_services(running: list[tuple[str, Any]]) -> None:
    """Shut services down in reverse start order; one failing does not stop the others."""
    for name, handle in reversed(running):
        try:
            handle.shutdown()
        except Exception as exc:
            log.warning("service %s did not shut down cleanly: %s", name, exc)


def _raise_keyboard_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


EMBEDDED_WORKERS_REFUSED = (
    "embedded mode keeps the city in one DuckDB file, which one process at a time may "
    "write: run with --workers 1, or move to cluster mode (storage_url = "
    "\"ducklake:postgresql://…?data_path=…\", `yiwang migrate-to-cluster`, docs/cluster.md)")


def open_store(settings: Settings) -> Store:
    """The store the settings name (embedded file or cluster lake)."""
    try:
        return Store.from_settings(settings)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@data_dir_option
@click.option("--port", type=int, default=None, help="Port to listen on (setting port, 8050).")
@click.option("--host", default=None, help="Address to listen on (setting host, 127.0.0.1).")
@click.option("--threads", type=int, default=None, help="Web worker threads (setting threads).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Web processes (gunicorn); more than 1 needs cluster mode.")
def serve(data_dir: Path | None, port: int | None, host: str | None = None,
          threads: int | None = None, workers: int = 1) -> None:
    """Serve the command centre (web app and in-process services) until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(data_dir=data_dir, port=port, host=host, threads=threads)
    cluster = settings.storage_url.startswith("ducklake:")
    if workers > 1 and not cluster:
        raise click.ClickException(EMBEDDED_WORKERS_REFUSED)
    if workers > 1:
        _serve_gunicorn(settings, workers)
        return
    _serve_waitress(settings)


def _serve_waitress(settings: Settings) -> None:
    from waitress import create_server

    from dashboard.app import create_app

    store = open_store(settings)
    app = create_app(store, settings)
    running = start_services(store, settings)
    server = create_server(app.server, host=settings.host, port=settings.port,
                           threads=settings.threads, ident="yiwang",
                           connection_limit=settings.connection_limit)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    console.print(f"Yiwang serving [bold]http://{settings.host}:{settings.port}/[/]  "
                  "(Ctrl-C to stop)")
    try:
        server.run()  # returns on KeyboardInterrupt (Ctrl-C or SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        # Join waitress's worker threads before the store closes under them: a request still
        # running on a DuckDB cursor at close made the process abort at exit.
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=10)
        stop_services(running)
        store.close()
        console.print("Yiwang stopped")
    _exit_now()


def _exit_now() -> None:
    """Leave without running interpreter finalisers once everything is closed.

    After a clean stop (store closed and checkpointed, services stopped, threads joined) a
    native thread of some extension was still found joinable at interpreter teardown now and
    then ("terminate called without an active exception", exit -6 in about one run in ten
    under load). Nothing is left to finalise, so exit directly with 0.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _serve_gunicorn(settings: Settings, workers: int) -> None:
    """N gunicorn worker processes (gthread, ``settings.threads`` each); every worker opens
    its own cluster store after the fork and starts the services."""
    from gunicorn.app.base import BaseApplication

    state: dict[str, Any] = {}

    def post_worker_init(worker: Any) -> None:
        state["services"] = start_services(state["store"], settings)

    def worker_exit(server: Any, worker: Any) -> None:
        stop_services(state.get("services", []))
        if "store" in state:
            state["store"].close()

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{settings.host}:{settings.port}", "workers": workers,
                "worker_class": "gthread", "threads": settings.threads, "timeout": 120,
                "graceful_timeout": 20, "preload_app": False, "proc_name": "yiwang",
                "post_worker_init": post_worker_init, "worker_exit": worker_exit,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from dashboard.app import create_app

            store = Store.from_settings(settings)
            state["store"] = store
            return create_app(store, settings).server

    console.print(f"Yiwang serving [bold]http://{settings.host}:{settings.port}/[/] with "
                  f"{workers} worker processes (cluster store; Ctrl-C to stop)")
    _App().run()
    console.print("Yiwang stopped")
