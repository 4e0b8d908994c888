"""Constants of the incident lifecycle (design §5); the state machine builds on them.

``rated`` is an event on a closed incident, not a status.

>>> Status("claimed") in OPEN_STATUSES
True
>>> PRIORITIES[0]
'emergency'
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["OPEN_STATUSES", "PRIORITIES", "SOURCES", "Status"]


class Status(StrEnum):
    REPORTED = "reported"        # 受理
    DISPATCHED = "dispatched"    # 派单
    CLAIMED = "claimed"          # 签收
    IN_PROGRESS = "in_progress"  # 办理
    RESOLVED = "resolved"        # 办结
    VERIFIED = "verified"        # 核查
    CLOSED = "closed"            # 结案
    RETURNED = "returned"        # 退单
    REOPENED = "reopened"        # 重办


PRIORITIES = ("emergency", "high", "normal", "low")

SOURCES = ("sensor_alert", "hotline", "citizen_app", "grid_patrol", "department", "open311")

OPEN_STATUSES = frozenset(Status) - {Status.CLOSED}
