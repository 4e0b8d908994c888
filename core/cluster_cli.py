"""``yiwang migrate-to-cluster``: copy an embedded database into a cluster store.

Stop every Yiwang process using the embedded file first (DuckDB lets one process write it).
The target is migrated to the same schema, must hold no data yet, and receives every table
in ONE transaction; before it commits, each table's row count and checksum (the sum of a
hash of every row) are compared with the source's, so a copy that does not match leaves
the target empty. PostgreSQL sequences continue after the source's last values.

    $ yiwang migrate-to-cluster --from data/city.duckdb \\
        --to "ducklake:postgresql://yiwang@db1/yiwang?data_path=/srv/yiwang/lake"
    jurisdictions       537 rows  checksum 1b9f…  ok
    …
    verified: 31 tables, 9,214,388 rows
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click
import duckdb
from rich.console import Console
from rich.table import Table

from core.audit import CHECKPOINT_FILE, KEY_FILE
from core.settings import SettingsError, load_settings
from core.store import Store, StoreError, _migrations
from core.totp import SECRET_KEY_FILE

__all__ = ["copy_into_cluster", "migrate_to_cluster"]

console = Console(stderr=True)

# tables that hold the city's data: any row here means the target is in use already
_DATA_TABLES = ("jurisdictions", "users", "departments", "sensors", "readings", "incidents",
                "audit_log")
_BOOKKEEPING = ("schema_migrations", "cluster_adaptations")
_AUDIT_FILES = (CHECKPOINT_FILE, KEY_FILE, SECRET_KEY_FILE)  # TOTP secrets need their key


class CopyError(RuntimeError):
    """The copy was refused or did not verify; the target is unchanged."""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _checksum_sql(db: str, table: str, columns: list[str]) -> str:
    cols = ", ".join(_ident(c) for c in columns)
    return (f"SELECT count(*), coalesce(sum(hash({cols})::HUGEINT), 0)::VARCHAR"
            f" FROM {db}.{_ident(table)}")


def copy_into_cluster(source: Path, target: Store) -> list[tuple[str, int, str]]:
    """Copy every table of the embedded file ``source`` into the cluster store ``target``;
    return (table, rows, checksum) per table, all verified equal before commit."""
    if target.mode != "cluster":
        raise CopyError("the target must be a ducklake: cluster store")
    if not source.is_file():
        raise CopyError(f"no embedded database at {source}")
    check = Store.open(source, migrate=False, read_only=True)
    try:
        version = check.schema_version()
    finally:
        check.close()
    if version != len(_migrations()):
        raise CopyError(f"{source} is at schema version {version}, this Yiwang at "
                        f"{len(_migrations())}: run `yiwang init` on it first")
    busy = [t for t in _DATA_TABLES if target.query(f"SELECT count(*) FROM {t}")[0][0]]
    if busy:
        raise CopyError(f"the cluster store is not empty (rows in {', '.join(busy)})")
    cur = target.cursor()
    try:
        cur.execute(f"ATTACH {_quote(str(source))} AS src (READ_ONLY)")
    except duckdb.Error as exc:
        raise CopyError(f"cannot open {source} (is a Yiwang process still using it?): "
                        f"{exc}") from exc
    try:
        return _copy(target, cur)
    finally:
        cur.execute("DETACH src")


def _columns(cur, db: str) -> dict[str, list[str]]:
    rows = cur.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ?"
        " AND schema_name = 'main' AND table_name IN (SELECT table_name FROM duckdb_tables()"
        " WHERE database_name = ? AND schema_name = 'main' AND NOT temporary)"
        " ORDER BY table_name, column_index", [db, db]).fetchall()
    out: dict[str, list[str]] = {}
    for t, c in rows:
        out.setdefault(t, []).append(c)
    return out


def _copy(target: Store, cur) -> list[tuple[str, int, str]]:
    src_cols = _columns(cur, "src")
    dst_cols = _columns(cur, target.lake_alias)
    tables = sorted(t for t in src_cols if t not in _BOOKKEEPING)
    missing = [t for t in tables if t not in dst_cols]
    differ = [t for t in tables if t in dst_cols and sorted(src_cols[t]) != sorted(dst_cols[t])]
    if missing or differ:
        raise CopyError(f"schemas differ: missing {missing}, other columns {differ}")
    sequences = cur.execute("SELECT sequence_name, start_value, last_value FROM"
                            " duckdb_sequences() WHERE database_name = 'src'").fetchall()
    results = []
    lake = target.lake_alias
    with target.transaction() as tx:
        for table in tables:
            name = _ident(table)
            tx.execute(f"DELETE FROM {lake}.{name}")  # seed rows written by the migrations
            tx.execute(f"INSERT INTO {lake}.{name} BY NAME SELECT * FROM src.{name}")
        for table in tables:
            want = tx.execute(_checksum_sql("src", table, src_cols[table])).fetchone()
            got = tx.execute(_checksum_sql(lake, table, src_cols[table])).fetchone()
            if tuple(want) != tuple(got):
                raise CopyError(f"{table}: source has {want[0]} rows (checksum {want[1]}), "
                                f"the copy {got[0]} (checksum {got[1]}); nothing was kept")
            results.append((table, int(got[0]), got[1]))
    for name, start, last in sequences:
        target._cluster.sequences.create(name, start)
        target._cluster.sequences.set_next(name, (last + 1) if last is not None else start)
    return results


@click.command("migrate-to-cluster")
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Embedded DuckDB file (default: setting database_path).")
@click.option("--to", "target", default=None,
              help="ducklake:postgresql://…?data_path=… (default: setting storage_url).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Shared data folder of the cluster (setting data_dir): the audit head "
                   "files are copied there and the lake defaults to <data_dir>/lake.")
def migrate_to_cluster(source: Path | None, target: str | None,
                       data_dir: Path | None) -> None:
    """Copy an embedded database into a cluster store, verified by counts and checksums."""
    try:
        settings = load_settings(data_dir=data_dir)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    source = source or settings.database_path
    url = target or settings.storage_url
    if not url.startswith("ducklake:"):
        raise click.ClickException("give --to ducklake:postgresql://…?data_path=… "
                                   "(or set storage_url)")
    t0 = time.perf_counter()
    try:
        store = Store.open_url(url, data_path=Path(settings.data_dir) / "lake")
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        results = copy_into_cluster(Path(source), store)
    except (CopyError, StoreError, duckdb.Error) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    table = Table("table", "rows", "checksum", "", box=None)
    for name, rows, checksum in results:
        table.add_row(name, f"{rows:,}", checksum, "ok")
    console.print(table)
    copied = _copy_audit_files(Path(source).parent, Path(settings.data_dir))
    total = sum(r for _, r, _ in results)
    click.echo(f"verified: {len(results)} tables, {total:,} rows in "
               f"{time.perf_counter() - t0:.1f} s" + (f"; copied {', '.join(copied)}"
                                                      if copied else ""))


def _copy_audit_files(source_dir: Path, data_dir: Path) -> list[str]:
    """The signed audit head and its key go with the data (to the shared data_dir)."""
    copied = []
    if source_dir.resolve() == data_dir.resolve():
        return copied
    for name in _AUDIT_FILES:
        if (source_dir / name).is_file() and not (data_dir / name).exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_dir / name, data_dir / name)
            copied.append(name)
    return copied
