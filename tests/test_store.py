"""core.store: migrations, spatial functions, transactions, cursors per thread."""

from __future__ import annotations

import math
import threading
import uuid
from pathlib import Path

import pytest

import core.store
from core.store import Store, StoreError, _migrations


@pytest.fixture
def migrations_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, importable migrations package that core.store reads instead of ours."""
    name = f"yiwang_test_migrations_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "pkgs" / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setattr(core.store, "MIGRATIONS_PACKAGE", name)
    return folder


def test_migrations_apply_once(tmp_path: Path) -> None:
    expected = len(_migrations())
    store = Store.open(tmp_path / "a.duckdb")
    try:
        assert store.schema_version() == expected >= 1
        first = store.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY 1")
        assert [v for v, _, _ in first] == list(range(1, expected + 1))
        assert first[0][1] == "foundation"
        assert store.migrate() == []
    finally:
        store.close()
    again = Store.open(tmp_path / "a.duckdb")
    try:
        assert again.query("SELECT version, name, applied_at FROM schema_migrations"
                           " ORDER BY 1") == first
    finally:
        again.close()


def test_only_new_migrations_are_applied(tmp_path: Path, migrations_package: Path) -> None:
    (migrations_package / "001_start.sql").write_text("CREATE TABLE a (x INTEGER);")
    store = Store.open(tmp_path / "m.duckdb", migrate=False)
    try:
        assert store.schema_version() == 0
        assert store.migrate() == ["001_start"]
        (migrations_package / "002_more.sql").write_text("CREATE TABLE b (y INTEGER);")
        (migrations_package / "notes.txt").write_text("not a migration")
        assert store.migrate() == ["002_more"]
        assert store.migrate() == []
        assert store.schema_version() == 2
        assert store.query("SELECT count(*) FROM b") == [(0,)]
    finally:
        store.close()


def test_gap_in_migration_numbers_is_refused(tmp_path: Path, migrations_package: Path) -> None:
    (migrations_package / "001_start.sql").write_text("CREATE TABLE a (x INTEGER);")
    (migrations_package / "003_later.sql").write_text("CREATE TABLE c (x INTEGER);")
    with pytest.raises(StoreError, match=r"without gaps: \[1, 3\]"):
        _migrations()
    store = Store.open(tmp_path / "g.duckdb", migrate=False)
    try:
        with pytest.raises(StoreError, match="without gaps"):
            store.migrate()
        assert store.schema_version() == 0
    finally:
        store.close()


def test_failing_migration_is_named_and_leaves_nothing(tmp_path: Path,
                                                       migrations_package: Path) -> None:
    (migrations_package / "001_start.sql").write_text("CREATE TABLE a (x INTEGER);")
    (migrations_package / "002_broken.sql").write_text(
        "CREATE TABLE b (y INTEGER); SELECT * FROM no_such_table;")
    store = Store.open(tmp_path / "f.duckdb", migrate=False)
    try:
        with pytest.raises(StoreError, match="migration 002_broken failed"):
            store.migrate()
        assert store.schema_version() == 1
        assert store.query("SELECT count(*) FROM information_schema.tables"
                           " WHERE table_name = 'b'") == [(0,)]
    finally:
        store.close()


def test_open_errors_say_why(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(tmp_path)  # a folder, not a file
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "missing.duckdb", read_only=True)


def test_spatial_functions_work(store: Store) -> None:
    area, inside, outside = store.query_one(
        "SELECT ST_Area(g), ST_Contains(g, ST_Point(0.5, 0.5)), ST_Contains(g, ST_Point(2, 2))"
        " FROM (SELECT ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))') AS g)")
    assert (area, inside, outside) == (1.0, True, False)
    x, y = store.query_one(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_Point(120, 31), 'EPSG:4326',"
        " 'EPSG:3857', always_xy := true) AS p)")
    assert x == pytest.approx(6378137 * math.radians(120), abs=1e-3)
    assert y == pytest.approx(6378137 * math.log(math.tan(math.pi / 4 + math.radians(31) / 2)),
                              abs=1e-3)


def test_transaction_that_raises_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError, match="midway"), store.transaction() as cur:
        cur.execute("INSERT INTO departments VALUES ('cg', '城管局', 'Urban', 'department', 'C')")
        assert cur.execute("SELECT count(*) FROM departments").fetchone() == (1,)
        raise RuntimeError("midway")
    assert store.query("SELECT count(*) FROM departments") == [(0,)]
    with store.transaction() as cur:
        cur.execute("INSERT INTO departments VALUES ('sw', '水务局', 'Water', 'department', 'C')")
    assert store.query("SELECT code FROM departments") == [("sw",)]


def test_each_thread_has_its_own_cursor(store: Store) -> None:
    threads_n, rows_n = 8, 25
    cursors: dict[int, list] = {}  # the cursor objects themselves, so no id is reused
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def work(sensor_id: int) -> None:
        try:
            start.wait()
            seen = cursors.setdefault(sensor_id, [])
            for i in range(rows_n):
                with store.transaction() as cur:
                    cur.execute("INSERT INTO readings VALUES (?, TIMESTAMP '2026-01-01'"
                                " + to_minutes(?), ?)", [sensor_id, i, float(i)])
                seen.append(store.cursor())
                store.query("SELECT count(*) FROM readings WHERE sensor_id = ?", [sensor_id])
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert all(all(c is seen[0] for c in seen) for seen in cursors.values())
    assert len({id(seen[0]) for seen in cursors.values()}) == threads_n
    assert store.query("SELECT count(*), count(DISTINCT sensor_id) FROM readings") == [
        (threads_n * rows_n, threads_n)]


def test_snapshot_reads_consistently_and_keeps_nothing(store: Store) -> None:
    with store.snapshot() as cur:
        before = cur.execute("SELECT count(*) FROM departments").fetchone()[0]
        t = threading.Thread(target=lambda: store.query(
            "INSERT INTO departments VALUES ('x', 'x', 'x', 'department', 'C')"))
        t.start()
        t.join()
        assert cur.execute("SELECT count(*) FROM departments").fetchone()[0] == before
        cur.execute("INSERT INTO departments VALUES ('y', 'y', 'y', 'department', 'C')")
    assert store.query("SELECT code FROM departments ORDER BY code") == [("x",)]
