"""Who may do what beyond scope: the three separate admin powers (三权分立) and refusals.

- sysadmin (系统管理员) manages users and settings;
- secadmin (安全管理员) manages roles and security policies (roles, TOTP resets,
  dataset classification);
- auditor (审计员) reads the audit log.

None can do another's work and nobody else holds any of these powers. Every refusal is
recorded in the audit log (``refuse``), so probing is visible to the auditor.

>>> Power.READ_AUDIT in POWERS[Role.AUDITOR]
True
>>> Power.READ_AUDIT in POWERS[Role.SYSADMIN]
False
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from core.audit import record
from core.roles import Role
from core.store import Store

__all__ = ["AccessDenied", "POWERS", "Power", "may", "refuse", "require"]


class AccessDenied(PermissionError):
    """The acting user may not do this; the refusal has been audited."""


class Power(StrEnum):
    MANAGE_USERS = "manage_users"          # create, disable, enable, reset passwords, bind
    MANAGE_SETTINGS = "manage_settings"
    MANAGE_ROLES = "manage_roles"          # change a user's role, reset a second factor
    MANAGE_POLICIES = "manage_policies"    # dataset classification, security policies
    READ_AUDIT = "read_audit"


POWERS: dict[Role, frozenset[Power]] = {
    Role.SYSADMIN: frozenset({Power.MANAGE_USERS, Power.MANAGE_SETTINGS}),
    Role.SECADMIN: frozenset({Power.MANAGE_ROLES, Power.MANAGE_POLICIES}),
    Role.AUDITOR: frozenset({Power.READ_AUDIT}),
}


def may(user: Any, power: Power) -> bool:
    """Does ``user`` (a core.users.User, or None) hold ``power``?"""
    return user is not None and getattr(user, "active", True) and \
        power in POWERS.get(Role(user.role), frozenset())


def refuse(store: Store, user: Any, action: str, *, target: str | None = None,
           reason: str = "not permitted", **detail: Any) -> AccessDenied:
    """Record a refusal and return the exception to raise.

    >>> raise refuse(store, user, "audit_read", reason="auditor only")   # doctest: +SKIP
    """
    actor = getattr(user, "username", None) or "-"
    record(store, actor, "refused", target=target,
           detail=json.dumps({"action": action, "reason": reason, **detail},
                             ensure_ascii=False, default=str))
    return AccessDenied(f"{action}: {reason}")


def require(store: Store, user: Any, power: Power, *, target: str | None = None) -> None:
    """Raise ``AccessDenied`` (audited) unless ``user`` holds ``power``."""
    if not may(user, power):
        role = getattr(user, "role", None)
        raise refuse(store, user, str(power), target=target,
                     reason=f"role {role} lacks power {power}")
