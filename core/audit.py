"""The audit log: append-only, each entry chained to the previous one by SHA-256.

>>> record(store, "li.wei", "login", target="session")   # doctest: +SKIP
>>> verify_chain(store)                                   # doctest: +SKIP
AuditCheck(ok=True, entries=1, first_broken=None)
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from core.store import Store

__all__ = ["AuditCheck", "record", "verify_chain"]

GENESIS = "0" * 64
_write_lock = threading.Lock()


@dataclass(frozen=True)
class AuditCheck:
    ok: bool
    entries: int
    first_broken: int | None = None


def _entry_hash(prev_hash: str, seq: int, ts: datetime, actor: str, action: str,
                target: str | None, detail: str | None) -> str:
    canonical = json.dumps([seq, ts.isoformat(), actor, action, target, detail],
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def record(store: Store, actor: str, action: str, *, target: str | None = None,
           detail: str | None = None, cursor: duckdb.DuckDBPyConnection | None = None) -> int:
    """Append one entry; inside ``cursor``'s transaction when given (so the action and its
    audit entry commit or fail together). Returns the entry's sequence number."""
    ts = datetime.now(UTC).replace(tzinfo=None)
    with _write_lock:
        if cursor is not None:
            return _append(cursor, ts, actor, action, target, detail)
        with store.transaction() as cur:
            return _append(cur, ts, actor, action, target, detail)


def _append(cur, ts, actor, action, target, detail) -> int:
    last = cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    digest = _entry_hash(prev, seq, ts, actor, action, target, detail)
    cur.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, ts, actor, action, target, detail, prev, digest])
    return seq


def verify_chain(store: Store) -> AuditCheck:
    """Recompute every link; report the first entry whose chain is broken."""
    prev, expected_seq, count = GENESIS, 1, 0
    cur = store.cursor().execute(
        "SELECT seq, ts, actor, action, target, detail, prev_hash, hash FROM audit_log ORDER BY seq"
    )
    while batch := cur.fetchmany(10_000):
        for seq, ts, actor, action, target, detail, prev_hash, digest in batch:
            count += 1
            if (seq != expected_seq or prev_hash != prev
                    or _entry_hash(prev, seq, ts, actor, action, target, detail) != digest):
                return AuditCheck(False, count, seq)
            prev, expected_seq = digest, seq + 1
    return AuditCheck(True, count)
