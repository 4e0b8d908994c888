"""``yiwang serve``: open the store, start the in-process services, serve the web app.

Services register under the ``yiwang.services`` entry point group: each is
``fn(store, settings)`` returning an object with ``.shutdown()`` (or None). A service that
fails to load or start is logged and skipped: the web app still comes up.

    $ yiwang serve --data-dir data --port 8050
    Yiwang serving http://127.0.0.1:8050/
"""

from __future__ import annotations

import logging
import signal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from core.cli import console, data_dir_option, open_store, settings_from
from core.settings import Settings
from core.store import Store

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


@click.command()
@data_dir_option
@click.option("--port", type=int, default=None, help="Port to listen on (setting port, 8050).")
@click.option("--host", default=None, help="Address to listen on (setting host, 127.0.0.1).")
@click.option("--threads", type=int, default=None, help="Web worker threads (setting threads).")
def serve(data_dir: Path | None, port: int | None, host: str | None = None,
          threads: int | None = None) -> None:
    """Serve the command centre (web app and in-process services) until Ctrl-C or SIGTERM."""
    from waitress import create_server

    from dashboard.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(data_dir=data_dir, port=port, host=host, threads=threads)
    store = open_store(settings)
    app = create_app(store, settings)
    running = start_services(store, settings)
    server = create_server(app.server, host=settings.host, port=settings.port,
                           threads=settings.threads, ident="yiwang")
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    console.print(f"Yiwang serving [bold]http://{settings.host}:{settings.port}/[/]  "
                  "(Ctrl-C to stop)")
    try:
        server.run()  # returns on KeyboardInterrupt (Ctrl-C or SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        stop_services(running)
        store.close()
        console.print("Yiwang stopped")
