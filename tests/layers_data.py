"""Sensors, readings, incidents and alerts added to the tiny city (tests of layers and the
wall screen). Every count the tests assert follows from the rows written here.

Tiny city: C = [0,2]×[0,1]; D1 = [0,1]×[0,1], D2 = [1,2]×[0,1]; streets split each district
at lat 0.5 (S1 south, S2 north); one community per street with the street's polygon.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.store import Store

NOW = datetime(2026, 11, 28, 6, 0)  # 14:00 in Beijing


def add_layer_data(store: Store, now: datetime = NOW, *, many_sensors: int = 0,
                   sources: bool = True) -> None:
    """Sensors/readings/incidents/alerts/sources around ``now``.

    Sensors (kind, community, department, latest state):
      1 pm25 D1S1C1 cg normal · 2 pm25 D1S2C1 cg warning · 3 water_level D1S1C1 sw alarm
      4 water_level D2S1C1 sw normal · 5 pm25 D2S2C1 cg (no reading: offline)
      6 pm25 D2S2C1 cg reading 2 h old: offline
    plus ``many_sensors`` pm25 sensors of cg spread over D1 (normal). ``sources``: two
    pipeline sources, 'mqtt' fresh and 'hotline' stale.
    """
    with store.transaction() as cur:
        cur.execute("INSERT INTO sensor_kinds VALUES"
                    " ('pm25', '空气质量PM2.5', 'Air quality PM2.5', 'µg/m³', 'cg', 75, 115),"
                    " ('water_level', '水位', 'Water level', 'm', 'sw', 4.5, 5.0)")
        sensors = [
            (1, "pm25", 0.2, 0.2, "D1S1C1", "cg"), (2, "pm25", 0.7, 0.7, "D1S2C1", "cg"),
            (3, "water_level", 0.4, 0.3, "D1S1C1", "sw"),
            (4, "water_level", 1.5, 0.2, "D2S1C1", "sw"),
            (5, "pm25", 1.6, 0.8, "D2S2C1", "cg"), (6, "pm25", 1.7, 0.9, "D2S2C1", "cg"),
        ]
        for sid, kind, lon, lat, community, dept in sensors:
            cur.execute("INSERT INTO sensors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [sid, f"S{sid}", kind, f"sensor {sid}", lon, lat, community, dept,
                         now - timedelta(days=30)])
        if many_sensors:
            cur.execute(
                "INSERT INTO sensors SELECT 100 + i, 'M' || i, 'pm25', 'many ' || i,"
                " 0.01 + (i % 97) / 100.0, 0.01 + (i // 97 % 98) / 100.0,"
                " CASE WHEN 0.01 + (i // 97 % 98) / 100.0 < 0.5 THEN 'D1S1C1' ELSE 'D1S2C1' END,"
                " 'cg', ? FROM range(?) t(i)", [now - timedelta(days=30), many_sensors])
        # sensor_status uses now(): latest readings are written relative to the real clock
        real_now = datetime.utcnow().replace(microsecond=0)
        cur.execute("INSERT INTO sensor_latest VALUES (1, ?, 40, 'normal'), (2, ?, 90, 'warning'),"
                    " (3, ?, 5.2, 'alarm'), (4, ?, 3.0, 'normal'), (6, ?, 30, 'normal')",
                    [real_now, real_now, real_now, real_now, real_now - timedelta(hours=2)])
        if many_sensors:
            cur.execute("INSERT INTO sensor_latest SELECT id, ?, 20, 'normal' FROM sensors"
                        " WHERE id >= 100", [real_now])
        # readings yesterday at this time: sensors 1, 3, 4 reported (3 of 6 installed)
        for sid in (1, 3, 4):
            cur.execute("INSERT INTO readings VALUES (?, ?, 1.0)",
                        [sid, now - timedelta(days=1, minutes=10)])
        # ... and the sensor-hours rollup the load path keeps for them (core.rollups)
        cur.execute("INSERT INTO sensor_hours SELECT DISTINCT date_trunc('hour', ts), sensor_id"
                    " FROM readings")
        cur.execute("INSERT INTO incident_categories VALUES"
                    " ('road_waterlogging', '道路积水', 'Road waterlogging', 'sw', 'high', 2, 24,"
                    "  false, false),"
                    " ('garbage_overflow', '垃圾满溢', 'Overflowing garbage', 'cg', 'normal', 2,"
                    "  24, false, true)")
        h = timedelta(hours=1)
        incidents = [
            # id, category, priority, status, source, lon, lat, community, dept,
            #   reported, resolve_due, resolved, closed
            (1, "road_waterlogging", "high", "dispatched", "hotline", 0.3, 0.3, "D1S1C1", "sw",
             now - 2 * h, now + 20 * h, None, None),
            (2, "garbage_overflow", "normal", "in_progress", "citizen_app", 0.6, 0.6, "D1S2C1",
             "cg", now - 30 * h, now - 6 * h, None, None),                      # overdue
            (3, "garbage_overflow", "emergency", "claimed", "grid_patrol", 1.4, 0.4, "D2S1C1",
             "cg", now - 3 * h, now + 10 * h, None, None),
            (4, "road_waterlogging", "normal", "closed", "hotline", 0.2, 0.8, "D1S2C1", "sw",
             now - 40 * h, now - 16 * h, now - 20 * h, now - 19 * h),           # closed
            (5, "garbage_overflow", "low", "resolved", "open311", 1.8, 0.8, "D2S2C1", "cg",
             now - 5 * h, now - 2 * h, now - h, None),                         # resolved late
            (6, "road_waterlogging", "high", "verified", "department", 0.5, 0.1, "D1S1C1",
             "sw", now - 4 * h, now + 4 * h, now - 2 * h, None),               # on time
        ]
        for (iid, cat, prio, status, source, lon, lat, comm, dept, reported, due, resolved,
             closed) in incidents:
            cur.execute(
                "INSERT INTO incidents (id, tracking_code, category, priority, status, source,"
                " title, lon, lat, jurisdiction_code, department_code, reported_at, resolve_due,"
                " resolved_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [iid, f"T{iid}", cat, prio, status, source, f"incident {iid}", lon, lat, comm,
                 dept, reported, due, resolved, closed])
            cur.execute("INSERT INTO incident_events VALUES (?, 1, ?, 'report', NULL,"
                        " 'reported', 'citizen', NULL, NULL)", [iid, reported])
        cur.execute(
            "INSERT INTO alerts VALUES"
            " (1, 'r1', 3, 'water_level', 'D1S1C1', 'alarm', ?, NULL, 5.2, NULL),"
            " (2, 'r1', 2, 'pm25', 'D1S2C1', 'warning', ?, NULL, 90, NULL),"
            " (3, 'r1', 4, 'water_level', 'D2S1C1', 'warning', ?, ?, 4.7, NULL)",
            [now - h, now - 30 * h, now - 5 * h, now - 3 * h])
        if not sources:
            return
        cur.execute("INSERT INTO pipeline_sources VALUES ('mqtt', 'mqtt', 60, 'sensors'),"
                    " ('hotline', 'file', 3600, 'hotline export')")
        cur.execute("INSERT INTO ingest_runs (id, source, started_at, finished_at, status)"
                    " VALUES (1, 'mqtt', ?, ?, 'success'), (2, 'hotline', ?, ?, 'success')",
                    [real_now, real_now, real_now - timedelta(days=1),
                     real_now - timedelta(days=1)])
