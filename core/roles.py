"""Roles (design §3): who sees what, who does what.

>>> Role("commander").sees_business_data
True
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role", "ROLE_NAMES"]


class Role(StrEnum):
    COMMANDER = "commander"
    LEADER = "leader"
    DEPT_STAFF = "dept_staff"
    DEPT_ADMIN = "dept_admin"
    GRASSROOTS = "grassroots"
    GRID_WORKER = "grid_worker"
    SOCIAL_ORG = "social_org"
    VENDOR_TECH = "vendor_tech"
    SYSADMIN = "sysadmin"
    SECADMIN = "secadmin"
    AUDITOR = "auditor"

    @property
    def sees_business_data(self) -> bool:
        """Operators of the platform itself (vendor, three admins) see no business data."""
        return self not in _PLATFORM_ROLES

    @property
    def department_bound(self) -> bool:
        """Department roles see only their own department's work."""
        return self in (Role.DEPT_STAFF, Role.DEPT_ADMIN)

    @property
    def needs_department(self) -> bool:
        return self in (Role.DEPT_STAFF, Role.DEPT_ADMIN, Role.SOCIAL_ORG, Role.VENDOR_TECH)


_PLATFORM_ROLES = frozenset({Role.VENDOR_TECH, Role.SYSADMIN, Role.SECADMIN, Role.AUDITOR})

ROLE_NAMES: dict[Role, tuple[str, str]] = {
    Role.COMMANDER: ("指挥中心值班员", "Commander"),
    Role.LEADER: ("领导", "Leader"),
    Role.DEPT_STAFF: ("部门人员", "Department staff"),
    Role.DEPT_ADMIN: ("部门管理员", "Department admin"),
    Role.GRASSROOTS: ("街道/社区", "Grassroots"),
    Role.GRID_WORKER: ("网格员", "Grid worker"),
    Role.SOCIAL_ORG: ("社会组织", "Social organisation"),
    Role.VENDOR_TECH: ("驻场技术人员", "Vendor technician"),
    Role.SYSADMIN: ("系统管理员", "System administrator"),
    Role.SECADMIN: ("安全管理员", "Security administrator"),
    Role.AUDITOR: ("审计员", "Auditor"),
}
