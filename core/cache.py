"""Small per-store caches of what hardly changes, for a few seconds: reference rows read on
the path of many requests (a user's scope, a jurisdiction's path and level, a department's
name and jurisdiction, the names of categories and places).

What a cache may hold stale for ``TTL_S`` seconds is chosen where it is used; nothing that
decides a session's validity (a user's row, their session epoch) is cached.

>>> cached(store, ("path", "330102"), lambda: read_path("330102"))   # doctest: +SKIP
'330000/330100/330102'
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["TTL_S", "cached"]

TTL_S = 30.0
_MAX_ENTRIES = 10_000
_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
T = TypeVar("T")


def cached(store: Any, key: tuple, compute: Callable[[], T]) -> T:
    """``compute()``, kept ``TTL_S`` seconds per store and key (not kept for ``store`` None
    or one that cannot be weakly referenced)."""
    if store is None:
        return compute()
    try:
        per_store = _CACHES.get(store)
        if per_store is None:
            per_store = _CACHES.setdefault(store, {})
    except TypeError:  # not weak-referenceable: no cache
        return compute()
    now = time.monotonic()
    hit = per_store.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = compute()
    if len(per_store) > _MAX_ENTRIES:
        per_store.clear()
    per_store[key] = (now + TTL_S, value)
    return value
