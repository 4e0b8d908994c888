"""core.scope and the scoped reads of core.jurisdictions, on the tiny city."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import build_tiny_city

from core.jurisdictions import children, get_jurisdiction, jurisdictions_geojson
from core.roles import Role
from core.scope import Scope, ScopeError, scope_for, session_scope
from core.store import Store
from core.users import User, get_user

D1_SUBTREE = ["D1", "D1S1", "D1S1C1", "D1S2", "D1S2C1"]
# incident id → (jurisdiction, department)
INCIDENTS = {1: ("C", "cg"), 2: ("D1S1C1", "cg"), 3: ("D1S2", "sw"), 4: ("D2S1C1", "cg"),
             5: ("D2", "sw"), 6: ("D1", None)}


@pytest.fixture(scope="module")
def tiny_city_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny city with a few incidents, built once per module."""
    path = tmp_path_factory.mktemp("tiny") / "city.duckdb"
    store = Store.open(path)
    build_tiny_city(store)
    with store.transaction() as cur:
        for i, (jur, dept) in INCIDENTS.items():
            cur.execute(
                "INSERT INTO incidents (id, tracking_code, category, priority, status, source,"
                " title, lon, lat, jurisdiction_code, department_code, reported_at)"
                " VALUES (?, ?, 'road', 'normal', 'dispatched', 'hotline', ?, 0.5, 0.5, ?, ?,"
                " TIMESTAMP '2026-01-01')", [i, f"T{i}", f"incident {i}", jur, dept])
    store.close()
    return path


@pytest.fixture
def city(tiny_city_file: Path, tmp_path: Path) -> Iterator[Store]:
    shutil.copy(tiny_city_file, tmp_path / "city.duckdb")
    store = Store.open(tmp_path / "city.duckdb")
    yield store
    store.close()


def scope_of(store: Store, username: str) -> Scope:
    return scope_for(store, get_user(store, username))


def incidents_seen(store: Store, where: str, params: list) -> list[int]:
    return [r[0] for r in store.query(f"SELECT id FROM incidents WHERE {where} ORDER BY id",
                                      params)]


def test_district_commander_sees_only_their_subtree(city: Store) -> None:
    scope = scope_of(city, "d1_commander")
    assert (scope.root_code, scope.root_path, scope.root_level) == ("D1", "/C/D1/", "district")
    assert scope.departments is None and scope.business_data
    where, params = scope.jurisdiction_filter("code")
    codes = [r[0] for r in city.query(f"SELECT code FROM jurisdictions WHERE {where}"
                                      " ORDER BY code", params)]
    assert codes == D1_SUBTREE
    assert incidents_seen(city, *scope.data_filter("jurisdiction_code", "department_code")
                          ) == [2, 3, 6]
    assert scope.contains(city, "D1S2C1") and not scope.contains(city, "D2S1")
    assert not scope.contains(city, "C") and not scope.contains(city, "nowhere")


def test_city_commander_sees_everything(city: Store) -> None:
    scope = scope_of(city, "commander")
    assert incidents_seen(city, *scope.data_filter(department_column="department_code")
                          ) == sorted(INCIDENTS)


def test_department_user_sees_only_their_department(city: Store) -> None:
    scope = scope_of(city, "cg_staff")
    assert (scope.root_code, scope.departments) == ("C", frozenset({"cg"}))
    assert incidents_seen(city, *scope.department_filter()) == [1, 2, 4]
    assert incidents_seen(city, *scope.data_filter("jurisdiction_code", "department_code")
                          ) == [1, 2, 4]


def test_department_bound_user_without_department_sees_nothing(city: Store) -> None:
    user = User("lost", "lost", Role.DEPT_STAFF, "C", None)
    scope = scope_for(city, user)
    assert scope.department_filter() == ("FALSE", [])
    assert incidents_seen(city, *scope.data_filter(department_column="department_code")) == []


def test_platform_roles_see_no_business_data(city: Store) -> None:
    scope = scope_of(city, "sysadmin")
    assert not scope.business_data
    assert scope.data_filter() == ("FALSE", [])
    assert scope.data_filter("jurisdiction_code", "department_code") == ("FALSE", [])
    assert incidents_seen(city, *scope.data_filter()) == []


@pytest.mark.parametrize("column", ["code; DROP TABLE x", "1code", "a.b.c", "code OR 1=1", ""])
def test_filters_refuse_what_is_not_a_column_name(city: Store, column: str) -> None:
    scope = scope_of(city, "cg_staff")
    with pytest.raises(ValueError, match="not a column name"):
        scope.jurisdiction_filter(column)
    with pytest.raises(ValueError, match="not a column name"):
        scope.department_filter(column)
    assert city.query("SELECT count(*) FROM jurisdictions") == [(11,)]


def test_qualified_column_names_are_accepted(city: Store) -> None:
    where, params = scope_of(city, "d1_commander").jurisdiction_filter("i.jurisdiction_code")
    assert city.query(f"SELECT count(*) FROM incidents i WHERE {where}", params) == [(3,)]


def test_user_bound_to_missing_jurisdiction_has_no_scope(city: Store) -> None:
    with pytest.raises(ScopeError, match="unknown jurisdiction 'D9'"):
        scope_for(city, User("ghost", "ghost", Role.COMMANDER, "D9", None))


def test_get_jurisdiction_and_children_stay_inside_the_scope(city: Store) -> None:
    scope = scope_of(city, "d1_commander")
    assert get_jurisdiction(city, scope, "D1S1")["path"] == "/C/D1/D1S1/"
    assert get_jurisdiction(city, scope, "D2") is None
    assert get_jurisdiction(city, scope, "D2S1C1") is None
    assert get_jurisdiction(city, scope, "C") is None
    assert [r["code"] for r in children(city, scope, "D1")] == ["D1S1", "D1S2"]
    assert children(city, scope, "D2") == []
    assert [r["code"] for r in children(city, scope, "C")] == ["D1"]


def test_geojson_stays_inside_the_scope(city: Store) -> None:
    scope = scope_of(city, "d1_commander")
    default = jurisdictions_geojson(city, scope)
    assert [f["id"] for f in default["features"]] == ["D1S1", "D1S2"]
    assert default["features"][0]["geometry"]["type"] == "Polygon"
    assert jurisdictions_geojson(city, scope, "D2")["features"] == []
    assert [f["id"] for f in jurisdictions_geojson(city, scope, "C")["features"]] == ["D1"]
    leaf = jurisdictions_geojson(city, scope, "D1S1C1")["features"]
    assert [f["id"] for f in leaf] == ["D1S1C1"]
    everything = jurisdictions_geojson(city, scope_of(city, "commander"))
    assert [f["id"] for f in everything["features"]] == ["D1", "D2"]


def test_outside_and_invisible_incidents(city: Store) -> None:
    scope = scope_of(city, "d1_commander")
    assert scope.outside(city, {"D1", "D1S2C1", "D2", "C", "nope", "x' OR 1=1"}) == {
        "D2", "C", "nope", "x' OR 1=1"}
    assert scope.outside(city, set()) == set()
    hidden = scope.invisible_incidents(city, {2, "3", 4, "5", "abc", -1, 2**70, True})
    assert hidden == {4, "5", "abc", -1, 2**70, True}
    assert scope_of(city, "sysadmin").invisible_incidents(city, {1, 2}) == {1, 2}


def test_the_root_scope_needs_no_subtree_join_and_still_sees_exactly_the_city(city: Store
                                                                              ) -> None:
    root = scope_for(city, get_user(city, "commander"))
    district = scope_for(city, get_user(city, "d1_commander"))
    assert root.covers_everything and not district.covers_everything
    where, params = root.jurisdiction_filter("code")
    assert params == [] and "jurisdictions" not in where
    # the shortcut keeps what the subtree join kept: every jurisdiction of the tree
    everything = {r[0] for r in city.query("SELECT code FROM jurisdictions")}
    assert {r[0] for r in city.query(f"SELECT code FROM jurisdictions WHERE {where}",
                                     params)} == everything
    dwhere, dparams = district.jurisdiction_filter("code")
    inside = {r[0] for r in city.query(f"SELECT code FROM jurisdictions WHERE {dwhere}",
                                       dparams)}
    assert inside and inside < everything and all(c.startswith("D1") for c in inside)


def test_session_scope_reads_user_epoch_and_scope_at_once(city: Store) -> None:
    """What a web request needs, in one read, equals the three separate reads."""
    from core.users import create_user, session_epoch

    create_user(city, "ghost", "Spectre#2026-pass", role="commander", jurisdiction_code="C")
    city.query("UPDATE users SET jurisdiction_code = 'D9', session_epoch = 4"
               " WHERE username = 'ghost'")
    city.query("UPDATE departments SET jurisdiction_code = 'D2' WHERE code = 'cg'")
    city.query("UPDATE users SET jurisdiction_code = NULL WHERE username = 'cg_staff'")
    for name in ("commander", "d1_commander", "cg_staff", "sysadmin"):
        user, epoch, scope = session_scope(city, name)
        assert user == get_user(city, name) and epoch == session_epoch(city, name)
        assert scope == scope_of(city, name)
    assert session_scope(city, "cg_staff")[2].root_code == "D2"    # through its department
    assert session_scope(city, "nobody") is None
    user, epoch, scope = session_scope(city, "ghost")                # bound to no jurisdiction
    assert (user.jurisdiction_code, epoch, scope) == ("D9", 4, None)
