"""Demo sensors (placed inside communities) and their history of readings.

Readings come in time-ordered Arrow chunks of about a million rows: every sensor every
``demo_reading_minutes`` over ``demo_days``, except where a sensor was offline (a few gaps
of hours to days, and a few sensors that went silent for good before the end).

>>> for table in reading_chunks(sensors, end, settings, rng):   # doctest: +SKIP
...     cur.register("chunk", table)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from core.settings import Settings
from pipelines.demo.geography import Geography, random_points_in
from pipelines.demo.signals import district_key, local_utc_offset, observe, signal

__all__ = ["KIND_MIX", "end_of_history", "place_sensors", "reading_chunks", "reading_steps"]

# kind -> (share of sensors, code prefix)
KIND_MIX = {
    "pm25": (0.15, "AQ"),
    "water_level": (0.10, "WL"),
    "noise": (0.15, "NS"),
    "traffic_flow": (0.20, "TF"),
    "manhole_tilt": (0.20, "MH"),
    "smoke": (0.12, "SM"),
    "gas": (0.08, "GS"),
}
GAP_SHARE = 0.02        # sensors with one outage of 6–72 h in their history
DEAD_SHARE = 0.005      # sensors that went offline for good in the last days
CHUNK_ROWS = 1_000_000


def place_sensors(rng: np.random.Generator, geo: Geography, kinds: pd.DataFrame, n: int,
                  start: datetime) -> pd.DataFrame:
    """``sensors`` rows: kinds mixed by ``KIND_MIX``, each at a uniform random point inside a
    community chosen by population; ``district_key`` is an extra column.

    >>> place_sensors(rng, geo, sensor_kinds_frame(), 300, start)["kind"].nunique()  # doctest: +SKIP
    7
    """
    shares = np.array([KIND_MIX[k][0] for k in kinds["kind"]])
    counts = np.floor(n * shares / shares.sum()).astype(int)
    counts[np.argsort(-(n * shares / shares.sum() - counts))[: n - counts.sum()]] += 1
    kind = rng.permutation(np.repeat(kinds["kind"].to_numpy(), counts))
    com = geo.communities
    weight = com["population"].to_numpy(dtype=float)
    where = rng.choice(len(com), n, p=weight / weight.sum())
    lon, lat = random_points_in(com.geometry.to_numpy(), where, rng)
    ids = np.arange(1, n + 1)
    frame = pd.DataFrame({"id": ids.astype(np.int32), "kind": kind, "lon": lon, "lat": lat,
                          "jurisdiction_code": com["code"].to_numpy()[where]})
    kinds_by = kinds.set_index("kind")
    prefix = frame["kind"].map({k: v[1] for k, v in KIND_MIX.items()})
    frame["code"] = prefix + "-" + frame["id"].map("{:05d}".format)
    number = frame.groupby(["jurisdiction_code", "kind"]).cumcount() + 1
    frame["name"] = (com["name_zh"].to_numpy()[where] + "·"
                     + frame["kind"].map(kinds_by["name_zh"]) + "监测点" + number.astype(str))
    frame["department_code"] = frame["kind"].map(kinds_by["department_code"])
    age_days = rng.uniform(10, 900, n)
    frame["installed_at"] = (pd.Timestamp(start) - pd.to_timedelta(age_days, unit="D")).floor("s")
    frame["district_key"] = [district_key(c) for c in com["district_code"].to_numpy()[where]]
    return frame[["id", "code", "kind", "name", "lon", "lat", "jurisdiction_code",
                  "department_code", "installed_at", "district_key"]]


def reading_steps(settings: Settings) -> int:
    """Readings per sensor in the history."""
    return settings.demo_days * 1440 // settings.demo_reading_minutes


def _outages(rng: np.random.Generator, n_sensors: int, steps: int,
             step_s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sensor index, first missing step, first step back) of every outage."""
    n_gap = int(round(GAP_SHARE * n_sensors))
    n_dead = max(1, int(round(DEAD_SHARE * n_sensors))) if n_sensors >= 50 else 0
    who = rng.choice(n_sensors, n_gap + n_dead, replace=False)
    length = (rng.uniform(6, 72, n_gap + n_dead) * 3600 / step_s).astype(int) + 1
    first = rng.integers(0, np.maximum(1, steps - length))
    dead_first = steps - (rng.uniform(6, 120, n_dead) * 3600 / step_s).astype(int)
    first = np.concatenate([first[:n_gap], np.maximum(dead_first, 1)])
    stop = np.concatenate([first[:n_gap] + length[:n_gap], np.full(n_dead, steps)])
    return who, first, stop


def reading_chunks(sensors: pd.DataFrame, end: datetime, settings: Settings,
                   rng: np.random.Generator) -> Iterator[pa.Table]:
    """Arrow tables (sensor_id, ts, value), ordered by ts, the last reading at ``end``.

    >>> sum(t.num_rows for t in reading_chunks(placed, end, settings, rng))  # doctest: +SKIP
    6901022
    """
    steps = reading_steps(settings)
    step_s = settings.demo_reading_minutes * 60
    end_s = int(pd.Timestamp(end).timestamp())
    times = end_s - (steps - 1 - np.arange(steps, dtype=np.int64)) * step_s
    n = len(sensors)
    ids = sensors["id"].to_numpy(np.int32)
    keys = sensors["district_key"].to_numpy(np.int64)
    by_kind = {k: np.flatnonzero(sensors["kind"].to_numpy() == k)
               for k in sensors["kind"].unique()}
    who, first, stop = _outages(rng, n, steps, step_s)
    tz = local_utc_offset(settings.demo_center_lon)
    per_chunk = max(1, CHUNK_ROWS // max(n, 1))
    for lo in range(0, steps, per_chunk):
        hi = min(steps, lo + per_chunk)
        t = times[lo:hi]
        values = np.empty((hi - lo, n))
        for kind, cols in sorted(by_kind.items()):
            clean = signal(kind, ids[cols], keys[cols], t, seed=settings.demo_seed, tz_hours=tz)
            values[:, cols] = observe(kind, clean, rng)
        keep = np.ones((hi - lo, n), dtype=bool)
        for s, a, b in zip(who, first, stop, strict=True):
            if a < hi and b > lo:
                keep[max(a, lo) - lo:min(b, hi) - lo, s] = False
        keep = keep.ravel()
        stamps = (t.astype("datetime64[s]").astype("datetime64[us]"))
        yield pa.table({
            "sensor_id": pa.array(np.tile(ids, hi - lo)[keep]),
            "ts": pa.array(np.repeat(stamps, n)[keep]),
            "value": pa.array(values.ravel()[keep]),
        })


def end_of_history(now: datetime, settings: Settings) -> datetime:
    """The last reading time: ``now`` floored to the reading interval (naive UTC)."""
    step = timedelta(minutes=settings.demo_reading_minutes)
    epoch = datetime(1970, 1, 1)
    return epoch + ((now.replace(tzinfo=None) - epoch) // step) * step
