"""Shared set-up for the public participation tests: categories in the tiny city and the
department's way to close an incident through core.incidents.transition."""

from __future__ import annotations

import io

from PIL import Image

from core.incidents import transition
from core.store import Store
from core.users import get_user

CATEGORIES = [
    ("garbage_overflow", "垃圾满溢", "Overflowing garbage", "cg", "normal", 8.0, 24.0),
    ("road_waterlogging", "道路积水", "Road waterlogging", "sw", "high", 2.0, 24.0),
    ("manhole_cover", "井盖缺失破损", "Missing or broken manhole cover", "cg", "emergency",
     0.5, 2.0),
]


def add_categories(store: Store) -> None:
    with store.transaction() as cur:
        for row in CATEGORIES:
            cur.execute("INSERT INTO incident_categories (code, name_zh, name_en,"
                        " department_code, default_priority, claim_hours, resolve_hours)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", list(row))


def close_incident(store: Store, incident_id: int) -> None:
    """The commander dispatches, the department claims, handles and resolves, the commander
    verifies and closes — every step through the state machine."""
    commander = get_user(store, "commander")
    staff = get_user(store, "cg_staff")
    transition(store, commander, incident_id, "dispatch", department="cg")
    transition(store, staff, incident_id, "claim")
    transition(store, staff, incident_id, "start")
    transition(store, staff, incident_id, "resolve", note="已清运，张三处理 13812345678")
    transition(store, commander, incident_id, "verify")
    transition(store, commander, incident_id, "close")


def jpeg_with_exif(size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG carrying EXIF GPS, camera make and a comment (what must be stripped)."""
    im = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCameraMaker"          # Make
    exif[0x0131] = "SecretSoftware"             # Software
    gps = {1: "N", 2: (31.0, 54.0, 36.0), 3: "E", 4: (120.0, 16.0, 48.0)}
    exif[0x8825] = gps                           # GPSInfo
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), comment=b"secret comment")
    return buf.getvalue()
