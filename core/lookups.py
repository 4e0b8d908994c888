"""Small reference lookups: names of sensor kinds, incident categories, departments and
jurisdictions; whether a jurisdiction exists, its level and centroid.

These read reference data (the same for every user), not business data, so they take no
scope: callers check an id is in the user's scope before showing anything about it.

>>> jurisdiction_names(store, "D1")                       # doctest: +SKIP
{'name_zh': '一区', 'name_en': 'District 1'}
"""

from __future__ import annotations

from typing import Any

from core.store import Store

__all__ = ["handling_departments", "incident_category_names", "incident_reference_names",
           "jurisdiction_centroid", "jurisdiction_exists", "jurisdiction_level",
           "jurisdiction_names", "sensor_kind_names"]


def _name_column(zh: bool) -> str:
    return "name_zh" if zh else "coalesce(name_en, name_zh)"


def sensor_kind_names(store: Store, *, zh: bool) -> dict[str, str]:
    """Sensor kind → its name in Chinese (``zh``) or English (Chinese when it has none)."""
    return dict(store.query(f"SELECT kind, {_name_column(zh)} FROM sensor_kinds"))


def incident_category_names(store: Store, *, zh: bool) -> dict[str, str]:
    """Incident category code → its name in Chinese (``zh``) or English (Chinese when it has
    none)."""
    return dict(store.query(f"SELECT code, {_name_column(zh)} FROM incident_categories"))


def jurisdiction_exists(store: Store, code: str) -> bool:
    return store.query_one("SELECT 1 FROM jurisdictions WHERE code = ?", [code]) is not None


def jurisdiction_level(store: Store, code: str) -> str | None:
    """The jurisdiction's level (city, district, street, community), None if unknown."""
    row = store.query_one("SELECT level FROM jurisdictions WHERE code = ?", [code])
    return row[0] if row else None


def jurisdiction_names(store: Store, code: str) -> dict[str, Any] | None:
    """``{"name_zh": …, "name_en": …}`` of the jurisdiction, None if unknown."""
    rows = store.query_dicts("SELECT name_zh, name_en FROM jurisdictions WHERE code = ?",
                             [code])
    return rows[0] if rows else None


def jurisdiction_centroid(store: Store, code: str) -> tuple[float | None, float | None] | None:
    """(longitude, latitude) of the jurisdiction's centroid, None if unknown."""
    row = store.query_one("SELECT centroid_lon, centroid_lat FROM jurisdictions WHERE code = ?",
                          [code])
    return (row[0], row[1]) if row else None


def handling_departments(store: Store) -> list[dict[str, Any]]:
    """Departments and governments that can handle incidents (code, name_zh, name_en)."""
    return store.query_dicts("SELECT code, name_zh, name_en FROM departments WHERE kind IN"
                             " ('department', 'government') ORDER BY kind, code")


def incident_reference_names(store: Store, category: str, jurisdiction_code: str,
                             department_code: str | None) -> dict[str, dict[str, Any]]:
    """Names of an incident's category, jurisdiction and department in one read:
    ``{"category" | "jurisdiction" | "department": {"name_zh": …, "name_en": …}}`` (the
    names are None when the code is unknown or None)."""
    names = store.query_one(
        "SELECT (SELECT name_zh FROM incident_categories WHERE code = ?),"
        " (SELECT name_en FROM incident_categories WHERE code = ?),"
        " (SELECT name_zh FROM jurisdictions WHERE code = ?),"
        " (SELECT name_en FROM jurisdictions WHERE code = ?),"
        " (SELECT name_zh FROM departments WHERE code = ?),"
        " (SELECT name_en FROM departments WHERE code = ?)",
        [category, category, jurisdiction_code, jurisdiction_code,
         department_code, department_code])
    return {"category": {"name_zh": names[0], "name_en": names[1]},
            "jurisdiction": {"name_zh": names[2], "name_en": names[3]},
            "department": {"name_zh": names[4], "name_en": names[5]}}
