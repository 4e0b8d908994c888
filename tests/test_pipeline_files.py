"""The files source: an inbox per department; every format loads, broken files move to
failed/ with a reason, loaded ones to processed/, nothing is deleted or loaded twice."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shapely.geometry import Point, box
from test_pipeline_support import build_sensor_city, settings_for

from core.store import Store
from pipelines.config import load_config
from pipelines.scheduler import all_jobs, run_job
from pipelines.sources.files import inbox_of

CONFIG = """
[datasets.hydrants]
table = "ds_hydrants"
department = "cg"
key = ["hydrant_id"]
lon = "lon"
lat = "lat"
jurisdiction = "point"
pattern = "hydrants*"
fields = [
  { name = "hydrant_id", type = "VARCHAR", required = true },
  { name = "lon", type = "DOUBLE", required = true },
  { name = "lat", type = "DOUBLE", required = true },
  { name = "status", type = "VARCHAR", choices = ["ok", "broken"] },
]

[datasets.parks]
table = "ds_parks"
department = "cg"
key = ["park_id"]
geometry = "geom"
jurisdiction = "point"
pattern = "parks*"
fields = [
  { name = "park_id", type = "VARCHAR", required = true },
  { name = "name", type = "VARCHAR" },
  { name = "geom", type = "GEOMETRY", required = true },
]

[sources.inbox_cg]
kind = "files"
seconds = 60
department = "cg"
settle_seconds = 0
"""


@pytest.fixture
def setup(tmp_path: Path):
    settings = settings_for(tmp_path)
    (tmp_path / "pipelines.toml").write_text(CONFIG, encoding="utf-8")
    store = build_sensor_city(Store.open(settings.database_path))
    config = load_config(settings)
    inbox = inbox_of(settings, config.sources["inbox_cg"])
    job = {j.id: j for j in all_jobs(settings)}["inbox_cg"]
    yield store, settings, inbox, lambda: run_job(store, settings, job)
    store.close()


def _hydrants(ids, lons, lats, status=None) -> pd.DataFrame:
    return pd.DataFrame({"hydrant_id": ids, "lon": lons, "lat": lats,
                         "status": status or ["ok"] * len(ids)})


def _moved(inbox: Path, folder: str) -> list[str]:
    return sorted(p.name.split("_", 1)[1] for p in (inbox / folder).iterdir()
                  if not p.name.endswith(".reason.txt"))


def test_every_format_loads_and_moves_to_processed(setup) -> None:
    store, _, inbox, run = setup
    _hydrants(["C1", "C2"], [0.2, 0.3], [0.2, 0.3]).to_csv(inbox / "hydrants_a.csv",
                                                            index=False)
    # a GB18030 export from a Chinese office's Excel, with a Chinese status to refuse
    (inbox / "hydrants_gbk.csv").write_bytes(
        "hydrant_id,lon,lat,status\nG1,0.4,0.4,ok\nG2,0.4,0.45,损坏\n".encode("gb18030"))
    _hydrants(["X1"], [1.2], [0.2]).to_excel(inbox / "hydrants_b.xlsx", index=False)
    (inbox / "hydrants_c.json").write_text(json.dumps(
        [{"hydrant_id": "J1", "lon": 1.3, "lat": 0.3, "status": "broken"}]))
    (inbox / "hydrants_d.ndjson").write_text(
        '{"hydrant_id": "N1", "lon": 1.4, "lat": 0.4}\n{"hydrant_id": "N2", "lon": 1.45,'
        ' "lat": 0.4}\n')
    pq.write_table(pa.Table.from_pandas(_hydrants(["P1"], [1.6], [0.6])),
                   inbox / "hydrants_e.parquet")
    pts = gpd.GeoDataFrame({"hydrant_id": ["GJ1"], "status": ["ok"]},
                           geometry=[Point(1.7, 0.7)], crs=4326)
    pts.to_file(inbox / "hydrants_f.geojson", driver="GeoJSON")
    # CGCS2000 GeoPackage
    pts.assign(hydrant_id=["GP1"]).set_crs(4490, allow_override=True).to_file(
        inbox / "hydrants_g.gpkg", driver="GPKG")
    # zipped Shapefile in Web Mercator: reprojected on load
    shp_dir = inbox.parent / "shp"
    shp_dir.mkdir()
    pts.assign(hydrant_id=["S1"]).to_crs(3857).to_file(shp_dir / "h.shp")
    with zipfile.ZipFile(inbox / "hydrants_h.zip", "w") as zf:
        for part in shp_dir.iterdir():
            zf.write(part, part.name)
    parks = gpd.GeoDataFrame({"park_id": ["PK1"], "name": ["公园"]},
                             geometry=[box(0.1, 0.6, 0.3, 0.9)], crs=4326)
    parks.to_file(inbox / "parks.geojson", driver="GeoJSON")
    stats = run()
    assert (stats.rows_in, stats.loaded, stats.rejected) == (13, 12, 1)
    got = dict(store.query("SELECT hydrant_id, jurisdiction_code FROM ds_hydrants"))
    assert got == {"C1": "D1S1C1", "C2": "D1S1C1", "G1": "D1S1C1", "X1": "D2S1C1",
                   "J1": "D2S1C1", "N1": "D2S1C1", "N2": "D2S1C1", "P1": "D2S2C1",
                   "GJ1": "D2S2C1", "GP1": "D2S2C1", "S1": "D2S2C1"}
    lon, lat = store.query_one("SELECT lon, lat FROM ds_hydrants WHERE hydrant_id = 'S1'")
    assert abs(lon - 1.7) < 1e-9 and abs(lat - 0.7) < 1e-9
    assert store.query("SELECT park_id, jurisdiction_code, ST_GeometryType(geom)::VARCHAR"
                       " FROM ds_parks") == [("PK1", "D1S2C1", "POLYGON")]
    assert store.query("SELECT reason FROM quarantine") == [("status: not one of ok/broken",)]
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []
    assert len(_moved(inbox, "processed")) == 10 and _moved(inbox, "failed") == []
    # the same files dropped again add nothing
    for p in (inbox / "processed").iterdir():
        (inbox / p.name.split("_", 1)[1]).write_bytes(p.read_bytes())
    again = run()
    assert again.loaded == 0 and store.query_one("SELECT count(*) FROM ds_hydrants")[0] == 11
    assert store.query_one("SELECT count(*) FROM quarantine")[0] == 1
    runs = store.query("SELECT source, status, rows_loaded FROM ingest_runs ORDER BY id")
    assert runs == [("inbox_cg", "success", 12), ("inbox_cg", "success", 0)]


def test_broken_files_go_to_failed_with_a_reason(setup) -> None:
    store, _, inbox, run = setup
    (inbox / "hydrants_trunc.json").write_text('[{"hydrant_id": "T1", "lon": 1')
    _hydrants(["M1"], [0.2], [0.2]).drop(columns="lat").to_csv(inbox / "hydrants_nolat.csv",
                                                               index=False)
    (inbox / "hydrants_bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (inbox / "hydrants_notes.txt").write_text("hello")
    (inbox / "budget.csv").write_text("a,b\n1,2\n")
    (inbox / "hydrants_ragged.csv").write_text("hydrant_id,lon,lat\nR1,0.2,0.2,extra,more\n")
    gpd.GeoDataFrame({"hydrant_id": ["PG"]}, geometry=[box(0, 0, 0.1, 0.1)], crs=4326).to_file(
        inbox / "hydrants_poly.geojson", driver="GeoJSON")
    (inbox / "hydrants_partial.csv.part").write_text("still being copied")
    stats = run()
    assert stats.loaded == 0 and stats.rejected == 7
    assert store.query_one("SELECT count(*) FROM quarantine")[0] == 0
    failed = inbox / "failed"
    reasons = {p.name.split("_", 1)[1].removesuffix(".reason.txt"): p.read_text()
               for p in failed.iterdir() if p.name.endswith(".reason.txt")}
    assert set(reasons) == {"hydrants_trunc.json", "hydrants_nolat.csv", "hydrants_bad.parquet",
                            "hydrants_notes.txt", "budget.csv", "hydrants_ragged.csv",
                            "hydrants_poly.geojson"}
    assert "cannot read as json" in reasons["hydrants_trunc.json"]
    assert "required column(s) missing: lat" in reasons["hydrants_nolat.csv"]
    assert "unsupported format .txt" in reasons["hydrants_notes.txt"]
    assert "no dataset of this inbox matches" in reasons["budget.csv"]
    assert "takes points" in reasons["hydrants_poly.geojson"]
    # every refused file is kept, and the half-copied one waits in the inbox
    assert len([p for p in failed.iterdir() if not p.name.endswith(".reason.txt")]) == 7
    assert [p.name for p in inbox.iterdir() if p.is_file()] == ["hydrants_partial.csv.part"]


def test_readings_files_update_the_rollups(setup) -> None:
    store, _, inbox, run = setup
    pd.DataFrame({"sensor": ["WL-1", "WL-2", "AQ-3"],
                  "ts": ["2026-11-28 09:00:00", "2026-11-28 09:00:00", "2026-11-28 09:10:00"],
                  "value": [4.8, 4.0, 80.0]}).to_csv(inbox / "readings_0900.csv", index=False)
    assert run().loaded == 3
    assert store.query("SELECT kind, n, warn_n FROM readings_hourly WHERE"
                       " jurisdiction_code = 'C' ORDER BY 1") == [("pm25", 1, 1),
                                                                 ("water_level", 2, 1)]
