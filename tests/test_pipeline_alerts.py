"""Alert rules: a threshold held for the rule's duration opens one alert per sensor and
rule (and an incident through core's API); hysteresis keeps it open near the threshold;
it closes once readings stay below threshold − hysteresis."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from test_pipeline_support import build_sensor_city

from core.ingest import READINGS, load
from core.store import Store
from pipelines.alerts import evaluate

T0 = datetime(2026, 11, 28, 9, 0)


@pytest.fixture
def city(store: Store) -> Store:
    build_sensor_city(store)
    with store.transaction() as cur:
        cur.execute("INSERT INTO incident_categories VALUES ('road_waterlogging', '道路积水',"
                    " 'Road waterlogging', 'sw', 'high', 2, 24, false, false)")
    return store


def _feed(store: Store, sensor: int, start: datetime, values: list[float]) -> datetime:
    """One reading a minute from ``start``; returns the time of the last one."""
    ts = [start + timedelta(minutes=i) for i in range(len(values))]
    load(store, READINGS, pa.table({"sensor_id": pa.array([sensor] * len(values), pa.int32()),
                                    "ts": pa.array(ts), "value": pa.array(values)}),
         run_id=1, source="t")
    return ts[-1]


def _alerts(store: Store) -> list[tuple]:
    return store.query("SELECT rule_id, sensor_id, level, closed_at IS NULL, peak_value"
                       " FROM alerts ORDER BY opened_at, rule_id")


def test_duration_hysteresis_and_one_alert_per_sensor_and_rule(city: Store) -> None:
    # below, then above warning (4.5) but under alarm (5.0) for 8 minutes: not yet
    last = _feed(city, 1, T0, [4.0, 4.1] + [4.6, 4.7, 4.8, 4.6, 4.7, 4.9, 4.6, 4.7])
    assert evaluate(city, now=last).opened == 0 and _alerts(city) == []
    # a brief spike on another sensor opens nothing either
    _feed(city, 2, T0, [4.0] * 9 + [5.5])
    # three more minutes above: 10 minutes held -> one warning alert
    last = _feed(city, 1, last + timedelta(minutes=1), [4.8, 4.7, 4.6])
    changes = evaluate(city, now=last)
    assert changes.opened == 1
    assert _alerts(city) == [("water_level.warning", 1, "warning", True, 4.9)]
    assert evaluate(city, now=last).opened == 0                # no second alert
    # hovering just under the threshold (within the 0.1 hysteresis) keeps it open
    last = _feed(city, 1, last + timedelta(minutes=1), [4.45] * 12)
    assert evaluate(city, now=last).closed == 0
    assert _alerts(city)[0][3] is True
    # below 4.4 for ten minutes: closed
    last = _feed(city, 1, last + timedelta(minutes=1), [4.2] * 11)
    assert evaluate(city, now=last).closed == 1
    assert _alerts(city)[0][3] is False
    # rising again later opens a new alert (the old one stays closed)
    last = _feed(city, 1, last + timedelta(minutes=1), [5.2] * 11)
    opened = evaluate(city, now=last)
    assert opened.opened == 2                                # warning and alarm rules
    assert [a[:4] for a in _alerts(city)] == [
        ("water_level.warning", 1, "warning", False), ("water_level.alarm", 1, "alarm", True),
        ("water_level.warning", 1, "warning", True)]


def test_a_new_alert_opens_one_incident_through_core(city: Store) -> None:
    last = _feed(city, 1, T0, [4.7] * 12)
    changes = evaluate(city, now=last)
    assert changes.opened == 1 and changes.incidents == 1
    incident_id = city.query_one("SELECT incident_id FROM alerts")[0]
    row = city.query_one("SELECT category, source, jurisdiction_code FROM incidents"
                         " WHERE id = ?", [incident_id])
    assert row == ("road_waterlogging", "sensor_alert", "D1S1C1")
    evaluate(city, now=last + timedelta(minutes=1))
    assert city.query_one("SELECT count(*) FROM incidents")[0] == 1
