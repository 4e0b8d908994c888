"""A month of incidents (工单) with their full event histories, vectorised.

Every incident follows one timeline, cut at ``end`` (now): report → [dispatch to a wrong
department → return] → dispatch → claim → start → [supervise when overdue] → [resolve →
verification fails] → resolve → verify → close → [rate] → [reopen after a bad rating]. So the
oldest incidents are mostly closed and the youngest sit at every open stage.

The incident columns agree with the events: ``reported_at`` is the first ('report') event;
``claimed_at`` the last 'claim'; ``resolved_at`` the last 'resolve' while the status is
resolved, verified or closed (else NULL); ``closed_at`` the 'close' while closed; ``rating``
the 'rate' event's rating (cleared by a reopening); ``claim_due``/``resolve_due`` are
``reported_at`` plus the category's claim/resolve hours; ``department_code`` is the
department of the last dispatch (the routed one before the first dispatch). Tracking codes
are ``YW`` + local date + a 5-digit number of the day (``YW2026112800042``). ``version`` is
the number of events (``core.incidents`` numbers the next event ``version + 1``);
``supervised_at`` is the last 'supervise' of an incident still open. Co-tasks, extensions
and notifications start empty; the SLA job (``core.incidents.escalate_overdue``) marks and
escalates the open incidents that are overdue at its first run.

>>> incidents, events = make_incidents(rng, geo, categories, departments, end, settings)  # doctest: +SKIP
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from core.incidents import PRIORITIES, SOURCES, Status
from core.settings import Settings
from pipelines.demo.catalog import government_department
from pipelines.demo.geography import Geography, random_points_in
from pipelines.demo.signals import local_utc_offset

__all__ = ["make_incidents"]

_HOURLY = np.array([0.2, 0.12, 0.08, 0.06, 0.06, 0.1, 0.3, 0.7, 1.2, 1.5, 1.5, 1.3, 1.0, 1.2,
                    1.4, 1.4, 1.3, 1.2, 1.0, 0.9, 0.8, 0.6, 0.45, 0.3])
# share of each source (order of core.incidents.SOURCES); sensor alerts only where sensors watch
_SOURCE_SHARE = np.array([0.05, 0.42, 0.22, 0.22, 0.06, 0.03])
_SENSED = {"road_waterlogging", "manhole_cover", "air_pollution", "noise_nuisance", "gas_leak",
           "fire_hazard"}
_SOURCE_ZH = {"sensor_alert": "传感器告警", "hotline": "12345热线", "citizen_app": "市民通过App",
              "grid_patrol": "网格员巡查", "department": "部门", "open311": "Open311接口"}
_RATINGS = np.array([0.04, 0.04, 0.10, 0.25, 0.57])
_H = 3600.0


def make_incidents(rng: np.random.Generator, geo: Geography, categories: pd.DataFrame,
                   departments: pd.DataFrame, end: datetime, settings: Settings
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(incidents, incident_events) frames with the table's columns, ``end`` naive UTC.

    >>> rows, events = make_incidents(rng, geo, categories_frame(), departments,
    ...                               datetime(2026, 11, 28), settings)    # doctest: +SKIP
    >>> rows["status"].value_counts().idxmax()                             # doctest: +SKIP
    'closed'
    """
    n = settings.demo_incidents
    end_s = int(pd.Timestamp(end).timestamp())
    tz_s = local_utc_offset(settings.demo_center_lon) * 3600
    reported = _report_times(rng, n, end_s, settings.demo_days, tz_s)
    cat = rng.choice(len(categories), n, p=categories["weight"] / categories["weight"].sum())
    com = geo.communities
    pop = com["population"].to_numpy(float)
    where = rng.choice(len(com), n, p=pop / pop.sum())
    lon, lat = random_points_in(com.geometry.to_numpy(), where, rng)
    district = com["district_code"].to_numpy()[where]
    first_district = min(com["district_code"])
    frame = pd.DataFrame({
        "id": np.arange(1, n + 1, dtype=np.int64),
        "category": categories["code"].to_numpy()[cat],
        "priority": _priorities(rng, categories["default_priority"].to_numpy()[cat]),
        "source": _sources(rng, categories["code"].to_numpy()[cat]),
        "lon": lon, "lat": lat,
        "jurisdiction_code": com["code"].to_numpy()[where],
        "department_code": np.where(
            categories["district_only"].to_numpy()[cat],
            [government_department(d) for d in district],
            categories["department_code"].to_numpy()[cat]),
        "reported_s": reported,
        "claim_h": categories["claim_hours"].to_numpy()[cat],
        "resolve_h": categories["resolve_hours"].to_numpy()[cat],
        "commander": np.where(district == first_district, "commander_d1", "commander"),
        "community_zh": com["name_zh"].to_numpy()[where],
        "category_zh": categories["name_zh"].to_numpy()[cat],
    })
    frame["grid"] = np.where(frame["jurisdiction_code"] == min(com["code"]), "grid_1",
                             "grid_patrol")
    slots = _timeline(rng, frame, departments, end_s)
    events = _events(frame, slots, departments, end_s)
    return _incident_rows(rng, frame, events, tz_s), events


def _report_times(rng: np.random.Generator, n: int, end_s: int, days: int, tz_s: int
                  ) -> np.ndarray:
    first_local_day = (end_s - days * 86400 + tz_s) // 86400
    found = np.empty(0, dtype=np.int64)
    while len(found) < n:
        m = int(1.3 * (n - len(found))) + 16
        day = first_local_day + rng.integers(0, days + 1, m)
        hour = rng.choice(24, m, p=_HOURLY / _HOURLY.sum())
        local = day * 86400 + hour * 3600 + rng.integers(0, 3600, m)
        utc = local - tz_s
        found = np.concatenate([found, utc[(utc > end_s - days * 86400) & (utc < end_s - 60)]])
    return np.sort(found[:n])


def _priorities(rng: np.random.Generator, default: np.ndarray) -> np.ndarray:
    level = np.array([PRIORITIES.index(p) for p in default], dtype=np.int64)
    escalated = rng.random(len(level)) < 0.06
    return np.array(PRIORITIES)[np.where(escalated, np.maximum(level - 1, 0), level)]


def _sources(rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    sensed = np.isin(category, list(_SENSED))
    share = np.where(sensed[:, None], _SOURCE_SHARE * [5, 1, 1, 1, 1, 1],
                     _SOURCE_SHARE * [0, 1, 1, 1, 1, 1])
    cdf = np.cumsum(share / share.sum(axis=1, keepdims=True), axis=1)
    pick = (rng.random(len(category))[:, None] > cdf).sum(axis=1)
    return np.array(SOURCES)[np.minimum(pick, len(SOURCES) - 1)]


def _after(rng: np.random.Generator, t: np.ndarray, median_s, sigma: float) -> np.ndarray:
    """``t`` plus a lognormal delay (whole seconds, at least one)."""
    delay = np.exp(np.log(median_s) + sigma * rng.standard_normal(len(t)))
    return t + np.maximum(1, np.round(delay)).astype(np.int64)


def _timeline(rng: np.random.Generator, f: pd.DataFrame, departments: pd.DataFrame,
              end_s: int) -> dict:
    """slot -> (present, ts seconds); slots are in time order."""
    n = len(f)
    urgent = (f["priority"] == "emergency").to_numpy()
    claim_s, resolve_s = f["claim_h"].to_numpy() * _H, f["resolve_h"].to_numpy() * _H
    t0 = f["reported_s"].to_numpy()
    returned = (rng.random(n) < 0.06) & ~urgent
    vfail = rng.random(n) < 0.05
    rated = rng.random(n) < 0.65
    rating = rng.choice(5, n, p=_RATINGS) + 1
    reopen = rated & (rating <= 2) & (rng.random(n) < 0.35)
    yes = np.ones(n, dtype=bool)
    s: dict[str, tuple[np.ndarray, np.ndarray]] = {"report": (yes, t0)}
    s["dispatch_wrong"] = (returned, _after(rng, t0, np.where(urgent, 120, 480), 0.8))
    s["return"] = (returned, _after(rng, s["dispatch_wrong"][1], 1.5 * _H, 0.7))
    prev = np.where(returned, s["return"][1], t0)
    s["dispatch"] = (yes, _after(rng, prev, np.where(urgent | returned, 180, 480), 0.8))
    s["claim"] = (yes, _after(rng, s["dispatch"][1], 0.25 * claim_s, 0.9))
    s["start"] = (yes, _after(rng, s["claim"][1], np.where(urgent, 180, 600), 0.7))
    s["resolve_first"] = (vfail, _after(rng, s["start"][1], 0.25 * resolve_s, 0.7))
    s["verify_failed"] = (vfail, _after(rng, s["resolve_first"][1], 3 * _H, 0.7))
    prev = np.where(vfail, s["verify_failed"][1], s["start"][1])
    s["resolve"] = (yes, _after(rng, prev, np.where(vfail, 0.12, 0.3) * resolve_s, 0.75))
    due = t0 + resolve_s.astype(np.int64)
    sup = due + rng.integers(1800, 4 * 3600, n)
    s["supervise"] = (~vfail & (sup > s["start"][1]) & (sup < s["resolve"][1]), sup)
    s["verify"] = (yes, _after(rng, s["resolve"][1], np.where(urgent, 1800, 3 * _H), 0.7))
    s["close"] = (yes, _after(rng, s["verify"][1], 1200, 0.6))
    s["rate"] = (rated, _after(rng, s["close"][1], 20 * _H, 0.6))
    s["reopen"] = (reopen, _after(rng, s["rate"][1], 2 * _H, 0.6))
    # older reopenings would long since have been re-dispatched: keep only the recent ones
    s["reopen"] = (reopen & (s["reopen"][1] > end_s - 2 * 86400), s["reopen"][1])
    others = departments.loc[departments["kind"] == "department", "code"].to_numpy()
    wrong = others[rng.integers(0, len(others), n)]
    f["wrong_department"] = np.where(wrong == f["department_code"], others[0], wrong)
    f["wrong_department"] = np.where(f["wrong_department"] == f["department_code"], others[1],
                                     f["wrong_department"])
    f["rating"] = rating
    order = ["report", "dispatch_wrong", "return", "dispatch", "claim", "start", "resolve_first",
             "verify_failed", "supervise", "resolve", "verify", "close", "rate", "reopen"]
    return {k: s[k] for k in order}


def _events(f: pd.DataFrame, slots: dict, departments: pd.DataFrame, end_s: int) -> pd.DataFrame:
    dept_zh = departments.set_index("code")["name_zh"]
    right, wrong = f["department_code"], f["wrong_department"]
    report_actor = np.select(
        [f["source"] == "sensor_alert", f["source"] == "grid_patrol", f["source"] == "department",
         f["source"].isin(["citizen_app"])],
        ["system", f["grid"], right, "citizen"], default=f["source"])
    none = pd.Series(None, index=f.index, dtype=object)
    cmd = f["commander"]
    # slot -> (action, to_status, actor, department, note)
    spec = {
        "report": ("report", Status.REPORTED, report_actor, none,
                   f["source"].map(_SOURCE_ZH) + "受理"),
        "dispatch_wrong": ("dispatch", Status.DISPATCHED, cmd, wrong, "派至" + wrong.map(dept_zh)),
        "return": ("return", Status.RETURNED, wrong, wrong, "非本部门职责，申请退单"),
        "dispatch": ("dispatch", Status.DISPATCHED, cmd, right, "派至" + right.map(dept_zh)),
        "claim": ("claim", Status.CLAIMED, right, right, "已签收"),
        "start": ("start", Status.IN_PROGRESS, right, right, "开始办理"),
        "resolve_first": ("resolve", Status.RESOLVED, right, right, "已办结"),
        "verify_failed": ("verify_failed", Status.IN_PROGRESS, cmd, right, "核查未通过，退回重办"),
        "supervise": ("supervise", Status.IN_PROGRESS, cmd, right, "超期督办"),
        "resolve": ("resolve", Status.RESOLVED, right, right, "已办结"),
        "verify": ("verify", Status.VERIFIED, cmd, none, "核查通过"),
        "close": ("close", Status.CLOSED, cmd, none, "结案"),
        "rate": ("rate", Status.CLOSED, "citizen", none,
                 "回访满意度 " + f["rating"].astype(str) + " 星"),
        "reopen": ("reopen", Status.REOPENED, cmd, right, "回访不满意，重新办理"),
    }
    parts = []
    for slot, (present, ts) in slots.items():
        action, to_status, actor, dept, note = spec[slot]
        keep = present & (ts <= end_s)
        part = pd.DataFrame({"incident_id": f["id"], "slot": slot, "ts_s": ts, "action": action,
                             "to_status": str(to_status), "actor": actor, "department_code": dept,
                             "note": note})
        parts.append(part[keep])
    ev = pd.concat(parts, ignore_index=True).sort_values(["incident_id", "ts_s"], kind="stable")
    ev["seq"] = ev.groupby("incident_id").cumcount().astype(np.int32) + 1
    ev["from_status"] = ev.groupby("incident_id")["to_status"].shift(1)
    ev["ts"] = pd.to_datetime(ev["ts_s"], unit="s")
    return ev.reset_index(drop=True)


def _incident_rows(rng: np.random.Generator, f: pd.DataFrame, ev: pd.DataFrame, tz_s: int
                   ) -> pd.DataFrame:
    last = ev.groupby("incident_id").last()
    status = last["to_status"].reindex(f["id"]).to_numpy()
    done = np.isin(status, [Status.RESOLVED, Status.VERIFIED, Status.CLOSED])

    def latest(slots: list[str]) -> pd.Series:
        hit = ev[ev["slot"].isin(slots)].groupby("incident_id")["ts"].max()
        return hit.reindex(f["id"])

    claimed = latest(["claim"]).to_numpy()
    resolved = latest(["resolve_first", "resolve"]).where(done).to_numpy()
    closed = latest(["close"]).where(status == Status.CLOSED.value).to_numpy()
    dispatched = ev[ev["action"] == "dispatch"].groupby("incident_id")["department_code"].last()
    department = dispatched.reindex(f["id"]).fillna(
        pd.Series(f["department_code"].to_numpy(), index=f["id"]))
    rated = ev[ev["slot"] == "rate"].set_index("incident_id").index
    version = ev.groupby("incident_id").size().reindex(f["id"]).to_numpy().astype(np.int32)
    supervised = latest(["supervise"]).where(status != Status.CLOSED.value).to_numpy()
    # the C2 facts (migration 007): what the events say, as core.incidents keeps them
    first = ev.groupby(["incident_id", "action"])["ts"].min().unstack()
    counts = ev.groupby(["incident_id", "action"]).size().unstack(fill_value=0)

    def first_of(action: str) -> np.ndarray:
        col = first[action] if action in first else pd.Series(dtype="datetime64[ns]")
        return col.reindex(f["id"]).to_numpy()

    def count_of(action: str) -> np.ndarray:
        col = counts[action] if action in counts else pd.Series(dtype=np.int64)
        return col.reindex(f["id"]).fillna(0).to_numpy().astype(np.int32)

    reported = pd.to_datetime(f["reported_s"], unit="s")
    local_day = pd.to_datetime(f["reported_s"] + tz_s, unit="s").dt.strftime("%Y%m%d")
    number = f.groupby(local_day.to_numpy()).cumcount() + 1
    phone = "1" + pd.Series(rng.integers(30, 90, len(f))).astype(str) \
        + pd.Series(rng.integers(0, 10**8, len(f))).map("{:08d}".format)
    contact = np.where(f["source"].isin(["hotline", "citizen_app", "open311"]), phone, None)
    return pd.DataFrame({
        "id": f["id"],
        "tracking_code": "YW" + local_day + number.map("{:05d}".format),
        "category": f["category"],
        "priority": f["priority"],
        "status": status,
        "source": f["source"],
        "title": f["category_zh"] + "：" + f["community_zh"],
        "description": f["source"].map(_SOURCE_ZH) + "反映" + f["community_zh"] + "附近"
        + f["category_zh"] + "，请及时处置。",
        "lon": f["lon"], "lat": f["lat"],
        "jurisdiction_code": f["jurisdiction_code"],
        "department_code": department.to_numpy(),
        "reported_at": reported,
        "claim_due": reported + pd.to_timedelta(f["claim_h"], unit="h"),
        "resolve_due": reported + pd.to_timedelta(f["resolve_h"], unit="h"),
        "claimed_at": claimed,
        "resolved_at": resolved,
        "closed_at": closed,
        # a reopening clears the rating (the citizen rates again after the next closure)
        "rating": pd.array(np.where(f["id"].isin(rated) & (status != Status.REOPENED.value),
                                    f["rating"], None), dtype="Int32"),
        "reporter_contact": contact,
        "version": version,
        "supervised_at": supervised,
        "first_dispatched_at": first_of("dispatch"),
        "first_claimed_at": first_of("claim"),
        "returned_count": count_of("return"),
        "reopened_count": count_of("reopen"),
        "supervised_count": count_of("supervise"),
    })
