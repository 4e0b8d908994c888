"""What the demo sensors measure: one deterministic function of (sensor, time) per kind.

A reading is ``signal(...)`` (daily cycles, slow drifts and episodes, all pure functions of
the seed, the sensor id, its district and the time) plus white noise from ``observe``. The
history generator and the live simulator call the same functions, so the live feed carries
on each sensor's pattern: traffic rush hours, noise day/night, PM2.5 morning/evening peaks,
pollution episodes per district, rain events raising water levels, the odd tilted manhole
cover, smoke or gas leak.

>>> import numpy as np
>>> v = signal("traffic_flow", np.array([1, 2]), np.array([7, 7]), np.array([0.0, 3600.0]),
...            seed=1, tz_hours=8)
>>> v.shape
(2, 2)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

__all__ = ["KINDS", "district_key", "local_utc_offset", "observe", "signal"]

_DAY = 86_400.0
_HOUR = 3_600.0


def local_utc_offset(lon: float) -> int:
    """Whole hours east of UTC for a longitude (120.28 → 8, China's one time zone)."""
    return int(round(lon / 15.0))


def district_key(district_code: str) -> int:
    """A stable integer for a district: pollution episodes are shared inside a district."""
    return zlib.crc32(district_code.encode("utf-8"))


# -- hashing: uniform numbers that depend only on their keys -------------------------------
def _mix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _u(seed: int, salt: int, *keys) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = _mix(np.asarray([seed * 1_000_003 + salt]).astype(np.uint64))
        for key in keys:
            h = _mix(h ^ np.asarray(key).astype(np.int64).astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


# -- building blocks -----------------------------------------------------------------------
def _bump(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def _smooth(seed: int, salt: int, ids: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Slow wander in about [-1, 1]: three sines with per-sensor phases."""
    out = np.zeros((len(t), len(ids)))
    for j, (period, amp) in enumerate(((5.3 * _HOUR, 0.4), (31 * _HOUR, 0.35), (3.7 * _DAY, 0.25))):
        phase = 2 * np.pi * _u(seed, salt + j, ids)
        out += amp * np.sin(2 * np.pi * t[:, None] / period + phase[None, :])
    return out


def _episodes(seed: int, salt: int, keys: np.ndarray, local: np.ndarray, *, chance: float,
              hours: tuple[float, float], amp: tuple[float, float], shape: str,
              lags: int = 2) -> np.ndarray:
    """Events per (key, local day): each day a key has ``chance`` of one event that starts at a
    random time, lasts ``hours`` and peaks at ``amp``. Shapes: ``hump`` (sin²), ``step``,
    ``flood`` (fast rise, slow fall over a day or two)."""
    day = np.floor(local / _DAY).astype(np.int64)
    out = np.zeros((len(local), len(keys)))
    for lag in range(lags):
        days, row = np.unique(day - lag, return_inverse=True)
        u = [_u(seed, salt + j, keys[None, :], days[:, None]) for j in range(4)]
        start = (days[:, None] + u[1]) * _DAY
        length = (hours[0] + u[2] * (hours[1] - hours[0])) * _HOUR
        peak = np.where(u[0] < chance, amp[0] + u[3] * (amp[1] - amp[0]), 0.0)
        x = (local[:, None] - start[row]) / length[row]
        if shape == "flood":
            x = np.maximum(x, 0.0)
            out += peak[row] * x * np.exp(1.0 - x)
        else:
            inside = (x >= 0) & (x < 1)
            form = np.sin(np.pi * x) ** 2 if shape == "hump" else 1.0
            out += np.where(inside, peak[row] * form, 0.0)
    return out


# -- one function per kind: (seed, ids, districts, t, local hour, weekend, local s) -> (T, S)
def _traffic_profile(hour: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    workday = 0.06 + 0.9 * _bump(hour, 8.0, 1.1) + 0.85 * _bump(hour, 17.8, 1.3) \
        + 0.5 * _bump(hour, 13.0, 3.0)
    rest = 0.06 + 0.7 * _bump(hour, 14.0, 3.5) + 0.2 * _bump(hour, 10.0, 1.5)
    return np.minimum(np.where(weekend, rest, workday), 1.05)


def _traffic(seed, ids, districts, t, hour, weekend, local):
    capacity = 150 + 450 * _u(seed, 10, ids)
    prof = _traffic_profile(hour, weekend)[:, None]
    return capacity * prof * (1 + 0.08 * _smooth(seed, 11, ids, t))


def _noise(seed, ids, districts, t, hour, weekend, local):
    base = 48 + 8 * _u(seed, 20, ids)
    day = 1 / (1 + np.exp(-(hour - 6.5) * 2)) / (1 + np.exp((hour - 22.0) * 2))
    bursts = _episodes(seed, 22, ids, local, chance=0.02, hours=(1, 4), amp=(10, 20),
                       shape="hump")
    return (base + (10 * day + 5 * _traffic_profile(hour, weekend))[:, None]
            + 1.5 * _smooth(seed, 21, ids, t) + bursts)


def _pm25(seed, ids, districts, t, hour, weekend, local):
    base = 18 + 22 * _u(seed, 30, ids)
    phase = 2 * np.pi * _u(seed, 31, 0)
    weather = 1 + 0.3 * np.sin(2 * np.pi * t / (4.3 * _DAY) + phase) \
        + 0.15 * np.sin(2 * np.pi * t / (1.9 * _DAY) + 2 * phase)
    cycle = 1 + 0.35 * _bump(hour, 8.5, 1.5) + 0.45 * _bump(hour, 20.5, 2.2) \
        - 0.2 * _bump(hour, 15.0, 2.5)
    episode = _episodes(seed, 33, districts, local, chance=0.025, hours=(6, 18), amp=(1.0, 2.5),
                        shape="hump")
    return base * (weather * cycle)[:, None] * (1 + 0.1 * _smooth(seed, 32, ids, t)) * (1 + episode)


def _water_level(seed, ids, districts, t, hour, weekend, local):
    base = 2.2 + 1.0 * _u(seed, 40, ids)
    tide = 0.12 * np.sin(2 * np.pi * t[:, None] / (12.42 * _HOUR)
                         + 2 * np.pi * _u(seed, 41, ids)[None, :])
    sensitivity = 0.6 + 0.8 * _u(seed, 42, ids)
    rain = _episodes(seed, 43, np.zeros(1, np.int64), local, chance=0.15, hours=(4, 7),
                     amp=(0.3, 1.8), shape="flood", lags=4)
    return base + tide + rain * sensitivity + 0.03 * _smooth(seed, 44, ids, t)


def _manhole_tilt(seed, ids, districts, t, hour, weekend, local):
    base = 0.3 + 1.2 * _u(seed, 50, ids)
    knocked = _episodes(seed, 52, ids, local, chance=0.004, hours=(2, 10), amp=(8, 25),
                        shape="step")
    return base + 0.15 * _smooth(seed, 51, ids, t) + knocked


def _smoke(seed, ids, districts, t, hour, weekend, local):
    base = 0.02 + 0.08 * _u(seed, 60, ids)
    fire = _episodes(seed, 62, ids, local, chance=0.0015, hours=(0.3, 1.5), amp=(2.5, 8),
                     shape="hump")
    return base + 0.02 * np.abs(_smooth(seed, 61, ids, t)) + fire


def _gas(seed, ids, districts, t, hour, weekend, local):
    base = 0.2 + 1.0 * _u(seed, 70, ids)
    leak = _episodes(seed, 72, ids, local, chance=0.002, hours=(0.5, 3), amp=(10, 35),
                     shape="hump")
    return base + 0.3 * _smooth(seed, 71, ids, t) + leak


# kind -> (signal, white-noise sd, multiplicative noise?, decimals)
KINDS: dict[str, tuple[Callable, float, bool, int]] = {
    "pm25": (_pm25, 0.06, True, 1),
    "water_level": (_water_level, 0.01, False, 3),
    "noise": (_noise, 1.2, False, 1),
    "traffic_flow": (_traffic, 0.05, True, 0),
    "manhole_tilt": (_manhole_tilt, 0.1, False, 2),
    "smoke": (_smoke, 0.01, False, 3),
    "gas": (_gas, 0.15, False, 2),
}


def signal(kind: str, ids: np.ndarray, districts: np.ndarray, epoch_s: np.ndarray, *,
           seed: int, tz_hours: int) -> np.ndarray:
    """The noiseless value of each sensor (columns) at each time (rows, UTC epoch seconds).

    >>> signal("noise", np.array([1]), np.array([0]), np.array([0.0]), seed=1, tz_hours=8).shape
    (1, 1)
    """
    t = np.asarray(epoch_s, dtype=np.float64)
    local = t + tz_hours * _HOUR
    hour = (local % _DAY) / _HOUR
    weekday = (np.floor(local / _DAY).astype(np.int64) + 3) % 7   # 1970-01-01 was a Thursday
    func = KINDS[kind][0]
    return func(seed, np.asarray(ids, np.int64), np.asarray(districts, np.int64), t, hour,
                weekday >= 5, local)


def observe(kind: str, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add the kind's measurement noise, keep values ≥ 0 and round like the device does.

    >>> observe("traffic_flow", np.array([[120.4]]), np.random.default_rng(0)).shape
    (1, 1)
    """
    _, sd, relative, decimals = KINDS[kind]
    noise = rng.standard_normal(clean.shape) * sd
    value = clean * (1 + noise) if relative else clean + noise
    return np.round(np.maximum(value, 0.0), decimals)
