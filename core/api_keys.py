"""API keys of Open311 clients: only a SHA-256 hash of each secret is stored; each key has
its own submission rate; created, listed and revoked by the system administrator (or the
``yiwang api-keys`` command), every change audited.

>>> key, secret = create_api_key(store, None, "Partner app", per_minute=60)  # doctest: +SKIP
>>> verify_api_key(store, secret).id == key.id                              # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from core.audit import record
from core.public import PublicError
from core.roles import Role
from core.sla import utcnow
from core.store import Store
from core.users import User

__all__ = ["ApiKey", "create_api_key", "list_api_keys", "revoke_api_key", "verify_api_key"]


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    per_minute: int
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(f"yiwang-api-key:{secret}".encode()).hexdigest()


def create_api_key(store: Store, actor: User | None, name: str, *, per_minute: int = 30
                   ) -> tuple[ApiKey, str]:
    """A new Open311 API key (sysadmin only; ``actor`` None from the CLI). Returns the key
    and its full secret text, shown this once: ``yw_<prefix>_<secret>``."""
    if actor is not None and actor.role is not Role.SYSADMIN:
        raise PublicError("only a system administrator manages API keys", status=403)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise PublicError("name: 1–100 characters", field="name")
    if not isinstance(per_minute, int) or not 1 <= per_minute <= 10000:
        raise PublicError("per_minute: 1–10000", field="per_minute")
    prefix = secrets.token_hex(4)
    secret = f"yw_{prefix}_{secrets.token_urlsafe(24)}"
    now = utcnow()
    who = actor.username if actor else "cli"
    key_id = store.nextval("public_api_key_seq")[0]  # no RETURNING on DuckLake (cluster)
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO public_api_keys (id, name, prefix, key_hash, per_minute, created_by,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [key_id, name, prefix, _secret_hash(secret), per_minute, who, now])
        record(store, who, "public.api_key.create", target=f"api_key:{key_id}",
               detail=json.dumps({"name": name, "per_minute": per_minute},
                                 ensure_ascii=False), cursor=cur)
    return ApiKey(key_id, name, prefix, per_minute, who, now, None), secret


def verify_api_key(store: Store, secret: str | None) -> ApiKey | None:
    """The active key matching ``secret`` (constant-time compare), else None."""
    m = re.fullmatch(r"yw_([0-9a-f]{8})_[A-Za-z0-9_\-]{20,64}", secret or "")
    if m is None:
        return None
    row = store.query_one("SELECT id, name, prefix, per_minute, created_by, created_at,"
                          " revoked_at, key_hash FROM public_api_keys WHERE prefix = ?",
                          [m.group(1)])
    if row is None or row[6] is not None:
        return None
    if not hmac.compare_digest(row[7], _secret_hash(secret)):
        return None
    return ApiKey(*row[:7])


def list_api_keys(store: Store, actor: User | None) -> list[ApiKey]:
    if actor is not None and actor.role is not Role.SYSADMIN:
        raise PublicError("only a system administrator manages API keys", status=403)
    return [ApiKey(*r) for r in store.query(
        "SELECT id, name, prefix, per_minute, created_by, created_at, revoked_at"
        " FROM public_api_keys ORDER BY id")]


def revoke_api_key(store: Store, actor: User | None, key_id: int) -> None:
    if actor is not None and actor.role is not Role.SYSADMIN:
        raise PublicError("only a system administrator manages API keys", status=403)
    who = actor.username if actor else "cli"
    with store.transaction() as cur:
        hit = cur.execute("UPDATE public_api_keys SET revoked_at = ? WHERE id = ? AND"
                          " revoked_at IS NULL", [utcnow(), key_id]).fetchone()[0]
        if not hit:
            raise PublicError(f"no active API key {key_id}", status=404)
        record(store, who, "public.api_key.revoke", target=f"api_key:{key_id}", cursor=cur)
