"""The live feed that keeps the demo city alive.

Every ``SIMULATOR_SECONDS`` the scheduler calls ``tick``: one reading per online sensor at the
current time, from the same signal functions as the demo history (so traffic still peaks at
rush hour and a pollution episode in progress goes on), through the one load path of every
pipeline (``core.ingest.load``: one transaction, a recorded run, duplicates skipped), then
brings the rollups forward incrementally. A sensor is
offline when its last reading lags the newest reading of the fleet by more than
``OFFLINE_AFTER`` (the demo's dead sensors stay dead; after a server pause every sensor is
equally behind, so all carry on). Only a city built by the demo generator is fed: real
sensors never get simulated readings.

>>> tick(store, settings)   # doctest: +SKIP
2388
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from core.ingest import READINGS, load
from core.rollups import refresh_rollups
from core.settings import Settings
from core.store import Store
from pipelines.demo import is_demo_city
from pipelines.demo.signals import KINDS, district_key, local_utc_offset, observe, signal
from pipelines.runner import current_run_id, recorded

__all__ = ["OFFLINE_AFTER", "SIMULATOR_SECONDS", "online_sensors", "tick"]

SIMULATOR_SECONDS = 10.0
OFFLINE_AFTER = timedelta(hours=1)


def online_sensors(store: Store, now: datetime) -> pd.DataFrame:
    """id, kind, district code of every sensor that should report at ``now``.

    >>> online_sensors(store, datetime(2026, 11, 28, 10, 0, 10)).columns.tolist()  # doctest: +SKIP
    ['id', 'kind', 'district']
    """
    # the readings are appended in time order, so the ts filter skips almost every row group
    return store.query_df(
        """
        WITH newest AS (SELECT max(ts) AS ts FROM readings),
        recent AS (
            SELECT sensor_id, max(ts) AS last_ts FROM readings
            WHERE ts >= (SELECT ts FROM newest) - ?::INTERVAL GROUP BY sensor_id
        )
        SELECT s.id, s.kind, split_part(j.path, '/', 3) AS district
        FROM sensors s
        JOIN jurisdictions j ON j.code = s.jurisdiction_code
        LEFT JOIN recent r ON r.sensor_id = s.id
        WHERE s.installed_at <= ?
          AND (r.sensor_id IS NOT NULL
               OR (SELECT ts FROM newest) IS NULL
               OR s.installed_at >= (SELECT ts FROM newest) - ?::INTERVAL)
          AND coalesce(r.last_ts < ?, true)
        ORDER BY s.id
        """,
        [OFFLINE_AFTER, now, OFFLINE_AFTER, now],
    )


@recorded("simulator")
def tick(store: Store, settings: Settings, now: datetime | None = None) -> int:
    """Append one reading per online sensor at ``now`` (default: the current second, UTC).

    Returns how many readings were written (0 when the store holds no demo city).

    >>> tick(store, settings, now=datetime(2026, 11, 28, 10, 0, 10))   # doctest: +SKIP
    2388
    """
    if not is_demo_city(store):
        return 0
    now = (now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)
    sensors = online_sensors(store, now)
    sensors = sensors[sensors["kind"].isin(list(KINDS))]
    if sensors.empty:
        return 0
    ids = sensors["id"].to_numpy(np.int64)
    keys = np.array([district_key(d) for d in sensors["district"]], dtype=np.int64)
    epoch = np.array([pd.Timestamp(now).timestamp()])
    tz = local_utc_offset(settings.demo_center_lon)
    rng = np.random.default_rng([settings.demo_seed, int(epoch[0])])
    values = np.empty(len(sensors))
    kinds = sensors["kind"].to_numpy()
    for kind in sorted(set(kinds)):
        cols = np.flatnonzero(kinds == kind)
        clean = signal(kind, ids[cols], keys[cols], epoch, seed=settings.demo_seed, tz_hours=tz)
        values[cols] = observe(kind, clean, rng)[0]
    table = pa.table({
        "sensor_id": pa.array(ids.astype(np.int32)),
        "ts": pa.array(np.full(len(ids), np.datetime64(now, "us"))),
        "value": pa.array(values),
    })
    stats = load(store, READINGS, table, run_id=current_run_id(), source="simulator")
    refresh_rollups(store)
    return stats.loaded
