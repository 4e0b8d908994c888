"""Routing (design §5): which department an incident goes to.

1. Explicit rules ``incident_routing_rules`` (category or any, jurisdiction subtree) →
   department; the most specific wins (deepest jurisdiction, then a named category, then
   ``rank``). A rule with ``auto_dispatch`` dispatches at once.
2. Otherwise the category's own department is suggested, and the commander confirms.
3. Fallback owner (兜底): the government of the incident's district, when the category has
   no usable department.
4. Negative list (负面清单): a ``district_only`` category never goes to a department below
   district level; without a rule it goes to the district government.

>>> route(store, "garbage_overflow", "D1S1C1")                      # doctest: +SKIP
Route(department_code='cg', auto_dispatch=False, reason='category')
"""

from __future__ import annotations

from dataclasses import dataclass

from core.store import Store

__all__ = ["LEVEL_ORDER", "Route", "check_target", "district_government", "route"]

LEVEL_ORDER = ("province", "city", "district", "street", "community", "grid")
# departments of these kinds never handle incidents
_NOT_HANDLERS = ("vendor", "command")


@dataclass(frozen=True)
class Route:
    """The routed department (None: the commander must choose) and why."""

    department_code: str | None
    auto_dispatch: bool
    reason: str  # 'rule:<id>' | 'category' | 'fallback' | 'negative_list' | 'none'


def _q(cur, sql: str, params: list) -> list[tuple]:
    if isinstance(cur, Store):
        return cur.query(sql, params)
    return cur.execute(sql, params).fetchall()


def district_government(cur, jurisdiction_code: str) -> str | None:
    """The government department of the district holding ``jurisdiction_code`` (兜底)."""
    rows = _q(cur,
              "SELECT d.code FROM jurisdictions j JOIN jurisdictions dist"
              "   ON dist.level = 'district' AND starts_with(j.path, dist.path)"
              " JOIN departments d ON d.kind = 'government' AND d.jurisdiction_code = dist.code"
              " WHERE j.code = ? ORDER BY d.code LIMIT 1", [jurisdiction_code])
    return rows[0][0] if rows else None


def check_target(cur, category: str, jurisdiction_code: str, department_code: str
                 ) -> str | None:
    """Why ``department_code`` may not handle this incident, or None when it may."""
    rows = _q(cur,
              "SELECT d.kind, dj.level, starts_with(j.path, dj.path),"
              " coalesce((SELECT district_only FROM incident_categories WHERE code = ?), false)"
              " FROM departments d JOIN jurisdictions dj ON dj.code = d.jurisdiction_code"
              " JOIN jurisdictions j ON j.code = ? WHERE d.code = ?",
              [category, jurisdiction_code, department_code])
    if not rows:
        return f"unknown department {department_code!r}"
    kind, level, covers, district_only = rows[0]
    if kind in _NOT_HANDLERS:
        return f"department {department_code} does not handle incidents"
    if not covers:
        return f"department {department_code} does not cover jurisdiction {jurisdiction_code}"
    if district_only and LEVEL_ORDER.index(level) > LEVEL_ORDER.index("district"):
        return (f"category {category} is on the negative list: it may not be sent below "
                "district level")
    return None


def route(cur, category: str, jurisdiction_code: str) -> Route:
    """Where an incident of ``category`` at ``jurisdiction_code`` goes (``cur``: a Store or a
    cursor inside a transaction)."""
    rules = _q(cur,
               "SELECT r.id, r.department_code, r.auto_dispatch FROM incident_routing_rules r"
               " JOIN jurisdictions rj ON rj.code = r.jurisdiction_code"
               " JOIN jurisdictions j ON j.code = ? AND starts_with(j.path, rj.path)"
               " WHERE r.category IS NULL OR r.category = ?"
               " ORDER BY rj.depth DESC, (r.category IS NOT NULL) DESC, r.rank DESC, r.id",
               [jurisdiction_code, category])
    for rule_id, department, auto in rules:
        if check_target(cur, category, jurisdiction_code, department) is None:
            return Route(department, bool(auto), f"rule:{rule_id}")
    cat = _q(cur, "SELECT department_code, district_only FROM incident_categories WHERE code = ?",
             [category])
    if cat and cat[0][1]:
        gov = district_government(cur, jurisdiction_code)
        return Route(gov, False, "negative_list" if gov else "none")
    if cat and check_target(cur, category, jurisdiction_code, cat[0][0]) is None:
        return Route(cat[0][0], False, "category")
    gov = district_government(cur, jurisdiction_code)
    return Route(gov, False, "fallback" if gov else "none")
