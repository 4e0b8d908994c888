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

__all__ = ["ApiKey", "api_keys_command", "create_api_key", "list_api_keys", "revoke_api_key",
           "verify_api_key"]


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


# -- `yiwang api-keys` -----------------------------------------------------------------------

def _cli():
    import click

    from core.cli import console, data_dir_option, open_store, settings_from

    @click.group("api-keys")
    def api_keys() -> None:
        """Manage the API keys of Open311 clients (only hashes are stored)."""

    @api_keys.command("create")
    @data_dir_option
    @click.argument("name")
    @click.option("--per-minute", type=int, default=30, show_default=True,
                  help="Requests this key may submit per minute.")
    def create(data_dir, name: str, per_minute: int) -> None:
        """Create a key; its secret is printed this once."""
        store = open_store(settings_from(data_dir=data_dir))
        try:
            key, secret = create_api_key(store, None, name, per_minute=per_minute)
        except PublicError as exc:
            raise click.ClickException(exc.message) from None
        finally:
            store.close()
        console.print(f"API key {key.id} ({key.name}, {key.per_minute}/minute):")
        click.echo(secret)

    @api_keys.command("list")
    @data_dir_option
    def list_(data_dir) -> None:
        """Every key: id, name, prefix, rate, created, revoked."""
        store = open_store(settings_from(data_dir=data_dir))
        try:
            for k in list_api_keys(store, None):
                state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
                click.echo(f"{k.id}\t{k.name}\tyw_{k.prefix}_…\t{k.per_minute}/min\t"
                           f"{k.created_at:%Y-%m-%d}\t{state}")
        finally:
            store.close()

    @api_keys.command("revoke")
    @data_dir_option
    @click.argument("key_id", type=int)
    def revoke(data_dir, key_id: int) -> None:
        """Revoke a key at once."""
        store = open_store(settings_from(data_dir=data_dir))
        try:
            revoke_api_key(store, None, key_id)
        except PublicError as exc:
            raise click.ClickException(exc.message) from None
        finally:
            store.close()
        click.echo(f"API key {key_id} revoked")

    return api_keys


api_keys_command = _cli()
