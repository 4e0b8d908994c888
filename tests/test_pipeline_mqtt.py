"""The MQTT source against the real Mosquitto on 127.0.0.1:1883: published readings land in
DuckDB, a malformed message lands in quarantine, and messages sent while the subscriber is
away arrive when it comes back (persistent QoS 1 session, acks only after commit)."""

from __future__ import annotations

import json
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from conftest import require_service
from test_pipeline_support import build_sensor_city

from core.store import Store
from pipelines.sources.mqtt import MqttSubscriber, parse_payloads

pytestmark = pytest.mark.services


@pytest.fixture
def city(store: Store) -> Store:
    require_service("Mosquitto", "127.0.0.1", 1883)
    return build_sensor_city(store)


def _publisher() -> mqtt.Client:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()
    return pub


def _wait(store: Store, sql: str, want: int, seconds: float = 20) -> int:
    deadline = time.monotonic() + seconds
    got = -1
    while time.monotonic() < deadline:
        got = store.query_one(sql)[0]
        if got >= want:
            return got
        time.sleep(0.1)
    return got


def test_parse_payload_shapes() -> None:
    table, bad = parse_payloads([
        ("city/WL-1/readings", b'{"ts": "2026-11-28T10:00:00Z", "value": 4.2}'),
        ("x", b'[{"sensor": "WL-2", "ts": "2026-11-28T10:00:00Z", "value": 1}]'),
        ("x", b'{"readings": [{"sensor_id": 3, "ts": "2026-11-28T10:00:00Z", "value": 50}]}'),
        ("x", b"\xff\xfenot json"), ("x", b"42"), ("x", b"[]")], sensor_segment=1)
    assert table.column("sensor").to_pylist() == ["WL-1", "WL-2", None]
    assert table.column("sensor_id").to_pylist() == [None, None, "3"]
    assert [why.split(" ")[0] for _, why in bad] == ["payload:"] * 3


def test_published_readings_land_and_malformed_ones_are_quarantined(city: Store) -> None:
    topic = f"yiwang-test/{uuid.uuid4().hex}"
    sub = MqttSubscriber(city, "mqtt_test", topics=[f"{topic}/+/readings"],
                         sensor_from_topic=2, client_id=f"yw-{uuid.uuid4().hex[:8]}",
                         flush_seconds=0.2, session_expiry=60).start()
    pub = _publisher()
    try:
        assert sub.connected.wait(10)
        time.sleep(0.3)                      # the subscription is in place
        pub.publish(f"{topic}/WL-1/readings",
                    json.dumps({"ts": "2026-11-28T10:00:00Z", "value": 4.2}), qos=1)
        batch = [{"sensor": "AQ-3", "ts": f"2026-11-28T10:0{i}:00Z", "value": 60 + i}
                 for i in range(5)]
        pub.publish(f"{topic}/AQ-3/readings", json.dumps({"readings": batch}), qos=1)
        pub.publish(f"{topic}/WL-2/readings", b"{broken", qos=1).wait_for_publish(5)
        pub.publish(f"{topic}/WL-2/readings",
                    json.dumps({"ts": "not a time", "value": 1}), qos=1).wait_for_publish(5)
        assert _wait(city, "SELECT count(*) FROM readings", 6) == 6
        assert _wait(city, "SELECT count(*) FROM quarantine", 2) == 2
    finally:
        sub.stop()
        pub.loop_stop()
    assert city.query("SELECT sensor_id, count(*) FROM readings GROUP BY 1 ORDER BY 1") == [
        (1, 1), (3, 5)]
    reasons = sorted(r[0] for r in city.query("SELECT reason FROM quarantine"))
    assert reasons[0].startswith("payload: not JSON") and reasons[1] == "ts: not a valid timestamp"
    # each flush is a recorded run, and the rollups followed
    assert city.query_one("SELECT sum(rows_loaded) FROM ingest_runs WHERE source = 'mqtt_test'"
                          )[0] == 6
    assert city.query_one("SELECT sum(n) FROM readings_hourly WHERE jurisdiction_code = 'C'"
                          )[0] == 6


def test_messages_sent_while_away_arrive_on_reconnect(city: Store) -> None:
    topic = f"yiwang-test/{uuid.uuid4().hex}"
    client_id = f"yw-{uuid.uuid4().hex[:8]}"
    sub = MqttSubscriber(city, "mqtt_away", topics=[f"{topic}/#"], client_id=client_id,
                         flush_seconds=0.2, session_expiry=60).start()
    assert sub.connected.wait(10)
    time.sleep(0.3)
    sub.stop()                                        # away: the broker keeps our session
    pub = _publisher()
    try:
        for i in range(50):
            pub.publish(f"{topic}/r", json.dumps({"sensor": "WL-1", "value": 4.0,
                                                  "ts": f"2026-11-28T11:{i:02d}:00Z"}), qos=1)
        pub.publish(f"{topic}/r", "{}", qos=1).wait_for_publish(5)
        back = MqttSubscriber(city, "mqtt_away", topics=[f"{topic}/#"], client_id=client_id,
                              flush_seconds=0.2, session_expiry=60).start()
        try:
            assert _wait(city, "SELECT count(*) FROM readings", 50) == 50
        finally:
            back.stop()
    finally:
        pub.loop_stop()
    assert city.query_one("SELECT count(DISTINCT ts) FROM readings")[0] == 50
