"""TOTP second factor (RFC 6238, pyotp): enrolment with a locally drawn QR code, checks
without replay, who must use it, and the secadmin's reset.

>>> secret = new_secret()
>>> len(secret)
32
>>> qr_svg(provisioning_uri(secret, "li.wei")).startswith("<?xml")
True
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pyotp
import qrcode
import qrcode.image.svg
from cryptography.fernet import Fernet, InvalidToken

from core.roles import Role
from core.store import Store

__all__ = ["ISSUER", "enrol", "is_enrolled", "new_secret", "provisioning_uri", "qr_svg",
           "required_for", "reset", "verify"]

ISSUER = "Yiwang 一网统管"
_STEP = 30


def new_secret() -> str:
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def qr_svg(data: str) -> str:
    """The QR code of ``data`` as an SVG document, drawn here (no image service, no PIL)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buf = io.BytesIO()
    image.save(buf)
    return buf.getvalue().decode("utf-8")


def required_for(user: Any, settings: Any) -> bool:
    """Must this user pass a second factor (settings ``totp_required`` and ``totp_roles``)?"""
    return bool(settings.totp_required) and Role(user.role).value in set(settings.totp_roles)


# -- secrets at rest ---------------------------------------------------------------------
# A TOTP secret is a shared key, not a hash: it is stored encrypted (Fernet, AES-128-CBC +
# HMAC) with a key kept in a file beside the audit head key (core.audit.audit_dir), never in
# the database. A copy of the database alone (a backup, a dump) does not let anyone make codes.
SECRET_KEY_FILE = "totp_key"
_PREFIX = "fernet:"
_FERNETS: dict[str, Fernet] = {}
_EPHEMERAL = Fernet(Fernet.generate_key())  # in-memory databases: gone with the process too


def _fernet(store: Store) -> Fernet:
    from core.audit import audit_dir

    directory = audit_dir(store)
    if directory is None:
        return _EPHEMERAL
    known = _FERNETS.get(str(directory))
    if known is not None:
        return known
    path = Path(directory) / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
    else:
        key = Fernet.generate_key()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
    try:
        fernet = Fernet(key)
    except ValueError as exc:
        raise RuntimeError(f"{path} holds no usable key; restore it from backup") from exc
    return _FERNETS.setdefault(str(directory), fernet)


def _seal(store: Store, secret: str) -> str:
    return _PREFIX + _fernet(store).encrypt(secret.encode("ascii")).decode("ascii")


def _open(store: Store, stored: str) -> str | None:
    """The base32 secret of a stored value (None when the key cannot open it)."""
    if not stored.startswith(_PREFIX):
        return stored  # written before secrets were encrypted; sealed at the next use
    try:
        return _fernet(store).decrypt(stored[len(_PREFIX):].encode("ascii")).decode("ascii")
    except InvalidToken:
        return None


def is_enrolled(store: Store, username: str) -> bool:
    row = store.query_one("SELECT totp_secret FROM users WHERE username = ?", [username])
    return bool(row and row[0])


def _matching_step(secret: str, code: str, now: float) -> int | None:
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now // _STEP)
    for candidate in (step, step - 1, step + 1):  # one step of clock drift either way
        if pyotp.utils.strings_equal(totp.at(candidate * _STEP), code):
            return candidate
    return None


def verify(store: Store, username: str, code: str, *, now: float | None = None) -> bool:
    """Is ``code`` the user's current one-time code, never used before?"""
    row = store.query_one("SELECT totp_secret, totp_last_step FROM users WHERE username = ?",
                          [username])
    if not row or not row[0]:
        return False
    secret = _open(store, row[0])
    if secret is None:
        return False
    step = _matching_step(secret, code, time.time() if now is None else now)
    if step is None or (row[1] is not None and step <= row[1]):
        return False
    with store.transaction() as cur:
        # compare-and-set: two requests with the same code cannot both pass
        cur.execute("UPDATE users SET totp_last_step = ? WHERE username = ?"
                    " AND (totp_last_step IS NULL OR totp_last_step < ?)",
                    [step, username, step])
        if not row[0].startswith(_PREFIX):
            cur.execute("UPDATE users SET totp_secret = ? WHERE username = ?",
                        [_seal(store, secret), username])
        changed = cur.execute("SELECT totp_last_step FROM users WHERE username = ?",
                              [username]).fetchone()
    return bool(changed and changed[0] == step)


def enrol(store: Store, username: str, secret: str, code: str, *,
          now: float | None = None) -> bool:
    """Store ``secret`` for the user if ``code`` proves their authenticator has it."""
    from core.audit import record

    step = _matching_step(secret, code, time.time() if now is None else now)
    if step is None:
        return False
    with store.transaction() as cur:
        cur.execute("UPDATE users SET totp_secret = ?, totp_last_step = ? WHERE username = ?",
                    [_seal(store, secret), step, username])
        record(store, username, "totp_enrolled", target=f"user:{username}", cursor=cur)
    return True


def reset(store: Store, actor: Any, username: str) -> None:
    """secadmin clears a user's second factor (lost phone): they enrol again at next login."""
    from core.access import Power, refuse, require
    from core.audit import record

    require(store, actor, Power.MANAGE_ROLES, target=f"user:{username}")
    if username == actor.username:
        raise refuse(store, actor, "totp_reset", target=f"user:{username}",
                     reason="nobody may reset their own second factor")
    with store.transaction() as cur:
        cur.execute("UPDATE users SET totp_secret = NULL, totp_last_step = NULL,"
                    " session_epoch = coalesce(session_epoch, 0) + 1 WHERE username = ?",
                    [username])
        record(store, actor.username, "totp_reset", target=f"user:{username}", cursor=cur)
