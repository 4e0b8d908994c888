"""Shared fixtures: a real DuckDB file per test, and a tiny hand-made city."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from core.jurisdictions import save_jurisdictions
from core.store import Store
from core.users import create_user

TINY_PASSWORD = "Tiny#City2026"


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is absent; fail instead under CI (REQUIRE_SERVICES=1)."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError as exc:
        msg = f"{name} not reachable on {host}:{port} ({exc})"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(msg + " and REQUIRE_SERVICES=1")
        pytest.skip(msg)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "city.duckdb")
    yield s
    s.close()


def build_tiny_city(store: Store) -> None:
    """City C (2×1 box) → districts D1, D2 → two streets each → one community per street."""
    rows = [("C", None, "city", "示范市", "Demo City", box(0, 0, 2, 1))]
    for d in (1, 2):
        x0 = d - 1
        rows.append((f"D{d}", "C", "district", f"{d}区", f"District {d}", box(x0, 0, x0 + 1, 1)))
        for s in (1, 2):
            y0 = (s - 1) * 0.5
            street = f"D{d}S{s}"
            geom = box(x0, y0, x0 + 1, y0 + 0.5)
            rows.append((street, f"D{d}", "street", f"{street}街道", f"Street {street}", geom))
            rows.append((f"{street}C1", street, "community", f"{street}社区",
                         f"Community {street}", geom))
    gdf = gpd.GeoDataFrame(
        [r[:5] for r in rows], columns=["code", "parent_code", "level", "name_zh", "name_en"],
        geometry=[r[5] for r in rows], crs=4326,
    )
    gdf["population"] = 1000
    save_jurisdictions(store, gdf)
    with store.transaction() as cur:
        cur.execute("INSERT INTO departments VALUES ('cg', '城管局', 'Urban Management',"
                    " 'department', 'C'), ('sw', '水务局', 'Water', 'department', 'C')")
    create_user(store, "commander", TINY_PASSWORD, role="commander", jurisdiction_code="C",
                display_name="市值班员")
    create_user(store, "d1_commander", TINY_PASSWORD, role="commander", jurisdiction_code="D1")
    create_user(store, "cg_staff", TINY_PASSWORD, role="dept_staff", department_code="cg")
    create_user(store, "sysadmin", TINY_PASSWORD, role="sysadmin", jurisdiction_code="C")


@pytest.fixture(scope="session")
def tiny_city_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny city built once per test session (its argon2 hashes are slow on purpose)."""
    path = tmp_path_factory.mktemp("tiny-template") / "city.duckdb"
    template = Store.open(path)
    build_tiny_city(template)
    template.close()
    return path


@pytest.fixture
def tiny_city(tiny_city_template: Path, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the tiny city at ``tmp_path / "city.duckdb"`` for one test."""
    shutil.copy(tiny_city_template, tmp_path / "city.duckdb")
    city = Store.open(tmp_path / "city.duckdb")
    yield city
    city.close()
