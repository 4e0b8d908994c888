"""Shared helpers of the pipeline tests (no tests here): a tiny city with sensors."""

from __future__ import annotations

from pathlib import Path

from conftest import build_tiny_city

from core.settings import Settings, load_settings
from core.store import Store

# two water-level and two PM2.5 sensors, one per community of the tiny city
SENSORS = [
    (1, "WL-1", "water_level", 0.25, 0.25, "D1S1C1", "sw"),
    (2, "WL-2", "water_level", 0.75, 0.75, "D1S2C1", "sw"),
    (3, "AQ-3", "pm25", 1.25, 0.25, "D2S1C1", "sthj"),
    (4, "AQ-4", "pm25", 1.75, 0.75, "D2S2C1", "sthj"),
]


def build_sensor_city(store: Store) -> Store:
    """The tiny city (conftest) plus sensor kinds and four sensors."""
    build_tiny_city(store)
    with store.transaction() as cur:
        cur.execute("INSERT INTO departments VALUES ('sthj', '生态环境局', 'Ecology',"
                    " 'department', 'C')")
        cur.execute("INSERT INTO sensor_kinds VALUES"
                    " ('water_level', '水位', 'Water level', 'm', 'sw', 4.5, 5.0),"
                    " ('pm25', 'PM2.5', 'PM2.5', 'µg/m³', 'sthj', 75, 115)")
        for sid, code, kind, lon, lat, com, dept in SENSORS:
            cur.execute("INSERT INTO sensors VALUES (?, ?, ?, ?, ?, ?, ?, ?, '2026-01-01')",
                        [sid, code, kind, f"{code} 监测点", lon, lat, com, dept])
    return store


def settings_for(tmp: Path, **extra) -> Settings:
    return load_settings(data_dir=tmp, scheduler_enabled=False, **extra)
