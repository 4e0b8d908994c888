"""Cluster mode: DuckLake over PostgreSQL, shared by many Yiwang processes.

A cluster store (``Store.open_url("ducklake:postgresql://…?data_path=…")``) keeps its catalog
in PostgreSQL and its data as Parquet files under a shared data path. PostgreSQL also gives
what DuckLake lacks (docs/cluster.md):

- ``WriteLock``: every write transaction of every process holds one PostgreSQL advisory
  lock, so writes are serial across the cluster as they are inside one embedded DuckDB file
  (DuckLake itself detects UPDATE/DELETE conflicts but lets two INSERTs of the same key both
  commit, and it has no primary keys to stop them);
- ``Sequences``: DuckDB ``nextval`` becomes a PostgreSQL sequence (``yw_nextval``);
- ``leader_lock``/``LeaderElection``: one process runs the scheduler; another candidate
  takes over within ``poll_seconds`` of the leader's death;
- ``maintain``: compaction and snapshot expiry (a scheduler job).

>>> parse_lake_url("ducklake:postgresql://postgres@127.0.0.1/yw?data_path=/srv/lake")
LakeUrl(dsn='postgresql://postgres@127.0.0.1/yw', data_path='/srv/lake')
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from core.store import Store

__all__ = [
    "LakeUrl",
    "LeaderElection",
    "LeaderLock",
    "Sequences",
    "WriteLock",
    "advisory_key",
    "leader_lock",
    "maintain",
    "maintain_job",
    "parse_lake_url",
    "redact",
]

log = logging.getLogger("yiwang.cluster")

SEQUENCE_SCHEMA = "yiwang_seq"
WRITE_LOCK_NAME = "yiwang:write"
_SEQ_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ClusterError(RuntimeError):
    """The cluster store or its PostgreSQL cannot be used; the message says why."""


# -- URLs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LakeUrl:
    """A parsed ``ducklake:`` storage URL: the PostgreSQL DSN and the data path."""

    dsn: str
    data_path: str | None


def parse_lake_url(url: str) -> LakeUrl:
    """Split ``ducklake:postgresql://user@host:port/db?data_path=/shared/lake`` (libpq URI;
    other query parameters such as ``sslmode`` stay in the DSN) or
    ``ducklake:postgres:dbname=db host=…`` (libpq keywords; no data path in the URL)."""
    if not url.startswith("ducklake:"):
        raise ClusterError(f"not a ducklake: URL: {redact(url)}")
    rest = url.removeprefix("ducklake:")
    if rest.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(rest)
        query = parse_qsl(parts.query, keep_blank_values=True)
        data_path = next((v for k, v in query if k == "data_path"), None)
        kept = urlencode([(k, v) for k, v in query if k != "data_path"])
        return LakeUrl(urlunsplit(parts._replace(query=kept)), data_path or None)
    if rest.startswith("postgres:"):
        return LakeUrl(rest.removeprefix("postgres:").strip(), None)
    raise ClusterError("a ducklake: URL names its PostgreSQL catalog: "
                       "ducklake:postgresql://user@host:port/dbname?data_path=/shared/lake")


def redact(url: str) -> str:
    """The URL without its password (for logs and ``Store.url``)."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password=)\S+", r"\1***", url)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


def _connect(dsn: str):
    import psycopg

    try:
        # keepalives: a dead peer is noticed in ~20 s even without a FIN (cable pulled)
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10,
                               keepalives=1, keepalives_idle=10, keepalives_interval=5,
                               keepalives_count=2, application_name="yiwang")
    except psycopg.Error as exc:
        raise ClusterError(f"cannot connect to PostgreSQL {redact(dsn)}: {exc}") from exc


# -- the cluster-wide write lock ---------------------------------------------------------
class WriteLock:
    """One writer at a time across the cluster: a re-entrant process lock plus a PostgreSQL
    session advisory lock (released by PostgreSQL if the holder dies).

    Waiting longer than ``timeout_seconds`` raises ``duckdb.TransactionException`` — the
    answer code gives to a write-write conflict in embedded mode too.
    """

    def __init__(self, dsn: str, name: str = WRITE_LOCK_NAME, *,
                 timeout_seconds: float = 60.0) -> None:
        self._dsn = dsn
        self._key = advisory_key(name)
        self._timeout = timeout_seconds
        self._mutex = threading.RLock()
        self._depth = 0
        self._conn = None
        self.waited_seconds = 0.0  # total time spent waiting (for diagnostics)
        self._holder = ("-", time.monotonic())  # who holds it, since when (for the message)

    def _session(self):
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self._dsn)
            self._conn.execute(f"SET lock_timeout = '{int(self._timeout * 1000)}ms'")
        return self._conn

    def acquire(self) -> None:
        import duckdb
        import psycopg

        t0 = time.perf_counter()
        if not self._mutex.acquire(timeout=self._timeout):
            holder, since = self._holder
            raise duckdb.TransactionException(
                f"cluster write lock not acquired within {self._timeout:g} s (this process:"
                f" thread {holder} has held it for {time.monotonic() - since:.0f} s)")
        if self._depth == 0:
            try:
                for attempt in (1, 2):
                    try:
                        self._session().execute("SELECT pg_advisory_lock(%s)", [self._key])
                        break
                    except psycopg.OperationalError as exc:
                        if isinstance(exc, psycopg.errors.LockNotAvailable):
                            raise duckdb.TransactionException(
                                f"cluster write lock not acquired within {self._timeout:g} s"
                            ) from exc
                        self._conn = None  # broken session: reconnect once
                        if attempt == 2:
                            raise ClusterError(f"cluster write lock: {exc}") from exc
            except BaseException:
                self._mutex.release()
                raise
        if self._depth == 0:
            self._holder = (threading.current_thread().name, time.monotonic())
        self._depth += 1
        self.waited_seconds += time.perf_counter() - t0

    def release(self) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._conn is not None:
                try:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", [self._key])
                except Exception as exc:  # a dead session holds no lock any more
                    log.warning("write lock release: %s", exc)
                    self._conn = None
        finally:
            self._mutex.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- sequences ---------------------------------------------------------------------------
class Sequences:
    """DuckDB sequences as PostgreSQL sequences in schema ``yiwang_seq`` of the catalog
    database; ``udf`` is registered in DuckDB as ``yw_nextval(name)``."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn = None
        self._mutex = threading.Lock()

    def _session(self):
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self._dsn)
        return self._conn

    @staticmethod
    def _qualified(name: str) -> str:
        if not _SEQ_NAME.match(name):
            raise ClusterError(f"bad sequence name {name!r}")
        return f"{SEQUENCE_SCHEMA}.{name}"

    def create(self, name: str, start: int = 1) -> None:
        with self._mutex:
            s = self._session()
            s.execute(f"CREATE SCHEMA IF NOT EXISTS {SEQUENCE_SCHEMA}")
            s.execute(f"CREATE SEQUENCE IF NOT EXISTS {self._qualified(name)} START {int(start)}")

    def set_next(self, name: str, value: int) -> None:
        """Make the next value ``value`` (used after copying data in)."""
        with self._mutex:
            if value > 1:
                self._session().execute("SELECT setval(%s::regclass, %s, true)",
                                        [self._qualified(name), value - 1])
            else:
                self._session().execute("SELECT setval(%s::regclass, 1, false)",
                                        [self._qualified(name)])

    def take(self, name: str, n: int = 1) -> list[int]:
        """``n`` fresh values of sequence ``name`` in one round trip."""
        if n <= 0:
            return []
        with self._mutex:
            rows = self._session().execute(
                "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                [self._qualified(name), n]).fetchall()
        return [r[0] for r in rows]

    def udf(self, names):
        """Vectorised DuckDB function: one PostgreSQL round trip per sequence per chunk."""
        import pyarrow as pa

        values = names.to_pylist()
        counts: dict[str, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        pools = {name: iter(self.take(name, k)) for name, k in counts.items()}
        return pa.array([next(pools[v]) for v in values], pa.int64())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- leader election ---------------------------------------------------------------------
class LeaderLock:
    """A named PostgreSQL advisory lock held by one process's session: the leader.

    PostgreSQL frees it the moment the holder's session ends (process killed, connection
    lost), so a waiting candidate's next ``try_acquire`` succeeds.

    >>> lock = LeaderLock("postgresql://postgres@127.0.0.1/test", "scheduler")  # doctest: +SKIP
    >>> lock.try_acquire()                                                       # doctest: +SKIP
    True
    """

    def __init__(self, dsn: str, name: str) -> None:
        self.dsn, self.name = dsn, name
        self.key = advisory_key(f"yiwang:leader:{name}")
        self._conn = None

    def try_acquire(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self.dsn)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        return bool(row[0])

    def acquire(self, *, poll_seconds: float = 1.0, timeout: float | None = None,
                stop: threading.Event | None = None) -> bool:
        """Wait until this session leads (True) or ``timeout``/``stop`` comes first (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                if self.try_acquire():
                    return True
            except ClusterError as exc:
                log.warning("leader lock %s: %s", self.name, exc)
                self._conn = None
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if stop is not None:
                if stop.wait(poll_seconds):
                    return False
            else:
                time.sleep(poll_seconds)

    def still_held(self) -> bool:
        """True while our session is alive and holds the lock (asks PostgreSQL)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objsubid = 1"
                " AND objid::text::bigint = (%s::bigint & 4294967295)"
                " AND classid::text::bigint = ((%s::bigint >> 32) & 4294967295)",
                [self.key, self.key]).fetchone()
            return bool(row and row[0])
        except Exception:
            return False

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            finally:
                self._conn.close()
        self._conn = None


@contextmanager
def leader_lock(dsn: str, name: str, *, poll_seconds: float = 1.0,
                timeout: float | None = None) -> Iterator[LeaderLock]:
    """Block until this process leads ``name``; release on exit.

    >>> with leader_lock(dsn, "scheduler") as lock:      # doctest: +SKIP
    ...     run_jobs_while(lock.still_held)
    """
    lock = LeaderLock(dsn, name)
    if not lock.acquire(poll_seconds=poll_seconds, timeout=timeout):
        lock.release()
        raise TimeoutError(f"did not become leader of {name!r} within {timeout} s")
    try:
        yield lock
    finally:
        lock.release()


class LeaderElection:
    """Run ``start()`` only while this process leads ``name``; ``stop(handle)`` when it
    stops leading (lock lost) or on ``shutdown()``. A background thread polls every
    ``poll_seconds``: that is the takeover time after a leader dies (plus start-up).

    >>> election = LeaderElection(dsn, "scheduler", start=start_jobs,  # doctest: +SKIP
    ...                           stop=lambda h: h.shutdown()).begin()
    >>> election.shutdown()                                            # doctest: +SKIP
    """

    def __init__(self, dsn: str, name: str, *, start: Callable[[], Any],
                 stop: Callable[[Any], None], poll_seconds: float = 1.0) -> None:
        self.lock = LeaderLock(dsn, name)
        self._start, self._stop = start, stop
        self.poll_seconds = poll_seconds
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"leader-{name}", daemon=True)
        self.leading = threading.Event()
        self.handle: Any = None

    def begin(self) -> LeaderElection:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._halt.is_set():
            if not self.lock.acquire(poll_seconds=self.poll_seconds, stop=self._halt):
                break
            log.info("leader of %s: starting", self.lock.name)
            try:
                self.handle = self._start()
            except Exception:
                log.exception("leader of %s: start failed", self.lock.name)
                self.lock.release()
                self._halt.wait(self.poll_seconds)
                continue
            self.leading.set()
            while not self._halt.wait(self.poll_seconds):
                if not self.lock.still_held():
                    log.warning("lost leadership of %s: stopping", self.lock.name)
                    break
            self._resign()

    def _resign(self) -> None:
        if self.leading.is_set():
            try:
                self._stop(self.handle)
            except Exception:
                log.exception("stopping %s failed", self.lock.name)
            self.leading.clear()
            self.handle = None
        self.lock.release()

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stop leading; ``stop`` may wait for running jobs (up to ``timeout`` seconds, within
        gunicorn's 20-s graceful stop), so the store is not closed under them."""
        self._halt.set()
        self._thread.join(timeout=max(timeout, 3 * self.poll_seconds))


# -- maintenance -------------------------------------------------------------------------
@dataclass(frozen=True)
class MaintenanceReport:
    """Live data files and snapshots before and after one ``maintain`` run."""

    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    flushed_rows: int
    deleted_files: int
    seconds: float


def maintain(store: Store, *, keep: timedelta = timedelta(hours=1)) -> MaintenanceReport:
    """Compact a cluster store: flush inlined rows to Parquet, merge small adjacent files,
    rewrite files with many deletes, expire snapshots older than ``keep`` and delete the
    files no snapshot needs. A no-op (zeros) for an embedded store.

    Snapshots younger than ``keep`` stay, so a reader's transaction shorter than ``keep``
    never loses its files. The scheduler runs it every 15 minutes (docs/cluster.md).

    >>> maintain(store).files_after <= maintain(store).files_before   # doctest: +SKIP
    True
    """
    t0 = time.perf_counter()
    if getattr(store, "mode", "embedded") != "cluster":
        return MaintenanceReport(0, 0, 0, 0, 0, 0, 0.0)
    lake = store.lake_alias
    meta = f'"__ducklake_metadata_{lake}".public'
    cutoff = f"now() - INTERVAL {int(keep.total_seconds())} SECOND"
    cur = store.cursor()

    def one(sql: str) -> int:  # fetch everything: an unread result would be cut short
        rows = cur.execute(sql).fetchall()
        return int(rows[0][0] or 0) if rows else 0

    def files() -> int:
        return one(f"SELECT count(*) FROM {meta}.ducklake_data_file WHERE end_snapshot IS NULL")

    def snapshots() -> int:
        return one(f"SELECT count(*) FROM ducklake_snapshots('{lake}')")

    with store.write_lock():
        files_before, snaps_before = files(), snapshots()
        flushed = one(f"SELECT sum(rows_flushed) FROM ducklake_flush_inlined_data('{lake}')")
        cur.execute(f"CALL ducklake_merge_adjacent_files('{lake}')").fetchall()
        cur.execute(f"CALL ducklake_rewrite_data_files('{lake}')").fetchall()
        one(f"SELECT count(*) FROM ducklake_expire_snapshots('{lake}', older_than => {cutoff})")
    deleted = one(f"SELECT count(*) FROM ducklake_cleanup_old_files('{lake}', "
                  f"older_than => {cutoff})")
    deleted += one(f"SELECT count(*) FROM ducklake_delete_orphaned_files('{lake}', "
                   f"older_than => {cutoff})")
    return MaintenanceReport(files_before, files(), snaps_before, snapshots(), flushed,
                             deleted, time.perf_counter() - t0)


def maintain_job(store: Store, settings: Any = None) -> MaintenanceReport:
    """The scheduler's form of ``maintain`` (``func(store, settings)``), every 15 minutes:
    ``JobSpec("lake_maintenance", maintain_job, 900.0, "DuckLake compaction and snapshot
    expiry")``. Embedded stores return at once."""
    report = maintain(store)
    if report.files_before:
        log.info("lake maintenance: files %d→%d, snapshots %d→%d in %.1f s",
                 report.files_before, report.files_after, report.snapshots_before,
                 report.snapshots_after, report.seconds)
    return report
