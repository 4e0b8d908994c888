"""Pipeline operations reads for the ops page: sources and freshness, recent runs, the
quarantine. Only the platform's operators (sysadmin, vendor_tech) may read them; anyone
else is refused and the refusal audited. No business data leaves here: quarantined rows
are shown by their field NAMES and the reason, never their values.

>>> ops_sources(store, user)[0]["name"]        # doctest: +SKIP
'simulator'
"""

from __future__ import annotations

from typing import Any

from core.access import refuse
from core.roles import Role
from core.store import Store

__all__ = ["OPS_ROLES", "ops_contracts", "ops_quarantine", "ops_runs", "ops_sources"]

OPS_ROLES = frozenset({Role.SYSADMIN, Role.VENDOR_TECH})


def _check(store: Store, user: Any, what: str) -> None:
    if user is None or not getattr(user, "active", True) or Role(user.role) not in OPS_ROLES:
        raise refuse(store, user, "ops_read", target=what,
                     reason="pipeline operations are for sysadmin and vendor_tech")


def ops_sources(store: Store, user: Any) -> list[dict]:
    """Every source: kind, expected interval, last success, last status, stale, and the
    row counts of its last finished run."""
    _check(store, user, "sources")
    return store.query_dicts("""
        WITH last AS (
            SELECT source, arg_max(rows_in, id) AS rows_in, arg_max(rows_loaded, id) AS loaded,
                   arg_max(rows_rejected, id) AS rejected, arg_max(error, id) AS error,
                   count(*) FILTER (WHERE status = 'failed') AS failures
            FROM ingest_runs WHERE status <> 'running' GROUP BY source)
        SELECT f.name, f.kind, f.expected_seconds, f.last_success, f.last_status, f.stale,
               l.rows_in, l.loaded, l.rejected, l.error, coalesce(l.failures, 0) AS failures,
               (SELECT count(*) FROM quarantine q WHERE q.source = f.name
                AND q.status = 'open') AS open_quarantine
        FROM source_freshness f LEFT JOIN last l ON l.source = f.name
        ORDER BY f.stale DESC, f.name""")


def ops_runs(store: Store, user: Any, *, source: str | None = None,
             limit: int = 50) -> list[dict]:
    """The latest runs (of one source, or all), newest first."""
    _check(store, user, "runs")
    where, params = ("WHERE source = ?", [source]) if source else ("", [])
    return store.query_dicts(
        f"SELECT id, source, trigger, started_at, finished_at, rows_in, rows_loaded,"
        f" rows_rejected, status, error FROM ingest_runs {where} ORDER BY id DESC LIMIT ?",
        [*params, max(1, min(int(limit), 1000))])


def ops_quarantine(store: Store, user: Any, *, contract: str | None = None,
                   status: str = "open", limit: int = 200) -> list[dict]:
    """Quarantine entries: id, time, run, source, contract, reason and the raw row's field
    names (values stay hidden: they are business data)."""
    _check(store, user, "quarantine")
    where, params = ["status = ?"], [status]
    if contract:
        where.append("contract = ?")
        params.append(contract)
    return store.query_dicts(
        f"SELECT id, created_at, run_id, source, contract, reason,"
        f" CASE WHEN json_valid(raw) AND json_type(raw) = 'OBJECT'"
        f"      THEN array_to_string(json_keys(raw), ', ') ELSE '(not a row)' END AS fields"
        f" FROM quarantine WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        [*params, max(1, min(int(limit), 1000))])


def ops_contracts(store: Store, user: Any) -> list[str]:
    """Contracts with open quarantine entries (for the browser's filter)."""
    _check(store, user, "quarantine")
    return [r[0] for r in store.query("SELECT DISTINCT contract FROM quarantine"
                                      " WHERE status = 'open' ORDER BY 1")]
