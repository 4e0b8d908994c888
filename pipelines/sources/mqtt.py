"""The ``mqtt`` source: a paho-mqtt subscriber loading JSON readings in batches.

Options in ``pipelines.toml``::

    [sources.mqtt_city]
    kind = "mqtt"
    seconds = 5                 # the scheduled job flushes what is buffered, reconnects
    host = "127.0.0.1"
    port = 1883
    topics = ["city/+/readings", "city/+/readings/#"]
    sensor_from_topic = 1       # topic segment holding the sensor code when a payload lacks one
    batch = 5000                # flush when this many messages wait

A payload is one reading ``{"sensor": "WL-00012", "ts": "2026-11-28T10:00:00Z",
"value": 4.2}`` (or ``sensor_id``), a list of them, or ``{"readings": [...]}``. QoS 1 on a
persistent MQTT 5 session (fixed client id, clean start off, a week's session expiry): the broker keeps what arrives
while we are away. Messages are acknowledged only AFTER the batch that holds them has been
committed (paho ``manual_ack``), so a crash before the commit means the broker delivers them
again; re-delivered readings add nothing (upsert by sensor and time). A payload that is not
JSON or has no readings goes to quarantine as it came. paho reconnects with back-off
(1 s doubling to 60 s).

>>> sub = MqttSubscriber(store, "mqtt_city", host="127.0.0.1", topics=["city/#"])  # doctest: +SKIP
>>> sub.start(); ...; sub.flush(); sub.stop()                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
import pyarrow as pa
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.ingest import READINGS, LoadStats, load, quarantine_raw
from core.rollups import refresh_rollups
from core.settings import Settings
from core.store import Store
from pipelines.config import PipelineConfig, SourceConfig
from pipelines.runner import current_run_id, execute

__all__ = ["MqttSubscriber", "parse_payloads", "pull", "stop_all"]

log = logging.getLogger(__name__)
_SUBSCRIBERS: dict[tuple[int, str], MqttSubscriber] = {}
_GUARD = threading.Lock()


def parse_payloads(messages: Sequence[tuple[str, bytes]], sensor_segment: int | None = None,
                   ) -> tuple[pa.Table, list[tuple[str, str]]]:
    """(readings as a string table, [(raw payload, reason)] for payloads that are not
    readings). Every value stays text: the contract types it (and refuses what is bad)."""
    cols: dict[str, list[Any]] = {"sensor": [], "sensor_id": [], "ts": [], "value": []}
    bad: list[tuple[str, str]] = []
    for topic, payload in messages:
        text = payload.decode("utf-8", errors="replace")
        try:
            doc = json.loads(text)
        except ValueError as exc:
            bad.append((text[:10_000], f"payload: not JSON ({exc.msg})"))
            continue
        items = doc.get("readings") if isinstance(doc, dict) and "readings" in doc else doc
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list) or not items or not all(isinstance(i, dict)
                                                              for i in items):
            bad.append((text[:10_000], "payload: expected a reading, a list of readings or"
                                       " {\"readings\": [...]}"))
            continue
        topic_sensor = None
        if sensor_segment is not None:
            parts = topic.split("/")
            topic_sensor = parts[sensor_segment] if len(parts) > sensor_segment else None
        for item in items:
            sensor = item.get("sensor", item.get("sensor_code"))
            if sensor is None and item.get("sensor_id") is None:
                sensor = topic_sensor
            for name, value in (("sensor", sensor), ("sensor_id", item.get("sensor_id")),
                                ("ts", item.get("ts", item.get("time"))),
                                ("value", item.get("value"))):
                cols[name].append(None if value is None else str(value))
    table = pa.table({k: pa.array(v, type=pa.string()) for k, v in cols.items()})
    return table, bad


class MqttSubscriber:
    """Subscribes, buffers, and loads batches through ``core.ingest.load``."""

    def __init__(self, store: Store, name: str, *, host: str = "127.0.0.1", port: int = 1883,
                 topics: Sequence[str] = ("city/#",), sensor_from_topic: int | None = None,
                 batch: int = 5000, flush_seconds: float = 0.5, client_id: str | None = None,
                 session_expiry: int = 7 * 24 * 3600) -> None:
        self.store, self.name = store, name
        self.host, self.port, self.topics = host, port, list(topics)
        self.sensor_segment = sensor_from_topic
        self.batch, self.flush_seconds = batch, flush_seconds
        self.session_expiry = session_expiry
        self._buffer: list[tuple[int, str, bytes]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.connected = threading.Event()
        self.received = 0
        # MQTT 5: the broker keeps at most Receive Maximum unacknowledged messages in flight
        # to us (MQTT 3.1.1 gets mosquitto's default of 20, far too few for acks per batch)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"yiwang-{name}",
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=60)
        self.client.max_inflight_messages_set(65535)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._flusher: threading.Thread | None = None

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt %s: connect refused: %s", self.name, reason_code)
            return
        client.subscribe([(t, 1) for t in self.topics])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("mqtt %s: disconnected (%s); reconnecting", self.name, reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._buffer.append((msg.mid if msg.qos else 0, msg.topic, msg.payload))
            self.received += 1
            full = len(self._buffer) >= self.batch
        if full:
            self._wake.set()

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> MqttSubscriber:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry   # the broker keeps our queue
        props.ReceiveMaximum = 65535
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"mqtt-{self.name}",
                                         daemon=True)
        self._flusher.start()
        return self

    def stop(self) -> None:
        """Flush what is buffered, then disconnect (the session stays on the broker)."""
        self._stopping.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout=30)
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()

    def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # kept in the buffer (unacknowledged); retried next round
                log.exception("mqtt %s: flush failed; will retry", self.name)
                time.sleep(1)

    def flush(self, *, record: bool = True) -> LoadStats:
        """Load everything buffered (as one recorded run unless ``record`` is off, i.e. the
        caller's run); acknowledge the messages after the commit."""
        with self._flush_lock:
            with self._lock:
                taken, self._buffer = self._buffer, []
            if not taken:
                return LoadStats()
            try:
                stats = (execute(self.store, self.name, lambda: self._load(taken)) if record
                         else self._load(taken))
            except BaseException:
                with self._lock:
                    self._buffer[:0] = taken
                raise
            for mid, _, _ in taken:
                if mid:
                    self.client.ack(mid, 1)
            return stats

    def _load(self, taken: list[tuple[int, str, bytes]]) -> LoadStats:
        table, bad = parse_payloads([(t, p) for _, t, p in taken], self.sensor_segment)
        run_id = current_run_id()
        rejected = quarantine_raw(self.store, run_id=run_id, source=self.name,
                                  contract="readings", items=bad)
        stats = load(self.store, READINGS, table, run_id=run_id, source=self.name)
        if stats.loaded:
            refresh_rollups(self.store)
        return LoadStats(stats.rows_in + rejected, stats.loaded, stats.rejected + rejected)


def subscriber_for(store: Store, cfg: SourceConfig) -> MqttSubscriber:
    """The running subscriber of a source in this process (started on first use)."""
    key = (id(store), cfg.name)
    with _GUARD:
        sub = _SUBSCRIBERS.get(key)
        if sub is None:
            o = cfg.options
            sub = MqttSubscriber(store, cfg.name, host=o.get("host", "127.0.0.1"),
                                 port=int(o.get("port", 1883)),
                                 topics=o.get("topics", ["city/#"]),
                                 sensor_from_topic=o.get("sensor_from_topic"),
                                 batch=int(o.get("batch", 5000)),
                                 client_id=o.get("client_id")).start()
            _SUBSCRIBERS[key] = sub
    return sub


def pull(store: Store, settings: Settings, cfg: SourceConfig,
         config: PipelineConfig) -> LoadStats:
    """Scheduled job: make sure the subscriber runs; report what it loaded since last time.

    The subscriber flushes on its own (every half second or full batch), each flush a run
    of its own; this job's run carries only what it flushes itself."""
    sub = subscriber_for(store, cfg)
    if not sub.connected.wait(timeout=5):
        raise ConnectionError(f"MQTT broker {sub.host}:{sub.port} not reachable")
    return sub.flush(record=False)


def stop_all() -> None:
    """Stop every subscriber of this process (the scheduler calls it at shutdown)."""
    with _GUARD:
        subs = list(_SUBSCRIBERS.values())
        _SUBSCRIBERS.clear()
    for sub in subs:
        sub.stop()
