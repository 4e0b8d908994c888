"""core.jurisdictions: tree checks and the atomic save."""

from __future__ import annotations

import duckdb
import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from core.jurisdictions import JurisdictionError, check_tree, save_jurisdictions
from core.store import Store


def tree(rows: list[tuple] | None = None, crs: str | int | None = 4326) -> gpd.GeoDataFrame:
    """Province P → city C → district D → street S (unit boxes near Wuxi by default)."""
    rows = rows or [("P", None, "province", "江苏省", box(119, 31, 121, 33)),
                    ("C", "P", "city", "无锡市", box(120, 31.5, 120.6, 32.1)),
                    ("D", "C", "district", "江阴市", box(120, 31.5, 120.3, 32.1)),
                    ("S", "D", "street", "澄江街道", box(120, 31.5, 120.3, 31.8))]
    return gpd.GeoDataFrame([r[:4] for r in rows],
                            columns=["code", "parent_code", "level", "name_zh"],
                            geometry=[r[4] for r in rows], crs=crs)


def problems_of(df: pd.DataFrame) -> list[str]:
    with pytest.raises(JurisdictionError) as exc:
        check_tree(df)
    return exc.value.problems


def test_check_tree_adds_paths_and_depths() -> None:
    checked = check_tree(tree())
    assert checked.set_index("code")[["path", "depth"]].to_dict("index") == {
        "P": {"path": "/P/", "depth": 0}, "C": {"path": "/P/C/", "depth": 1},
        "D": {"path": "/P/C/D/", "depth": 2}, "S": {"path": "/P/C/D/S/", "depth": 3}}


def test_check_tree_treats_blank_parent_as_root_and_trims_codes() -> None:
    df = tree()
    df["parent_code"] = ["  ", " P ", "C", "D"]
    df["code"] = [" P", "C ", "D", "S"]
    assert check_tree(df)["path"].tolist() == ["/P/", "/P/C/", "/P/C/D/", "/P/C/D/S/"]


def test_check_tree_problems() -> None:
    df = tree()
    df.loc[3, "code"] = "D"
    assert "duplicate codes: D" in problems_of(df)
    df = tree()
    df.loc[3, "level"] = "hamlet"
    assert problems_of(df)[0].startswith("unknown levels ['hamlet']")
    df = tree()
    df.loc[2, "parent_code"] = None
    assert problems_of(df)[0].startswith("the tree needs exactly one root (no parent); found 2")
    df = tree()
    df.loc[3, "parent_code"] = "X"
    assert problems_of(df) == ["S: parent X does not exist"]
    df = tree()
    df.loc[1, "parent_code"], df.loc[2, "parent_code"] = "D", "C"
    assert any("cycle in parent links" in p for p in problems_of(df))
    df = tree()
    df.loc[3, "parent_code"] = "C"
    assert problems_of(df) == ["S: level street cannot sit under C (city)"]


def test_save_writes_the_tree_with_derived_columns(store: Store) -> None:
    summary = save_jurisdictions(store, tree())
    assert (summary.count, summary.levels) == (
        4, {"province": 1, "city": 1, "district": 1, "street": 1})
    row = store.query_dicts("SELECT * EXCLUDE (geom) FROM jurisdictions WHERE code = 'D'")[0]
    assert (row["parent_code"], row["depth"], row["path"]) == ("C", 2, "/P/C/D/")
    assert (row["min_lon"], row["min_lat"], row["max_lon"], row["max_lat"]) == (
        120, 31.5, 120.3, 32.1)
    assert row["centroid_lon"] == pytest.approx(120.15, abs=1e-3)
    assert row["centroid_lat"] == pytest.approx(31.8, abs=0.01)
    # 0.3° × 0.6° at latitude ~31.8°: about 28.4 km × 66.5 km
    assert row["area_km2"] == pytest.approx(28.4 * 66.5, rel=0.01)
    assert row["name_en"] is None and row["population"] is None


def test_save_replaces_the_previous_tree(store: Store) -> None:
    save_jurisdictions(store, tree())
    save_jurisdictions(store, tree([("X", None, "city", "新市", box(0, 0, 1, 1))]))
    assert store.query("SELECT code, path FROM jurisdictions") == [("X", "/X/")]


def test_save_refuses_wrong_crs_and_missing_columns(store: Store) -> None:
    with pytest.raises(JurisdictionError, match="must be EPSG:4326"):
        save_jurisdictions(store, tree().to_crs(3857))
    with pytest.raises(JurisdictionError, match="missing columns: level"):
        save_jurisdictions(store, tree().drop(columns=["level"]))
    assert store.query("SELECT count(*) FROM jurisdictions") == [(0,)]


def test_save_that_fails_inside_the_database_keeps_the_old_tree(store: Store) -> None:
    save_jurisdictions(store, tree())
    bad = tree()
    bad["population"] = [1, 2, 3, 3_000_000_000]  # does not fit INTEGER: fails in the INSERT
    with pytest.raises(duckdb.Error):
        save_jurisdictions(store, bad)
    assert store.query("SELECT code FROM jurisdictions ORDER BY code") == [
        ("C",), ("D",), ("P",), ("S",)]
