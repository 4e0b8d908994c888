"""The one load path of every pipeline: contract, vectorised validation, quarantine, upsert.

A dataset declares its ``Contract`` once (columns and types, required, ranges, choices, the
key for idempotent upsert, the CRS of its coordinates, how a row gets its jurisdiction).
``load`` takes a batch as an Arrow table and, in ONE transaction:

1. types every column with ``TRY_CAST`` and computes each row's reasons for refusal in one
   DuckDB query (no Python loop per row);
2. converts coordinates to WGS84 (CGCS2000 and other EPSG codes by the spatial extension,
   GCJ-02 by ``coordTransform``) and finds the jurisdiction (a code column, or the community
   containing the point);
3. writes refused rows to ``quarantine`` (raw row as JSON, reason, run id);
4. upserts the good rows by key (readings: inserted when (sensor_id, ts) is new, and their
   rollup deltas staged, ``core.rollups.stage_deltas``).

A crash anywhere leaves the database as it was; loading the same batch again adds nothing.
Runs are recorded in ``ingest_runs`` by ``start_run``/``finish_run``.

>>> contract = Contract("hydrants", "ds_hydrants", (Field("id", "VARCHAR", required=True),
...     Field("lon", "DOUBLE", required=True), Field("lat", "DOUBLE", required=True)),
...     key=("id",), lon="lon", lat="lat", jurisdiction="point")
>>> run = start_run(store, "files:cg")                                   # doctest: +SKIP
>>> load(store, contract, pa.table({"id": ["H1"], "lon": [120.3], "lat": [31.9]}),
...      run_id=run, source="files:cg")                                 # doctest: +SKIP
LoadStats(rows_in=1, loaded=1, rejected=0)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from core.readings_batch import clean_readings
from core.rollups import stage_deltas, stage_ordered
from core.store import Store

__all__ = [
    "READINGS",
    "Contract",
    "ContractError",
    "Field",
    "LoadStats",
    "ensure_table",
    "finish_run",
    "load",
    "open_quarantine",
    "quarantine_raw",
    "start_run",
]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPES = {"VARCHAR", "INTEGER", "BIGINT", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP", "GEOMETRY"}
# tables a contract may never target
_RESERVED = {"jurisdictions", "departments", "users", "sensor_kinds", "sensors",
             "incident_categories", "incidents", "incident_events", "audit_log", "ingest_runs",
             "quarantine", "pipeline_sources", "sensor_latest", "readings_hourly", "alerts",
             "rollup_deltas", "latest_deltas", "rollup_state", "schema_migrations"}
GCJ02 = "GCJ-02"


class ContractError(ValueError):
    """A contract is malformed, or a whole batch cannot be read against it (e.g. a required
    column is absent): nothing is loaded and the message says why."""


@dataclass(frozen=True)
class Field:
    """One column of a contract. ``type`` is a DuckDB type name (VARCHAR, INTEGER, BIGINT,
    DOUBLE, BOOLEAN, DATE, TIMESTAMP, GEOMETRY as WKT text)."""

    name: str
    type: str
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Contract:
    """A dataset's contract, declared once.

    ``jurisdiction``: None, the name of a field holding a jurisdiction code, or ``"point"``
    (the community containing lon/lat, or the geometry's point on surface). ``crs`` is the
    CRS of lon/lat (``EPSG:4326``, ``EPSG:4490`` CGCS2000, any EPSG code, or ``GCJ-02``).
    """

    name: str
    table: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    crs: str = "EPSG:4326"
    lon: str | None = None
    lat: str | None = None
    geometry: str | None = None
    jurisdiction: str | None = None
    department: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        problems = [f"{n!r} is not a lower-case identifier" for n in [self.table, *names]
                    if not _IDENT.match(n)]
        problems += [f"{f.name}: unknown type {f.type}" for f in self.fields
                     if f.type not in _TYPES]
        problems += [f"key column {k} is not a field" for k in self.key if k not in names]
        if not self.key:
            problems.append("a contract needs a key for idempotent upserts")
        if self.table in _RESERVED and self.table != "readings":
            problems.append(f"table {self.table} belongs to the platform")
        for col in (self.lon, self.lat, self.geometry):
            if col is not None and col not in names:
                problems.append(f"{col} is not a field")
        if self.jurisdiction == "point" and not ((self.lon and self.lat) or self.geometry):
            problems.append("jurisdiction='point' needs lon/lat or a geometry field")
        elif self.jurisdiction not in (None, "point") and self.jurisdiction not in names:
            problems.append(f"jurisdiction column {self.jurisdiction} is not a field")
        if "jurisdiction_code" in names and self.jurisdiction != "jurisdiction_code":
            problems.append("jurisdiction_code is filled by the loader; name the field otherwise")
        if problems:
            raise ContractError(f"contract {self.name}: " + "; ".join(problems))

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


# Sensor readings: identify the sensor by code (``sensor``) or id (``sensor_id``).
READINGS = Contract(
    "readings", "readings",
    (Field("sensor_id", "INTEGER"), Field("sensor", "VARCHAR"),
     Field("ts", "TIMESTAMP", required=True), Field("value", "DOUBLE", required=True)),
    key=("sensor_id", "ts"), description="sensor readings (any source)",
)


@dataclass(frozen=True)
class LoadStats:
    """Rows received, loaded (inserted or changed) and refused (quarantined) by one load."""

    rows_in: int = 0
    loaded: int = 0
    rejected: int = 0

    def __add__(self, other: LoadStats) -> LoadStats:
        return LoadStats(self.rows_in + other.rows_in, self.loaded + other.loaded,
                         self.rejected + other.rejected)


@dataclass
class _Plan:
    selects: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# -- runs ---------------------------------------------------------------------------------
def start_run(store: Store, source: str, trigger: str = "schedule") -> int:
    """Record a run as 'running' (its own transaction) and return its id."""
    run_id = store.nextval("ingest_run_seq")[0]  # no RETURNING on DuckLake (cluster mode)
    with store.transaction() as cur:
        cur.execute("INSERT INTO ingest_runs (id, source, trigger, started_at, status)"
                    " VALUES (?, ?, ?, ?, 'running')", [run_id, source, trigger, _now()])
    return run_id


def finish_run(store: Store, run_id: int, stats: LoadStats | None = None,
               error: str | None = None, status: str | None = None) -> None:
    """Close a run: success with its row counts, or failed with the error."""
    stats = stats or LoadStats()
    status = status or ("failed" if error else "success")
    with store.transaction() as cur:
        cur.execute(
            "UPDATE ingest_runs SET finished_at = ?, rows_in = ?, rows_loaded = ?,"
            " rows_rejected = ?, status = ?, error = ? WHERE id = ?",
            [_now(), stats.rows_in, stats.loaded, stats.rejected, status,
             None if error is None else error[:2000], run_id])


# -- dataset tables -------------------------------------------------------------------------
def ensure_table(store: Store, contract: Contract,
                 cursor: duckdb.DuckDBPyConnection | None = None) -> None:
    """Create the contract's table when absent: its fields, ``jurisdiction_code`` when the
    contract assigns one, ``_run_id`` and ``_loaded_at``, primary key = the contract key.
    ``load`` calls it (inside its transaction)."""
    if contract.table == "readings":
        return
    cols = [f"{f.name} {f.type}{' NOT NULL' if f.name in contract.key else ''}"
            for f in contract.fields]
    if contract.jurisdiction == "point":
        cols.append("jurisdiction_code VARCHAR")
    cols += ["_run_id BIGINT NOT NULL", "_loaded_at TIMESTAMP NOT NULL",
             f"PRIMARY KEY ({', '.join(contract.key)})"]
    sql = f"CREATE TABLE IF NOT EXISTS {contract.table} ({', '.join(cols)})"
    if cursor is not None:
        cursor.execute(sql)
        return
    with store.transaction() as cur:
        cur.execute(sql)


# -- the load ------------------------------------------------------------------------------
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _typed(f: Field, present: dict[str, pa.DataType]) -> tuple[str, str]:
    """(typed expression, expression of the raw value) for one field."""
    if f.name not in present:
        return f"NULL::{'VARCHAR' if f.type == 'GEOMETRY' else f.type}", "NULL"
    raw = f"b.{_quote(f.name)}"
    if f.type == "GEOMETRY":
        return f"TRY(ST_GeomFromText({raw}::VARCHAR))", raw
    if f.type == "TIMESTAMP" and pa.types.is_string(present[f.name]):
        # ISO text with an offset is converted to UTC; without one it is taken as UTC
        return f"TRY_CAST(TRY_CAST({raw} AS TIMESTAMPTZ) AS TIMESTAMP)", raw
    return f"TRY_CAST({raw} AS {f.type})", raw


def _plan(contract: Contract, present: dict[str, pa.DataType]) -> _Plan:
    plan = _Plan()
    for f in contract.fields:
        typed, raw = _typed(f, present)
        plan.selects.append(f"{typed} AS {f.name}")
        n = f.name
        plan.reasons.append(f"CASE WHEN {raw} IS NOT NULL AND {typed} IS NULL"
                            f" THEN '{n}: not a valid {f.type.lower()}' END")
        if f.required or n in contract.key and contract.table != "readings":
            plan.reasons.append(f"CASE WHEN {raw} IS NULL THEN '{n}: required' END")
        if f.type == "DOUBLE":
            plan.reasons.append(f"CASE WHEN NOT isfinite({typed}) THEN '{n}: not finite' END")
        if f.min is not None:
            plan.reasons.append(f"CASE WHEN {typed} < {float(f.min)!r}"
                                f" THEN '{n}: below {f.min}' END")
        if f.max is not None:
            plan.reasons.append(f"CASE WHEN {typed} > {float(f.max)!r}"
                                f" THEN '{n}: above {f.max}' END")
        if f.choices:
            allowed = ", ".join("'" + c.replace("'", "''") + "'" for c in f.choices)
            plan.reasons.append(f"CASE WHEN {typed} NOT IN ({allowed})"
                                f" THEN '{n}: not one of {'/'.join(f.choices)}' END")
    return plan


def _check_columns(contract: Contract, table: pa.Table) -> None:
    if contract.table == "readings" and not {"sensor_id", "sensor"} & set(table.column_names):
        raise ContractError("readings need a sensor (code) or sensor_id column")
    missing = [f.name for f in contract.fields if f.required
               and f.name not in table.column_names]
    if missing:
        raise ContractError(f"{contract.name}: required column(s) missing: {', '.join(missing)};"
                            f" the batch has {', '.join(table.column_names) or 'no columns'}")


def _before_commit(cur: duckdb.DuckDBPyConnection) -> None:
    """Hook run just before a load commits (tests inject a crash here)."""


def load(store: Store, contract: Contract, table: pa.Table, *, run_id: int, source: str,
         quarantine_ids: pa.Array | None = None,
         in_transaction: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
         ) -> LoadStats:
    """Validate ``table`` against ``contract`` and load it in one transaction.

    ``quarantine_ids`` (one per row) marks a reprocess of quarantined rows: rows that now
    pass are marked 'reprocessed'; rows that still fail keep their quarantine entry with
    the new reason instead of getting a second one. ``in_transaction(cur)`` runs inside the
    load's transaction (e.g. to move a source's watermark together with its rows). A row
    already in quarantine (same contract, same raw row, still open) is not added twice.
    """
    _check_columns(contract, table)
    if table.num_rows == 0:
        if in_transaction is not None:
            with store.transaction() as cur:
                in_transaction(cur)
        return LoadStats()
    clean = (clean_readings(store, table)
             if contract.table == "readings" and quarantine_ids is None else None)
    if clean is not None:
        with store.transaction() as cur:
            cur.register("_ingest_good", clean.table)
            try:
                loaded = _insert_readings(cur, clean.table if clean.ordered else None)
            finally:
                cur.unregister("_ingest_good")
            if in_transaction is not None:
                in_transaction(cur)
            _before_commit(cur)
        return LoadStats(clean.table.num_rows, loaded, 0)
    table = _stringify_unsupported(table)
    present = {name: table.schema.field(name).type for name in table.column_names}
    plan = _plan(contract, present)
    if quarantine_ids is not None:
        table = table.append_column("_qid", quarantine_ids)
    table = table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    with store.transaction() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        ensure_table(store, contract, cur)
        cur.register("_ingest_in", table)
        try:
            stats = _load(cur, contract, plan, run_id, source, quarantine_ids is not None,
                          table.num_rows, list(present), present)
            if in_transaction is not None:
                in_transaction(cur)
            _before_commit(cur)
        finally:
            cur.unregister("_ingest_in")
            kind = cur.execute("SELECT any_value(table_type) FROM information_schema.tables"
                               " WHERE table_name = '_ingest_good'").fetchone()[0]
            if kind is not None:
                cur.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} _ingest_good")
            cur.execute("DROP TABLE IF EXISTS _ingest_typed")
    return stats


def _stringify_unsupported(table: pa.Table) -> pa.Table:
    """Nested, binary or dictionary columns become text so the raw row stays readable."""
    for i, f in enumerate(table.schema):
        t = f.type
        if pa.types.is_dictionary(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string())
                                     if not pa.types.is_binary(t) else
                                     pa.array([None if v is None else v.hex()
                                               for v in table.column(i).to_pylist()]))
        elif pa.types.is_nested(t):
            table = table.set_column(i, f.name, pa.array(
                [None if v is None else json.dumps(v, default=str)
                 for v in table.column(i).to_pylist()]))
    return table


def _readings_select(plan: _Plan, present: dict[str, pa.DataType]) -> tuple[str, str]:
    """(select list, joins) typing readings and resolving sensor codes in one pass."""
    by_name = {f.name: f for f in READINGS.fields}
    ts, _ = _typed(by_name["ts"], present)
    value, _ = _typed(by_name["value"], present)
    given_id = 'TRY_CAST(b."sensor_id" AS INTEGER)' if "sensor_id" in present else "NULL"
    joins = ""
    resolved = given_id
    if "sensor" in present:
        joins += ' LEFT JOIN sensors sc ON sc.code = b."sensor"::VARCHAR'
        resolved = f"coalesce({given_id}, sc.id)"
    joins += f" LEFT JOIN sensors si ON si.id = {resolved}"
    code = 'b."sensor"::VARCHAR' if "sensor" in present else "NULL"
    raw_id = 'b."sensor_id"' if "sensor_id" in present else "NULL"
    check = (f"CASE WHEN {raw_id} IS NULL AND {code} IS NULL THEN 'sensor: required'"
             f" WHEN {resolved} IS NULL AND {raw_id} IS NULL"
             f" THEN 'sensor: unknown code ' || {code}"
             f" WHEN {resolved} IS NOT NULL AND si.id IS NULL"
             f" THEN 'sensor_id: unknown sensor ' || {resolved} END")
    reasons = ", ".join([*plan.reasons, check])
    return (f"{resolved} AS sensor_id, {ts} AS ts, {value} AS value,"
            f" concat_ws('; ', {reasons}) AS _reason", joins)


def _load(cur: duckdb.DuckDBPyConnection, contract: Contract, plan: _Plan, run_id: int,
          source: str, reprocess: bool, rows_in: int, present: list[str],
          types: dict[str, pa.DataType]) -> LoadStats:
    extra = ", b._qid" if reprocess else ""
    readings = contract.table == "readings"
    if readings:
        selects, joins = _readings_select(plan, types)
    else:
        selects = f"{', '.join(plan.selects)}, concat_ws('; ', {', '.join(plan.reasons)}) AS _reason"
        joins = ""
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _ingest_typed AS"
                f" SELECT b._row{extra}, {selects} FROM _ingest_in b{joins}")
    if contract.crs != "EPSG:4326" and contract.lon and contract.lat:
        _to_wgs84(cur, contract)
    _jurisdiction(cur, contract)
    now = _now()
    rejected = cur.execute("SELECT count(*) FROM _ingest_typed WHERE _reason <> ''"
                           ).fetchone()[0]
    if rejected and reprocess:
        cur.execute("UPDATE quarantine SET reason = t._reason FROM _ingest_typed t"
                    " WHERE quarantine.id = t._qid AND t._reason <> ''")
    elif rejected:
        # the raw row (as it came) is built only for refused rows
        raw_cols = [c for c in present if c not in ("_row", "_qid")]
        raw = "json_object(" + ", ".join(
            f"'{c.replace(chr(39), chr(39) * 2)}', b.{_quote(c)}" for c in raw_cols) + ")::VARCHAR"
        cur.execute(
            f"INSERT INTO quarantine (id, run_id, source, contract, raw, reason, created_at)"
            f" SELECT nextval('quarantine_seq'), ?, ?, ?, r.raw, r._reason, ? FROM ("
            f"   SELECT t._row, t._reason, {raw} AS raw FROM _ingest_typed t"
            f"   JOIN _ingest_in b ON b._row = t._row WHERE t._reason <> '') r"
            f" WHERE NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.status = 'open'"
            f"   AND q.contract = ? AND q.raw = r.raw) ORDER BY r._row",
            [run_id, source, contract.name, now, contract.name])
    key = ", ".join(contract.key)
    # a hash collision can only make this look like a duplicate (then the exact path runs)
    dupes = cur.execute(f"SELECT count(*) - count(DISTINCT hash({key})) FROM _ingest_typed"
                        f" WHERE _reason = ''").fetchone()[0]
    if dupes:   # the same key twice in one batch: the last one wins
        cur.execute(f"""
            CREATE OR REPLACE TEMP TABLE _ingest_good AS
            SELECT * FROM _ingest_typed WHERE _reason = ''
            QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _row DESC) = 1""")
    else:
        cur.execute("CREATE OR REPLACE TEMP VIEW _ingest_good AS"
                    " SELECT * FROM _ingest_typed WHERE _reason = ''")
    loaded = _insert_readings(cur) if readings else _upsert(cur, contract, run_id, now)
    if reprocess:
        cur.execute("UPDATE quarantine SET status = 'reprocessed', resolved_run_id = ?"
                    " WHERE id IN (SELECT _qid FROM _ingest_typed WHERE _reason = '')",
                    [run_id])
    return LoadStats(rows_in, loaded, rejected)


def _to_wgs84(cur: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    lon, lat = contract.lon, contract.lat
    if contract.crs.upper() == GCJ02:
        import coordTransform

        pts = cur.execute(f"SELECT _row, {lon}, {lat} FROM _ingest_typed WHERE {lon} IS NOT NULL"
                          f" AND {lat} IS NOT NULL AND _reason = ''").fetchnumpy()
        if len(pts["_row"]) == 0:
            return
        # the library's batch form: two arrays in, two sequences out
        x, y = coordTransform.gcj02_to_wgs84(np.ascontiguousarray(pts[lon], dtype=float),
                                             np.ascontiguousarray(pts[lat], dtype=float))
        conv = pa.table({"_row": pts["_row"], "x": np.asarray(x, dtype=float),
                         "y": np.asarray(y, dtype=float)})
        cur.register("_ingest_conv", conv)
        try:
            cur.execute(f"UPDATE _ingest_typed SET {lon} = c.x, {lat} = c.y FROM _ingest_conv c"
                        " WHERE _ingest_typed._row = c._row")
        finally:
            cur.unregister("_ingest_conv")
        return
    cur.execute(f"""
        UPDATE _ingest_typed SET {lon} = ST_X(p), {lat} = ST_Y(p)
        FROM (SELECT _row AS r, ST_Transform(ST_Point({lon}, {lat}), ?, 'EPSG:4326',
                                             always_xy := true) AS p
              FROM _ingest_typed WHERE {lon} IS NOT NULL AND {lat} IS NOT NULL) t
        WHERE _row = t.r""", [contract.crs])


def _jurisdiction(cur: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    if contract.jurisdiction is None:
        return
    if contract.jurisdiction != "point":
        col = contract.jurisdiction
        cur.execute(f"""
            UPDATE _ingest_typed SET _reason = concat_ws('; ', nullif(_reason, ''),
                                                         '{col}: unknown jurisdiction')
            WHERE {col} IS NOT NULL AND {col} NOT IN (SELECT code FROM jurisdictions)""")
        return
    cur.execute("ALTER TABLE _ingest_typed ADD COLUMN jurisdiction_code VARCHAR")
    if contract.geometry:
        point = f"ST_PointOnSurface({contract.geometry})"
        cond = f"{contract.geometry} IS NOT NULL"
    else:
        point = f"ST_Point({contract.lon}, {contract.lat})"
        cond = f"{contract.lon} IS NOT NULL AND {contract.lat} IS NOT NULL"
    cur.execute(f"""
        UPDATE _ingest_typed SET jurisdiction_code = m.code
        FROM (SELECT t._row AS r, min(j.code) AS code
              FROM (SELECT _row, {point} AS p FROM _ingest_typed WHERE {cond}) t
              JOIN jurisdictions j ON j.level = 'community'
                AND ST_X(t.p) BETWEEN j.min_lon AND j.max_lon
                AND ST_Y(t.p) BETWEEN j.min_lat AND j.max_lat
                AND ST_Intersects(j.geom, t.p)
              GROUP BY t._row) m
        WHERE _row = m.r""")
    cur.execute("""
        UPDATE _ingest_typed SET _reason = concat_ws('; ', nullif(_reason, ''),
                                                     'location: outside every community')
        WHERE jurisdiction_code IS NULL AND _reason = ''""")


def _insert_readings(cur: duckdb.DuckDBPyConnection, ordered: pa.Table | None = None) -> int:
    """Insert the rows of ``_ingest_good`` not stored yet and stage their rollup deltas;
    ``ordered`` is the same batch in time order (its deltas are then aggregated in Arrow)."""
    span = cur.execute("SELECT min(ts), max(ts) FROM _ingest_good").fetchone()
    if span[0] is None:
        return 0
    # readings come in time order, so the ts range skips almost every stored row group;
    # rows are appended in arrival order (a feed's time order)
    params = {"lo": span[0], "hi": span[1]}
    overlap = cur.execute("SELECT count(*) FROM readings WHERE ts BETWEEN $lo AND $hi",
                          params).fetchone()[0]
    new = "_ingest_good"
    if overlap:         # keep only the rows not stored yet
        cur.execute("""
            CREATE OR REPLACE TEMP TABLE _ingest_new AS
            SELECT g.sensor_id, g.ts, g.value FROM _ingest_good g
            WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.ts BETWEEN $lo AND $hi
                              AND r.sensor_id = g.sensor_id AND r.ts = g.ts)""", params)
        new = "_ingest_new"
    loaded = cur.execute(f"INSERT INTO readings SELECT sensor_id, ts, value FROM {new}"
                         ).fetchone()[0]
    if loaded and not (ordered is not None and not overlap and stage_ordered(cur, ordered)):
        stage_deltas(cur, new)
    if overlap:
        cur.execute("DROP TABLE _ingest_new")
    return loaded


def _upsert(cur: duckdb.DuckDBPyConnection, contract: Contract, run_id: int,
            now: datetime) -> int:
    cols = contract.field_names + (["jurisdiction_code"] if contract.jurisdiction == "point"
                                   else [])
    # MERGE, not INSERT … ON CONFLICT: cluster mode runs the same SQL on DuckLake. Rows equal
    # to the stored ones are left out in the source, so they are neither written nor counted.
    values = [c for c in cols if c not in contract.key]
    on = " AND ".join(f"t.{k} = g.{k}" for k in contract.key)
    changed = " OR ".join(f"t.{c} IS DISTINCT FROM g.{c}" for c in values) or "false"
    first_key = contract.key[0]
    sets = ", ".join([*(f"{c} = s.{c}" for c in values), "_run_id = s._run_id",
                      "_loaded_at = s._loaded_at"])
    return cur.execute(f"""
        MERGE INTO {contract.table} AS t
        USING (SELECT g.{', g.'.join(cols)}, ?::INTEGER AS _run_id, ?::TIMESTAMP AS _loaded_at
               FROM _ingest_good g LEFT JOIN {contract.table} t ON {on}
               WHERE t.{first_key} IS NULL OR {changed}) AS s
        ON {on.replace('g.', 's.')}
        WHEN MATCHED THEN UPDATE SET {sets}
        WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}, _run_id, _loaded_at)
            VALUES ({', '.join('s.' + c for c in cols)}, s._run_id, s._loaded_at)""",
                       [run_id, now]).fetchone()[0]


# -- quarantine -------------------------------------------------------------------------
def open_quarantine(store: Store, contract: str | None = None, limit: int = 100_000,
                    ) -> list[dict]:
    """Open quarantine entries (id, run_id, source, contract, raw, reason, created_at)."""
    where, params = "status = 'open'", []
    if contract is not None:
        where += " AND contract = ?"
        params.append(contract)
    return store.query_dicts(
        f"SELECT id, run_id, source, contract, raw, reason, created_at FROM quarantine"
        f" WHERE {where} ORDER BY id LIMIT ?", [*params, limit])


def quarantine_raw(store: Store, *, run_id: int, source: str, contract: str,
                   items: Iterable[tuple[str, str]]) -> int:
    """Quarantine raw inputs that never became rows (e.g. an MQTT payload that is not
    JSON): ``items`` of (raw text, reason). Returns how many were stored."""
    rows = [(raw, reason) for raw, reason in items]
    if not rows:
        return 0
    table = pa.table({"raw": [r for r, _ in rows], "reason": [why for _, why in rows]})
    with store.transaction() as cur:
        cur.register("_ingest_raw", table)
        try:
            cur.execute(
                "INSERT INTO quarantine (id, run_id, source, contract, raw, reason, created_at)"
                " SELECT nextval('quarantine_seq'), ?, ?, ?, raw, reason, ? FROM _ingest_raw",
                [run_id, source, contract, _now()])
        finally:
            cur.unregister("_ingest_raw")
    return len(rows)
