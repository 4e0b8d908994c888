"""The cluster store under trouble: an instance a fatal error invalidated is reopened, no
catalog transaction stays open on an idle cursor, and a write-lock timeout names its holder
(each found by `make load --cluster 3`). Runs on the machine's PostgreSQL, like
test_cluster.py, whose fixtures it shares."""

from __future__ import annotations

import duckdb
import pytest
from test_cluster import PG, lake, lake_city, lake_url  # noqa: F401  (fixtures)

from core.cluster import maintain
from core.store import Store

pytestmark = pytest.mark.timeout(300)


# -- an invalidated DuckDB instance is replaced ---------------------------------------------
class _Invalidated:
    """Stands in for a cursor of a DuckDB instance after a fatal error: every statement
    fails the way DuckDB fails then (fault injection at the DuckDB boundary)."""

    def execute(self, *_args):
        raise duckdb.FatalException("database has been invalidated because of a previous "
                                    "fatal error. The database must be restarted")


def test_a_fatal_error_reopens_the_lake_for_every_thread(lake_city: Store) -> None:  # noqa: F811
    """A read that DuckLake fails outside a transaction runs again on a fresh instance;
    inside a snapshot or a transaction the error reaches the caller."""
    import threading

    lake_city.query("SELECT count(*) FROM users")
    other: dict[str, object] = {}

    def in_thread(key: str) -> None:
        other[key] = lake_city.cursor()
        other[key + "_rows"] = lake_city.query("SELECT count(*) FROM jurisdictions")

    first = threading.Thread(target=in_thread, args=("before",))
    first.start()
    first.join()
    lake_city.cursor()._cur = _Invalidated()            # this instance is now invalidated
    # a read outside a transaction runs once more, on the reopened instance: no error shown
    assert lake_city.query("SELECT count(*) FROM jurisdictions") == [(11,)]
    assert lake_city._generation == 1
    with pytest.raises(duckdb.FatalException), lake_city.snapshot() as cur:
        cur._cur = _Invalidated()                        # inside a snapshot: not run again
        lake_city.query("SELECT count(*) FROM jurisdictions")
    assert lake_city._generation == 2
    with pytest.raises(duckdb.FatalException), lake_city.transaction() as cur:
        cur._cur = _Invalidated()                        # invalidated inside a transaction:
        cur.execute("SELECT 1")                          # its rollback does not mask the error
    # each failure reopened once: this thread and others read and write on the new instance
    assert lake_city._generation == 3
    assert lake_city.query("SELECT count(*) FROM jurisdictions") == [(11,)]
    second = threading.Thread(target=in_thread, args=("after",))
    second.start()
    second.join()
    assert other["after"] is not other["before"] and other["after_rows"] == [(11,)]
    with lake_city.transaction() as cur:
        cur.execute("UPDATE users SET display_name = 'after reopen' WHERE username = 'commander'")
    assert lake_city.query("SELECT display_name FROM users WHERE username = 'commander'"
                           ) == [("after reopen",)]
    assert not lake_city.reopen(0)                       # a stale generation reopens nothing


class _InvalidatedAtFetch(_Invalidated):
    """An instance invalidated under a statement: it runs, its result fails to fetch."""

    description = [("n",)]

    def execute(self, *_args):
        return self

    def fetchall(self):
        super().execute()


def test_an_instance_invalidated_while_fetching_is_reopened_too(lake_city: Store,  # noqa: F811
                                                               ) -> None:
    generation = lake_city._generation
    lake_city.cursor()._cur = _InvalidatedAtFetch()
    assert lake_city.query("SELECT count(*) FROM jurisdictions") == [(11,)]
    assert lake_city._generation == generation + 1       # not a new cursor on the old one
    lake_city.cursor()._cur = _InvalidatedAtFetch()
    assert lake_city.query_dicts("SELECT count(*) AS n FROM jurisdictions") == [{"n": 11}]
    assert lake_city._generation == generation + 2


def test_single_row_reads_leave_no_catalog_transaction_open(lake_city: Store) -> None:  # noqa: F811
    """A half-read result kept its statement's transaction, and so a PostgreSQL transaction
    holding catalog locks, open on an idle cursor: maintenance's DROP of an inlined-data
    table then waited forever while holding the cluster write lock (found under load)."""
    import psycopg

    database = lake_city.dsn.rsplit("/", 1)[1].split("?")[0]

    def idle_in_transaction() -> int:
        with psycopg.connect(f"{PG}/{database}", autocommit=True) as con:
            return con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                               " AND state = 'idle in transaction'", [database]).fetchone()[0]

    lake_city.query("INSERT INTO departments VALUES ('xx', 'x', 'x', 'department', 'C')")
    assert lake_city.query_one("SELECT code FROM departments ORDER BY code") is not None
    assert idle_in_transaction() == 0
    assert lake_city.cursor().execute("SELECT code FROM departments").fetchone() is not None
    assert idle_in_transaction() == 0
    lake_city.cursor().execute("SELECT code FROM departments")        # never read
    assert idle_in_transaction() == 1
    lake_city.release_cursor()                # what a web request and a job do at their end
    assert idle_in_transaction() == 0
    assert lake_city.query("SELECT count(*) FROM departments")[0][0] > 0   # a new cursor
    assert maintain(lake_city).seconds < 60            # nothing holds it up


def test_a_write_lock_timeout_names_the_thread_holding_it(lake: Store) -> None:  # noqa: F811
    import threading

    from core.cluster import WriteLock

    lock = WriteLock(lake.dsn, "yiwang-test-holder", timeout_seconds=0.5)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock.held():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder, name="job incident_sla")
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(duckdb.TransactionException,
                           match=r"thread job incident_sla has held it for \d+ s"):
            lock.acquire()
    finally:
        release.set()
        thread.join()
    with lock.held():                # free again once the holder is done
        pass
    lock.close()


def test_a_standalone_audit_entry_waits_for_a_writer_without_blocking_it(
        lake_city: Store, tmp_path) -> None:  # noqa: F811
    """A login's audit entry (its own transaction) while the alert job's transaction appends
    an entry with ``cursor=``: both take the cluster write lock first, then the audit lock.
    The other order deadlocked them until the write lock timed out, and the login failed."""
    import threading
    import time

    from core import audit

    lake_city.audit_dir = tmp_path
    lock = lake_city._cluster.write_lock
    saved, lock._timeout = lock._timeout, 3.0        # a deadlock fails in 3 s, not 60
    writing, errors = threading.Event(), []

    def login() -> None:
        writing.wait(10)
        try:
            audit.record(lake_city, "cg_staff", "user.login")
        except Exception as exc:  # noqa: BLE001  (the assertion below shows it)
            errors.append(exc)

    thread = threading.Thread(target=login, name="login")
    thread.start()
    try:
        with lake_city.transaction() as cur:
            writing.set()
            time.sleep(0.5)                            # the login's entry is waiting now
            audit.record(lake_city, "system", "incident.report", cursor=cur)
    finally:
        thread.join(30)
        lock._timeout = saved
    assert errors == []
    last = [a for (a,) in lake_city.query("SELECT action FROM audit_log ORDER BY seq")][-2:]
    assert last == ["incident.report", "user.login"]
    assert audit.verify_chain(lake_city).ok


def test_each_process_pools_enough_catalog_connections(lake: Store) -> None:  # noqa: F811
    """Eight threads reading at once reuse pooled catalog connections instead of opening a
    PostgreSQL connection per statement (the default pool of 4 opened hundreds here)."""
    import threading
    import time

    import psycopg

    from core.store import PG_POOL_CONNECTIONS

    assert lake.query("SELECT current_setting('pg_pool_max_connections')") == [
        (PG_POOL_CONNECTIONS,)]

    def sessions() -> int:
        time.sleep(1.5)            # statistics reach pg_stat_database within a second
        with psycopg.connect(lake.dsn, autocommit=True) as pg:
            return pg.execute("SELECT sessions FROM pg_stat_database"
                              " WHERE datname = current_database()").fetchone()[0]

    def reads() -> None:
        for _ in range(20):
            lake.query("SELECT count(*) FROM users")
        lake.release_cursor()

    before = sessions()
    threads = [threading.Thread(target=reads) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    opened = sessions() - before - 1           # the second sessions() connects once
    assert opened <= 12, f"{opened} PostgreSQL connections opened for 160 reads"


def test_web_processes_share_one_wall_snapshot(lake_city: Store, lake_url: str,  # noqa: F811
                                               tmp_path, monkeypatch) -> None:
    """Another store on the same lake (a second web process) takes the wall snapshot the
    first computed, from PostgreSQL; a value whose signature does not match is computed
    again, not unpickled."""
    import psycopg

    from core.scope import scope_for
    from core.users import get_user
    from layers import wall
    from layers.registry import LayerRequest

    other = Store.open_url(lake_url, migrate=False)
    lake_city.audit_dir = other.audit_dir = tmp_path / "shared"
    computed: list[Store] = []
    real = wall.wall_snapshot

    def counting(store, *args, **kwargs):
        computed.append(store)
        return real(store, *args, **kwargs)

    monkeypatch.setattr(wall, "wall_snapshot", counting)
    request = LayerRequest((0.0, 0.0, 2.0, 1.0), 9.0)

    def snapshot(store: Store):
        scope = scope_for(store, get_user(store, "commander"))
        return wall.shared_wall_snapshot(store, scope, "city", request, seconds=60)

    try:
        one, two = snapshot(lake_city), snapshot(other)
        assert computed == [lake_city]                  # the second process read it
        assert (two.kpis, two.layers, two.values) == (one.kpis, one.layers, one.values)
        with psycopg.connect(lake_city.dsn, autocommit=True) as pg:
            pg.execute("UPDATE yiwang_shared.values SET mac = '\\x00'")
        wall._shared.clear()
        snapshot(other)
        assert computed == [lake_city, other]           # a forged value is not used
    finally:
        wall._shared.clear()
        other.close()


def test_a_leader_shutting_down_lets_its_running_job_finish(lake: Store,  # noqa: F811
                                                            tmp_path) -> None:
    """A web process that stops (gunicorn's graceful stop) waits for the job the scheduler
    is running before its store is closed under it."""
    import threading

    from core.settings import load_settings
    from pipelines.scheduler import JobSpec, start_scheduler

    started, finished = threading.Event(), threading.Event()

    def slow(store: Store, settings) -> None:
        started.set()
        threading.Event().wait(1.5)
        store.query("SELECT count(*) FROM users")     # the store is still open
        finished.set()

    election = start_scheduler(lake, load_settings(data_dir=tmp_path),
                               jobs=[JobSpec("slow", slow, 3600.0, "a slow job")])
    assert started.wait(30)
    election.shutdown()
    assert finished.is_set()
    assert lake.query("SELECT status FROM ingest_runs WHERE source = 'slow'") == [("success",)]
