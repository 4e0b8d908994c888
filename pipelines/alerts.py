"""Alert rules: a threshold held for a duration opens an alert; hysteresis closes it.

Each sensor kind gets two rules from its ``sensor_kinds`` thresholds: ``<kind>.warning``
(value ≥ warn) and ``<kind>.alarm`` (value ≥ alarm). A rule OPENS an alert for a sensor when
every reading of that sensor has stayed at or above the threshold for ``duration`` (the last
reading below it is older than that, and the sensor reported meanwhile). An active alert
CLOSES when every reading over the last ``duration`` is below ``threshold − hysteresis``
(so a value hovering around the threshold does not open and close alerts all day). One
active alert per sensor and rule; ``peak_value`` follows the highest reading. A new alert
opens an incident through ``core.incidents.report_incident`` when that API exists
(one open incident per sensor and rule, since there is one active alert); until then the
alert is stored with ``incident_id`` NULL.

Evaluation reads only the recent readings (the time filter skips every older row group).

>>> evaluate(store, now=datetime(2026, 11, 28, 10, 0))      # doctest: +SKIP
AlertChanges(opened=2, closed=1, incidents=0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.ingest import LoadStats
from core.settings import Settings
from core.store import Store

__all__ = ["DEFAULT_RULE", "RULES", "AlertChanges", "AlertRule", "evaluate", "evaluate_job"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertRule:
    """How long a threshold must hold, and how far below it a value must fall to clear
    (hysteresis, in the kind's unit)."""

    duration: timedelta
    hysteresis: float
    category: str | None = None   # incident category an alert of this kind opens


DEFAULT_RULE = AlertRule(timedelta(minutes=10), 0.0)
RULES: dict[str, AlertRule] = {
    "water_level": AlertRule(timedelta(minutes=10), 0.1, "road_waterlogging"),
    "pm25": AlertRule(timedelta(minutes=30), 5.0, "air_pollution"),
    "noise": AlertRule(timedelta(minutes=30), 3.0, "noise_nuisance"),
    "traffic_flow": AlertRule(timedelta(minutes=30), 30.0, None),
    "manhole_tilt": AlertRule(timedelta(minutes=5), 1.0, "manhole_cover"),
    "smoke": AlertRule(timedelta(minutes=2), 0.3, "fire_hazard"),
    "gas": AlertRule(timedelta(minutes=2), 2.0, "gas_leak"),
}


@dataclass(frozen=True)
class AlertChanges:
    opened: int
    closed: int
    incidents: int


def _rules_table(store: Store) -> list[tuple]:
    rows = []
    for kind, warn, alarm in store.query("SELECT kind, warn, alarm FROM sensor_kinds"):
        rule = RULES.get(kind, DEFAULT_RULE)
        for level, threshold in (("warning", warn), ("alarm", alarm)):
            if threshold is not None:
                rows.append((f"{kind}.{level}", kind, level, float(threshold),
                             float(rule.hysteresis), rule.duration.total_seconds()))
    return rows


def evaluate(store: Store, now: datetime | None = None) -> AlertChanges:
    """Open and close alerts from the readings up to ``now`` (default: the current time)."""
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    rules = _rules_table(store)
    if not rules:
        return AlertChanges(0, 0, 0)
    longest = max(r[5] for r in rules)
    since = now - timedelta(seconds=2 * longest)
    import pyarrow as pa

    table = pa.table({name: [r[i] for r in rules] for i, name in enumerate(
        ("rule_id", "kind", "level", "threshold", "hysteresis", "seconds"))})
    # the scan of recent readings reads a snapshot, outside the write transaction (in
    # cluster mode that holds the cluster-wide write lock, which every login waits for)
    with store.snapshot() as cur:
        cur.register("_alert_rules", table)
        try:
            evaluated = cur.execute("""
                WITH base AS (
                    SELECT ru.rule_id, ru.level, ru.threshold, ru.hysteresis, ru.seconds,
                           s.id AS sensor_id, s.kind, s.jurisdiction_code, r.ts, r.value
                    FROM readings r
                    JOIN sensors s ON s.id = r.sensor_id
                    JOIN _alert_rules ru ON ru.kind = s.kind
                    WHERE r.ts > $since AND r.ts <= $now
                ), below AS (
                    SELECT rule_id, sensor_id, max(ts) FILTER (WHERE value < threshold) AS last_below
                    FROM base GROUP BY ALL
                )
                SELECT b.rule_id, b.sensor_id, b.kind, b.jurisdiction_code, b.level,
                       b.threshold, b.seconds,
                       arg_max(b.value, b.ts) AS last_value, max(b.ts) AS last_ts,
                       min(b.ts) FILTER (WHERE b.value >= b.threshold
                                         AND (w.last_below IS NULL OR b.ts > w.last_below))
                           AS above_since,
                       count(*) FILTER (WHERE b.ts > $now - to_seconds(b.seconds)) AS recent_n,
                       max(b.ts) FILTER (WHERE b.ts > $now - to_seconds(b.seconds)
                                         AND b.value >= b.threshold - b.hysteresis) AS recent_high,
                       max(b.value) FILTER (WHERE b.ts > $now - to_seconds(b.seconds)) AS peak
                FROM base b JOIN below w USING (rule_id, sensor_id)
                GROUP BY ALL""", {"now": now, "since": since}).to_arrow_table()
        finally:
            cur.unregister("_alert_rules")
    with store.transaction() as cur:
        cur.register("_alert_eval", evaluated)
        try:
            # open: at or above the threshold since at least `seconds` ago, still now
            # ids first, then the rows (no RETURNING on DuckLake: cluster mode runs this too)
            cur.execute("""
                CREATE OR REPLACE TEMP TABLE _alert_open AS
                SELECT nextval('alert_seq') AS id, e.rule_id, e.sensor_id, e.kind,
                       e.jurisdiction_code, e.level, e.peak
                FROM _alert_eval e
                WHERE e.last_value >= e.threshold
                  AND e.above_since <= $now - to_seconds(e.seconds)
                  AND e.last_ts > $now - to_seconds(e.seconds)    -- still reporting
                  AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.closed_at IS NULL
                                  AND a.sensor_id = e.sensor_id AND a.rule_id = e.rule_id)
                """, {"now": now})
            cur.execute("""
                INSERT INTO alerts (id, rule_id, sensor_id, kind, jurisdiction_code, level,
                                    opened_at, peak_value)
                SELECT id, rule_id, sensor_id, kind, jurisdiction_code, level, $now, peak
                FROM _alert_open""", {"now": now})
            opened = cur.execute("SELECT id, rule_id, sensor_id FROM _alert_open ORDER BY id"
                                 ).fetchall()
            cur.execute("DROP TABLE _alert_open")
            cur.execute("""
                UPDATE alerts SET peak_value = greatest(alerts.peak_value, e.peak)
                FROM _alert_eval e
                WHERE alerts.closed_at IS NULL AND alerts.sensor_id = e.sensor_id
                  AND alerts.rule_id = e.rule_id AND e.peak IS NOT NULL""")
            # close: readings over the last `seconds`, none of them above threshold − hysteresis
            closed = cur.execute("""
                UPDATE alerts SET closed_at = $now
                FROM _alert_eval e
                WHERE alerts.closed_at IS NULL AND alerts.sensor_id = e.sensor_id
                  AND alerts.rule_id = e.rule_id AND e.recent_n > 0 AND e.recent_high IS NULL
                  AND alerts.opened_at <= $now - to_seconds(e.seconds)""",
                                 {"now": now}).fetchone()[0]
        finally:
            cur.unregister("_alert_eval")
    incidents = _open_incidents(store, [row[0] for row in opened], now)
    return AlertChanges(len(opened), closed, incidents)


def _open_incidents(store: Store, alert_ids: list[int], now: datetime) -> int:
    """One incident per new alert through core's incident API, when it exists."""
    if not alert_ids:
        return 0
    try:
        from core import incidents as api
    except ImportError:
        return 0
    report = getattr(api, "report_incident", None)
    if report is None:
        return 0
    made = 0
    rows = store.query_dicts("""
        SELECT a.id, a.rule_id, a.kind, a.level, a.peak_value, s.code, s.name, s.lon, s.lat,
               k.name_zh, k.unit
        FROM alerts a JOIN sensors s ON s.id = a.sensor_id JOIN sensor_kinds k ON k.kind = a.kind
        WHERE a.id IN (SELECT unnest(?::BIGINT[])) AND a.incident_id IS NULL""", [alert_ids])
    for a in rows:
        category = RULES.get(a["kind"], DEFAULT_RULE).category
        if category is None:
            continue
        try:
            incident = report(
                store, None, category=category, source="sensor_alert",
                title=f"{a['name']} {a['name_zh']}{'告警' if a['level'] == 'alarm' else '预警'}",
                description=f"{a['code']} {a['rule_id']}: {a['peak_value'] or 0:.2f} {a['unit']}",
                lon=a["lon"], lat=a["lat"],
                priority="emergency" if a["level"] == "alarm" else None, now=now)
        except Exception:  # the alert stays stored; the next change can retry by hand
            log.exception("alert %s: could not open an incident", a["id"])
            continue
        with store.transaction() as cur:
            cur.execute("UPDATE alerts SET incident_id = ? WHERE id = ?",
                        [getattr(incident, "id", None), a["id"]])
        made += 1
    return made


def evaluate_job(store: Store, settings: Settings) -> LoadStats:
    """Scheduler job: evaluate at the current time; rows loaded = alerts opened + closed."""
    changes = evaluate(store)
    return LoadStats(0, changes.opened + changes.closed, 0)
