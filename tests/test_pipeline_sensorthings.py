"""The SensorThings source against a stand-in OGC SensorThings API v1.1 server on
127.0.0.1: recorded Observations served in pages linked by @iot.nextLink, filtered by
phenomenonTime, pulled incrementally."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_pipeline_support import build_sensor_city, settings_for

from core.store import Store
from pipelines.scheduler import all_jobs, run_job

# Observations as a FROST server records them (trimmed to the fields the source selects)
RECORDED = [
    {"@iot.id": i + 1, "@iot.selfLink": f"/v1.1/Observations({i + 1})",
     "phenomenonTime": t, "resultTime": t.split("/")[-1], "result": v,
     "Datastream": {"@iot.id": ds, "name": name}}
    for i, (t, v, ds, name) in enumerate([
        ("2026-11-28T10:00:00Z", 4.1, 1, "WL-1"),
        ("2026-11-28T10:00:00Z", 55.0, 3, "AQ-3"),
        ("2026-11-28T10:05:00Z", 4.2, 1, "WL-1"),
        ("2026-11-28T10:05:00Z", "n/a", 3, "AQ-3"),             # refused: not a number
        ("2026-11-28T10:09:00Z/2026-11-28T10:10:00Z", 4.3, 1, "WL-1"),   # an interval
        ("2026-11-28T10:10:00Z", 60.5, 3, "AQ-3"),
        ("2026-11-28T10:10:00Z", 3.9, 2, "WL-2"),
    ])]


def _end(t: str) -> str:
    return t.split("/")[-1]


class StandIn(BaseHTTPRequestHandler):
    """GET /v1.1/Observations with $filter=phenomenonTime ge T, $top, $skip, @iot.nextLink."""

    observations: list[dict] = RECORDED
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urllib.parse.urlsplit(self.path)
        StandIn.requests.append(self.path)
        if url.path != "/v1.1/Observations":
            self.send_error(404)
            return
        q = dict(urllib.parse.parse_qsl(url.query))
        rows = sorted(self.observations, key=lambda o: _end(o["phenomenonTime"]))
        if "$filter" in q:
            since = q["$filter"].removeprefix("phenomenonTime ge ")
            rows = [o for o in rows if _end(o["phenomenonTime"]) >= since]
        top, skip = int(q.get("$top", 100)), int(q.get("$skip", 0))
        page = {"value": rows[skip:skip + top]}
        if skip + top < len(rows):
            q["$skip"] = str(skip + top)
            host = f"http://127.0.0.1:{self.server.server_address[1]}"
            page["@iot.nextLink"] = f"{host}{url.path}?{urllib.parse.urlencode(q)}"
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    StandIn.observations = list(RECORDED)
    StandIn.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1.1"
    httpd.shutdown()
    httpd.server_close()


def test_pages_are_followed_and_pulls_are_incremental(server: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    (tmp_path / "pipelines.toml").write_text(
        f'[sources.hj_sta]\nkind = "sensorthings"\nurl = "{server}"\nseconds = 60\npage = 3\n')
    store = build_sensor_city(Store.open(settings.database_path))
    job = {j.id: j for j in all_jobs(settings)}["hj_sta"]
    try:
        first = run_job(store, settings, job)
        assert (first.rows_in, first.loaded, first.rejected) == (7, 6, 1)
        assert len(StandIn.requests) == 3                  # 3 pages of 3 via @iot.nextLink
        assert store.query("SELECT sensor_id, ts::VARCHAR, value FROM readings"
                           " WHERE sensor_id = 1 ORDER BY ts") == [
            (1, "2026-11-28 10:00:00", 4.1), (1, "2026-11-28 10:05:00", 4.2),
            (1, "2026-11-28 10:10:00", 4.3)]
        assert store.query("SELECT reason FROM quarantine") == [("value: not a valid double",)]
        assert store.query_one("SELECT watermark FROM pipeline_state")[0] == \
            "2026-11-28T10:10:00Z"
        # the server records two more; the next pull asks only from the watermark on
        StandIn.observations += [
            {"phenomenonTime": "2026-11-28T10:15:00Z", "result": 4.6,
             "Datastream": {"name": "WL-1"}},
            {"phenomenonTime": "2026-11-28T10:15:00Z", "result": 62,
             "Datastream": {"name": "AQ-3"}}]
        StandIn.requests = []
        second = run_job(store, settings, job)
        assert "phenomenonTime%20ge%202026-11-28T10%3A10%3A00Z" in StandIn.requests[0]
        assert (second.rows_in, second.loaded) == (5, 2)    # the boundary 10:10 ones skip
        assert store.query_one("SELECT count(*) FROM readings")[0] == 8
        assert store.query_one("SELECT value FROM sensor_latest WHERE sensor_id = 1")[0] == 4.6
    finally:
        store.close()


def test_a_failing_server_is_a_failed_run(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    (tmp_path / "pipelines.toml").write_text(
        '[sources.dead]\nkind = "sensorthings"\nurl = "http://127.0.0.1:9/v1.1"\n')
    store = build_sensor_city(Store.open(settings.database_path))
    job = {j.id: j for j in all_jobs(settings)}["dead"]
    try:
        with pytest.raises(OSError):
            run_job(store, settings, job)
        store.query("INSERT INTO pipeline_sources VALUES ('dead', 'sensorthings', 60, '')")
        assert store.query("SELECT status FROM ingest_runs") == [("failed",)]
        assert store.query("SELECT stale, last_status FROM source_freshness") == [
            (True, "failed")]
    finally:
        store.close()
