"""The demo city's jurisdictions: city → district → street → community, tiling exactly.

The city outline is a noisy ellipse (~35 × 25 km) whose north edge follows the south bank
of a river, as Jiangyin's follows the Yangtze. Community seeds are denser in the urban
core; district seeds are k-means centres of the community seeds, street seeds k-means centres
inside each district. Communities are the Voronoi cells of their seeds clipped to the
outline; a street is the union of its communities, a district the union of its streets, the
city the union of its districts, all snapped to a 1e-7° grid, so children tile their parent
with neither gap nor overlap.

Codes follow the Chinese administrative pattern, each level extending its parent's code:

====================  =================  ======================================
level                 example            rule
====================  =================  ======================================
city                  ``320281``         6 digits (county-level city)
district              ``320281101``      city + ``1`` + 2-digit number (core = 01)
street (街道/乡镇)    ``320281101003``   district + 3-digit number
community (社区/村)   ``320281101003012``  street + 3-digit number
====================  =================  ======================================

>>> import numpy as np
>>> from core.settings import load_settings
>>> geo = make_geography(np.random.default_rng(1), load_settings())   # doctest: +SKIP
>>> geo.jurisdictions["level"].value_counts()["district"]             # doctest: +SKIP
9
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from core.settings import Settings
from pipelines.demo.names import place_names

__all__ = ["CITY_CODE", "GRID_SIZE", "Geography", "check_sizes", "make_geography",
           "random_points_in"]

CITY_CODE = "320281"
CITY_NAME = ("澄州市", "Chengzhou City")
GRID_SIZE = 1e-7                      # degrees (~1 cm): every vertex is snapped to it
SEMI_AXES_KM = (17.5, 12.5)
CORE_SIGMA_KM = 4.0                   # spread of the dense urban core
CORE_SHARE = 0.45                     # share of community seeds drawn from the core
_KM_PER_DEG_LAT = 110.574
_KM_PER_DEG_LON_EQUATOR = 111.320


@dataclass(frozen=True)
class Geography:
    """Every jurisdiction (ready for ``save_jurisdictions``) and the communities alone."""

    jurisdictions: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame   # code, name_zh, street_code, district_code, population


def make_geography(rng: np.random.Generator, settings: Settings) -> Geography:
    """Generate the whole jurisdiction tree from ``rng``, sized by ``settings``.

    >>> geo = make_geography(np.random.default_rng(1), load_settings())   # doctest: +SKIP
    >>> len(geo.communities) == load_settings().demo_communities          # doctest: +SKIP
    True
    """
    check_sizes(settings)
    n_d, n_s, n_c = settings.demo_districts, settings.demo_streets, settings.demo_communities
    outline = _outline_km(rng)
    seeds = _community_seeds(rng, outline, n_c)
    district = _kmeans(rng, seeds, n_d)
    street = _streets_within(rng, seeds, district, n_s)
    cells = _cells(seeds, outline)
    to_deg = _km_to_degrees(settings.demo_center_lat, settings.demo_center_lon)
    cells = shapely.set_precision(shapely.transform(cells, to_deg), GRID_SIZE)
    communities = _communities_frame(rng, seeds, district, street, cells)
    jurisdictions = _tree(rng, communities)
    return Geography(jurisdictions, jurisdictions[jurisdictions["level"] == "community"]
                     .merge(communities[["code", "street_code", "district_code"]], on="code")
                     .reset_index(drop=True))


def check_sizes(settings: Settings) -> None:
    """Refuse sizes that cannot nest: every street needs a community, every district a street."""
    n_d, n_s, n_c = settings.demo_districts, settings.demo_streets, settings.demo_communities
    if not n_d <= n_s <= n_c:
        raise ValueError(
            f"the demo city needs demo_districts ≤ demo_streets ≤ demo_communities; "
            f"got {n_d}, {n_s}, {n_c}"
        )


def random_points_in(
    geoms: np.ndarray, which: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One uniform random point inside ``geoms[which[i]]`` for every i (rejection sampling).

    >>> import numpy as np, shapely
    >>> x, y = random_points_in(np.array([shapely.box(0, 0, 1, 1)]), np.zeros(3, int),
    ...                         np.random.default_rng(0))
    >>> bool(((x > 0) & (x < 1)).all())
    True
    """
    shapely.prepare(geoms)
    bounds = shapely.bounds(geoms)
    x = np.empty(len(which))
    y = np.empty(len(which))
    todo = np.arange(len(which))
    while todo.size:
        b = bounds[which[todo]]
        px = b[:, 0] + rng.random(todo.size) * (b[:, 2] - b[:, 0])
        py = b[:, 1] + rng.random(todo.size) * (b[:, 3] - b[:, 1])
        ok = shapely.contains_xy(geoms[which[todo]], px, py)
        x[todo[ok]], y[todo[ok]] = px[ok], py[ok]
        todo = todo[~ok]
    return x, y


# -- outline and seeds (kilometres around the centre) --------------------------------------
def _outline_km(rng: np.random.Generator) -> shapely.Polygon:
    a, b = SEMI_AXES_KM
    theta = np.linspace(0, 2 * np.pi, 361)[:-1]
    wobble = np.ones_like(theta)
    for k in range(2, 8):
        wobble += rng.uniform(0.01, 0.05) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    land = shapely.Polygon(np.column_stack([a * np.cos(theta) * wobble,
                                            b * np.sin(theta) * wobble]))
    x = np.linspace(-2 * a, 2 * a, 400)
    phase = rng.uniform(0, 2 * np.pi, 2)
    bank = 0.72 * b + 1.2 * np.sin(x / 6 + phase[0]) + 0.5 * np.sin(x / 2.3 + phase[1])
    south_of_river = shapely.Polygon(
        np.vstack([np.column_stack([x, bank]), [[2 * a, -2 * b], [-2 * a, -2 * b]]])
    )
    outline = shapely.intersection(land, south_of_river)
    return max(shapely.get_parts(outline), key=lambda p: p.area)


def _community_seeds(rng: np.random.Generator, outline: shapely.Polygon, n: int) -> np.ndarray:
    a, b = SEMI_AXES_KM
    shapely.prepare(outline)
    found: list[np.ndarray] = []
    count = 0
    while count < n:
        m = 2 * n
        core = rng.random(m) < CORE_SHARE
        pts = np.where(core[:, None], rng.normal(0, CORE_SIGMA_KM, (m, 2)),
                       rng.uniform([-a, -b], [a, b], (m, 2)))
        pts = pts[shapely.contains_xy(outline, pts[:, 0], pts[:, 1])]
        found.append(pts)
        count += len(pts)
    seeds = np.unique(np.vstack(found)[:n].round(6), axis=0)
    seeds = seeds[rng.permutation(len(seeds))]
    # half a Lloyd step: fewer slivers, the dense core stays dense
    cells = _cells(seeds, outline)
    cent = shapely.get_coordinates(shapely.centroid(cells))
    inside = shapely.contains_xy(outline, cent[:, 0], cent[:, 1])
    seeds[inside] = 0.5 * (seeds[inside] + cent[inside])
    if len(seeds) < n:   # duplicates after rounding: vanishingly rare, top up away from them
        extra = _community_seeds(rng, outline, n - len(seeds) + 8)
        seeds = np.unique(np.vstack([seeds, extra]), axis=0)[:n]
    return seeds


def _kmeans(rng: np.random.Generator, pts: np.ndarray, k: int, iters: int = 25) -> np.ndarray:
    """Cluster label per point; every cluster non-empty (needs len(pts) ≥ k)."""
    centres = pts[rng.choice(len(pts), k, replace=False)]
    labels = np.zeros(len(pts), dtype=np.int64)
    for _ in range(iters):
        dist = ((pts[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = dist.argmin(axis=1)
        counts = np.bincount(labels, minlength=k)
        for empty in np.flatnonzero(counts == 0):
            far = dist[np.arange(len(pts)), labels].argmax()
            labels[far] = empty
            dist[far, :] = 0
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, pts)
        centres = sums / np.bincount(labels, minlength=k)[:, None]
    return labels


def _streets_within(rng: np.random.Generator, pts: np.ndarray, district: np.ndarray,
                    n_streets: int) -> np.ndarray:
    """Global street label per point: streets shared out by community count, ≥ 1 each."""
    sizes = np.bincount(district)
    quota = np.maximum(1, np.floor(n_streets * sizes / sizes.sum())).astype(int)
    quota = np.minimum(quota, sizes)
    while quota.sum() < n_streets:     # largest remainder, never more streets than communities
        room = np.where(quota < sizes, n_streets * sizes / sizes.sum() - quota, -np.inf)
        quota[room.argmax()] += 1
    while quota.sum() > n_streets:
        quota[np.where(quota > 1, quota, 0).argmax()] -= 1
    street = np.empty(len(pts), dtype=np.int64)
    offset = 0
    for d in range(len(sizes)):
        members = np.flatnonzero(district == d)
        street[members] = offset + _kmeans(rng, pts[members], quota[d])
        offset += quota[d]
    return street


def _cells(seeds: np.ndarray, outline: shapely.Polygon) -> np.ndarray:
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=outline, ordered=True)
    clipped = shapely.intersection(shapely.get_parts(cells), outline)
    return np.array([_polygonal(g) for g in clipped], dtype=object)


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon)]
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _km_to_degrees(lat0: float, lon0: float):
    km_per_deg_lon = _KM_PER_DEG_LON_EQUATOR * np.cos(np.radians(lat0))

    def to_deg(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([lon0 + xy[:, 0] / km_per_deg_lon, lat0 + xy[:, 1] / _KM_PER_DEG_LAT])

    return to_deg


# -- codes, names, populations -------------------------------------------------------------
def _rank_from_centre(xy: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """New label per old label: numbered outward from the city centre."""
    k = labels.max() + 1
    sums = np.zeros((k, 2))
    np.add.at(sums, labels, xy)
    centres = sums / np.bincount(labels, minlength=k)[:, None]
    order = np.lexsort((np.arctan2(centres[:, 1], centres[:, 0]), np.hypot(*centres.T).round(1)))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[labels]


def _communities_frame(rng: np.random.Generator, seeds: np.ndarray, district: np.ndarray,
                       street: np.ndarray, cells: np.ndarray) -> pd.DataFrame:
    district = _rank_from_centre(seeds, district)
    street = _rank_from_centre(seeds, street)
    frame = pd.DataFrame({"d": district, "s": street, "x": seeds[:, 0], "y": seeds[:, 1]})
    frame["r"] = np.hypot(frame["x"], frame["y"])
    frame = frame.sort_values(["d", "s", "r"], kind="stable")
    s_num = frame.groupby("d")["s"].rank(method="dense").astype(int)
    c_num = frame.groupby(["d", "s"]).cumcount() + 1
    d_code = CITY_CODE + (101 + frame["d"]).astype(str)
    s_code = d_code + s_num.map("{:03d}".format)
    core = np.exp(-((frame["r"].to_numpy() / 9.0) ** 2)) * rng.uniform(0.7, 1.0, len(frame))
    share = np.clip(core + rng.uniform(0, 0.15, len(frame)), 0, 1)
    return gpd.GeoDataFrame({
        "code": s_code + c_num.map("{:03d}".format),
        "street_code": s_code,
        "district_code": d_code,
        "population": (np.round((3000 + 12000 * share) / 10) * 10).astype(int),
    }, geometry=cells[frame.index.to_numpy()], crs=4326).reset_index(drop=True)


def _tree(rng: np.random.Generator, com: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    streets = _union_by(com, "street_code")
    districts = _union_by(streets, "district_code")
    city_geom = shapely.union_all(districts.geometry.to_numpy(), grid_size=GRID_SIZE)
    names = place_names(rng, len(districts) + len(streets) + len(com))
    rows = [pd.DataFrame({"code": [CITY_CODE], "parent_code": [None], "level": ["city"],
                          "name_zh": [CITY_NAME[0]], "name_en": [CITY_NAME[1]],
                          "population": [int(com["population"].sum())], "geometry": [city_geom]})]
    taken = 0
    for frame, parent, level, zh, en in (
        (districts, None, "district", "区", "District"),
        (streets, "district_code", "street", "街道", "Subdistrict"),
        (com, "street_code", "community", "社区", "Community"),
    ):
        chunk = names[taken:taken + len(frame)]
        taken += len(frame)
        rows.append(pd.DataFrame({
            "code": frame["code"].to_numpy(),
            "parent_code": frame[parent].to_numpy() if parent else CITY_CODE,
            "level": level,
            "name_zh": [n[0] + zh for n in chunk],
            "name_en": [f"{n[1]} {en}" for n in chunk],
            "population": frame["population"].to_numpy(),
            "geometry": frame.geometry.to_numpy(),
        }))
    return gpd.GeoDataFrame(pd.concat(rows, ignore_index=True), geometry="geometry", crs=4326)


def _union_by(frame: gpd.GeoDataFrame, key: str) -> gpd.GeoDataFrame:
    parent_of = {"street_code": "district_code"}
    groups = frame.groupby(key, sort=True)
    out = pd.DataFrame({
        "code": list(groups.groups),
        "population": groups["population"].sum().to_numpy(),
        "geometry": [shapely.union_all(g.geometry.to_numpy(), grid_size=GRID_SIZE)
                     for _, g in groups],
    })
    if key in parent_of:
        out[parent_of[key]] = groups[parent_of[key]].first().to_numpy()
    return gpd.GeoDataFrame(out, geometry="geometry", crs=4326)
