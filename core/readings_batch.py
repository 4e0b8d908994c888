"""The fast path of ``core.ingest.load`` for readings: a batch that is already typed
(integer sensor ids, timestamps, floats) and passes every check is recognised with Arrow
compute, without the general path's SQL typing and reason building.

``clean_readings`` says whether a batch qualifies: no nulls, finite values, known sensors,
no (sensor_id, ts) twice. It also says whether the batch is in time order (ts, then
sensor), as feeds deliver it: an ordered batch proves its keys unique in one vectorised
pass, and its rollup deltas can be aggregated in Arrow (``core.rollups.stage_ordered``).
A batch that does not qualify returns None and the general path refuses its bad rows one
by one, into quarantine.

>>> batch = pa.table({"sensor_id": pa.array([1, 2], pa.int32()),
...                   "ts": pa.array([0, 0], pa.timestamp("us")), "value": [1.0, 2.0]})
>>> clean_readings(store, batch)                     # doctest: +SKIP
CleanReadings(table=pyarrow.Table ..., ordered=True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.store import Store

__all__ = ["CleanReadings", "clean_readings", "has_duplicate_keys", "in_time_order"]


@dataclass(frozen=True)
class CleanReadings:
    """A batch that passed every check: columns sensor_id, ts (µs), value; ``ordered`` when
    its rows come in (ts, sensor_id) order."""

    table: pa.Table
    ordered: bool


def in_time_order(sensor: np.ndarray, ts: np.ndarray) -> bool:
    """Whether keys strictly increase by (ts, sensor): then no key occurs twice.

    >>> in_time_order(np.array([1, 2, 1]), np.array([10, 10, 20]))
    True
    >>> in_time_order(np.array([2, 1]), np.array([10, 10]))
    False
    """
    if len(ts) < 2:
        return True
    later, same = ts[1:] > ts[:-1], ts[1:] == ts[:-1]
    return bool(np.all(later | (same & (sensor[1:] > sensor[:-1]))))


def has_duplicate_keys(sensor: np.ndarray, ts: np.ndarray) -> bool:
    """Whether some (sensor, ts) occurs twice, by pandas' exact hash-based check.

    >>> has_duplicate_keys(np.array([2, 1, 2]), np.array([10, 10, 10]))
    True
    >>> has_duplicate_keys(np.array([2, 1, 2]), np.array([10, 10, 20]))
    False
    """
    import pandas as pd  # its hash-based duplicated() is the fastest exact check here

    return bool(pd.DataFrame({"s": sensor, "t": ts}).duplicated().any())


def clean_readings(store: Store, table: pa.Table) -> CleanReadings | None:
    """The batch, typed for ``readings``, when it passes every check; None otherwise."""
    schema = table.schema
    if not (set(table.column_names) == {"sensor_id", "ts", "value"}
            and pa.types.is_integer(schema.field("sensor_id").type)
            and pa.types.is_timestamp(schema.field("ts").type)
            and schema.field("ts").type.tz in (None, "UTC", "+00:00")
            and pa.types.is_floating(schema.field("value").type)):
        return None
    if any(table.column(c).null_count for c in ("sensor_id", "ts", "value")):
        return None
    if not pc.all(pc.is_finite(table.column("value"))).as_py():
        return None
    known = pa.array([r[0] for r in store.query("SELECT id FROM sensors")],
                     type=schema.field("sensor_id").type)
    if not pc.all(pc.is_in(table.column("sensor_id"), value_set=known)).as_py():
        return None
    if schema.field("ts").type != pa.timestamp("us"):
        table = table.set_column(table.column_names.index("ts"), "ts",
                                 table.column("ts").cast(pa.timestamp("us")))
    table = table.select(["sensor_id", "ts", "value"])
    sensor = table.column("sensor_id").to_numpy()
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    ordered = in_time_order(sensor, ts)
    if not ordered and has_duplicate_keys(sensor, ts):
        return None
    return CleanReadings(table, ordered)
