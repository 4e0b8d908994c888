"""Benchmark: MQTT readings end to end, beside mosquitto_sub, and a QoS 1 run with a broker
restart in the middle.

1. Throughput on the local Mosquitto (127.0.0.1:1883): ``mosquitto_pub -l`` publishes
   batched JSON payloads (100 readings each; ``YIWANG_BENCH_MQTT_READINGS``, default 200 k)
   at QoS 1 while ``mosquitto_sub`` and our subscriber read the same topic. Reports readings/s
   of each (ours counts rows committed in DuckDB, rollups staged; target ≥ 20 k/s).
2. Nothing lost: a PRIVATE mosquitto (free port, persistence in a temp dir, so other users of
   the shared broker see no outage) carries ``YIWANG_BENCH_QOS_READINGS`` (default 1 M)
   readings from a paho QoS 1 publisher process; the broker is stopped (SIGTERM: it saves its
   queues) and started again once a third has been stored. Reports readings lost (must be 0) and the run's seconds.
Needs mosquitto, mosquitto_pub and mosquitto_sub (Debian: mosquitto, mosquitto-clients).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.store import Store  # noqa: E402
from pipelines.sources.mqtt import MqttSubscriber  # noqa: E402

SENSORS = 2400
BATCH = 100


def _store(path: Path) -> Store:
    store = Store.open(path)
    with store.transaction() as cur:
        cur.execute("INSERT INTO sensor_kinds VALUES ('pm25', 'PM2.5', 'PM2.5', 'µg/m³',"
                    " 'sthj', 75, 115)")
        cur.execute(f"INSERT INTO sensors SELECT i, 'AQ-' || i, 'pm25', 's' || i, 120, 31,"
                    f" 'X', 'sthj', TIMESTAMP '2026-01-01' FROM range(1, {SENSORS + 1}) t(i)")
    return store


def _payloads(messages: int) -> list[str]:
    base = 1_795_000_000
    out = []
    for m in range(messages):
        rows = []
        for i in range(BATCH):
            k = m * BATCH + i
            rows.append({"sensor_id": 1 + k % SENSORS, "value": round(k % 150 * 1.01, 2),
                         "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                             time.gmtime(base + k // SENSORS))})
        out.append(json.dumps({"readings": rows}, separators=(",", ":")))
    return out


def _wait_rows(store: Store, want: int, seconds: float) -> tuple[int, float]:
    deadline = time.monotonic() + seconds
    got = 0
    while time.monotonic() < deadline:
        got = store.query_one("SELECT count(*) FROM readings")[0]
        if got >= want:
            break
        time.sleep(0.05)
    return got, time.perf_counter()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throughput(tmp: Path, readings: int) -> list[dict]:
    messages = readings // BATCH
    topic = f"yiwang-bench/{uuid.uuid4().hex}"
    lines = tmp / "payloads.txt"
    lines.write_text("\n".join(_payloads(messages)) + "\n")
    store = _store(tmp / "mqtt.duckdb")
    sub = MqttSubscriber(store, "bench_mqtt", topics=[topic], batch=200,
                         client_id=f"bench-{uuid.uuid4().hex[:8]}", session_expiry=60).start()
    ref = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-q", "1", "-t", topic,
                            "-C", str(messages)], stdout=subprocess.DEVNULL)
    try:
        if not sub.connected.wait(10):
            raise RuntimeError("Mosquitto on 127.0.0.1:1883 not reachable")
        time.sleep(1.0)                          # both subscriptions in place
        started = time.perf_counter()
        with lines.open("rb") as fh:
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", topic, "-l"],
                           stdin=fh, check=True, timeout=600)
        published = time.perf_counter()
        ref.wait(timeout=600)
        ref_done = time.perf_counter()
        got, ours_done = _wait_rows(store, messages * BATCH, 600)
    finally:
        sub.stop()
        if ref.poll() is None:
            ref.kill()
        store.close()
    ours = got / (ours_done - started)
    theirs = messages * BATCH / (ref_done - started)
    note = f"{messages:,} messages × {BATCH} readings, QoS 1"
    return [
        {"name": "mosquitto_sub readings/s", "value": theirs, "unit": "readings/s",
         "note": note + "; receive only"},
        {"name": "subscriber -> DuckDB readings/s", "value": ours, "unit": "readings/s",
         "note": f"{got:,} committed (parse, validate, load, rollup deltas); target >= 20 k/s"},
        {"name": "ours / mosquitto_sub", "value": ours / theirs, "unit": "ratio", "note": ""},
        {"name": "publish (mosquitto_pub -l)", "value": messages * BATCH / (published - started),
         "unit": "readings/s", "note": "the stream's own pace"},
    ]


PUBLISHER = textwrap.dedent("""
    import sys, time
    import paho.mqtt.client as mqtt
    port, topic, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub",
                    clean_session=False)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(0.2, 2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, line.rstrip("\\n"), qos=1) for line in open(path)]
    deadline = time.time() + 900
    while time.time() < deadline and not all(i.is_published() for i in infos):
        time.sleep(0.1)
    print(sum(i.is_published() for i in infos), flush=True)
    c.disconnect(); c.loop_stop()
""")


def _broker(conf: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def restart_run(tmp: Path, readings: int) -> list[dict]:
    messages = readings // BATCH
    port = _free_port()
    data = tmp / "broker"
    data.mkdir()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {data}/\nmax_queued_messages 0\n"
                    f"max_inflight_messages 0\n")
    lines = tmp / "qos.txt"
    lines.write_text("\n".join(_payloads(messages)) + "\n")
    store = _store(tmp / "qos.duckdb")
    broker = _broker(conf)
    topic = "yiwang-bench/qos"
    sub = MqttSubscriber(store, "bench_qos", port=port, topics=[topic], batch=200,
                         client_id="bench-qos-sub").start()
    publisher = None
    try:
        if not sub.connected.wait(10):
            raise RuntimeError("private mosquitto did not start")
        started = time.perf_counter()
        publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), topic,
                                      str(lines)], stdout=subprocess.PIPE, text=True)
        _wait_rows(store, readings // 3, 600)
        at_restart = store.query_one("SELECT count(*) FROM readings")[0]
        broker.send_signal(signal.SIGTERM)           # saves its persistence file
        broker.wait(timeout=30)
        time.sleep(1.0)
        broker = _broker(conf)
        out, _ = publisher.communicate(timeout=900)
        got, done = _wait_rows(store, readings, 300)
        time.sleep(1.0)
        got = store.query_one("SELECT count(*) FROM readings")[0]
    finally:
        sub.stop()
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=30)
        store.close()
    return [
        {"name": "QoS 1 with broker restart: lost", "value": readings - got, "unit": "readings",
         "note": f"{readings:,} sent, {got:,} stored; restart after {at_restart:,}"},
        {"name": "QoS 1 with broker restart: rate", "value": got / (done - started),
         "unit": "readings/s", "note": f"publisher confirmed {out.strip() or '?'} messages"},
    ]


def run() -> list[dict]:
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} missing: apt-get install mosquitto mosquitto-clients")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-mqtt-") as tmp:
        tmp = Path(tmp)
        rows += throughput(tmp, int(os.environ.get("YIWANG_BENCH_MQTT_READINGS", 200_000)))
        rows += restart_run(tmp, int(os.environ.get("YIWANG_BENCH_QOS_READINGS", 1_000_000)))
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<36} {row['value']:>16,.3f} {row['unit']:<10} {row['note']}")
