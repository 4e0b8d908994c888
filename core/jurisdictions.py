"""The jurisdiction tree: province → city → district → street → community → grid.

``save_jurisdictions`` checks the tree and writes it in one transaction; file loading
(any format, any CRS, messy geometry) lives in ``core.geoload`` and ends here.

>>> save_jurisdictions(store, gdf)         # doctest: +SKIP
JurisdictionSummary(count=509, levels={'city': 1, 'district': 9, ...})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import pandas as pd
import shapely

from core.scope import Scope
from core.store import Store

__all__ = [
    "LEVELS",
    "LEVEL_ALIASES",
    "JurisdictionError",
    "JurisdictionSummary",
    "check_tree",
    "children",
    "get_jurisdiction",
    "jurisdictions_geojson",
    "save_jurisdictions",
]

LEVELS = ("province", "city", "district", "street", "community", "grid")
LEVEL_ALIASES = {
    "省": "province", "市": "city", "区": "district", "县": "district", "区县": "district",
    "街道": "street", "乡镇": "street", "镇": "street", "乡": "street", "社区": "community",
    "村": "community", "村居": "community", "网格": "grid",
}
REQUIRED_COLUMNS = ("code", "parent_code", "level", "name_zh", "geometry")


class JurisdictionError(ValueError):
    """The jurisdiction data cannot be used; ``problems`` lists every reason found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:20]
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__("jurisdictions refused:\n  " + "\n  ".join(shown) + more)


@dataclass
class JurisdictionSummary:
    count: int
    levels: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_tree(df: pd.DataFrame) -> pd.DataFrame:
    """Check codes, parents and levels; return a copy with ``depth`` and ``path`` added.

    One root; every parent exists; no cycles; every child is exactly one level below
    its parent.
    """
    problems: list[str] = []
    df = df.copy()
    df["code"] = df["code"].astype(str).str.strip()
    df["parent_code"] = pd.Series(
        [None if pd.isna(p) or not str(p).strip() else str(p).strip() for p in df["parent_code"]],
        index=df.index, dtype=object,
    )
    dup = df["code"][df["code"].duplicated()].unique()
    if len(dup):
        problems.append(f"duplicate codes: {', '.join(map(str, dup[:10]))}")
    bad_levels = sorted(set(df["level"]) - set(LEVELS))
    if bad_levels:
        problems.append(f"unknown levels {bad_levels}; use one of {', '.join(LEVELS)}")
    roots = df.loc[df["parent_code"].isna(), "code"].tolist()
    if len(roots) != 1:
        problems.append(f"the tree needs exactly one root (no parent); found {len(roots)}: "
                        f"{', '.join(roots[:10])}")
    codes = set(df["code"])
    orphans = df.loc[df["parent_code"].notna() & ~df["parent_code"].isin(codes)]
    for code, parent in orphans[["code", "parent_code"]].head(10).itertuples(index=False):
        problems.append(f"{code}: parent {parent} does not exist")
    if len(orphans) > 10:
        problems.append(f"… {len(orphans) - 10} more rows with a missing parent")
    if problems:
        raise JurisdictionError(problems)

    parent = dict(zip(df["code"], df["parent_code"], strict=True))
    level = dict(zip(df["code"], df["level"], strict=True))
    paths: dict[str, str] = {roots[0]: f"/{roots[0]}/"}
    depth: dict[str, int] = {roots[0]: 0}
    for code in df["code"]:
        chain = []
        cur = code
        while cur not in paths:
            chain.append(cur)
            cur = parent[cur]
            if cur in chain or cur is None:
                problems.append(f"{code}: cycle in parent links ({' → '.join(chain)})")
                break
        else:
            for c in reversed(chain):
                paths[c] = f"{paths[parent[c]]}{c}/"
                depth[c] = depth[parent[c]] + 1
    if problems:
        raise JurisdictionError(sorted(set(problems)))
    for code, par in parent.items():
        if par is not None and LEVELS.index(level[code]) != LEVELS.index(level[par]) + 1:
            problems.append(
                f"{code}: level {level[code]} cannot sit under {par} ({level[par]})"
            )
    if problems:
        raise JurisdictionError(problems)
    df["path"] = df["code"].map(paths)
    df["depth"] = df["code"].map(depth)
    return df


def save_jurisdictions(store: Store, gdf: gpd.GeoDataFrame) -> JurisdictionSummary:
    """Replace the jurisdiction tree with ``gdf`` (EPSG:4326, valid polygons), atomically."""
    missing = [c for c in REQUIRED_COLUMNS if c not in gdf.columns]
    if missing:
        raise JurisdictionError([f"missing columns: {', '.join(missing)}"])
    if gdf.crs is None or gdf.crs.to_epsg() != 4326:
        raise JurisdictionError([f"geometry must be EPSG:4326, got {gdf.crs}"])
    df = check_tree(gdf)
    geoms = gpd.GeoSeries(df.geometry, crs=4326)
    bounds = geoms.bounds
    centroids = geoms.to_crs(6933).centroid.to_crs(4326)
    rows = pd.DataFrame({
        "code": df["code"],
        "parent_code": df["parent_code"],
        "level": df["level"],
        "depth": df["depth"].astype("int32"),
        "path": df["path"],
        "name_zh": df["name_zh"].astype(str),
        "name_en": df.get("name_en"),
        "population": (df["population"].astype("Int64") if "population" in df else None),
        "area_km2": geoms.to_crs(6933).area.to_numpy() / 1e6,
        "centroid_lon": centroids.x.to_numpy(),
        "centroid_lat": centroids.y.to_numpy(),
        "min_lon": bounds["minx"], "min_lat": bounds["miny"],
        "max_lon": bounds["maxx"], "max_lat": bounds["maxy"],
        "wkb": shapely.to_wkb(geoms.to_numpy()),
    })
    with store.transaction() as cur:
        cur.register("_jur_rows", rows)
        try:
            cur.execute("DELETE FROM jurisdictions")
            cur.execute(
                "INSERT INTO jurisdictions SELECT code, parent_code, level, depth, path, name_zh,"
                " name_en, population, area_km2, centroid_lon, centroid_lat, min_lon, min_lat,"
                " max_lon, max_lat, ST_GeomFromWKB(wkb) FROM _jur_rows"
            )
        finally:
            cur.unregister("_jur_rows")
    return JurisdictionSummary(len(rows), rows["level"].value_counts().to_dict())


_SELECT = (
    "SELECT code, parent_code, level, depth, path, name_zh, name_en, population, area_km2,"
    " centroid_lon, centroid_lat, min_lon, min_lat, max_lon, max_lat FROM jurisdictions"
)


def get_jurisdiction(store: Store, scope: Scope, code: str) -> dict | None:
    """One jurisdiction inside the scope, else None."""
    rows = store.query_dicts(f"{_SELECT} WHERE code = ? AND starts_with(path, ?)",
                             [code, scope.root_path])
    return rows[0] if rows else None


def children(store: Store, scope: Scope, code: str) -> list[dict]:
    """The children of a jurisdiction inside the scope, by name."""
    return store.query_dicts(
        f"{_SELECT} WHERE parent_code = ? AND starts_with(path, ?) ORDER BY code",
        [code, scope.root_path],
    )


def jurisdictions_geojson(
    store: Store, scope: Scope, parent_code: str | None = None, *, simplify: float = 0.0
) -> dict:
    """GeoJSON FeatureCollection of the children of ``parent_code`` (default: the scope's
    root's children, or the root itself when it is a leaf), clipped to the scope."""
    parent_code = parent_code or scope.root_code
    rows = store.query(
        "SELECT code, name_zh, name_en, level, population, area_km2,"
        " ST_AsGeoJSON(CASE WHEN ? > 0 THEN ST_SimplifyPreserveTopology(geom, ?) ELSE geom END)"
        " FROM jurisdictions WHERE starts_with(path, ?) AND (parent_code = ?"
        "   OR (code = ? AND NOT EXISTS (SELECT 1 FROM jurisdictions c WHERE c.parent_code = ?)))"
        " ORDER BY code",
        [simplify, simplify, scope.root_path, parent_code, parent_code, parent_code],
    )
    import json

    features = [
        {
            "type": "Feature",
            "id": code,
            "properties": {"code": code, "name_zh": zh, "name_en": en, "level": level,
                           "population": pop, "area_km2": area},
            "geometry": json.loads(geom),
        }
        for code, zh, en, level, pop, area, geom in rows
    ]
    return {"type": "FeatureCollection", "features": features}
