"""Indicators: every registry answer against an independent pandas computation on the same rows,
at every level (city, district, street, community), with empty and zero-denominator cases;
scope refusals are empty and audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_PASSWORD

from core.indicators import INDICATORS, evaluate, evaluate_one, members, pm25_iaqi, trend
from core.rollups import refresh_rollups
from core.scope import Scope, scope_for
from core.store import Store
from core.users import create_user, get_user

T0 = datetime(2026, 11, 1)
NOW = datetime(2026, 11, 12, 9, 30)
FULL = (T0, T0 + timedelta(days=10))
EMPTY = (datetime(2020, 1, 1), datetime(2020, 1, 8))
PARENTS = ("C", "D1", "D2", "D1S1", "D1S2", "D2S1", "D2S2", "D1S1C1")
CODES = ("C", "D1", "D2", "D1S1", "D1S2", "D2S1", "D2S2", "D1S1C1", "D1S2C1", "D2S1C1",
         "D2S2C1")
COMMUNITIES_WITH_DATA = ("D1S1C1", "D1S2C1", "D2S1C1")   # D2S2C1 stays empty
INCIDENT_IDS = [k for k, v in INDICATORS.items() if v.source == "incidents"]
SENSOR_IDS = [k for k, v in INDICATORS.items() if v.source != "incidents"]
H = 3600


# -- the same rows for the registry and for pandas ----------------------------------------------
def _incidents(rng: np.random.Generator, n: int = 420) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, events = [], []
    for i in range(1, n + 1):
        rep = T0 + timedelta(seconds=int(rng.integers(0, 10 * 86400)))
        claim_due = rep + timedelta(hours=float(rng.uniform(1, 8)))
        resolve_due = rep + timedelta(hours=float(rng.uniform(12, 120)))
        ev = [(rep, "report")]
        t = rep
        dispatched = rng.random() < 0.9
        claimed_at = resolved_at = None
        rating = None
        status = "reported"
        if dispatched:
            t += timedelta(minutes=10)
            ev.append((t, "dispatch"))
            status = "dispatched"
            if rng.random() < 0.12:
                t += timedelta(hours=1)
                ev += [(t, "return"), (t + timedelta(minutes=5), "dispatch")]
                t += timedelta(minutes=5)
            if rng.random() < 0.85:
                t += timedelta(hours=float(rng.uniform(0, 10)))
                ev.append((t, "claim"))
                claimed_at, status = t, "in_progress"
                if rng.random() < 0.15:
                    ev.append((t + timedelta(hours=30), "supervise"))
                if rng.random() < 0.65:
                    t += timedelta(hours=float(rng.uniform(1, 150)))
                    if t < NOW:
                        ev.append((t, "resolve"))
                        resolved_at = t
                        status = str(rng.choice(["resolved", "verified", "closed"]))
                        if status == "closed" and rng.random() < 0.6:
                            rating = int(rng.integers(1, 6))
                            ev.append((t + timedelta(hours=2), "rate"))
                            if rating <= 2 and rng.random() < 0.5:
                                ev.append((t + timedelta(hours=3), "reopen"))
                                # a reopened incident is claimed again: the first claim counts
                                ev.append((t + timedelta(hours=4), "claim"))
                                claimed_at, resolved_at, status = (t + timedelta(hours=4), None,
                                                                   "in_progress")
        # the event facts core keeps on the incident (migration 007, contract C2)
        def first(action: str, ev=ev) -> datetime | None:
            return min((ts for ts, a in ev if a == action), default=None)

        def count(action: str, ev=ev) -> int:
            return sum(1 for _, a in ev if a == action)

        rows.append({
            "first_dispatched_at": first("dispatch"), "first_claimed_at": first("claim"),
            "returned_count": count("return"), "reopened_count": count("reopen"),
            "supervised_count": count("supervise"),
            "id": i, "tracking_code": f"T{i:05d}", "category": "garbage",
            "priority": "normal", "status": status, "source": "hotline", "title": f"工单{i}",
            "description": None, "lon": 0.5, "lat": 0.5,
            "jurisdiction_code": str(rng.choice(COMMUNITIES_WITH_DATA)),
            "department_code": str(rng.choice(["cg", "sw"])), "reported_at": rep,
            "claim_due": claim_due, "resolve_due": resolve_due, "claimed_at": claimed_at,
            "resolved_at": resolved_at, "closed_at": None, "rating": rating,
            "reporter_contact": None,
        })
        for seq, (ts, action) in enumerate(ev, 1):
            events.append({"incident_id": i, "seq": seq, "ts": ts, "action": action,
                           "from_status": None, "to_status": action, "actor": "t",
                           "department_code": None, "note": None})
    inc = pd.DataFrame(rows)
    inc["rating"] = inc["rating"].astype("Int32")
    for col in ("claimed_at", "resolved_at", "closed_at", "first_dispatched_at",
                "first_claimed_at"):
        inc[col] = pd.to_datetime(inc[col])
    return inc, pd.DataFrame(events)


SENSOR_T0 = datetime(2026, 11, 2)


def _sensors(rng: np.random.Generator, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    kinds = {"pm25": ("cg", 0, 160), "water_level": ("sw", 1, 6), "noise": ("cg", 40, 90)}
    sensors, readings = [], []
    sid = 0
    for community in COMMUNITIES_WITH_DATA:
        for kind, (dept, lo, hi) in kinds.items():
            for _ in range(2):
                sid += 1
                sensors.append((sid, f"S{sid}", kind, f"传感器{sid}", 0.5, 0.5, community, dept,
                                SENSOR_T0))
                ts = pd.date_range(SENSOR_T0, SENSOR_T0 + timedelta(days=3), freq="20min")
                keep = rng.random(len(ts)) < 0.8
                for t, v in zip(ts[keep], rng.uniform(lo, hi, keep.sum()), strict=True):
                    readings.append((sid, t.to_pydatetime(), float(v)))
                # online now (5 min ago), offline (2 h ago), or never a recent reading
                recent = [now - timedelta(minutes=5), now - timedelta(hours=2), None][sid % 3]
                if recent is not None:
                    readings.append((sid, recent, float(rng.uniform(lo, hi))))
    # one sensor that never reported (offline) in D1S1C1
    sensors.append((sid + 1, f"S{sid + 1}", "pm25", "无数据", 0.5, 0.5, "D1S1C1", "cg",
                    SENSOR_T0))
    s = pd.DataFrame(sensors, columns=["id", "code", "kind", "name", "lon", "lat",
                                       "jurisdiction_code", "department_code", "installed_at"])
    r = pd.DataFrame(readings, columns=["sensor_id", "ts", "value"])
    return s, r


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The tiny city with incidents, events, sensors, readings and their rollups."""
    from conftest import build_tiny_city

    path = tmp_path_factory.mktemp("ind") / "city.duckdb"
    store = Store.open(path)
    build_tiny_city(store)
    create_user(store, "leader", TINY_PASSWORD, role="leader", jurisdiction_code="C")
    create_user(store, "d2s2_grass", TINY_PASSWORD, role="grassroots", jurisdiction_code="D2S2")
    rng = np.random.default_rng(20261128)
    inc, ev = _incidents(rng)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)   # naive UTC like the store
    sensors, readings = _sensors(rng, now)
    kinds = pd.DataFrame([("pm25", "PM2.5", "PM2.5", "µg/m³", "cg", 75.0, 115.0),
                          ("water_level", "水位", "Water level", "m", "sw", 4.5, 5.0),
                          ("noise", "噪声", "Noise", "dB", "cg", 70.0, 80.0)],
                         columns=["kind", "name_zh", "name_en", "unit", "department_code",
                                  "warn", "alarm"])
    with store.transaction() as cur:
        for table, frame in (("incidents", inc), ("incident_events", ev), ("sensors", sensors),
                             ("readings", readings), ("sensor_kinds", kinds)):
            cur.register("_frame", frame)
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
            cur.unregister("_frame")
    refresh_rollups(store)
    yield store
    store.close()


def _scope(store: Store, username: str) -> Scope:
    return scope_for(store, get_user(store, username))


# -- the independent computation --------------------------------------------------------------
class Reference:
    """Each indicator recomputed in pandas from the raw rows (readings, not rollups)."""

    def __init__(self, store: Store, departments: set[str] | None = None):
        self.jur = store.query_df("SELECT code, parent_code, level, path, population, name_zh"
                                  " FROM jurisdictions").set_index("code")
        self.inc = store.query_df("SELECT * FROM incidents")
        self.ev = store.query_df("SELECT * FROM incident_events")
        self.sensors = store.query_df("SELECT * FROM sensors")
        self.kinds = store.query_df("SELECT * FROM sensor_kinds").set_index("kind")
        self.readings = store.query_df("SELECT * FROM readings")
        self.latest = self.readings.groupby("sensor_id")["ts"].max()
        self.now = store.query_one("SELECT (now() AT TIME ZONE 'UTC')::TIMESTAMP")[0]
        if departments is not None:
            self.inc = self.inc[self.inc["department_code"].isin(departments)]
            self.sensors = self.sensors[self.sensors["department_code"].isin(departments)]
            self.kinds = self.kinds[self.kinds["department_code"].isin(departments)]

    def leaves(self, code: str) -> set[str]:
        path = self.jur.loc[code, "path"]
        return set(self.jur.index[self.jur["path"].str.startswith(path)])

    def value(self, ind_id: str, code: str, start: datetime, end: datetime) -> float | None:
        ind = INDICATORS[ind_id]
        if ind.source == "incidents":
            return self._incident(ind_id, code, start, end)
        return self._sensor(ind_id, code, start, end)

    def _incident(self, ind_id: str, code: str, start: datetime, end: datetime):
        inc = self.inc[self.inc["jurisdiction_code"].isin(self.leaves(code))]
        reported = inc[(inc["reported_at"] >= start) & (inc["reported_at"] < end)]
        resolved = inc[(inc["resolved_at"] >= start) & (inc["resolved_at"] < end)]
        ev = self.ev

        def having(action: str) -> set[int]:
            return set(ev.loc[ev["action"] == action, "incident_id"])

        def ratio(part: pd.DataFrame, whole: pd.DataFrame) -> float | None:
            return None if len(whole) == 0 else 100 * len(part) / len(whole)

        dispatched = reported[reported["id"].isin(having("dispatch"))]
        if ind_id == "claim_on_time":
            first_claim = ev[ev["action"] == "claim"].groupby("incident_id")["ts"].min()
            fc = dispatched["id"].map(first_claim)
            return ratio(dispatched[fc.notna() & (fc <= dispatched["claim_due"])], dispatched)
        if ind_id == "resolve_on_time":
            return ratio(resolved[resolved["resolved_at"] <= resolved["resolve_due"]], resolved)
        if ind_id == "resolution_rate":
            done = reported["resolved_at"].notna() & (reported["resolved_at"] < end)
            return ratio(reported[done], reported)
        if ind_id == "satisfaction":
            rated = reported[reported["rating"].notna()]
            return ratio(rated[rated["rating"] >= 4], rated)
        if ind_id == "handling_hours":
            if resolved.empty:
                return None
            hours = (resolved["resolved_at"] - resolved["reported_at"]).dt.total_seconds() / H
            return float(hours.mean())
        if ind_id == "return_rate":
            return ratio(dispatched[dispatched["id"].isin(having("return"))], dispatched)
        if ind_id == "repeat_rate":
            return ratio(reported[reported["id"].isin(having("reopen"))], reported)
        if ind_id == "overdue":
            open_ = ~inc["status"].isin(["resolved", "verified", "closed"])
            return float((open_ & (inc["resolve_due"] < NOW)).sum())
        if ind_id == "supervised":
            return float(reported["id"].isin(having("supervise")).sum())
        if ind_id == "per_10k":
            return 10_000 * len(reported) / self.jur.loc[code, "population"]
        raise AssertionError(ind_id)

    def _sensor(self, ind_id: str, code: str, start: datetime, end: datetime):
        sensors = self.sensors[self.sensors["jurisdiction_code"].isin(self.leaves(code))]
        if ind_id == "sensor_online":
            if sensors.empty:
                return None
            latest = sensors["id"].map(self.latest)
            online = latest.notna() & (latest >= self.now - timedelta(minutes=30))
            return 100 * online.sum() / len(sensors)
        kind = INDICATORS[ind_id].sensor_kind
        if kind not in self.kinds.index:
            return None
        ids = sensors.loc[sensors["kind"] == kind, "id"]
        r = self.readings[self.readings["sensor_id"].isin(ids)]
        hour = r["ts"].dt.floor("h")
        r = r[(hour >= start) & (hour < end)]
        if r.empty:
            return None
        if ind_id == "pm25_mean":
            return float(r["value"].mean())
        if ind_id == "aqi":
            return pm25_iaqi(float(r["value"].mean()))
        if ind_id == "water_level_peak":
            return float(r["value"].max())
        if ind_id == "noise_exceedances":
            return float((r["value"] >= self.kinds.loc["noise", "warn"]).sum())
        raise AssertionError(ind_id)


@pytest.fixture(scope="module")
def ref(city: Store) -> Reference:
    return Reference(city)


def _same(got: float | None, want: float | None) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return got == pytest.approx(want, rel=1e-9, abs=1e-9)


PERIODS = {"full": FULL, "first_days": (T0, T0 + timedelta(days=3)), "empty": EMPTY,
           "sensor_window": (SENSOR_T0 + timedelta(hours=5), SENSOR_T0 + timedelta(days=2))}


# -- tests ------------------------------------------------------------------------------------
def test_the_fixture_has_what_the_cases_need(city: Store, ref: Reference) -> None:
    """Guards the test data itself: every path of every definition is exercised."""
    inc, ev = ref.inc, ref.ev
    assert set(inc["jurisdiction_code"]) == set(COMMUNITIES_WITH_DATA)
    assert {"dispatch", "claim", "return", "reopen", "supervise", "resolve", "rate"} <= set(
        ev["action"])
    assert (inc["resolved_at"] > inc["resolve_due"]).any()
    assert (inc["resolved_at"] <= inc["resolve_due"]).any()
    assert (~inc["status"].isin(["resolved", "verified", "closed"])
            & (inc["resolve_due"] < NOW)).any()
    claims = ev[ev["action"] == "claim"].groupby("incident_id").size()
    assert (claims > 1).any(), "a re-claimed incident checks that the FIRST claim counts"
    assert city.query_one("SELECT count(*) FROM readings_hourly WHERE jurisdiction_code='C'")[0]


@pytest.mark.parametrize("period", list(PERIODS))
@pytest.mark.parametrize("ind_id", list(INDICATORS))
def test_children_match_pandas_at_every_level(city: Store, ref: Reference, ind_id: str,
                                              period: str) -> None:
    scope = _scope(city, "leader")
    start, end = PERIODS[period]
    for parent in PARENTS:
        got = evaluate(city, scope, ind_id, parent_code=parent, start=start, end=end, now=NOW)
        kids = sorted(ref.jur.index[ref.jur["parent_code"] == parent])
        assert [v.code for v in got] == kids, parent
        for v in got:
            want = ref.value(ind_id, v.code, start, end)
            assert _same(v.value, want), (ind_id, period, v.code, v.value, want)
            assert v.name_zh == ref.jur.loc[v.code, "name_zh"]


@pytest.mark.parametrize("ind_id", list(INDICATORS))
def test_one_jurisdiction_matches_pandas_everywhere(city: Store, ref: Reference,
                                                    ind_id: str) -> None:
    scope = _scope(city, "leader")
    for code in CODES:
        for start, end in (FULL, EMPTY, PERIODS["sensor_window"]):
            got = evaluate_one(city, scope, ind_id, code=code, start=start, end=end, now=NOW)
            want = ref.value(ind_id, code, start, end)
            assert _same(got.value, want), (ind_id, code, start, got, want)


def test_empty_and_zero_denominators(city: Store) -> None:
    """No rows: ratios and means are None (not 0), counts are 0, per-10k is 0 with people."""
    scope = _scope(city, "leader")
    for ind_id, ind in INDICATORS.items():
        v = evaluate_one(city, scope, ind_id, code="D2S2", start=FULL[0], end=FULL[1], now=NOW)
        if ind.aggregate == "count":
            assert v.value == 0 and v.denominator is None, ind_id
        elif ind.aggregate == "per_population":
            assert v.value == 0 and v.denominator == 1000, ind_id
        else:
            assert v.value is None and not v.denominator, ind_id
            assert v.level is None
    # a non-empty jurisdiction whose denominator is 0 in an empty period
    v = evaluate_one(city, scope, "satisfaction", code="D1", start=EMPTY[0], end=EMPTY[1])
    assert v.value is None and v.denominator == 0


def test_department_bound_scope_counts_only_its_department(city: Store) -> None:
    scope = _scope(city, "cg_staff")
    ref = Reference(city, departments={"cg"})
    for ind_id in ("resolve_on_time", "overdue", "per_10k", "sensor_online", "pm25_mean",
                   "water_level_peak"):
        for v in evaluate(city, scope, ind_id, parent_code="C", start=FULL[0], end=FULL[1],
                          now=NOW):
            assert _same(v.value, ref.value(ind_id, v.code, *FULL)), (ind_id, v)
    water = evaluate_one(city, scope, "water_level_peak", code="C", start=FULL[0], end=FULL[1])
    assert water.value is None   # water gauges belong to 'sw'


def _denials(store: Store) -> list[tuple]:
    return store.query("SELECT actor, target FROM audit_log WHERE action = 'indicators.denied'"
                       " ORDER BY seq")


def test_asking_above_the_scope_returns_nothing_and_is_audited(city: Store) -> None:
    scope = _scope(city, "d1_commander")
    before = len(_denials(city))
    assert evaluate(city, scope, "overdue", parent_code="C", start=FULL[0], end=FULL[1]) == []
    assert evaluate_one(city, scope, "overdue", code="D2", start=FULL[0], end=FULL[1]) is None
    assert trend(city, scope, "resolve_on_time", code="C", start=FULL[0], end=FULL[1]) == []
    assert members(city, scope, "overdue", code="D2S1C1", start=FULL[0], end=FULL[1]) == []
    crafted = "D1' OR 1=1 --"
    assert evaluate(city, scope, "overdue", parent_code=crafted, start=FULL[0],
                    end=FULL[1]) == []
    denials = _denials(city)[before:]
    assert [t for _, t in denials] == ["C", "D2", "C", "D2S1C1", crafted]
    assert {a for a, _ in denials} == {"d1_commander"}
    # inside the scope it answers, and nothing is audited
    got = evaluate(city, scope, "overdue", parent_code="D1", start=FULL[0], end=FULL[1])
    assert [v.code for v in got] == ["D1S1", "D1S2"] and len(_denials(city)) == before + 5


def test_platform_roles_get_no_business_numbers(city: Store) -> None:
    scope = _scope(city, "sysadmin")
    assert evaluate(city, scope, "overdue", parent_code="C", start=FULL[0], end=FULL[1]) == []
    assert _denials(city)[-1] == ("sysadmin", "C")


def test_a_street_user_sees_its_own_street_only(city: Store) -> None:
    scope = _scope(city, "d2s2_grass")
    assert evaluate_one(city, scope, "per_10k", code="D2S2", start=FULL[0], end=FULL[1])
    assert evaluate_one(city, scope, "per_10k", code="D2", start=FULL[0], end=FULL[1]) is None


@pytest.mark.parametrize("ind_id", [k for k, v in INDICATORS.items() if not v.snapshot])
def test_trend_points_equal_their_own_period(city: Store, ind_id: str) -> None:
    scope = _scope(city, "leader")
    start = SENSOR_T0 if INDICATORS[ind_id].source != "incidents" else T0
    end = start + timedelta(days=3)
    points = trend(city, scope, ind_id, code="D1", start=start, end=end,
                   step=timedelta(hours=12))
    assert [p.start for p in points] == [start + k * timedelta(hours=12) for k in range(6)]
    for p in points:
        one = evaluate_one(city, scope, ind_id, code="D1", start=p.start,
                           end=p.start + timedelta(hours=12))
        assert _same(p.value, one.value) and _same(p.denominator, one.denominator), (p, one)


def test_snapshot_indicators_have_no_trend(city: Store) -> None:
    scope = _scope(city, "leader")
    assert trend(city, scope, "overdue", code="C", start=FULL[0], end=FULL[1]) == []


@pytest.mark.parametrize("ind_id", INCIDENT_IDS)
def test_members_are_the_rows_behind_the_number(city: Store, ind_id: str) -> None:
    scope = _scope(city, "leader")
    ind = INDICATORS[ind_id]
    for code in ("C", "D1", "D2S1C1", "D2S2"):
        one = evaluate_one(city, scope, ind_id, code=code, start=FULL[0], end=FULL[1], now=NOW)
        rows = members(city, scope, ind_id, code=code, start=FULL[0], end=FULL[1], now=NOW)
        size = one.denominator if ind.aggregate in ("ratio", "mean") else one.numerator
        assert len(rows) == size, (ind_id, code)
        if ind.aggregate == "ratio":
            assert sum(r["counted"] for r in rows) == one.numerator
        assert {r["jurisdiction_code"] for r in rows} <= ({"D2S1C1"} if code == "D2S1C1"
                                                          else set(COMMUNITIES_WITH_DATA))


def test_sensor_members_are_the_sensors_counted(city: Store) -> None:
    scope = _scope(city, "leader")
    one = evaluate_one(city, scope, "sensor_online", code="D1", start=FULL[0], end=FULL[1])
    rows = members(city, scope, "sensor_online", code="D1", start=FULL[0], end=FULL[1])
    assert len(rows) == one.denominator
    assert sum(r["state"] != "offline" for r in rows) == one.numerator
    assert rows[0]["state"] == "offline"   # the problems first


def test_bad_arguments_are_refused_clearly(city: Store) -> None:
    scope = _scope(city, "leader")
    with pytest.raises(KeyError, match="unknown indicator 'nope'"):
        evaluate(city, scope, "nope", parent_code="C", start=FULL[0], end=FULL[1])
    with pytest.raises(ValueError, match="must end after it starts"):
        evaluate(city, scope, "overdue", parent_code="C", start=FULL[1], end=FULL[0])


def test_registry_declarations_are_complete() -> None:
    wanted = {"claim_on_time", "resolve_on_time", "resolution_rate", "satisfaction",
              "handling_hours", "return_rate", "repeat_rate", "overdue", "supervised",
              "per_10k", "sensor_online", "pm25_mean", "aqi", "water_level_peak",
              "noise_exceedances"}
    assert wanted <= set(INDICATORS)
    for ind in INDICATORS.values():
        assert ind.name_zh and ind.name_en and ind.definition_zh and ind.definition_en
        assert ind.good in ("up", "down") and ind.levels
        if ind.thresholds:
            good, bad = ind.thresholds
            assert (good > bad) if ind.good == "up" else (good < bad), ind.id
    assert INDICATORS["resolve_on_time"].level_of(80) == "warn"
    assert INDICATORS["handling_hours"].level_of(60) == "bad"
    assert pm25_iaqi(75) == 100 and pm25_iaqi(None) is None


@pytest.mark.parametrize("ind_id", INCIDENT_IDS)
def test_no_indicator_scans_the_event_log(city: Store, ind_id: str) -> None:
    """Event facts come from the incident's own columns (contract C2): the SQL of every
    incident indicator, its trend and its members reads no ``incident_events``."""
    from core import indicators as mod

    scope = _scope(city, "leader")
    ind = INDICATORS[ind_id]
    bucket = "floor((epoch($col) - epoch($start)) / $step)::BIGINT"
    for sql in (mod._incident_sql(ind, scope, "c.parent_code = $code", None),
                mod._incident_sql(ind, scope, "c.code = $code", bucket),
                mod._incident_base(ind, scope, "c.code = $code", "i.*")[0]):
        assert "incident_events" not in sql, (ind_id, sql)


def test_facts_follow_later_events(city: Store) -> None:
    """A return recorded after the period still counts for an incident reported in it (the
    event log's answer): the facts are per incident, not per event inside the period."""
    scope = _scope(city, "leader")
    ref = Reference(city)
    late = ref.ev[(ref.ev["action"] == "supervise")].merge(
        ref.inc[["id", "reported_at"]], left_on="incident_id", right_on="id")
    late = late[late["ts"] >= late["reported_at"] + timedelta(hours=24)]
    assert not late.empty, "the fixture supervises some incidents a day or more later"
    row = late.iloc[0]
    start = row["reported_at"].to_pydatetime()
    end = start + timedelta(hours=1)       # the supervise event is after this period's end
    code = ref.inc.loc[ref.inc["id"] == row["incident_id"], "jurisdiction_code"].iloc[0]
    got = evaluate_one(city, scope, "supervised", code=code, start=start, end=end, now=NOW)
    assert got.value == ref.value("supervised", code, start, end) >= 1
