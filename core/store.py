"""The store: the one object that owns the database.

Embedded mode keeps one DuckDB connection per process; every thread gets its own cursor
(DuckDB's way of sharing one database between threads). Nothing else in Yiwang opens a
connection: code asks the store to ``query`` or to run a ``transaction``.

>>> store = Store.open("/tmp/example.duckdb")
>>> store.query("SELECT 42")
[(42,)]

Cluster mode (docs/cluster.md) opens a DuckLake whose catalog is a PostgreSQL database and
whose data files live under a shared data path; the API is the same:

>>> lake = Store.open_url("ducklake:postgresql://postgres@127.0.0.1/yw?data_path=/srv/lake")  # doctest: +SKIP
>>> lake.mode
'cluster'
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

__all__ = ["Store", "StoreError", "extension_path", "spatial_extension_path",
           "write_conflict"]

MIGRATIONS_PACKAGE = "core.migrations"
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
LAKE_ALIAS = "lake"
log = logging.getLogger("yiwang.store")
# statements that change the lake and so take the cluster write lock outside a transaction
_WRITE = re.compile(
    r"^\s*(?:--[^\n]*\n\s*)*(?:INSERT|UPDATE|DELETE|MERGE|COPY|TRUNCATE|DROP|ALTER"
    r"|CREATE(?!\s+(?:OR\s+REPLACE\s+)?TEMP))\b", re.IGNORECASE)


class StoreError(RuntimeError):
    """The database cannot be opened or migrated; the message says why."""


def write_conflict(exc: BaseException | None) -> bool:
    """Did a write lose to a concurrent one (DuckDB's optimistic concurrency), also when
    wrapped by another error (the audit log's)? The loser runs its transaction again."""
    while exc is not None:
        if isinstance(exc, duckdb.TransactionException | duckdb.ConstraintException):
            return True
        exc = exc.__cause__
    return False


def spatial_extension_path() -> Path:
    """The spatial extension shipped by the ``duckdb-extension-spatial`` wheel.

    Loading it by path means no ``INSTALL`` ever reaches the internet.
    """
    return extension_path("spatial")


_EXTENSION_PACKAGES = {
    "spatial": ("duckdb_extension_spatial", "duckdb-extension-spatial"),
    # DuckLake's PostgreSQL catalog needs the extension under its file name postgres_scanner
    "postgres_scanner": ("duckdb_extension_postgres_scanner",
                         "duckdb-extension-postgres-scanner"),
    "ducklake": ("duckdb_extension_ducklake", "duckdb-extension-ducklake"),
}


def extension_path(name: str) -> Path:
    """The ``<name>.duckdb_extension`` file shipped by its PyPI wheel, for this DuckDB."""
    import importlib

    module, dist = _EXTENSION_PACKAGES[name]
    try:
        base = Path(importlib.import_module(module).__path__[0])
    except ImportError as exc:
        raise StoreError(f"the {name} extension needs the {dist}=={duckdb.__version__} "
                         "package") from exc
    found = sorted(base.rglob(f"v{duckdb.__version__}/{name}.duckdb_extension"))
    if not found:
        raise StoreError(
            f"{name} extension for DuckDB {duckdb.__version__} not found under {base}; "
            f"install {dist} of the same version"
        )
    return found[0]


class Store:
    """Owns the database connection; hands each thread its own cursor."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, url: str, *,
                 cluster: _ClusterParts | None = None) -> None:
        self._root = connection
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cluster = cluster
        self._generation = 0
        self._reopen_lock = threading.Lock()

    @property
    def mode(self) -> str:
        """``"embedded"`` (one DuckDB file, one process) or ``"cluster"`` (DuckLake)."""
        return "embedded" if self._cluster is None else "cluster"

    @property
    def dsn(self) -> str | None:
        """The PostgreSQL catalog's connection string (cluster mode), else None."""
        return None if self._cluster is None else self._cluster.dsn

    @property
    def lake_alias(self) -> str:
        return LAKE_ALIAS

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

    @classmethod
    def open_url(cls, url: str, *, data_path: str | Path | None = None, migrate: bool = True,
                 read_only: bool = False) -> Store:
        """Open a store by URL: ``duckdb:///path/city.duckdb`` (or a plain path) is the
        embedded file; ``ducklake:postgresql://user@host:port/db?data_path=/shared/lake`` is
        cluster mode (catalog in that PostgreSQL database, Parquet files under data_path;
        ``data_path`` here is used when the URL has none). Extensions load from their PyPI
        wheels by path; nothing is ever downloaded.
        """
        if not url.startswith("ducklake:"):
            return cls.open(Path(url.removeprefix("duckdb://")), migrate=migrate,
                            read_only=read_only)
        from core import cluster

        try:
            parsed = cluster.parse_lake_url(url)
        except cluster.ClusterError as exc:
            raise StoreError(str(exc)) from exc
        folder = parsed.data_path or (str(data_path) if data_path is not None else None)
        if not folder:
            raise StoreError("a ducklake: store needs a data path: add ?data_path=/shared/lake "
                             "to the URL (every process must see the same folder)")
        if "://" not in folder and not read_only:
            Path(folder).mkdir(parents=True, exist_ok=True)
        con = parts = None
        try:
            parts = _ClusterParts(parsed.dsn, folder, read_only)
            con = parts.connect()
        except (duckdb.Error, StoreError, cluster.ClusterError) as exc:
            if parts is not None:
                parts.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open {cluster.redact(url)}: {exc}") from exc
        store = cls(con, cluster.redact(url), cluster=parts)
        if migrate and not read_only:
            store.migrate()
        return store

    @classmethod
    def from_settings(cls, settings: Any, *, migrate: bool = True) -> Store:
        """The store ``settings`` name: ``storage_url`` when it is a ducklake: URL (data path
        defaulting to ``<data_dir>/lake``), else the embedded ``settings.database_path``."""
        url = settings.storage_url or ""
        if url.startswith("ducklake:"):
            store = cls.open_url(url, data_path=Path(settings.data_dir) / "lake",
                                 migrate=migrate)
            store.audit_dir = Path(settings.data_dir)  # the signed audit head: shared folder
            return store
        return cls.open(settings.database_path, migrate=migrate)

    # -- access ---------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (created on first use, and again after a reopen)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None or self._local.generation != self._generation:
            with self._lock:
                cur, generation = self._root.cursor(), self._generation
            if self._cluster is not None:
                cur.execute(f"USE {LAKE_ALIAS}")
                cur = _LakeCursor(cur, self, generation)
            self._local.cursor, self._local.generation = cur, generation
        return cur

    def release_cursor(self) -> None:
        """Close this thread's cursor (the next ``cursor()`` makes a new one). A result left
        unread keeps its statement's transaction open until the cursor's next statement; on
        a lake that is a PostgreSQL transaction holding catalog locks, which lake
        maintenance and other writers then wait on. Web requests and scheduler jobs call
        this when they end. Not inside a transaction."""
        cur = getattr(self._local, "cursor", None)
        if cur is not None:
            self._local.cursor = None
            with suppress(duckdb.Error):
                cur.close()

    def reopen(self, generation: int) -> bool:
        """Cluster mode: replace a DuckDB instance that a fatal error invalidated ("the
        database must be restarted") by a fresh one; every thread's next ``cursor()`` is on
        it. Only the first caller for ``generation`` reopens; True when this call did."""
        if self._cluster is None:
            return False
        # not under self._lock, which every cursor() takes: connecting takes a while
        with self._reopen_lock:
            if generation != self._generation:
                return False
            fresh = self._cluster.connect(first=False)
            with self._lock:
                old, self._root = self._root, fresh
                self._generation += 1
        log.warning("cluster store: DuckDB instance invalidated by a fatal error; reopened")
        with suppress(duckdb.Error):
            old.close()
        return True

    def nextval(self, sequence: str, n: int = 1) -> list[int]:
        """``n`` fresh values of ``sequence`` (a DuckDB sequence, or its PostgreSQL twin in
        cluster mode): allocate ids first where DuckLake has no ``RETURNING``."""
        if self._cluster is not None:
            return self._cluster.sequences.take(sequence, n)
        rows = self.cursor().execute("SELECT nextval(?) FROM range(?)", [sequence, n]).fetchall()
        return [r[0] for r in rows]

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Cluster mode: hold the cluster-wide write lock (re-entrant); embedded: no-op."""
        if self._cluster is None:
            yield
            return
        with self._cluster.write_lock.held():
            yield

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple]:
        """Run a read and return all rows."""
        return self._read(sql, lambda cur: cur.execute(sql, params).fetchall())

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple | None:
        """The first row, or None. The result is read to its end: a result left half read
        keeps its transaction open (on a lake, an idle PostgreSQL transaction whose locks
        stop maintenance from dropping inlined-data tables)."""
        rows = self._read(sql, lambda cur: cur.execute(sql, params).fetchall())
        return rows[0] if rows else None

    def query_df(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()):
        """Run a read and return a pandas DataFrame."""
        return self._read(sql, lambda cur: cur.execute(sql, params).df())

    def query_dicts(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        def run(cur) -> list[dict]:
            cur = cur.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

        return self._read(sql, run)

    def _read(self, sql: str, run):
        """``run(cursor)``. In cluster mode a read DuckLake failed mid-way (an internal error
        invalidated the instance, or its transaction aborted under it during another
        process's maintenance) runs once more on a fresh cursor, outside a transaction or
        snapshot: a read changes nothing, so running it again is safe (not a writing sql)."""
        cur = self.cursor()
        try:
            return run(cur)
        except duckdb.Error as exc:
            if (self._cluster is None or getattr(self._local, "in_transaction", False)
                    or getattr(self._local, "pinned", False) or not _lake_hiccup(exc)
                    or _WRITE.match(sql)):
                raise
            log.warning("cluster store: read failed (%s: %s); running it again",
                        type(exc).__name__, str(exc).splitlines()[0][:200])
            if _invalidating(exc):  # also when raised while fetching, not by execute
                self.reopen(cur._generation)
        self._local.cursor = None  # a new one (not closed: a caller may still hold it)
        return run(self.cursor())

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: commit when the block ends, roll back if it raises.

        In cluster mode the block holds the cluster write lock (taken before BEGIN, so the
        transaction reads the latest committed snapshot): writers are serial across
        processes, as they are in one embedded file.
        """
        if self._cluster is not None:
            with self._cluster.write_lock.held():
                self._local.in_transaction = True
                try:
                    yield from self._transaction()
                finally:
                    self._local.in_transaction = False
            return
        yield from self._transaction()

    @contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Several reads from one consistent snapshot, then rolled back (read-only; no write
        lock). On a lake the catalog is read once for the block instead of once per query.

        >>> with store.snapshot() as cur:                       # doctest: +SKIP
        ...     n = cur.execute("SELECT count(*) FROM incidents").fetchone()[0]
        """
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        self._local.pinned = True   # its reads are not run again on another cursor
        try:
            yield cur
        finally:
            self._local.pinned = False
            _rollback(cur)

    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            _rollback(cur)
            raise
        else:
            cur.execute("COMMIT")

    def close(self) -> None:
        self._root.close()
        if self._cluster is not None:
            self._cluster.close()

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        if self._cluster is not None:  # information_schema costs ~0.5 s on a lake: ask directly
            try:
                return self.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations")[0]
            except duckdb.CatalogException:
                return 0
        row = self.query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        )
        if not row or not row[0]:
            return 0
        return self.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations")[0]

    def migrate(self) -> list[str]:
        """Apply every migration newer than the database, each in its own transaction.

        Cluster mode adapts each script to DuckLake first (core.cluster_sql: constraints,
        indexes and sequences) and records every change in ``cluster_adaptations``.
        """
        if self._cluster is not None:
            with self._cluster.write_lock.held():  # one process migrates; the others wait
                return self._migrate_lake()
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


    def _migrate_lake(self) -> list[str]:
        from core.cluster_sql import adapt_migration

        current = self.schema_version()
        applied = []
        for version, name, sql in _migrations():
            if version <= current:
                continue
            statements, notes = adapt_migration(sql)
            try:
                for stmt in statements:  # PostgreSQL sequences first (idempotent)
                    if stmt.kind == "sequence":
                        self._cluster.sequences.create(stmt.name, stmt.start)
                with self.transaction() as cur:
                    if version == 1:
                        cur.execute(
                            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER"
                            " NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
                        cur.execute(
                            "CREATE TABLE IF NOT EXISTS cluster_adaptations (version INTEGER"
                            " NOT NULL, object VARCHAR NOT NULL, change VARCHAR NOT NULL)")
                    for stmt in statements:
                        if stmt.kind == "sql":
                            cur.execute(stmt.sql)
                    if notes:
                        cur.executemany("INSERT INTO cluster_adaptations VALUES (?, ?, ?)",
                                        [[version, n.object, n.change] for n in notes])
                    cur.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        [version, name, datetime.now(UTC).replace(tzinfo=None)],
                    )
            except Exception as exc:
                if not isinstance(exc, duckdb.Error) and type(exc).__module__.split(".")[0] \
                        not in ("psycopg", "core"):
                    raise
                raise StoreError(f"migration {version:03d}_{name} failed: {exc}") from exc
            applied.append(f"{version:03d}_{name}")
        return applied


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _lake_hiccup(exc: BaseException) -> bool:
    """A DuckLake failure that a fresh cursor can get past: an internal or fatal error (the
    instance is reopened), a cursor of an instance replaced meanwhile ("connection already
    closed"), or a statement whose transaction was aborted under it."""
    if _invalidating(exc) or isinstance(exc, duckdb.ConnectionException):
        return True
    text = str(exc)
    return "transaction is aborted" in text or "unsuccessful query result" in text


def _invalidating(exc: BaseException) -> bool:
    """An error after which DuckDB refuses every statement of the instance."""
    return (isinstance(exc, (duckdb.FatalException, duckdb.InternalException))
            or "has been invalidated" in str(exc))


def _rollback(cur: Any) -> None:
    """Roll back; an instance that a fatal error invalidated (and the store reopened) has
    nothing left to undo, and the error that got us here is the one to report."""
    with suppress(duckdb.FatalException, duckdb.ConnectionException):
        cur.execute("ROLLBACK")


PG_POOL_CONNECTIONS = 32   # per process: web threads + scheduler jobs + parallel scans


class _ClusterParts:
    """The PostgreSQL side of a cluster store: write lock and sequences."""

    def __init__(self, dsn: str, data_path: str, read_only: bool = False) -> None:
        from core.cluster import Sequences, WriteLock

        self.dsn = dsn
        self.data_path = data_path
        self.read_only = read_only
        self.write_lock = WriteLock(dsn)
        self.sequences = Sequences(dsn)

    def connect(self, *, first: bool = True) -> duckdb.DuckDBPyConnection:
        """A new DuckDB instance with the lake attached (extensions loaded by path). The
        ``first`` ATTACH of a process may create the catalog and takes the write lock; a
        reopen does not (the thread holding the lock may be the one waiting for it)."""
        con = duckdb.connect(config={"autoinstall_known_extensions": False})
        try:
            for name in ("spatial", "postgres_scanner", "ducklake"):
                con.execute(f"LOAD '{extension_path(name)}'")
            # Every table scan on the lake reads catalog rows over a pooled PostgreSQL
            # connection. The default pool keeps 4: a web process's threads past the 4th
            # each opened (and closed) a new connection per statement. Measured with 8
            # threads: 14.7 → 25 inbox refreshes/s, 80 → 65 ms of CPU each.
            con.execute(f"SET pg_pool_max_connections = {PG_POOL_CONNECTIONS}")
            con.create_function("yw_nextval", self.sequences.udf, [duckdb.sqltypes.VARCHAR],
                                duckdb.sqltypes.BIGINT, type="arrow", side_effects=True)
            target = _quote("ducklake:postgres:" + self.dsn)
            folder_sql = _quote(self.data_path.rstrip("/") + "/")
            options = f"DATA_PATH {folder_sql}" + (", READ_ONLY" if self.read_only else "")
            if first:   # the first ATTACH creates the catalog: one at a time
                with self.write_lock.held():
                    con.execute(f"ATTACH {target} AS {LAKE_ALIAS} ({options})")
            else:
                con.execute(f"ATTACH {target} AS {LAKE_ALIAS} ({options})")
            con.execute(f"USE {LAKE_ALIAS}")
        except BaseException:
            con.close()
            raise
        return con

    def close(self) -> None:
        self.write_lock.close()
        self.sequences.close()


class _LakeCursor:
    """A DuckDB cursor on the lake that rewrites ``nextval(`` and takes the cluster write
    lock around a writing statement run outside a transaction (autocommit)."""

    __slots__ = ("_cur", "_generation", "_store")

    def __init__(self, cur: duckdb.DuckDBPyConnection, store: Store, generation: int = 0) -> None:
        self._cur = cur
        self._store = store
        self._generation = generation

    def _prepare(self, sql: str) -> str:
        if "nextval" in sql.lower():
            from core.cluster_sql import rewrite_nextval

            return rewrite_nextval(sql)
        return sql

    def _locked(self, sql: str):
        if getattr(self._store._local, "in_transaction", False) or not _WRITE.match(sql):
            return _NO_LOCK
        return self._store._cluster.write_lock.held()

    def execute(self, sql: str, parameters: Any = None) -> _LakeCursor:
        sql = self._prepare(sql)
        try:
            with self._locked(sql):
                if parameters is None:
                    self._cur.execute(sql)
                else:
                    self._cur.execute(sql, parameters)
        except (duckdb.FatalException, duckdb.InternalException):
            # DuckDB invalidates the whole instance after such an error: this statement
            # fails, the store reopens, and the next cursor() works again
            self._store.reopen(self._generation)
            raise
        return self

    def executemany(self, sql: str, parameters: Any = ()) -> _LakeCursor:
        sql = self._prepare(sql)
        with self._locked(sql):
            self._cur.executemany(sql, parameters)
        return self

    def fetchone(self) -> tuple | None:
        """One row, and the rest of the result read and dropped: a result left half read
        keeps the statement's transaction, and so a PostgreSQL transaction holding locks on
        the catalog, open until the cursor's next statement (maintenance's DROP of an
        inlined-data table then waits, holding the cluster write lock). Nothing here reads
        a result row by row."""
        row = self._cur.fetchone()
        if row is not None:
            self._cur.fetchall()
        return row

    def sql(self, query: str, *args: Any, **kwargs: Any):
        return self._cur.sql(self._prepare(query), *args, **kwargs)

    def query(self, query: str, *args: Any, **kwargs: Any):
        return self._cur.query(self._prepare(query), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)

    def __enter__(self) -> _LakeCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NO_LOCK = _NoLock()


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
