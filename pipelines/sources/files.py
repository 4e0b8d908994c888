"""The ``files`` source: an inbox folder per department.

Drop a file into ``<data_dir>/inbox/<department>/`` (or the source's ``inbox`` option); each
run picks up every settled file, routes it to the dataset whose ``pattern`` matches its name
(among the datasets of that department, and ``readings``), reads it into Arrow and loads it
through ``core.ingest.load``. A loaded file moves to ``processed/`` (its bad rows, if any,
are in quarantine); a file that cannot be read or matched moves to ``failed/`` beside a
``<name>.reason.txt``. Nothing is ever deleted; a file loaded twice adds nothing.

Formats: CSV (UTF-8 or GB18030), XLSX, JSON (array or NDJSON), Parquet, GeoJSON, GeoPackage,
zipped Shapefile. Geo files are reprojected from their declared CRS to WGS84; a point's
lon/lat or any geometry's WKT fills the contract's columns.

>>> pull(store, settings, config.sources["inbox_cg"], config)   # doctest: +SKIP
LoadStats(rows_in=120, loaded=118, rejected=2)
"""

from __future__ import annotations

import fnmatch
import logging
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.ingest import GCJ02, Contract, ContractError, LoadStats, load
from core.rollups import refresh_rollups
from core.settings import Settings
from core.store import Store
from pipelines.config import Dataset, PipelineConfig, SourceConfig
from pipelines.runner import current_run_id

__all__ = ["FORMATS", "FileRefused", "inbox_of", "load_file", "pull", "read_file"]

log = logging.getLogger(__name__)
FORMATS = (".csv", ".xlsx", ".json", ".ndjson", ".parquet", ".geojson", ".gpkg", ".zip")
_GEO = (".geojson", ".gpkg", ".zip")
_SKIP_SUFFIXES = (".part", ".tmp", ".reason.txt")


class FileRefused(Exception):
    """A whole file was refused (unreadable, unknown format, no dataset, missing columns)."""


def inbox_of(settings: Settings, cfg: SourceConfig) -> Path:
    """The inbox folder of a files source (created when absent)."""
    path = Path(cfg.options.get("inbox") or Path(settings.data_dir) / "inbox"
                / cfg.options.get("department", cfg.name))
    for sub in ("", "processed", "failed"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def pull(store: Store, settings: Settings, cfg: SourceConfig,
         config: PipelineConfig) -> LoadStats:
    """Load every settled file of the inbox; returns the summed row counts."""
    inbox = inbox_of(settings, cfg)
    settle = float(cfg.options.get("settle_seconds", 2.0))
    department = cfg.options.get("department")
    datasets = [d for name, d in config.datasets.items()
                if name == "readings" or department is None
                or d.contract.department in (None, department)]
    total = LoadStats()
    readings = False
    for path in sorted(inbox.iterdir()):
        if (not path.is_file() or path.name.startswith(".")
                or path.name.endswith(_SKIP_SUFFIXES)
                or time.time() - path.stat().st_mtime < settle):
            continue
        try:
            dataset = _route(path, datasets)
            stats = load_file(store, dataset.contract, path, source=cfg.name)
        except FileRefused as exc:
            _move(path, inbox / "failed", reason=str(exc))
            total += LoadStats(rejected=1)
            continue
        _move(path, inbox / "processed")
        total += stats
        readings = readings or dataset.contract.table == "readings"
    if readings and total.loaded:
        refresh_rollups(store)
    return total


def _route(path: Path, datasets: list[Dataset]) -> Dataset:
    if path.suffix.lower() not in FORMATS:
        raise FileRefused(f"{path.name}: unsupported format {path.suffix or '(none)'};"
                          f" accepted: {', '.join(FORMATS)}")
    for ds in datasets:
        if fnmatch.fnmatch(path.name.lower(), ds.pattern.lower()):
            return ds
    raise FileRefused(f"{path.name}: no dataset of this inbox matches the name (patterns: "
                      f"{', '.join(d.pattern for d in datasets)})")


def load_file(store: Store, contract: Contract, path: Path, *, source: str) -> LoadStats:
    """Read one file and load it against ``contract`` (raises FileRefused for the file)."""
    table, contract = read_file(path, contract)
    try:
        return load(store, contract, table, run_id=current_run_id() or 0, source=source)
    except ContractError as exc:
        raise FileRefused(f"{path.name}: {exc}") from None


def read_file(path: Path, contract: Contract) -> tuple[pa.Table, Contract]:
    """The file as an Arrow table (plus the contract adjusted for a reprojected geo file)."""
    suffix = path.suffix.lower()
    try:
        if suffix in _GEO or (suffix == ".json" and _looks_geojson(path)):
            return _read_geo(path, contract)
        if suffix == ".csv":
            return _read_csv(path), contract
        if suffix == ".xlsx":
            frame = pd.read_excel(path, dtype=str, engine="openpyxl")
            return _from_pandas(frame), contract
        if suffix in (".json", ".ndjson"):
            with duckdb.connect() as con:
                return con.execute("SELECT * FROM read_json_auto(?)", [str(path)]
                                   ).to_arrow_table(), contract
        return pq.read_table(path), contract
    except FileRefused:
        raise
    except Exception as exc:  # every reader's own error says what is wrong with the file
        raise FileRefused(f"{path.name}: cannot read as {suffix[1:]}: "
                          f"{type(exc).__name__}: {str(exc)[:300]}") from None


def _read_csv(path: Path) -> pa.Table:
    with duckdb.connect() as con:
        try:
            return con.execute("SELECT * FROM read_csv(?, all_varchar = true, header = true)",
                               [str(path)]).to_arrow_table()
        except duckdb.InvalidInputException as exc:
            if "unicode" not in str(exc).lower() and "utf" not in str(exc).lower():
                raise
        text = path.read_bytes().decode("gb18030")     # Chinese offices' Excel exports
        frame = pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False,
                            na_values=[""])
        return _from_pandas(frame)


def _looks_geojson(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096)
    return b'"FeatureCollection"' in head


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    frame = frame.astype(object).where(frame.notna(), None)
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.Table.from_pandas(frame.map(lambda v: None if v is None else str(v)),
                                    preserve_index=False)


def _read_geo(path: Path, contract: Contract) -> tuple[pa.Table, Contract]:
    import geopandas as gpd

    gdf = gpd.read_file(path)
    if gdf.crs is None:
        crs = contract.crs if contract.crs.upper() != GCJ02 else "EPSG:4326"
        gdf = gdf.set_crs(crs)
    if not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs(4326)
    geom = gdf.geometry
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    if contract.geometry:
        frame[contract.geometry] = geom.to_wkt()
    elif contract.lon and contract.lat:
        if not geom.isna().all() and not (geom.geom_type.dropna() == "Point").all():
            raise FileRefused(f"{path.name}: the dataset takes points (lon/lat) but the file"
                              f" has {', '.join(sorted(set(geom.geom_type.dropna())))}")
        frame[contract.lon] = geom.x
        frame[contract.lat] = geom.y
    if contract.crs.upper() != GCJ02:
        contract = replace(contract, crs="EPSG:4326")   # reprojected here from the file's CRS
    return _from_pandas(frame), contract


def _move(path: Path, folder: Path, reason: str | None = None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = folder / f"{stamp}_{path.name}"
    shutil.move(str(path), target)
    if reason is not None:
        (folder / f"{target.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
        log.warning("refused %s: %s", path.name, reason)
    return target
