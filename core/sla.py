"""SLA clocks of incidents (design §5): claim-by and resolve-by deadlines.

A category sets its hours (``incident_categories.claim_hours`` / ``resolve_hours``: emergency
2 h, utilities 24 h, general 7 d, complex 15 d in the demo); a priority may shorten them
(``incident_priority_sla``: an emergency is claimed within 0.5 h and resolved within 2 h
whatever its category). Both tables are configuration, not code.

>>> deadlines(store, "road_waterlogging", "emergency", datetime(2026, 11, 28, 8))  # doctest: +SKIP
Deadlines(claim_due=datetime(2026, 11, 28, 8, 30), resolve_due=datetime(2026, 11, 28, 10, 0))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.store import Store

__all__ = ["Deadlines", "deadlines", "utcnow"]


def utcnow() -> datetime:
    """Now, naive UTC (the database's convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Deadlines:
    claim_due: datetime
    resolve_due: datetime


def deadlines(store_or_cursor: Store, category: str, priority: str, start: datetime
              ) -> Deadlines:
    """Claim-by and resolve-by for an incident of ``category``/``priority`` reported at ``start``.

    ``store_or_cursor`` is a Store or a cursor inside a transaction. Raises LookupError for an
    unknown category.
    """
    sql = ("SELECT least(c.claim_hours, coalesce(p.claim_hours_max, c.claim_hours)),"
           " least(c.resolve_hours, coalesce(p.resolve_hours_max, c.resolve_hours))"
           " FROM incident_categories c LEFT JOIN incident_priority_sla p ON p.priority = ?"
           " WHERE c.code = ?")
    params = [priority, category]
    if isinstance(store_or_cursor, Store):
        row = store_or_cursor.query_one(sql, params)
    else:
        row = store_or_cursor.execute(sql, params).fetchone()
    if row is None:
        raise LookupError(f"unknown incident category {category!r}")
    claim_h, resolve_h = row
    return Deadlines(start + timedelta(hours=claim_h), start + timedelta(hours=resolve_h))
