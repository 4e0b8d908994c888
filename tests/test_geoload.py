"""core.geoload: real files in every format, any CRS, messy geometry, broken trees."""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Point, Polygon, box

from core.cli import main
from core.geoload import ColumnMap, load_jurisdiction_file, read_jurisdictions
from core.jurisdictions import JurisdictionError
from core.store import Store

COLUMNS = ["code", "parent_code", "level", "name_zh", "name_en", "population"]
WUXI = [
    ("320200", None, "city", "无锡市", "Wuxi", 7_500_000, box(120.0, 31.5, 120.6, 32.1)),
    ("320281", "320200", "district", "江阴市", "Jiangyin", 1_780_000, box(120.0, 31.5, 120.3, 32.1)),
    ("320282", "320200", "district", "宜兴市", "Yixing", 1_290_000, box(120.3, 31.5, 120.6, 32.1)),
    ("320281001", "320281", "street", "澄江街道", "Chengjiang", 300_000,
     box(120.0, 31.5, 120.3, 31.8)),
]


def frame(rows: list[tuple] = WUXI, crs: str | int | None = "EPSG:4326") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame([r[:6] for r in rows], columns=COLUMNS,
                            geometry=[r[6] for r in rows], crs=crs)


def replace(target: str, **changes) -> list[tuple]:
    """WUXI with the row of code ``target`` changed (geometry=…, parent_code=…, level=…)."""
    rows = []
    for row in WUXI:
        values = dict(zip([*COLUMNS, "geometry"], row, strict=True))
        if values["code"] == target:
            values.update(changes)
        rows.append(tuple(values.values()))
    return rows


def write_geojson(gdf: gpd.GeoDataFrame, folder: Path) -> Path:
    gdf.to_file(folder / "wuxi.geojson", driver="GeoJSON")
    return folder / "wuxi.geojson"


def write_shp(gdf: gpd.GeoDataFrame, folder: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "parent_code" is cut to "parent_cod": that is the test
        gdf.to_file(folder / "wuxi.shp")
    return folder / "wuxi.shp"


def write_zip(gdf: gpd.GeoDataFrame, folder: Path) -> Path:
    (folder / "inner").mkdir()
    write_shp(gdf, folder / "inner")
    with zipfile.ZipFile(folder / "wuxi.zip", "w") as zf:
        for part in (folder / "inner").iterdir():
            zf.write(part, f"wuxi_boundaries/{part.name}")
    return folder / "wuxi.zip"


def write_gpkg(gdf: gpd.GeoDataFrame, folder: Path) -> Path:
    gdf.to_file(folder / "wuxi.gpkg", layer="boundaries")
    gpd.GeoDataFrame({"x": [1]}, geometry=[Point(120, 31)], crs=4326).to_file(
        folder / "wuxi.gpkg", layer="poi")
    return folder / "wuxi.gpkg"


def write_parquet(gdf: gpd.GeoDataFrame, folder: Path) -> Path:
    gdf.to_parquet(folder / "wuxi.parquet")
    return folder / "wuxi.parquet"


WRITERS: dict[str, tuple[Callable[[gpd.GeoDataFrame, Path], Path], str | None]] = {
    "geojson": (write_geojson, None),
    "gpkg": (write_gpkg, "boundaries"),
    "shp": (write_shp, None),
    "zip": (write_zip, None),
    "parquet": (write_parquet, None),
}


def refused(path: Path, **options) -> str:
    with pytest.raises(JurisdictionError) as exc:
        read_jurisdictions(path, **options)
    return str(exc.value)


def equal_area(geom) -> float:
    return float(gpd.GeoSeries([geom], crs=4326).to_crs(6933).area.iloc[0])


# -- formats -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_round_trips_into_the_store(fmt: str, tmp_path: Path, store: Store) -> None:
    writer, layer = WRITERS[fmt]
    path = writer(frame(), tmp_path)
    gdf, _ = read_jurisdictions(path, layer=layer)
    assert gdf.crs.to_epsg() == 4326
    assert gdf[COLUMNS].values.tolist() == [list(r[:6]) for r in WUXI]
    for got, row in zip(gdf.geometry, WUXI, strict=True):
        assert got.normalize().equals_exact(row[6].normalize(), 1e-9)

    summary = load_jurisdiction_file(store, path, layer=layer)
    assert (summary.count, summary.levels) == (4, {"city": 1, "district": 2, "street": 1})
    rows = store.query("SELECT code, parent_code, path, name_zh, population,"
                       " round(ST_Area(geom), 6) FROM jurisdictions ORDER BY code")
    assert rows[2] == ("320281001", "320281", "/320200/320281/320281001/", "澄江街道",
                       300_000, 0.09)


def test_gpkg_with_several_layers_needs_one_named(tmp_path: Path) -> None:
    path = write_gpkg(frame(), tmp_path)
    assert "--layer" in refused(path) and "boundaries, poi" in refused(path)
    assert "no layer 'roads'" in refused(path, layer="roads")


def test_unknown_extension_and_zip_without_data_are_refused(tmp_path: Path) -> None:
    (tmp_path / "wuxi.csv").write_text("code\n1\n")
    assert "unknown file type '.csv'" in refused(tmp_path / "wuxi.csv")
    with zipfile.ZipFile(tmp_path / "readme.zip", "w") as zf:
        zf.writestr("readme.txt", "no data here")
    assert "holds no Shapefile" in refused(tmp_path / "readme.zip")


def test_unclosed_ring_and_z_coordinates_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "raw.geojson"
    path.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties":'
        ' {"code": "C", "parent_code": null, "level": "city", "name_zh": "市"}, "geometry":'
        ' {"type": "Polygon", "coordinates": [[[120, 31, 5], [121, 31, 5], [121, 32, 5],'
        ' [120, 32, 5]]]}}]}', encoding="utf-8")
    gdf, notes = read_jurisdictions(path)
    geom = gdf.geometry.iloc[0]
    assert not geom.has_z and geom.is_valid and geom.area == pytest.approx(1.0)
    assert any("closed ring" in n for n in notes)


# -- CRS -----------------------------------------------------------------------------------
def one_city(geom, crs) -> gpd.GeoDataFrame:
    return frame([("320200", None, "city", "无锡市", "Wuxi", 1, geom)], crs=crs)


def has_vertex(geom, lon: float, lat: float, tol: float) -> bool:
    coords = np.array([c for p in getattr(geom, "geoms", [geom]) for c in p.exterior.coords])
    return bool((np.hypot(coords[:, 0] - lon, coords[:, 1] - lat) < tol).any())


def meridian_arc(lat_deg: float, a: float = 6378137.0, f: float = 1 / 298.257222101) -> float:
    """Distance along the meridian from the equator (CGCS2000 ellipsoid), by Simpson's rule."""
    e2 = f * (2 - f)
    phi = np.linspace(0.0, math.radians(lat_deg), 2001)
    y = a * (1 - e2) / (1 - e2 * np.sin(phi) ** 2) ** 1.5
    h = phi[1] - phi[0]
    return float(h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


def test_cgcs2000_geographic_lands_in_place(tmp_path: Path) -> None:
    geom = box(120.25, 31.85, 120.35, 31.95)
    gdf, _ = read_jurisdictions(write_parquet(one_city(geom, "EPSG:4490"), tmp_path))
    assert gdf.crs.to_epsg() == 4326
    assert has_vertex(gdf.geometry.iloc[0], 120.25, 31.85, 1e-6)


def test_gauss_kruger_zone_lands_on_its_central_meridian(tmp_path: Path) -> None:
    # EPSG:4549 (CGCS2000 / 3-degree GK CM 120E): easting 500000 is longitude 120 and the
    # northing there is the meridian arc, so the expected lon/lat need no projection library
    n1, n2 = meridian_arc(31.5), meridian_arc(32.0)
    ring = [(490000, n1), (500000, n1), (510000, n1), (510000, n2), (500000, n2), (490000, n2)]
    gdf, _ = read_jurisdictions(write_gpkg(one_city(Polygon(ring), "EPSG:4549"), tmp_path),
                                layer="boundaries")
    geom = gdf.geometry.iloc[0]
    assert has_vertex(geom, 120.0, 31.5, 1e-7) and has_vertex(geom, 120.0, 32.0, 1e-7)
    assert 119.89 < geom.bounds[0] < 119.9 and 120.1 < geom.bounds[2] < 120.11


def test_web_mercator_lands_in_place(tmp_path: Path) -> None:
    r, lon, lat = 6378137.0, 120.3, 31.7
    x, y = r * math.radians(lon), r * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    gdf, _ = read_jurisdictions(write_geojson(one_city(box(x, y, x + 500, y + 500), 3857),
                                              tmp_path))
    assert has_vertex(gdf.geometry.iloc[0], lon, lat, 1e-9)


def test_missing_crs_needs_crs_option(tmp_path: Path) -> None:
    path = write_shp(frame(), tmp_path)
    (tmp_path / "wuxi.prj").unlink()
    assert "declares no CRS; pass --crs" in refused(path)
    gdf, _ = read_jurisdictions(path, crs="EPSG:4490")
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == 4


def test_crs_option_never_overrides_a_declared_crs(tmp_path: Path) -> None:
    path = write_gpkg(frame(crs="EPSG:4490"), tmp_path)
    assert "declares EPSG:4490 but --crs EPSG:4549" in refused(path, layer="boundaries",
                                                              crs="EPSG:4549")
    gdf, _ = read_jurisdictions(path, layer="boundaries", crs="EPSG:4490")
    assert len(gdf) == 4


def test_declared_crs_that_does_not_fit_the_coordinates_is_refused(tmp_path: Path) -> None:
    path = write_parquet(one_city(box(500000, 3500000, 510000, 3510000), "EPSG:4490"), tmp_path)
    assert "outside longitude/latitude range" in refused(path)


# -- geometry ------------------------------------------------------------------------------
def test_multipolygon_with_holes_keeps_its_hole(tmp_path: Path) -> None:
    holed = Polygon(box(120.3, 31.5, 120.6, 31.8).exterior.coords,
                    [box(120.4, 31.6, 120.5, 31.7).exterior.coords])
    geom = MultiPolygon([holed, box(120.3, 31.9, 120.6, 32.1)])
    gdf, _ = read_jurisdictions(write_geojson(frame(replace("320282", geometry=geom)), tmp_path))
    got = gdf.set_index("code").geometry["320282"]
    assert got.geom_type == "MultiPolygon"
    assert sorted(len(p.interiors) for p in got.geoms) == [0, 1]
    assert equal_area(got) == pytest.approx(equal_area(geom), rel=1e-9)
    assert equal_area(got) < equal_area(box(120.3, 31.5, 120.6, 32.1)) * 0.9


def test_bow_tie_is_repaired_or_refused(tmp_path: Path) -> None:
    bow_tie = Polygon([(120.0, 31.5), (120.3, 31.8), (120.3, 31.5), (120.0, 31.8), (120.0, 31.5)])
    path = write_geojson(frame(replace("320281001", geometry=bow_tie)), tmp_path)
    gdf, notes = read_jurisdictions(path)
    got = gdf.set_index("code").geometry["320281001"]
    assert got.is_valid and got.geom_type == "MultiPolygon" and len(got.geoms) == 2
    assert got.area == pytest.approx(0.3 * 0.3 / 2)
    assert any(n.startswith("320281001: invalid geometry repaired (Self-intersection")
               for n in notes)
    message = refused(path, repair=False)
    assert "320281001: invalid geometry (Self-intersection" in message
    assert "--no-repair" in message


def test_sliver_part_is_dropped_with_a_note(tmp_path: Path) -> None:
    main_part = box(120.3, 31.5, 120.6, 32.1)
    sliver = box(120.7, 31.5, 120.7000001, 31.5000001)  # about 1 cm²
    path = write_geojson(frame(replace("320282", geometry=MultiPolygon([main_part, sliver]))),
                         tmp_path)
    gdf, notes = read_jurisdictions(path)
    assert gdf.set_index("code").geometry["320282"].equals(main_part)
    assert any(n.startswith("320282: dropped 1 sliver part") for n in notes)


def test_geometry_collection_keeps_its_polygons(tmp_path: Path) -> None:
    square = box(120.3, 31.5, 120.6, 32.1)
    mixed = GeometryCollection([square, Point(120.4, 31.6), LineString([(120, 31), (121, 32)])])
    gdf, notes = read_jurisdictions(write_geojson(frame(replace("320282", geometry=mixed)),
                                                  tmp_path))
    assert gdf.set_index("code").geometry["320282"].equals(square)
    assert "320282: kept the polygons of a GeometryCollection, dropped 2 other part(s)" in notes


@pytest.mark.parametrize(("geom", "expected"), [
    (Point(120.1, 31.6), "320281001: geometry is a Point; a jurisdiction needs a polygon"),
    (LineString([(120, 31.5), (120.3, 31.8)]), "320281001: geometry is a LineString"),
    (None, "320281001: empty or missing geometry"),
])
def test_non_polygon_geometry_is_refused(geom, expected: str, tmp_path: Path) -> None:
    assert expected in refused(write_geojson(frame(replace("320281001", geometry=geom)),
                                             tmp_path))


# -- attributes and tree -------------------------------------------------------------------
@pytest.mark.parametrize(("rows", "expected"), [
    (replace("320282", parent_code=None), "exactly one root (no parent); found 2"),
    (replace("320281001", parent_code="320299"), "320281001: parent 320299 does not exist"),
    ([*WUXI, ("A", "B", "street", "甲", None, 1, box(120, 31.5, 120.1, 31.6)),
      ("B", "A", "street", "乙", None, 1, box(120, 31.5, 120.1, 31.6))], "cycle in parent links"),
    ([("320000", None, "province", "江苏省", None, 1, box(120, 31.5, 120.6, 32.1)),
      ("320281", "320000", "district", "江阴市", None, 1, box(120, 31.5, 120.3, 32.1))],
     "320281: level district cannot sit under 320000 (province)"),
])
def test_broken_tree_is_refused_clearly(rows: list[tuple], expected: str, tmp_path: Path) -> None:
    assert expected in refused(write_geojson(frame(rows), tmp_path))


@pytest.mark.parametrize("writer", [write_geojson, write_parquet, write_shp])
def test_numeric_codes_stay_strings(writer, tmp_path: Path) -> None:
    gdf = frame()
    gdf["code"] = gdf["code"].astype("int64")
    gdf["parent_code"] = gdf["parent_code"].astype("float64")  # the root's parent is NaN
    loaded, _ = read_jurisdictions(writer(gdf, tmp_path))
    assert loaded["code"].tolist() == [r[0] for r in WUXI]
    assert loaded["parent_code"].tolist() == [r[1] for r in WUXI]


def test_mapped_columns_chinese_levels_trimmed_text_and_zero_padded_codes(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({
        "ADCODE": [" 0101 ", "010101"], "PARENT": [None, "0101"], "JB": ["市", " 区 "],
        "MC": [" 示范市", "一区 "], "RK": ["12000", None],
    }, geometry=[box(0, 0, 1, 1), box(0, 0, 0.5, 1)], crs=4326)
    columns = ColumnMap(code="ADCODE", parent_code="PARENT", level="JB", name_zh="MC",
                        population="RK")
    loaded, notes = read_jurisdictions(write_geojson(gdf, tmp_path), columns=columns)
    assert loaded[["code", "parent_code", "level", "name_zh"]].values.tolist() == [
        ["0101", None, "city", "示范市"], ["010101", "0101", "district", "一区"]]
    assert loaded["population"].tolist()[0] == 12000 and loaded["population"].isna().tolist()[1]
    assert loaded["name_en"].isna().all() and any("no name_en column" in n for n in notes)


def test_missing_required_column_names_it_and_lists_the_file_columns(tmp_path: Path) -> None:
    path = write_geojson(frame().drop(columns=["level"]), tmp_path)
    message = refused(path, columns=ColumnMap(code="ADCODE"))
    assert "missing required columns: code (column 'ADCODE'), level (column 'level')" in message
    assert "the file has: code, parent_code, name_zh, name_en, population" in message


def test_row_problems_are_reported_together(tmp_path: Path) -> None:
    rows = replace("320282", level="planet", code="320281", population=-5)
    with pytest.raises(JurisdictionError) as exc:
        read_jurisdictions(write_geojson(frame(rows), tmp_path))
    problems = exc.value.problems
    assert "duplicate code 320281 (2 rows)" in problems
    assert any(p.startswith("320281: unknown level 'planet'") for p in problems)
    assert any(p.startswith("320281: population '-5' is not a count") for p in problems)


# -- store and CLI -------------------------------------------------------------------------
def test_failed_load_leaves_the_previous_tree(tmp_path: Path, store: Store) -> None:
    load_jurisdiction_file(store, write_geojson(frame(), tmp_path))
    before = store.query("SELECT * EXCLUDE (geom), ST_AsWKB(geom) FROM jurisdictions ORDER BY 1")
    (tmp_path / "bad").mkdir()
    bad = write_geojson(frame(replace("320281001", parent_code="nope")), tmp_path / "bad")
    with pytest.raises(JurisdictionError, match="parent nope does not exist"):
        load_jurisdiction_file(store, bad)
    after = store.query("SELECT * EXCLUDE (geom), ST_AsWKB(geom) FROM jurisdictions ORDER BY 1")
    assert after == before and len(after) == 4


@pytest.fixture
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("YIWANG_DATA_DIR", raising=False)
    monkeypatch.delenv("YIWANG_STORAGE_URL", raising=False)


@pytest.mark.usefixtures("isolated_settings")
def test_cli_loads_a_file_end_to_end(tmp_path: Path) -> None:
    path = write_zip(frame(), tmp_path)
    data = tmp_path / "data"
    result = CliRunner().invoke(main, ["load-jurisdictions", "--data-dir", str(data), str(path)])
    assert result.exit_code == 0, result.output
    assert "loaded 4 jurisdictions" in result.output
    store = Store.open(data / "city.duckdb")
    try:
        assert store.query("SELECT count(*) FROM jurisdictions") == [(4,)]
    finally:
        store.close()


@pytest.mark.usefixtures("isolated_settings")
def test_cli_shows_the_problem_of_a_bad_file(tmp_path: Path) -> None:
    bow_tie = Polygon([(120.0, 31.5), (120.3, 31.8), (120.3, 31.5), (120.0, 31.8), (120.0, 31.5)])
    path = write_geojson(frame(replace("320281001", geometry=bow_tie)), tmp_path)
    result = CliRunner().invoke(main, ["load-jurisdictions", "--data-dir", str(tmp_path / "d"),
                                       "--no-repair", str(path)])
    assert result.exit_code != 0
    assert "320281001: invalid geometry (Self-intersection" in result.output
