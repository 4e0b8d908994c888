"""The audit log: append-only, each entry chained to the previous one by SHA-256, its head
checkpointed in a signed file outside the database.

- ``record`` appends one entry. Personal data in ``target``/``detail`` is masked (mobile
  numbers, ID-card numbers, e-mail addresses) and control characters in every field are
  encoded (no forged lines, no terminal tricks). If the entry cannot be written, ``record``
  raises ``AuditError`` and the caller's action fails with it.
- After every committed entry the chain's head (seq, hash) is written to
  ``<data_dir>/audit_head.json`` with an HMAC-SHA256 under ``<data_dir>/audit_key`` (0600).
  An attacker who truncates the tail of the table, or rewrites the whole chain, no longer
  matches the signed head.
- ``verify_chain`` recomputes every link and checks the head: it reports the first broken
  link of an edited, deleted, inserted or truncated log.
- ``search`` is the auditor's read (core.access: nobody else may read the log).

>>> record(store, "li.wei", "login", target="session")   # doctest: +SKIP
1
>>> verify_chain(store)                                   # doctest: +SKIP
AuditCheck(ok=True, entries=1, first_broken=None, reason=None)
>>> mask_personal("call 13812345678")
'call 138****5678'
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from core.store import Store

__all__ = [
    "AuditCheck",
    "AuditEntry",
    "AuditError",
    "CHECKPOINT_FILE",
    "KEY_FILE",
    "audit_dir",
    "encode_text",
    "mask_personal",
    "read_checkpoint",
    "record",
    "search",
    "sign_pending",
    "signing",
    "verify_chain",
]

GENESIS = "0" * 64
CHECKPOINT_FILE = "audit_head.json"
KEY_FILE = "audit_key"
_write_lock = threading.Lock()
_LIMITS = {"actor": 64, "action": 64, "target": 512, "detail": 8000}

# Personal data patterns (mainland formats): mobile numbers, 18-digit resident ID numbers,
# e-mail addresses. Masked in what the log keeps, whoever writes it.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)[- ]?\d{4}[- ]?(\d{4})(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9])[A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+\.[A-Za-z]{2,})")


class AuditError(RuntimeError):
    """The audit entry could not be written (or checkpointed): the action must fail."""


@dataclass(frozen=True)
class AuditCheck:
    ok: bool
    entries: int
    first_broken: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None


# -- text hygiene ---------------------------------------------------------------------------
def mask_personal(text: str) -> str:
    """Mask mobile numbers, ID-card numbers and e-mail addresses in ``text``.

    >>> mask_personal("身份证 110101199003071234 邮箱 wang.fang@example.cn")
    '身份证 110101********1234 邮箱 w***@example.cn'
    """
    text = _ID_NUMBER.sub(lambda m: f"{m.group(1)}********{m.group(2)[-4:]}", text)
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***{m.group(2)}", text)


def encode_text(text: str) -> str:
    """Encode control, format and line-separator characters as visible escapes.

    >>> encode_text("ok\\nFAKE login admin\\u202e")
    'ok\\\\nFAKE login admin\\\\u202e'
    """
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _clean(field: str, value: str | None, *, mask: bool) -> str | None:
    if value is None:
        return None
    value = str(value)
    if mask:
        value = mask_personal(value)
    value = encode_text(value)
    limit = _LIMITS[field]
    return value if len(value) <= limit else value[: limit - 1] + "…"


# -- where the signed head lives --------------------------------------------------------------
def audit_dir(store: Store) -> Path | None:
    """The folder of the head checkpoint and its key: ``store.audit_dir`` when set, else the
    folder of an embedded database file (the data_dir); None for an in-memory database."""
    explicit = getattr(store, "audit_dir", None)
    if explicit is not None:
        return Path(explicit)
    url = getattr(store, "url", "")
    if url.startswith("duckdb:///"):
        path = url.removeprefix("duckdb:///")
        if path and path != ":memory:":
            return Path(path).parent
    return None


def _key(directory: Path) -> bytes:
    """The signing key of ``directory`` (created on first use)."""
    path = directory / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 64:
            raise AuditError(f"{path} holds no usable key") from None
        return bytes.fromhex(key)
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return bytes.fromhex(key)


def _mac(key: bytes, seq: int, digest: str) -> str:
    return hmac.new(key, f"yiwang-audit-head:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def read_checkpoint(store: Store) -> dict[str, Any] | None:
    """The signed head ({seq, hash, mac, written_at}) or None when there is no file."""
    directory = audit_dir(store)
    if directory is None:
        return None
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"seq": -1, "hash": "", "mac": ""}


_KEYS: dict[str, bytes] = {}  # signing keys by folder (writing only; a check rereads the file)


def _write_checkpoint(store: Store, seq: int, digest: str) -> None:
    directory = audit_dir(store)
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    current = read_checkpoint(store)
    if current is not None and isinstance(current.get("seq"), int) and current["seq"] >= seq:
        return  # another writer already signed a later head
    key = _KEYS.get(str(directory))
    if key is None:
        key = _KEYS[str(directory)] = _key(directory)
    body = {"seq": seq, "hash": digest, "mac": _mac(key, seq, digest),
            "written_at": datetime.now(UTC).isoformat()}
    tmp = directory / f".{CHECKPOINT_FILE}.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(body, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / CHECKPOINT_FILE)


# -- writing --------------------------------------------------------------------------------
def _entry_hash(prev_hash: str, seq: int, ts: datetime, actor: str, action: str,
                target: str | None, detail: str | None) -> str:
    canonical = json.dumps([seq, ts.isoformat(), actor, action, target, detail],
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def record(store: Store, actor: str, action: str, *, target: str | None = None,
           detail: str | None = None, cursor: duckdb.DuckDBPyConnection | None = None) -> int:
    """Append one entry; inside ``cursor``'s transaction when given (so the action and its
    audit entry commit or fail together; the head is signed by the next standalone entry).
    Returns the entry's sequence number; raises ``AuditError`` when nothing could be written.
    """
    ts = datetime.now(UTC).replace(tzinfo=None)
    actor = _clean("actor", actor, mask=False) or "-"
    action = _clean("action", action, mask=False) or "-"
    target = _clean("target", target, mask=True)
    detail = _clean("detail", detail, mask=True)
    try:
        if cursor is not None:  # the caller's transaction holds the cluster write lock
            with _write_lock:
                seq, digest = _append(store, cursor, ts, actor, action, target, detail)
                batch = getattr(_signing, "batch", None)
                if batch is not None and batch[0] is store:
                    batch[1].append((seq, digest))
                else:
                    _remember(store, seq, digest)
            return seq
        with _write_lock:
            _flush_pending(store)
        # Lock order: the cluster write lock before this module's lock, as a transaction that
        # appends with ``cursor=`` takes them. The other order deadlocked logins against the
        # alert job in cluster mode until the write lock's 60 s timeout.
        with store.write_lock(), _write_lock, store.transaction() as cur:
            seq, digest = _append(store, cur, ts, actor, action, target, detail)
        with _write_lock:
            _write_checkpoint(store, seq, digest)
    except (duckdb.Error, OSError) as exc:
        raise AuditError(f"audit entry {action!r} by {actor!r} not written: {exc}") from exc
    return seq


_signing = threading.local()


@contextmanager
def signing(store: Store) -> Iterator[None]:
    """Sign the head after the block when it ends without an error: for a block around a
    transaction whose entries are appended with ``record(..., cursor=...)``, once it has
    committed. (Without it, such entries are signed when seen committed by the next
    standalone entry, ``sign_pending`` or a check.)

    >>> with signing(store), store.transaction() as cur:       # doctest: +SKIP
    ...     record(store, "li.wei", "incident.claim", cursor=cur)
    """
    outer = getattr(_signing, "batch", None)
    _signing.batch = (store, [])
    try:
        yield
        appended = _signing.batch[1]
    finally:
        _signing.batch = outer
    if appended:
        try:
            with _write_lock:
                _write_checkpoint(store, *max(appended))
        except OSError as exc:
            raise AuditError(f"audit head not signed: {exc}") from exc


# Entries appended inside a caller's transaction: signed once seen committed (by the next
# standalone entry or a verify in this process). Keyed by the checkpoint folder.
_pending: dict[str, list[tuple[int, str]]] = {}
_MAX_PENDING = 10_000


def _remember(store: Store, seq: int, digest: str) -> None:
    directory = audit_dir(store)
    if directory is not None:
        waiting = _pending.setdefault(str(directory), [])
        waiting.append((seq, digest))
        del waiting[:-_MAX_PENDING]


def sign_pending(store: Store) -> None:
    """Sign the head after a caller committed a transaction holding entries appended with
    ``record(..., cursor=...)`` (call outside any transaction of this thread)."""
    try:
        with _write_lock:
            _flush_pending(store)
    except (duckdb.Error, OSError) as exc:
        raise AuditError(f"audit head not signed: {exc}") from exc


def _flush_pending(store: Store) -> None:
    """Sign the newest remembered entry that is committed with the same hash (call outside
    any transaction of this thread); forget the ones replaced after a rollback."""
    directory = audit_dir(store)
    waiting = _pending.get(str(directory)) if directory is not None else None
    if not waiting:
        return
    found = dict(store.query("SELECT seq, hash FROM audit_log WHERE seq IN"
                             " (SELECT unnest(?::BIGINT[]))", [[s for s, _ in waiting]]))
    committed = [(s, d) for s, d in waiting if found.get(s) == d]
    keep = [(s, d) for s, d in waiting if s not in found]  # maybe still in flight
    _pending[str(directory)] = keep
    if committed:
        _write_checkpoint(store, *max(committed))


# The last entry this process appended, per database: a hint checked with two key lookups
# (the entry is there with that hash and has no successor) instead of a scan for the last
# entry, which grows with the log. A stale hint (rolled back, or another process appended)
# falls back to the scan.
_HINTS: dict[str, tuple[int, str]] = {}


def _last_entry(store: Store, cur) -> tuple[int, str] | None:
    hint = _HINTS.get(getattr(store, "url", ""))
    if hint is not None:
        found = dict(cur.execute("SELECT seq, hash FROM audit_log WHERE seq IN (?, ?)",
                                 [hint[0], hint[0] + 1]).fetchall())
        if found.get(hint[0]) == hint[1] and hint[0] + 1 not in found:
            return hint
    return cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()


def _append(store: Store, cur, ts, actor, action, target, detail) -> tuple[int, str]:
    last = _last_entry(store, cur)
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    digest = _entry_hash(prev, seq, ts, actor, action, target, detail)
    cur.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, ts, actor, action, target, detail, prev, digest])
    url = getattr(store, "url", "")
    if url and not url.endswith(":memory:"):
        _HINTS[url] = (seq, digest)
    return seq, digest


# -- checking -------------------------------------------------------------------------------
def verify_chain(store: Store) -> AuditCheck:
    """Recompute every link, then compare with the signed head; report the first entry whose
    chain is broken (for a truncated tail: the first missing entry)."""
    with _write_lock, contextlib.suppress(duckdb.Error, OSError):
        _flush_pending(store)  # on failure, the check below reports what is wrong
    prev, expected_seq, count = GENESIS, 1, 0
    hashes_at: dict[int, str] = {}
    checkpoint = read_checkpoint(store)
    want = checkpoint.get("seq") if checkpoint else None
    cur = store.cursor().execute(
        "SELECT seq, ts, actor, action, target, detail, prev_hash, hash FROM audit_log ORDER BY seq"
    )
    while batch := cur.fetchmany(10_000):
        for seq, ts, actor, action, target, detail, prev_hash, digest in batch:
            count += 1
            if seq != expected_seq or prev_hash != prev:
                return AuditCheck(False, count, seq, "entry missing or out of order"
                                  if seq != expected_seq else "link to previous entry broken")
            if _entry_hash(prev, seq, ts, actor, action, target, detail) != digest:
                return AuditCheck(False, count, seq, "entry content does not match its hash")
            if seq == want:
                hashes_at[seq] = digest
            prev, expected_seq = digest, seq + 1
    last = expected_seq - 1
    directory = audit_dir(store)
    if directory is None:
        return AuditCheck(True, count)
    if checkpoint is None:
        if count:
            return AuditCheck(False, count, None, f"signed head {CHECKPOINT_FILE} is missing")
        return AuditCheck(True, count)
    try:
        key = _key(directory)
    except (OSError, ValueError, AuditError):
        return AuditCheck(False, count, None, f"audit key {KEY_FILE} unreadable")
    seq, digest = checkpoint.get("seq"), checkpoint.get("hash")
    if (not isinstance(seq, int) or not isinstance(digest, str)
            or not hmac.compare_digest(str(checkpoint.get("mac", "")), _mac(key, seq, digest))):
        return AuditCheck(False, count, None, "signed head has a bad signature")
    if seq > last:
        return AuditCheck(False, count, last + 1,
                          f"entries {last + 1}…{seq} missing (tail truncated)")
    if seq > 0 and hashes_at.get(seq) != digest:
        return AuditCheck(False, count, seq, "chain rewritten: signed head does not match")
    return AuditCheck(True, count)


# -- reading (auditor only) -----------------------------------------------------------------
def search(store: Store, user: Any, *, text: str | None = None, actor: str | None = None,
           action: str | None = None, since: datetime | None = None,
           until: datetime | None = None, limit: int = 500,
           offset: int = 0) -> list[AuditEntry]:
    """Entries matching every given filter, newest first. Only the auditor may read the log
    (``core.access``); the read itself is recorded.

    >>> search(store, auditor, action="login_failed", limit=50)   # doctest: +SKIP
    """
    from core.access import Power, require

    require(store, user, Power.READ_AUDIT, target="audit_log")
    limit = max(1, min(int(limit), 10_000))
    where, params = ["TRUE"], []
    if text:
        where.append("(contains(lower(coalesce(target, '')), lower(?))"
                     " OR contains(lower(coalesce(detail, '')), lower(?))"
                     " OR contains(lower(actor), lower(?)))")
        params += [text, text, text]
    if actor:
        where.append("actor = ?")
        params.append(actor)
    if action:
        where.append("action = ?")
        params.append(action)
    if since:
        where.append("ts >= ?")
        params.append(since)
    if until:
        where.append("ts < ?")
        params.append(until)
    rows = store.query(
        "SELECT seq, ts, actor, action, target, detail FROM audit_log WHERE "
        + " AND ".join(where) + " ORDER BY seq DESC LIMIT ? OFFSET ?",
        params + [limit, max(0, int(offset))],
    )
    record(store, user.username, "audit_read", target="audit_log",
           detail=json.dumps({"text": text, "actor": actor, "action": action,
                              "since": since.isoformat() if since else None,
                              "until": until.isoformat() if until else None,
                              "rows": len(rows)}, ensure_ascii=False))
    return [AuditEntry(*r) for r in rows]
