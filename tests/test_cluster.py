"""Cluster mode on the machine's real PostgreSQL: DuckLake store, write lock, sequences,
claims across processes, leader election, maintenance, migrate-to-cluster.

Each test gets its own database ``yiwang_test_<random>`` and data folder, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from conftest import build_tiny_city, require_service

from core.cluster import (
    LeaderLock,
    advisory_key,
    leader_lock,
    maintain,
    parse_lake_url,
    redact,
)
from core.cluster_sql import adapt_migration, rewrite_nextval, split_statements
from core.store import Store, StoreError, _migrations

PG = "postgresql://postgres@127.0.0.1:5432"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as con:
        con.execute(sql)


@pytest.fixture
def lake_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty cluster store URL (database + data folder), dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"yiwang_test_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield f"ducklake:{PG}/{name}?data_path={tmp_path / 'lake'}"
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def lake(lake_url: str) -> Iterator[Store]:
    store = Store.open_url(lake_url)
    yield store
    store.close()


def _run_procs(code: str, n: int, *args: str, timeout: float = 180) -> list[dict]:
    """Run ``code`` in ``n`` Python processes at once; each prints one JSON line."""
    script = textwrap.dedent(code)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for i in range(n)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


# -- SQL adaptation (no service) ----------------------------------------------------------
def test_adapt_strips_constraints_and_keeps_not_null() -> None:
    sql = """
    -- a comment mentioning PRIMARY KEY must stay harmless;
    CREATE SEQUENCE s START 5;
    CREATE TABLE t (
        id BIGINT PRIMARY KEY DEFAULT nextval('s'),
        code VARCHAR NOT NULL UNIQUE,   -- the code
        kind VARCHAR CHECK (kind IN ('a', 'PRIMARY KEY')),
        parent BIGINT REFERENCES t (id),
        n INTEGER,
        PRIMARY KEY (id, code),
        CHECK (n > 0)
    );
    CREATE INDEX t_kind ON t (kind);
    INSERT INTO t (code, kind) VALUES ('nextval(x)', 'a');
    ALTER TABLE t ADD COLUMN flag BOOLEAN DEFAULT false CHECK (flag IS NOT NULL);
    """
    stmts, notes = adapt_migration(sql)
    kinds = [s.kind for s in stmts]
    assert kinds == ["sequence", "sql", "sql", "sql"]
    assert (stmts[0].name, stmts[0].start) == ("s", 5)
    create = stmts[1].sql
    for gone in ("PRIMARY", "UNIQUE", "CHECK", "REFERENCES"):
        assert gone not in create.upper()
    assert "id BIGINT DEFAULT yw_nextval('s') NOT NULL" in create
    assert "code VARCHAR NOT NULL," in create
    assert "-- the code" in create
    assert stmts[2].sql.endswith("VALUES ('nextval(x)', 'a')")  # strings untouched
    assert stmts[3].sql == "ALTER TABLE t ADD COLUMN flag BOOLEAN DEFAULT false"
    changes = " | ".join(n.change for n in notes)
    assert "dropped index" in changes and "PRIMARY KEY (id, code)" in changes
    assert "CHECK (n > 0)" in changes and "dropped REFERENCES on t.parent" in changes
    # the adapted table really is accepted by DuckDB (and has no constraint left)
    con = duckdb.connect()
    con.create_function("yw_nextval", lambda s: 1, [duckdb.sqltypes.VARCHAR],
                        duckdb.sqltypes.BIGINT, side_effects=True)
    con.execute(create)
    con.execute(stmts[2].sql)
    con.execute(stmts[2].sql)  # a duplicate key is no longer refused
    assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type"
                       " <> 'NOT NULL'").fetchone()[0] == 0


def test_split_and_rewrite_respect_strings_and_comments() -> None:
    assert split_statements("SELECT ';'; -- x;\nSELECT 2;;") == ["SELECT ';'", "-- x;\nSELECT 2"]
    assert rewrite_nextval("SELECT nextval('a'), 'nextval(b)', \"nextval\"") == \
        "SELECT yw_nextval('a'), 'nextval(b)', \"nextval\""


def test_every_project_migration_adapts() -> None:
    for version, name, sql in _migrations():
        stmts, _ = adapt_migration(sql)
        for stmt in stmts:
            if stmt.kind == "sql":
                assert "PRIMARY KEY" not in stmt.sql.upper().split("--")[0], (version, name)
                assert "CREATE INDEX" not in stmt.sql.upper(), (version, name)


def test_lake_url_parsing_and_redaction() -> None:
    u = parse_lake_url("ducklake:postgresql://u:secret@h:5433/db?sslmode=require&data_path=/l")
    assert u.dsn == "postgresql://u:secret@h:5433/db?sslmode=require" and u.data_path == "/l"
    assert "secret" not in redact("ducklake:postgresql://u:secret@h/db")
    assert parse_lake_url("ducklake:postgres:dbname=x host=h").dsn == "dbname=x host=h"
    with pytest.raises(StoreError, match="data path"):
        Store.open_url("ducklake:postgresql://postgres@127.0.0.1/x")
    with pytest.raises(StoreError, match="names its PostgreSQL"):
        Store.open_url("ducklake:mysql://x")
    assert advisory_key("a") == advisory_key("a") != advisory_key("b")


def test_open_url_embedded_is_the_plain_store(tmp_path: Path) -> None:
    store = Store.open_url(f"duckdb://{tmp_path / 'e.duckdb'}")
    try:
        assert store.mode == "embedded" and store.dsn is None
        assert store.schema_version() == len(_migrations())
        first = store.nextval("alert_seq", 3)
        assert first == [1, 2, 3] and store.nextval("alert_seq") == [4]
    finally:
        store.close()


# -- the cluster store -------------------------------------------------------------------
def _columns(store: Store) -> dict[str, list[tuple[str, str]]]:
    rows = store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_catalog = current_database() AND table_name NOT IN"
        " ('cluster_adaptations') ORDER BY table_name, ordinal_position")
    out: dict[str, list[tuple[str, str]]] = {}
    for t, c, d in rows:
        out.setdefault(t, []).append((c, d))
    return out


def test_cluster_schema_equals_embedded(lake: Store, tmp_path: Path) -> None:
    assert lake.mode == "cluster" and lake.schema_version() == len(_migrations())
    embedded = Store.open(tmp_path / "e.duckdb")
    try:
        assert _columns(lake) == _columns(embedded)
        assert sorted(r[0] for r in lake.query(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND"
            " database_name = 'lake'")) == sorted(r[0] for r in embedded.query(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal AND"
                " database_name = current_database()"))
    finally:
        embedded.close()
    changes = [r[0] for r in lake.query("SELECT change FROM cluster_adaptations")]
    assert "dropped PRIMARY KEY on incidents.id" in changes
    assert any(c.startswith("sequence alert_seq") for c in changes)
    assert lake.migrate() == []


def test_concurrent_first_open_migrates_once(lake_url: str) -> None:
    code = """
        import json, sys
        from core.store import Store
        s = Store.open_url(sys.argv[2])
        print(json.dumps({"v": s.schema_version()}))
        s.close()
    """
    results = _run_procs(code, 3, lake_url)
    assert {r["v"] for r in results} == {len(_migrations())}
    store = Store.open_url(lake_url)
    try:
        assert store.query("SELECT version, count(*) FROM schema_migrations GROUP BY 1"
                           " HAVING count(*) > 1") == []
    finally:
        store.close()


def test_sequences_are_unique_across_processes(lake: Store) -> None:
    code = """
        import json, sys
        from core.store import Store
        s = Store.open_url(sys.argv[2])
        with s.transaction() as cur:
            cur.execute("CREATE TEMP TABLE ids AS SELECT nextval('alert_seq') AS id"
                        " FROM range(3000)")
            ids = [r[0] for r in cur.execute("SELECT id FROM ids").fetchall()]
        print(json.dumps({"ids": ids + s.nextval("alert_seq", 5)}))
        s.close()
    """
    results = _run_procs(code, 3, lake.url.replace("***", ""))
    ids = [i for r in results for i in r["ids"]]
    assert len(ids) == 3 * 3005 == len(set(ids))


def test_readers_see_writers_rows_and_defaults(lake_url: str, lake: Store) -> None:
    other = Store.open_url(lake_url)
    try:
        with lake.transaction() as cur:
            cur.execute("INSERT INTO incident_notifications (username, incident_id, kind,"
                        " created_at, message) VALUES ('u', 1, 'dispatch', now()::TIMESTAMP,"
                        " 'm'), ('u', 2, 'dispatch', now()::TIMESTAMP, 'n')")
        assert other.query("SELECT id, message FROM incident_notifications ORDER BY id") == \
            [(1, "m"), (2, "n")]
        with pytest.raises(duckdb.Error), other.transaction() as cur:  # all or nothing
            cur.execute("DELETE FROM incident_notifications")
            cur.execute("SELECT * FROM no_such_table")
        assert lake.query("SELECT count(*) FROM incident_notifications") == [(2,)]
    finally:
        other.close()


def test_duckdb_on_lake_refuses_what_docs_say(lake: Store) -> None:
    """The differences docs/cluster.md lists, checked against the real DuckLake."""
    cur = lake.cursor()
    for sql, message in [
        ("INSERT OR REPLACE INTO rollup_state VALUES ('x', now()::TIMESTAMP)",
         "PRIMARY KEY"),
        ("INSERT INTO sensor_latest VALUES (1, now()::TIMESTAMP, 1, 'normal')"
         " ON CONFLICT (sensor_id) DO NOTHING", "(?i)conflict target"),
        ("INSERT INTO rollup_state VALUES ('x', now()::TIMESTAMP) RETURNING name",
         "RETURNING"),
        ("CREATE INDEX i ON readings (sensor_id)", "indexes"),
        ("CREATE SEQUENCE s2", "sequences"),
    ]:
        with pytest.raises(duckdb.Error, match=message):
            cur.execute(sql)
    # MERGE INTO works on both engines: the portable upsert
    for value in ("a", "b"):
        cur.execute("MERGE INTO pipeline_state t USING (SELECT 'src' AS source, ? AS watermark,"
                    " now()::TIMESTAMP AS updated_at) s ON t.source = s.source"
                    " WHEN MATCHED THEN UPDATE SET watermark = s.watermark, updated_at = s.updated_at"
                    " WHEN NOT MATCHED THEN INSERT BY NAME", [value])
    assert lake.query("SELECT watermark FROM pipeline_state") == [("b",)]


# -- incidents across processes ----------------------------------------------------------
_CITY_SQL = ("INSERT INTO incident_categories VALUES ('garbage', '垃圾', 'Garbage', 'cg',"
             " 'normal', 2, 24, false, false)")


@pytest.fixture
def lake_city(lake: Store) -> Store:
    build_tiny_city(lake)
    lake.query(_CITY_SQL)
    return lake


def test_claim_race_across_three_processes_has_one_winner(lake_city: Store,
                                                          lake_url: str) -> None:
    from core import incidents
    from core.users import get_user

    inc = incidents.report_incident(lake_city, None, category="garbage", title="满溢",
                                    lon=0.2, lat=0.2, source="hotline")
    incidents.transition(lake_city, get_user(lake_city, "commander"), inc.id, "dispatch",
                         department="cg")
    start_at = time.time() + 8  # every process is open and waiting by then
    code = """
        import json, sys, time
        from core import incidents
        from core.store import Store
        from core.users import get_user
        s = Store.open_url(sys.argv[2])
        staff = get_user(s, "cg_staff")
        time.sleep(max(0.0, float(sys.argv[4]) - time.time()))
        try:
            incidents.transition(s, staff, int(sys.argv[3]), "claim")
            print(json.dumps({"won": True}))
        except incidents.TransitionRefused as exc:
            print(json.dumps({"won": False, "why": str(exc)}))
        s.close()
    """
    results = _run_procs(code, 3, lake_url, str(inc.id), str(start_at))
    assert sum(r["won"] for r in results) == 1, results
    assert all("already claimed" in r["why"] for r in results if not r["won"])
    assert lake_city.query("SELECT count(*) FROM incident_events WHERE incident_id = ? AND"
                           " action = 'claim'", [inc.id]) == [(1,)]
    assert lake_city.query("SELECT status FROM incidents WHERE id = ?", [inc.id]) == \
        [("claimed",)]


def test_concurrent_reports_get_distinct_ids_and_audit_chain_holds(lake_city: Store,
                                                                   lake_url: str) -> None:
    from core.audit import verify_chain

    start_at = time.time() + 8
    code = """
        import json, sys, time
        from core import incidents
        from core.store import Store
        s = Store.open_url(sys.argv[2])
        time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
        ids = [incidents.report_incident(s, None, category="garbage", title=f"t{i}",
               lon=0.3, lat=0.3, source="hotline").id for i in range(4)]
        print(json.dumps({"ids": ids}))
        s.close()
    """
    results = _run_procs(code, 3, lake_url, str(start_at))
    ids = [i for r in results for i in r["ids"]]
    assert len(set(ids)) == 12
    assert lake_city.query("SELECT count(*), count(DISTINCT id), count(DISTINCT tracking_code)"
                           " FROM incidents") == [(12, 12, 12)]
    assert lake_city.query("SELECT count(*) - count(DISTINCT seq) FROM audit_log") == [(0,)]
    assert verify_chain(lake_city).ok


# -- leader election ---------------------------------------------------------------------
_CANDIDATE = """
    import sys, time
    from core.cluster import LeaderElection
    dsn, log_path, me = sys.argv[2], sys.argv[3], sys.argv[1]
    state = {"on": False}
    def tick_forever():
        state["on"] = True
        import threading
        def loop():
            while state["on"]:
                with open(log_path, "a") as f:
                    f.write(f"{me} {time.time():.4f}\\n")
                time.sleep(0.05)
        threading.Thread(target=loop, daemon=True).start()
        return state
    def stop(handle):
        state["on"] = False
    LeaderElection(dsn, "scheduler", start=tick_forever, stop=stop, poll_seconds=0.5).begin()
    print("ready", flush=True)
    time.sleep(120)
"""


def _ticks(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    return [(a, float(b)) for a, b in (line.split() for line in path.read_text().splitlines()
                                        if len(line.split()) == 2)]


def test_leader_dies_and_the_other_candidate_takes_over(lake_url: str, tmp_path: Path) -> None:
    dsn = parse_lake_url(lake_url).dsn
    log_path = tmp_path / "ticks.log"
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CANDIDATE), str(i), dsn,
                               str(log_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(_ticks(log_path)) < 20:
            time.sleep(0.1)
        ticks = _ticks(log_path)
        leaders = {who for who, _ in ticks}
        assert len(leaders) == 1, "exactly one candidate runs the schedule"
        leader = int(leaders.pop())
        killed_at = time.time()
        os.kill(procs[leader].pid, signal.SIGKILL)
        procs[leader].wait()
        follower = str(1 - leader)
        while time.time() < killed_at + 30 and not any(
                who == follower for who, _ in _ticks(log_path)):
            time.sleep(0.05)
        first = min(t for who, t in _ticks(log_path) if who == follower)
        takeover = first - killed_at
        assert takeover < 3.0, f"takeover took {takeover:.2f} s"
        # never both at once: the follower's first tick is after the leader's last
        last_leader = max(t for who, t in _ticks(log_path) if who == str(leader))
        assert last_leader <= killed_at + 0.01 < first
        print(f"takeover {takeover:.3f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_leader_lock_is_exclusive_and_released(lake_url: str) -> None:
    dsn = parse_lake_url(lake_url).dsn
    with leader_lock(dsn, "job", timeout=5) as held:
        other = LeaderLock(dsn, "job")
        assert held.still_held() and not other.try_acquire()
        with pytest.raises(TimeoutError), leader_lock(dsn, "job", poll_seconds=0.1,
                                                      timeout=0.5):
            pass
        other.release()
    again = LeaderLock(dsn, "job")
    assert again.try_acquire()
    again.release()


# -- maintenance -------------------------------------------------------------------------
def test_maintain_compacts_and_expires(lake: Store) -> None:
    cur = lake.cursor()
    for i in range(40):
        cur.execute("INSERT INTO share_reads SELECT now()::TIMESTAMP, 'u', NULL, 'd', 'm', x"
                    " FROM range(?) t(x)", [30 + i])  # above the inlining limit: a file each
    total = lake.query("SELECT count(*), sum(rows) FROM share_reads")
    from datetime import timedelta

    report = maintain(lake, keep=timedelta(seconds=0))
    assert report.files_before >= 40 and report.files_after < report.files_before / 4
    assert report.snapshots_before > 40 and report.snapshots_after < 5
    assert report.deleted_files >= report.files_before - report.files_after
    assert lake.query("SELECT count(*), sum(rows) FROM share_reads") == total
    assert maintain(lake, keep=timedelta(seconds=0)).files_after == report.files_after


def test_maintain_is_a_no_op_on_embedded(store: Store) -> None:
    assert maintain(store).files_after == 0


# -- migrate-to-cluster ------------------------------------------------------------------
def test_migrate_to_cluster_copies_and_verifies(tmp_path: Path, lake_url: str) -> None:
    from core import incidents
    from core.cluster_cli import migrate_to_cluster

    source = Store.open(tmp_path / "city.duckdb")
    build_tiny_city(source)
    source.query(_CITY_SQL)
    for i in range(3):
        incidents.report_incident(source, None, category="garbage", title=f"t{i}", lon=0.2,
                                  lat=0.2, source="hotline")
    source.query("INSERT INTO incident_notifications (username, incident_id, kind, created_at,"
                 " message) VALUES ('u', 1, 'k', now()::TIMESTAMP, 'm')")
    notes = source.query("SELECT count(*) FROM incident_notifications")[0][0]
    counts = dict(source.query("SELECT 'incidents', count(*) FROM incidents UNION ALL"
                               " SELECT 'audit_log', count(*) FROM audit_log"))
    source.close()
    result = CliRunner().invoke(migrate_to_cluster, [
        "--from", str(tmp_path / "city.duckdb"), "--to", lake_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "verified" in result.output
    lake = Store.open_url(lake_url)
    try:
        assert lake.query("SELECT count(*) FROM incidents")[0][0] == counts["incidents"] == 3
        assert lake.query("SELECT count(*) FROM audit_log")[0][0] == counts["audit_log"]
        assert lake.query("SELECT count(*) FROM jurisdictions") == [(11,)]
        # the sequence continues after the copied ids
        lake.query("INSERT INTO incident_notifications (username, incident_id, kind,"
                   " created_at, message) VALUES ('u', 2, 'k', now()::TIMESTAMP, 'n')")
        ids = [r[0] for r in lake.query("SELECT id FROM incident_notifications ORDER BY id")]
        assert len(ids) == len(set(ids)) == notes + 1 and ids[-1] > ids[-2]
        from core.audit import verify_chain
        assert lake.query("SELECT count(*) FROM schema_migrations") == [(len(_migrations()),)]
        assert verify_chain(lake).entries == counts["audit_log"]
    finally:
        lake.close()
    # a second run refuses: the target is no longer empty
    again = CliRunner().invoke(migrate_to_cluster, [
        "--from", str(tmp_path / "city.duckdb"), "--to", lake_url])
    assert again.exit_code != 0 and "not empty" in again.output


# -- yiwang serve --workers --------------------------------------------------------------
def test_embedded_mode_refuses_more_than_one_worker(tmp_path: Path) -> None:
    from dashboard.cli import serve

    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path), "--workers", "3"],
                                env={"YIWANG_STORAGE_URL": ""})
    assert result.exit_code != 0
    assert "one process at a time may write" in result.output
    assert not (tmp_path / "city.duckdb").exists()  # refused before opening anything


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def test_serve_three_workers_on_the_cluster_store(lake_url: str, tmp_path: Path) -> None:
    import socket
    import urllib.request

    Store.open_url(lake_url).close()  # migrated once before the workers start
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "YIWANG_STORAGE_URL": lake_url, "YIWANG_SCHEDULER_ENABLED": "false",
           "YIWANG_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "yiwang"), "serve",
                             "--workers", "3", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.time() + 120, None
        while time.time() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as r:
                    status = r.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
        statuses = []
        for _ in range(12):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=30) as r:
                statuses.append(r.status)
        assert statuses == [200] * 12
        assert len(_children(proc.pid)) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out[-3000:]


def test_maintain_job_has_the_scheduler_signature(store: Store) -> None:
    from core.cluster import maintain_job
    from core.settings import load_settings

    assert maintain_job(store, load_settings()).files_after == 0
