"""Values a cluster's web processes share for a few seconds: one process computes a wall
snapshot, the others read it instead of doing the same lake reads again.

Each process used to compute every wall snapshot itself (its cache was its own), so three
web processes did three times the catalog work of one. The values live in an UNLOGGED table
of the catalog's PostgreSQL database (schema ``yiwang_shared``; nothing there needs to
survive a crash) and are signed with a key kept in the shared ``data_dir``: PostgreSQL
alone cannot hand a process a value to unpickle. Embedded mode has no shared cache
(``for_store`` returns None): its one process shares in memory.

>>> cache = for_store(store)                                   # doctest: +SKIP
>>> cache.put("wall:…", pickle.dumps(snapshot)); cache.get("wall:…", max_age=5.0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import weakref
from pathlib import Path
from typing import Any

__all__ = ["KEY_FILE", "SharedCache", "for_store"]

log = logging.getLogger(__name__)

KEY_FILE = "shared_cache_key"
_SCHEMA = "yiwang_shared"
_TABLE = f"{_SCHEMA}.values"


class SharedCache:
    """``get``/``put`` of signed bytes by name, through one PostgreSQL session per process.
    A failure of PostgreSQL is a miss, never an error: the caller computes the value."""

    def __init__(self, dsn: str, key: bytes) -> None:
        self._dsn = dsn
        self._key = key
        self._conn = None
        self._mutex = threading.Lock()
        self._ready = False

    def _session(self):
        from core.cluster import _connect

        if self._conn is None or self._conn.closed:
            self._conn = _connect(self._dsn)
        if not self._ready:
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_SCHEMA}")
            self._conn.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS {_TABLE} (name text"
                               " PRIMARY KEY, stored_at timestamptz NOT NULL, value bytea"
                               " NOT NULL, mac bytea NOT NULL)")
            self._ready = True
        return self._conn

    def _mac(self, name: str, value: bytes) -> bytes:
        return hmac.new(self._key, name.encode() + b"\0" + value, hashlib.sha256).digest()

    def get(self, name: str, max_age: float) -> tuple[bytes, float] | None:
        """The value stored under ``name`` at most ``max_age`` seconds ago with a valid
        signature, and its age in seconds; else None."""
        try:
            with self._mutex:
                row = self._session().execute(
                    f"SELECT value, mac, extract(epoch FROM clock_timestamp() - stored_at)"
                    f" FROM {_TABLE} WHERE name = %s"
                    " AND stored_at > clock_timestamp() - make_interval(secs => %s)",
                    [name, max_age]).fetchone()
        except Exception as exc:  # noqa: BLE001 - a cache: any failure is a miss
            self._conn = None
            log.warning("shared cache: %s", exc)
            return None
        if row is None:
            return None
        value, mac = bytes(row[0]), bytes(row[1])
        if not hmac.compare_digest(mac, self._mac(name, value)):
            log.warning("shared cache: %s has a bad signature; ignored", name)
            return None
        return value, float(row[2])

    def put(self, name: str, value: bytes) -> None:
        try:
            with self._mutex:
                self._session().execute(
                    f"INSERT INTO {_TABLE} VALUES (%s, clock_timestamp(), %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET stored_at = excluded.stored_at,"
                    " value = excluded.value, mac = excluded.mac",
                    [name, value, self._mac(name, value)])
        except Exception as exc:  # noqa: BLE001 - a cache: the value is simply not shared
            self._conn = None
            log.warning("shared cache: %s", exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_CACHES: weakref.WeakKeyDictionary[Any, SharedCache] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def for_store(store: Any) -> SharedCache | None:
    """The store's shared cache in cluster mode (its key read from, or made in, the
    store's shared data folder), else None."""
    folder = getattr(store, "audit_dir", None)
    if getattr(store, "mode", "embedded") != "cluster" or folder is None:
        return None
    with _GUARD:
        cache = _CACHES.get(store)
        if cache is None:
            cache = _CACHES[store] = SharedCache(store.dsn, _key(Path(folder)))
        return cache


def _key(folder: Path) -> bytes:
    """The signing key, made once for the cluster (exclusive create: the processes that
    start together agree on the first one written)."""
    path = folder / KEY_FILE
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _attempt in range(50):   # another process is writing it
            data = path.read_bytes()
            if len(data) == 32:
                return data
            threading.Event().wait(0.02)
        raise RuntimeError(f"{path}: not a 32-byte key") from None
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
