"""The ``sensorthings`` source: Observations from an OGC SensorThings API (v1.1) server.

Options::

    [sources.hj_sta]
    kind = "sensorthings"
    url = "http://10.1.2.3:8080/FROST-Server/v1.1"
    seconds = 60
    page = 1000                  # $top per request

Each pull asks for the Observations at or after the last phenomenonTime seen, oldest first,
with their Datastream's name (which is the sensor code in Yiwang), follows every
``@iot.nextLink`` (only on the same server), loads them as readings and moves the
watermark in the same transaction. An interval phenomenonTime ("start/end") counts at its
end; a non-numeric result is refused by the readings contract into quarantine.

>>> pull(store, settings, config.sources["hj_sta"], config)   # doctest: +SKIP
LoadStats(rows_in=300, loaded=300, rejected=0)
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator

import duckdb
import pyarrow as pa

from core.ingest import READINGS, LoadStats, load
from core.rollups import refresh_rollups
from core.settings import Settings
from core.store import Store
from pipelines.config import ConfigError, PipelineConfig, SourceConfig
from pipelines.runner import current_run_id

__all__ = ["observations", "pull"]

# MERGE, not INSERT OR REPLACE: cluster mode runs the same SQL on DuckLake
_SET_WATERMARK = """
MERGE INTO pipeline_state AS t USING (SELECT ?::VARCHAR AS source, ?::VARCHAR AS watermark) AS s
    ON t.source = s.source
    WHEN MATCHED THEN UPDATE SET watermark = s.watermark, updated_at = now()::TIMESTAMP
    WHEN NOT MATCHED THEN INSERT VALUES (s.source, s.watermark, now()::TIMESTAMP)"""


TIMEOUT = 30


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:   # noqa: S310 - configured URL
        return json.load(resp)


def observations(base: str, since: str | None, page: int = 1000) -> Iterator[dict]:
    """Every Observation at or after ``since`` (ISO time), following @iot.nextLink."""
    base = base.rstrip("/")
    query = {"$orderby": "phenomenonTime asc", "$top": str(page),
             "$expand": "Datastream($select=name)",
             "$select": "phenomenonTime,result,Datastream"}
    if since:
        query["$filter"] = f"phenomenonTime ge {since}"
    url = f"{base}/Observations?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"
    origin = urllib.parse.urlsplit(base)[:2]
    while url:
        doc = _get(url)
        yield from doc.get("value", [])
        url = doc.get("@iot.nextLink")
        if url and urllib.parse.urlsplit(url)[:2] != origin:
            raise ConnectionError(f"@iot.nextLink leaves the server: {url}")


def _table(items: list[dict]) -> pa.Table:
    cols: dict[str, list] = {"sensor": [], "ts": [], "value": []}
    for o in items:
        t = o.get("phenomenonTime")
        if isinstance(t, str) and "/" in t:
            t = t.split("/", 1)[1]
        result = o.get("result")
        cols["sensor"].append((o.get("Datastream") or {}).get("name"))
        cols["ts"].append(t)
        cols["value"].append(None if result is None else str(result))
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in cols.items()})


def pull(store: Store, settings: Settings, cfg: SourceConfig,
         config: PipelineConfig) -> LoadStats:
    url = cfg.options.get("url")
    if not url:
        raise ConfigError(f"source {cfg.name}: missing option url")
    row = store.query_one("SELECT watermark FROM pipeline_state WHERE source = ?", [cfg.name])
    items = list(observations(url, row[0] if row else None, int(cfg.options.get("page", 1000))))
    if not items:
        return LoadStats()
    table = _table(items)
    times = [t for t in table.column("ts").to_pylist() if t]
    mark = max(times) if times else (row[0] if row else None)

    def move_watermark(cur: duckdb.DuckDBPyConnection) -> None:
        if mark is not None:
            cur.execute(_SET_WATERMARK, [cfg.name, mark])

    stats = load(store, READINGS, table, run_id=current_run_id(), source=cfg.name,
                 in_transaction=move_watermark)
    if stats.loaded:
        refresh_rollups(store)
    return stats
