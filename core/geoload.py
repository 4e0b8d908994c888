"""Read jurisdiction boundaries from real-world files and load them as the tree.

Formats: GeoJSON, GeoPackage (``layer``), Shapefile (``.shp`` or a ``.zip`` holding one),
GeoParquet. Columns are mapped by a ``ColumnMap``; levels may be English or Chinese
(``市``/``区``/``街道``…); any CRS is reprojected to EPSG:4326; invalid geometry is repaired
(or refused), slivers dropped, Z dropped. Every problem found is reported at once in one
``JurisdictionError``, and nothing is written unless the whole file is usable.

>>> gdf, notes = read_jurisdictions(Path("city.gpkg"), layer="boundaries",
...                                 columns=ColumnMap(code="ADCODE"))   # doctest: +SKIP
>>> load_jurisdiction_file(store, Path("city.shp.zip"), crs="EPSG:4549")  # doctest: +SKIP
JurisdictionSummary(count=509, levels={'community': 440, ...}, notes=[...])
"""

from __future__ import annotations

import math
import numbers
import warnings
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyarrow.lib import ArrowException
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.errors import ShapelyError
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from core.jurisdictions import (
    LEVEL_ALIASES,
    LEVELS,
    JurisdictionError,
    JurisdictionSummary,
    check_tree,
    save_jurisdictions,
)
from core.store import Store

__all__ = ["SLIVER_M2", "SLIVER_RATIO", "ColumnMap", "load_jurisdiction_file",
           "read_jurisdictions"]

SLIVER_M2 = 1.0          # polygon parts smaller than this (m², equal-area) are slivers
SLIVER_RATIO = 1e-6      # … and so are parts below this share of their feature's area
EQUAL_AREA_CRS = "EPSG:6933"
_GDAL_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp")
_PARQUET_SUFFIXES = (".parquet", ".geoparquet")
_ZIP_MEMBER_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json")
_OPTIONAL = ("name_en", "population")
_INT32_MAX = 2**31 - 1
_CRS_HINT = ("pass --crs (crs=…): e.g. EPSG:4490 for CGCS2000 lon/lat, EPSG:4549 for "
             "CGCS2000 / 3-degree Gauss-Kruger CM 120E, EPSG:4326 for WGS84")


@dataclass(frozen=True)
class ColumnMap:
    """Which column of the file holds each field (``name_en``/``population`` optional).

    >>> ColumnMap(code="ADCODE", name_zh="NAME").code
    'ADCODE'
    """

    code: str = "code"
    parent_code: str = "parent_code"
    name_zh: str = "name_zh"
    name_en: str = "name_en"
    level: str = "level"
    population: str = "population"


def read_jurisdictions(
    source: Path,
    *,
    columns: ColumnMap = ColumnMap(),
    layer: str | None = None,
    crs: str | None = None,
    repair: bool = True,
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read, clean and check a jurisdiction file; return (EPSG:4326 frame, notes).

    The frame has code, parent_code, level, name_zh, name_en, population and geometry,
    ready for ``save_jurisdictions``. Notes say what was repaired or dropped. Raises
    ``JurisdictionError`` listing every problem (columns, CRS, rows, geometry, tree).

    >>> gdf, notes = read_jurisdictions(Path("wuxi.geojson"))   # doctest: +SKIP
    >>> gdf.crs.to_epsg(), notes[:1]                            # doctest: +SKIP
    (4326, ['320281001: invalid geometry repaired (Self-intersection[120.1 31.9])'])
    """
    source = Path(source)
    notes: list[str] = []
    raw = _read_file(source, layer, notes)
    if raw.empty:
        raise JurisdictionError([f"{source.name}: the file has no features"])
    picked, problems = _pick_columns(raw, columns, notes)
    raw, crs_problems = _declare_crs(raw, crs, source.name)
    problems += crs_problems
    if problems:
        raise JurisdictionError(problems)

    attrs, problems = _attributes(raw, picked)
    geoms, geom_problems = _geometries(raw.geometry, attrs["code"], repair, notes)
    if not problems:
        problems += _tree_problems(attrs)
    problems += geom_problems
    if problems:
        raise JurisdictionError(problems)
    return gpd.GeoDataFrame(attrs, geometry=geoms, crs="EPSG:4326"), notes


def load_jurisdiction_file(
    store: Store,
    source: Path,
    *,
    columns: ColumnMap = ColumnMap(),
    layer: str | None = None,
    crs: str | None = None,
    repair: bool = True,
) -> JurisdictionSummary:
    """Read ``source`` and replace the jurisdiction tree with it, atomically.

    Nothing is written when the file has any problem.

    >>> load_jurisdiction_file(store, Path("city.gpkg"), layer="grids").count  # doctest: +SKIP
    509
    """
    gdf, notes = read_jurisdictions(source, columns=columns, layer=layer, crs=crs,
                                    repair=repair)
    summary = save_jurisdictions(store, gdf)
    summary.notes.extend(notes)
    return summary


# -- reading -------------------------------------------------------------------------------
def _read_file(source: Path, layer: str | None, notes: list[str]) -> gpd.GeoDataFrame:
    """Read any supported format; the reader's warnings (e.g. an unclosed ring) become notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gdf = _read_any(source, layer)
    for message in dict.fromkeys(str(w.message) for w in caught):
        notes.append(f"{source.name}: {message}")
    return gdf


def _read_any(source: Path, layer: str | None) -> gpd.GeoDataFrame:
    suffix = source.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        try:
            return gpd.read_parquet(source)
        except (ValueError, OSError, ArrowException, ShapelyError) as exc:
            raise JurisdictionError([f"cannot read {source.name} as GeoParquet: {exc}"]) from None
    if suffix == ".zip":
        path = _zip_member(source)
    elif suffix in _GDAL_SUFFIXES:
        path = str(source)
    else:
        raise JurisdictionError([
            f"{source.name}: unknown file type {suffix or '(no extension)'!r}; use GeoJSON "
            "(.geojson/.json), GeoPackage (.gpkg), Shapefile (.shp or .zip) or GeoParquet "
            "(.parquet)"
        ])
    try:
        # on_invalid="fix" closes unclosed rings instead of failing the whole file
        return gpd.read_file(path, layer=_pick_layer(path, layer, source.name),
                             engine="pyogrio", on_invalid="fix")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError,
            pyogrio.errors.GeometryError, pyogrio.errors.FieldError, OSError,
            ShapelyError) as exc:
        raise JurisdictionError([f"cannot read {source.name}: {exc}"]) from None


def _zip_member(source: Path) -> str:
    """The GDAL path of the one vector file inside a zip (Shapefile preferred)."""
    try:
        with zipfile.ZipFile(source) as zf:
            names = [n for n in zf.namelist() if not n.startswith("__MACOSX/")]
    except zipfile.BadZipFile as exc:
        raise JurisdictionError([f"{source.name}: not a readable zip ({exc})"]) from None
    for suffix in _ZIP_MEMBER_SUFFIXES:
        found = [n for n in names if n.lower().endswith(suffix)]
        if len(found) == 1:
            return f"/vsizip/{source.resolve()}/{found[0]}"
        if len(found) > 1:
            raise JurisdictionError([
                f"{source.name} holds several {suffix} files ({', '.join(found)}); "
                "zip one dataset per file"
            ])
    raise JurisdictionError([
        f"{source.name} holds no Shapefile (.shp), GeoPackage or GeoJSON; it has: "
        f"{', '.join(names[:20]) or 'nothing'}"
    ])


def _pick_layer(path: str, layer: str | None, name: str) -> str | None:
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, OSError) as exc:
        raise JurisdictionError([f"cannot read {name}: {exc}"]) from None
    if layer is not None and layer not in layers:
        raise JurisdictionError([f"{name} has no layer {layer!r}; its layers: {', '.join(layers)}"])
    if layer is None and len(layers) > 1:
        raise JurisdictionError([
            f"{name} has {len(layers)} layers; pick one with --layer: {', '.join(layers)}"
        ])
    return layer


def _find_column(available: list[str], wanted: str) -> str | None:
    if wanted in available:
        return wanted
    folded = {c.lower(): c for c in available}
    # Shapefile (dBASE) cuts field names to 10 characters: parent_code → parent_cod
    return folded.get(wanted.lower()) or folded.get(wanted[:10].lower())


def _pick_columns(
    raw: gpd.GeoDataFrame, columns: ColumnMap, notes: list[str]
) -> tuple[dict[str, str], list[str]]:
    """Field → file column for every field found; problems for missing required ones."""
    available = [c for c in raw.columns if c != raw.geometry.name]
    picked: dict[str, str] = {}
    missing: list[str] = []
    for f in fields(ColumnMap):
        wanted = getattr(columns, f.name)
        found = _find_column(available, wanted)
        if found is None:
            if f.name in _OPTIONAL:
                notes.append(f"no {f.name} column {wanted!r} in the file; left empty")
            else:
                missing.append(f"{f.name} (column {wanted!r})")
            continue
        if found != wanted:
            notes.append(f"{f.name} read from column {found!r} (asked for {wanted!r})")
        picked[f.name] = found
    if not missing:
        return picked, []
    return picked, [f"missing required column{'s' if len(missing) > 1 else ''}: "
                    f"{', '.join(missing)}; the file has: {', '.join(map(str, available))}"]


def _declare_crs(raw: gpd.GeoDataFrame, crs: str | None, name: str
                 ) -> tuple[gpd.GeoDataFrame, list[str]]:
    if crs is None:
        if raw.crs is None:
            return raw, [f"{name} declares no CRS; {_CRS_HINT}"]
        return raw, []
    try:
        given = CRS.from_user_input(crs)
    except CRSError as exc:
        return raw, [f"--crs {crs!r} is not a CRS pyproj knows: {exc}"]
    if raw.crs is None:
        return raw.set_crs(given), []
    if not raw.crs.equals(given, ignore_axis_order=True):
        return raw, [f"{name} declares {raw.crs.to_string()} but --crs {crs} was given; "
                     "drop --crs or fix the file's CRS (it is not overridden silently)"]
    return raw, []


# -- attributes ----------------------------------------------------------------------------
def _code_text(value: Any) -> str | None:
    """A code as text: 320281001 and 320281001.0 both give '320281001'; '0101' stays."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value).strip() or None


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).strip() or None


def _level(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return text.lower() if text.lower() in LEVELS else LEVEL_ALIASES.get(text)


def _attributes(raw: gpd.GeoDataFrame, picked: dict[str, str]
                ) -> tuple[pd.DataFrame, list[str]]:
    """The cleaned attribute frame (one row per feature) and the row problems found."""
    def column(name: str) -> list:
        return raw[picked[name]].tolist() if name in picked else [None] * len(raw)

    codes = [_code_text(v) for v in column("code")]
    labels = [c or f"row {i + 1} (no code)" for i, c in enumerate(codes)]
    problems = [f"{label}: empty code" for label, c in zip(labels, codes, strict=True) if not c]
    counts = pd.Series([c for c in codes if c]).value_counts()
    problems += [f"duplicate code {c} ({n} rows)" for c, n in counts[counts > 1].items()]

    levels = []
    for label, value in zip(labels, column("level"), strict=True):
        levels.append(_level(value))
        if levels[-1] is None:
            problems.append(f"{label}: unknown level {_text(value)!r}; use one of "
                            f"{', '.join(LEVELS)} or {'/'.join(LEVEL_ALIASES)}")
    names = [_text(v) for v in column("name_zh")]
    problems += [f"{label}: empty name_zh"
                 for label, n in zip(labels, names, strict=True) if n is None]
    population, pop_problems = _population(column("population"), labels)
    attrs = pd.DataFrame({
        "code": pd.Series(codes, dtype=object),
        "parent_code": pd.Series([_code_text(v) for v in column("parent_code")], dtype=object),
        "level": pd.Series(levels, dtype=object),
        "name_zh": pd.Series(names, dtype=object),
        "name_en": pd.Series([_text(v) for v in column("name_en")], dtype=object),
        "population": population,
    })
    attrs["code"] = attrs["code"].where(attrs["code"].notna(), pd.Series(labels, dtype=object))
    return attrs, problems + pop_problems


def _population(values: list, labels: list[str]) -> tuple[pd.Series, list[str]]:
    as_text = pd.Series([_text(v) for v in values], dtype=object)
    numeric = pd.to_numeric(as_text, errors="coerce")
    problems = []
    for label, text, num in zip(labels, as_text, numeric, strict=True):
        if text is not None and (pd.isna(num) or not 0 <= num <= _INT32_MAX):
            problems.append(f"{label}: population {text!r} is not a count "
                            f"between 0 and {_INT32_MAX}")
    numeric = numeric.where((numeric >= 0) & (numeric <= _INT32_MAX))
    return numeric.round().astype("Int64"), problems


def _tree_problems(attrs: pd.DataFrame) -> list[str]:
    try:
        check_tree(attrs)
    except JurisdictionError as exc:
        return exc.problems
    return []


# -- geometry ------------------------------------------------------------------------------
def _polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [] if geom.is_empty else [geom]
    if isinstance(geom, MultiPolygon | GeometryCollection):
        return [p for g in geom.geoms for p in _polygon_parts(g)]
    return []


def _as_polygonal(parts: list[Polygon]) -> Polygon | MultiPolygon:
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _clean_shape(code: str, geom: BaseGeometry | None, repair: bool,
                 notes: list[str]) -> tuple[BaseGeometry | None, str | None]:
    """Polygonal, valid, 2D geometry in the source CRS, or a problem."""
    if geom is None or geom.is_empty:
        return None, f"{code}: empty or missing geometry"
    geom = shapely.force_2d(geom)
    parts = _polygon_parts(geom)
    if not parts:
        return None, f"{code}: geometry is a {geom.geom_type}; a jurisdiction needs a polygon"
    if isinstance(geom, GeometryCollection):
        dropped = len(shapely.get_parts(geom)) - len(parts)
        if dropped:
            notes.append(f"{code}: kept the polygons of a GeometryCollection, "
                         f"dropped {dropped} other part(s)")
    return _repaired(code, _as_polygonal(parts), repair, notes)


def _repaired(code: str, geom: BaseGeometry, repair: bool, notes: list[str]
              ) -> tuple[BaseGeometry | None, str | None]:
    if geom.is_valid:
        return geom, None
    reason = shapely.is_valid_reason(geom)
    if not repair:
        return None, f"{code}: invalid geometry ({reason}); repair is off (--no-repair)"
    parts = _polygon_parts(shapely.make_valid(geom))
    if not parts:
        return None, f"{code}: invalid geometry ({reason}) has no area left after repair"
    notes.append(f"{code}: invalid geometry repaired ({reason})")
    return _as_polygonal(parts), None


def _geometries(geoms: gpd.GeoSeries, codes: pd.Series, repair: bool, notes: list[str]
                ) -> tuple[gpd.GeoSeries, list[str]]:
    """Clean shapes, reproject to EPSG:4326, drop slivers; (EPSG:4326 series, problems)."""
    problems: list[str] = []
    cleaned = []
    for code, geom in zip(codes, geoms, strict=True):
        shape, problem = _clean_shape(code, geom, repair, notes)
        cleaned.append(shape)
        if problem:
            problems.append(problem)
    wgs84 = gpd.GeoSeries(cleaned, crs=geoms.crs, index=codes.index).to_crs("EPSG:4326")
    out_of_range = _out_of_range(wgs84, codes, geoms.crs)
    if out_of_range:
        return wgs84, problems + out_of_range
    final = []
    for code, geom in zip(codes, wgs84, strict=True):
        if geom is not None:
            # reprojection can bend a valid ring into a tiny self-intersection
            geom, problem = _repaired(code, geom, repair, notes)
            if problem:
                problems.append(problem)
        final.append(geom)
    final, sliver_problems = _drop_slivers(gpd.GeoSeries(final, crs="EPSG:4326",
                                                         index=codes.index), codes, notes)
    oriented = shapely.orient_polygons(final.to_numpy(), exterior_cw=False)
    return gpd.GeoSeries(oriented, crs="EPSG:4326", index=codes.index), problems + sliver_problems


def _out_of_range(wgs84: gpd.GeoSeries, codes: pd.Series, source_crs: CRS) -> list[str]:
    b = wgs84.bounds
    bad = (b["minx"] < -180) | (b["maxx"] > 180) | (b["miny"] < -90) | (b["maxy"] > 90)
    if not bad.any():
        return []
    sample = ", ".join(codes[bad].head(5))
    return [f"{sample}: coordinates are outside longitude/latitude range after reading them "
            f"as {source_crs.to_string()}; is that the file's real CRS? ({_CRS_HINT})"]


def _drop_slivers(geoms: gpd.GeoSeries, codes: pd.Series, notes: list[str]
                  ) -> tuple[gpd.GeoSeries, list[str]]:
    arr = geoms.to_numpy().copy()
    parts, owner = shapely.get_parts(arr, return_index=True)
    areas = gpd.GeoSeries(parts, crs=geoms.crs).to_crs(EQUAL_AREA_CRS).area.to_numpy()
    totals = np.bincount(owner, weights=areas, minlength=len(arr))
    keep = areas >= np.maximum(totals * SLIVER_RATIO, SLIVER_M2)[owner]
    problems = []
    for i in np.unique(owner[~keep]):
        kept, dropped = parts[(owner == i) & keep], areas[(owner == i) & ~keep]
        if not len(kept):
            problems.append(f"{codes.iloc[i]}: area {totals[i]:.3g} m² is too small "
                            "for a jurisdiction")
            arr[i] = None
            continue
        notes.append(f"{codes.iloc[i]}: dropped {len(dropped)} sliver part(s) "
                     f"(largest {dropped.max():.3g} m²)")
        arr[i] = _as_polygonal(list(kept))
    return gpd.GeoSeries(arr, crs=geoms.crs, index=geoms.index), problems
