"""The store: the one object that owns the database.

Embedded mode keeps one DuckDB connection per process; every thread gets its own cursor
(DuckDB's way of sharing one database between threads). Nothing else in Yiwang opens a
connection: code asks the store to ``query`` or to run a ``transaction``.

>>> store = Store.open("/tmp/example.duckdb")
>>> store.query("SELECT 42")
[(42,)]
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

__all__ = ["Store", "StoreError", "spatial_extension_path"]

MIGRATIONS_PACKAGE = "core.migrations"
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class StoreError(RuntimeError):
    """The database cannot be opened or migrated; the message says why."""


def spatial_extension_path() -> Path:
    """The spatial extension shipped by the ``duckdb-extension-spatial`` wheel.

    Loading it by path means no ``INSTALL`` ever reaches the internet.
    """
    import duckdb_extension_spatial

    base = Path(duckdb_extension_spatial.__path__[0])
    found = sorted(base.rglob(f"v{duckdb.__version__}/spatial.duckdb_extension"))
    if not found:
        raise StoreError(
            f"spatial extension for DuckDB {duckdb.__version__} not found under {base}; "
            "install duckdb-extension-spatial of the same version"
        )
    return found[0]


class Store:
    """Owns the database connection; hands each thread its own cursor."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, url: str) -> None:
        self._root = connection
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, *, migrate: bool = True, read_only: bool = False) -> Store:
        """Open (creating if needed) the embedded DuckDB file and bring its schema up to date."""
        path = Path(path)
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        con.execute(f"LOAD '{spatial_extension_path()}'")
        store = cls(con, f"duckdb:///{path}")
        if migrate and not read_only:
            store.migrate()
        return store

    # -- access ---------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (created on first use)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                cur = self._root.cursor()
            self._local.cursor = cur
        return cur

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple]:
        """Run a read and return all rows."""
        return self.cursor().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple | None:
        return self.cursor().execute(sql, params).fetchone()

    def query_df(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()):
        """Run a read and return a pandas DataFrame."""
        return self.cursor().execute(sql, params).df()

    def query_dicts(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        cur = self.cursor().execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: commit when the block ends, roll back if it raises."""
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")

    def close(self) -> None:
        self._root.close()

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self.query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        )
        if not row or not row[0]:
            return 0
        return self.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations")[0]

    def migrate(self) -> list[str]:
        """Apply every migration newer than the database, each in its own transaction."""
        current = self.schema_version()
        applied = []
        for version, name, sql in _migrations():
            if version <= current:
                continue
            try:
                with self.transaction() as cur:
                    if version == 1:
                        cur.execute(
                            "CREATE TABLE IF NOT EXISTS schema_migrations ("
                            "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                            " applied_at TIMESTAMP NOT NULL)"
                        )
                    cur.execute(sql)
                    cur.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        [version, name, datetime.now(UTC).replace(tzinfo=None)],
                    )
            except duckdb.Error as exc:
                raise StoreError(f"migration {version:03d}_{name} failed: {exc}") from exc
            applied.append(f"{version:03d}_{name}")
        return applied


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"migrations must be numbered 001, 002, … without gaps: {versions}")
    return found
