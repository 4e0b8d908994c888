"""The demo city: a seeded, believable city to show and test Yiwang with.

>>> from pipelines.demo import build_demo_city, DEMO_PASSWORD   # doctest: +SKIP
"""

from pipelines.demo.build import (
    DemoCityExists,
    DemoReport,
    build_demo_city,
    has_city,
    is_demo_city,
)
from pipelines.demo.catalog import DEMO_PASSWORD, DEMO_USERS, DemoUser

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USERS",
    "DemoCityExists",
    "DemoReport",
    "DemoUser",
    "build_demo_city",
    "has_city",
    "is_demo_city",
]
