"""The ``database`` source: a department's PostgreSQL or MySQL/MariaDB table, pulled
incrementally by a watermark column through DuckDB's scanner extensions.

The extensions come from the ``duckdb-extension-postgres-scanner`` and
``duckdb-extension-mysql-scanner`` wheels and are LOADed by file path (never INSTALLed from
the internet). Options::

    [sources.sw_gauges]
    kind = "database"
    engine = "postgres"                 # or "mysql" (MariaDB too)
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    table = "public.gauges"             # schema.table (MySQL: database.table)
    dataset = "gauges"                  # the contract rows are loaded against
    watermark = "updated_at"            # monotonically moving column
    seconds = 300

Each pull reads the rows whose watermark is at or past the last one seen (at, so that rows
sharing the boundary value are never skipped; they upsert as no-ops), loads them, and moves
the watermark in the same transaction.

>>> pull(store, settings, config.sources["sw_gauges"], config)   # doctest: +SKIP
LoadStats(rows_in=42, loaded=42, rejected=0)
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from core.ingest import LoadStats, load
from core.settings import Settings
from core.store import Store, StoreError
from pipelines.config import ConfigError, PipelineConfig, SourceConfig
from pipelines.runner import current_run_id

__all__ = ["extension_path", "pull", "read_since"]

# MERGE, not INSERT OR REPLACE: cluster mode runs the same SQL on DuckLake
_SET_WATERMARK = """
MERGE INTO pipeline_state AS t USING (SELECT ?::VARCHAR AS source, ?::VARCHAR AS watermark) AS s
    ON t.source = s.source
    WHEN MATCHED THEN UPDATE SET watermark = s.watermark, updated_at = now()::TIMESTAMP
    WHEN NOT MATCHED THEN INSERT VALUES (s.source, s.watermark, now()::TIMESTAMP)"""


_ENGINES = {"postgres": ("duckdb_extension_postgres_scanner", "postgres_scanner"),
            "mysql": ("duckdb_extension_mysql_scanner", "mysql_scanner")}
_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_LOCK = threading.Lock()
_LOADED: set[tuple[int, str]] = set()


def extension_path(engine: str) -> Path:
    """The scanner extension file shipped by its wheel, for this DuckDB version."""
    import importlib

    package, name = _ENGINES[engine]
    base = Path(importlib.import_module(package).__path__[0])
    found = sorted(base.rglob(f"v{duckdb.__version__}/{name}.duckdb_extension"))
    if not found:
        raise StoreError(f"{name} extension for DuckDB {duckdb.__version__} not found under"
                         f" {base}; install {package.replace('_', '-')} of the same version")
    return found[0]


def read_since(store: Store, engine: str, dsn: str, table: str, watermark: str,
               since: str | None, alias: str) -> pa.Table:
    """Rows of ``table`` whose ``watermark`` is at or past ``since`` (all when None)."""
    if engine not in _ENGINES:
        raise ConfigError(f"database engine must be one of {', '.join(_ENGINES)}")
    for ident in (table, watermark, alias):
        if not _QUALIFIED.match(ident):
            raise ConfigError(f"{ident!r} is not a plain (schema.)name")
    cur = store.cursor()
    with _LOCK:
        key = (id(store), engine)
        if key not in _LOADED:
            cur.execute(f"LOAD '{extension_path(engine)}'")
            _LOADED.add(key)
        # ATTACH takes no parameters: the DSN is a quoted literal (from the operator's config)
        literal = "'" + dsn.replace("'", "''") + "'"
        cur.execute(f"ATTACH IF NOT EXISTS {literal} AS {alias} (TYPE {engine}, READ_ONLY)")
        try:
            where, params = ("", []) if since is None else (f" WHERE {watermark} >= ?", [since])
            return cur.execute(f"SELECT * FROM {alias}.{table}{where} ORDER BY {watermark}",
                               params).to_arrow_table()
        finally:
            cur.execute(f"DETACH {alias}")


def pull(store: Store, settings: Settings, cfg: SourceConfig,
         config: PipelineConfig) -> LoadStats:
    o = cfg.options
    try:
        engine, dsn, table, wm = o["engine"], o["dsn"], o["table"], o["watermark"]
        contract = config.datasets[o["dataset"]].contract
    except KeyError as exc:
        raise ConfigError(f"source {cfg.name}: missing option {exc.args[0]}") from None
    row = store.query_one("SELECT watermark FROM pipeline_state WHERE source = ?", [cfg.name])
    since = row[0] if row else None
    rows = read_since(store, engine, dsn, table, wm, since,
                      alias="src_" + re.sub(r"\W", "_", cfg.name))
    if rows.num_rows == 0:
        return LoadStats()
    top = pc.max(rows.column(wm)).as_py()
    mark = top.isoformat(sep=" ") if hasattr(top, "isoformat") else str(top)

    def move_watermark(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(_SET_WATERMARK, [cfg.name, mark])

    return load(store, contract, rows, run_id=current_run_id(), source=cfg.name,
                in_transaction=move_watermark)
