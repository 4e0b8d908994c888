"""Indicators (design §6): declared once, used by the drill-down page, the wall screen and exports.

An indicator has an id, Chinese and English names, a unit, a good direction, colour thresholds,
the jurisdiction levels it supports, and scoped SQL. Every read takes the acting user's
``core.scope.Scope``: asking about a jurisdiction outside it returns nothing and is written to
the audit log (``indicators.denied``).

Periods are half-open ``[start, end)`` in naive UTC. Unless a definition says otherwise the
period filters incidents on ``reported_at``. Incidents belong to a community
(``incidents.jurisdiction_code``); a jurisdiction's incidents are those of the communities in
its subtree (``jurisdictions.path`` prefix). Sensor indicators read only the rollups
(``readings_hourly``, one row per hour per kind per jurisdiction at every level) and the
``sensor_status`` view, never raw readings.

Definitions (numerator / denominator; ``value`` is None when the denominator is 0):

- ``claim_on_time`` 签收率: incidents reported in the period that were dispatched
  (``first_dispatched_at`` set) and whose first 'claim' (``first_claimed_at``) is at or before
  ``claim_due`` / incidents reported in the period that were dispatched. × 100 (%).
- ``resolve_on_time`` 按时办结率: incidents resolved in the period (``resolved_at`` in the
  period) with ``resolved_at <= resolve_due`` / incidents resolved in the period. %.
- ``resolution_rate`` 办结率: incidents reported in the period that are resolved
  (``resolved_at`` set) by the end of the period / incidents reported in the period. %.
- ``satisfaction`` 满意率: rated incidents reported in the period with rating ≥ 4 (of 1–5) /
  rated incidents reported in the period. %.
- ``handling_hours`` 平均处置时长: mean hours from ``reported_at`` to ``resolved_at`` of the
  incidents resolved in the period (filtered on ``resolved_at``, like 按时办结率, so a short
  period is not biased towards quickly resolved cases).
- ``return_rate`` 退单率: dispatched incidents reported in the period with a 'return' event
  (``returned_count > 0``) / dispatched incidents reported in the period. %.
- ``repeat_rate`` 重复诉求率: incidents reported in the period with a 'reopen' event
  (``reopened_count > 0``: the citizen came back after closure) / incidents reported in the
  period. %.
- ``overdue`` 超期工单: incidents open now (status not resolved, verified or closed) whose
  ``resolve_due`` has passed. A snapshot at ``now``; the period is ignored.
- ``supervised`` 督办工单: incidents reported in the period with a 'supervise' event
  (``supervised_count > 0``).

The event facts (first dispatch, first claim, return/reopen/supervise counts) are columns of
``incidents`` kept by every transition (migration 007, contract C2), so no indicator scans
``incident_events``: any event, whenever it happened, counts, as the event log says.
- ``per_10k`` 万人工单量: incidents reported in the period per 10,000 residents
  (``jurisdictions.population`` of the jurisdiction).
- ``sensor_online`` 感知设备在线率: sensors whose state is not 'offline' / all sensors
  (``sensor_status``), now; the period is ignored.
- ``pm25_mean`` PM2.5 均值: Σ total / Σ n of the 'pm25' rows of ``readings_hourly`` whose hour
  is in the period (hour ≥ start and hour < end).
- ``aqi`` 空气质量指数: the PM2.5 individual AQI (HJ 633-2012, 24-hour breakpoints) of the
  period's mean PM2.5; the demo city measures no other pollutant, so AQI = IAQI(PM2.5).
- ``water_level_peak`` 最高水位: max(max_value) of the 'water_level' rows in the period
  (denominator: readings counted, so a jurisdiction without gauges has no value).
- ``noise_exceedances`` 噪声超标次数: Σ warn_n (readings at or above the noise kind's warn
  threshold) of the 'noise' rows in the period (denominator: readings counted).

>>> values = evaluate(store, scope, "resolve_on_time", parent_code="320281",
...                   start=datetime(2026, 11, 1), end=datetime(2026, 11, 28))  # doctest: +SKIP
>>> [(v.name_zh, v.value) for v in values][:1]                                   # doctest: +SKIP
[('城中区', 87.5)]
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from core.audit import record
from core.scope import Scope
from core.store import Store

__all__ = [
    "INDICATORS",
    "Indicator",
    "IndicatorValue",
    "TrendPoint",
    "evaluate",
    "evaluate_one",
    "members",
    "pm25_iaqi",
    "trend",
]

INCIDENT_LEVELS = ("city", "district", "street", "community")
ALL_LEVELS = ("province", "city", "district", "street", "community", "grid")
_DONE = "('resolved','verified','closed')"
_DISPATCHED = "f.first_dispatched_at IS NOT NULL"
_PARAM = re.compile(r"\$([a-z_]+)")


def pm25_iaqi(concentration: float | None) -> float | None:
    """PM2.5 individual air-quality index (HJ 633-2012, 24-hour mean breakpoints).

    >>> pm25_iaqi(35.0), pm25_iaqi(55.0), pm25_iaqi(600.0)
    (50.0, 75.0, 500.0)
    """
    if concentration is None:
        return None
    c_points = (0.0, 35.0, 75.0, 115.0, 150.0, 250.0, 350.0, 500.0)
    i_points = (0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0)
    c = max(0.0, float(concentration))
    for k in range(1, len(c_points)):
        if c <= c_points[k]:
            c_lo, c_hi, i_lo, i_hi = c_points[k - 1], c_points[k], i_points[k - 1], i_points[k]
            return i_lo + (i_hi - i_lo) * (c - c_lo) / (c_hi - c_lo)
    return 500.0


@dataclass(frozen=True)
class Indicator:
    """One indicator's declaration.

    ``aggregate`` says how ``numerator``/``denominator`` become the value: ``ratio``
    (scale × num / den), ``mean`` (num / den), ``count`` (num; no denominator),
    ``per_population`` (scale × num / population), ``max`` (num, None when den = 0),
    ``sum`` (num, None when den = 0). ``thresholds`` is (good, bad): a value better than or
    equal to ``good`` is 'good', worse than ``bad`` is 'bad', in between 'warn'; None when the
    right bound depends on the jurisdiction's size (the page then colours by rank).
    ``period`` is the column the period filters: reported_at, resolved_at, hour (rollups) or
    now (a snapshot that ignores the period).
    """

    id: str
    name_zh: str
    name_en: str
    unit: str
    good: Literal["up", "down"]
    thresholds: tuple[float, float] | None
    levels: tuple[str, ...]
    source: Literal["incidents", "rollups", "sensors"]
    period: Literal["reported_at", "resolved_at", "hour", "now"]
    aggregate: Literal["ratio", "mean", "count", "per_population", "max", "sum"]
    definition_zh: str
    definition_en: str
    member_if: str = "TRUE"          # incidents: the set behind the number (denominator)
    count_if: str = "TRUE"           # incidents: numerator condition within the members
    sum_expr: str | None = None      # incidents, aggregate 'mean': the summed expression
    sensor_kind: str | None = None   # rollups / sensors: the sensor kind (None: every kind)
    scale: float = 1.0
    digits: int = 1
    transform: Callable[[float | None], float | None] | None = field(default=None, compare=False)

    @property
    def snapshot(self) -> bool:
        """True when the value is 'now' and the period is ignored (no trend)."""
        return self.period == "now"

    def level_of(self, value: float | None) -> str | None:
        """'good', 'warn' or 'bad' for a value (None without thresholds or value).

        >>> INDICATORS["resolve_on_time"].level_of(97.0)
        'good'
        """
        if value is None or self.thresholds is None:
            return None
        good, bad = self.thresholds
        if self.good == "up":
            return "good" if value >= good else ("bad" if value < bad else "warn")
        return "good" if value <= good else ("bad" if value > bad else "warn")


@dataclass(frozen=True)
class IndicatorValue:
    """One jurisdiction's value of one indicator; ``value`` is None when the denominator is 0."""

    code: str
    name_zh: str
    name_en: str | None
    value: float | None
    numerator: float | None
    denominator: float | None
    level: str | None = None


@dataclass(frozen=True)
class TrendPoint:
    """One bucket ``[start, start + step)`` of a trend."""

    start: datetime
    value: float | None
    numerator: float | None
    denominator: float | None


def _incident(id_: str, zh: str, en: str, unit: str, good: str, thresholds, period: str,
              aggregate: str, def_zh: str, def_en: str, **kw: Any) -> Indicator:
    return Indicator(id_, zh, en, unit, good, thresholds, INCIDENT_LEVELS, "incidents", period,
                     aggregate, def_zh, def_en, **kw)


def _rollup(id_: str, zh: str, en: str, unit: str, thresholds, aggregate: str, kind: str,
            def_zh: str, def_en: str, **kw: Any) -> Indicator:
    return Indicator(id_, zh, en, unit, "down", thresholds, ALL_LEVELS, "rollups", "hour",
                     aggregate, def_zh, def_en, sensor_kind=kind, **kw)


_LIST: tuple[Indicator, ...] = (
    _incident("claim_on_time", "签收率", "On-time claim rate", "%", "up", (95.0, 85.0),
              "reported_at", "ratio",
              "期内受理且已派单的工单中，在签收时限内签收的比例",
              "Share of dispatched incidents reported in the period that were claimed by "
              "their claim deadline",
              member_if=_DISPATCHED, count_if="f.first_claimed_at <= f.claim_due", scale=100),
    _incident("resolve_on_time", "按时办结率", "On-time resolution rate", "%", "up",
              (90.0, 75.0), "resolved_at", "ratio",
              "期内办结的工单中，在办结时限内办结的比例",
              "Share of incidents resolved in the period that were resolved by their deadline",
              count_if="f.resolved_at <= f.resolve_due", scale=100),
    _incident("resolution_rate", "办结率", "Resolution rate", "%", "up", (85.0, 70.0),
              "reported_at", "ratio",
              "期内受理的工单中，期末前已办结的比例",
              "Share of incidents reported in the period that were resolved by its end",
              count_if="f.resolved_at IS NOT NULL AND f.resolved_at < $end", scale=100),
    _incident("satisfaction", "满意率", "Satisfaction rate", "%", "up", (90.0, 80.0),
              "reported_at", "ratio",
              "期内受理并已回访的工单中，评价4星及以上的比例",
              "Share of rated incidents reported in the period rated 4 or 5 (of 5)",
              member_if="f.rating IS NOT NULL", count_if="f.rating >= 4", scale=100),
    _incident("handling_hours", "平均处置时长", "Mean handling time", "h", "down", (24.0, 48.0),
              "resolved_at", "mean",
              "期内办结工单从受理到办结的平均小时数",
              "Mean hours from report to resolution of incidents resolved in the period",
              sum_expr="epoch(f.resolved_at - f.reported_at) / 3600.0"),
    _incident("return_rate", "退单率", "Return rate", "%", "down", (3.0, 8.0),
              "reported_at", "ratio",
              "期内受理且已派单的工单中，发生过退单的比例",
              "Share of dispatched incidents reported in the period that were returned",
              member_if=_DISPATCHED, count_if="f.returned_count > 0", scale=100),
    _incident("repeat_rate", "重复诉求率", "Repeat-request rate", "%", "down", (2.0, 5.0),
              "reported_at", "ratio",
              "期内受理的工单中，结案后因不满意被重新办理的比例",
              "Share of incidents reported in the period that were reopened after closure",
              count_if="f.reopened_count > 0", scale=100),
    _incident("overdue", "超期工单", "Overdue incidents", "", "down", None, "now", "count",
              "当前未办结且已超过办结时限的工单数（实时，不受时段影响）",
              "Open incidents past their resolution deadline now (ignores the period)",
              member_if=f"f.status NOT IN {_DONE} AND f.resolve_due < $now", digits=0),
    _incident("supervised", "督办工单", "Supervised incidents", "", "down", None,
              "reported_at", "count",
              "期内受理的工单中被督办的工单数",
              "Incidents reported in the period that were supervised (督办)",
              member_if="f.supervised_count > 0", digits=0),
    _incident("per_10k", "万人工单量", "Incidents per 10,000 residents", "", "down", None,
              "reported_at", "per_population",
              "期内受理的工单数 ÷ 常住人口 × 10000",
              "Incidents reported in the period per 10,000 residents", scale=10_000, digits=2),
    Indicator("sensor_online", "感知设备在线率", "Sensor online rate", "%", "up", (95.0, 85.0),
              ALL_LEVELS, "sensors", "now", "ratio",
              "当前在线（30分钟内有数据）的感知设备占比（实时）",
              "Share of sensors that reported in the last 30 minutes (now)", scale=100),
    _rollup("pm25_mean", "PM2.5均值", "Mean PM2.5", "µg/m³", (35.0, 75.0), "mean", "pm25",
            "期内PM2.5小时汇总的平均浓度", "Mean PM2.5 concentration over the period"),
    _rollup("aqi", "空气质量指数", "Air quality index", "AQI", (50.0, 100.0), "mean", "pm25",
            "期内PM2.5均值对应的空气质量分指数（HJ 633-2012）",
            "PM2.5 individual AQI of the period's mean PM2.5 (HJ 633-2012)",
            digits=0, transform=pm25_iaqi),
    _rollup("water_level_peak", "最高水位", "Peak water level", "m", (4.5, 5.0), "max",
            "water_level", "期内水位监测的最高值", "Highest water level in the period",
            digits=2),
    _rollup("noise_exceedances", "噪声超标次数", "Noise exceedances", "", None, "sum", "noise",
            "期内噪声读数达到预警阈值的次数", "Noise readings at or above the warning threshold",
            digits=0),
)

INDICATORS: dict[str, Indicator] = {i.id: i for i in _LIST}


# -- SQL --------------------------------------------------------------------------------------
# ``kids``: each selected jurisdiction (the children of a parent, or one code) with every
# jurisdiction of its subtree; both inside the scope's root.
_KIDS = """kids AS (
    SELECT c.code AS child, j.code AS leaf
    FROM jurisdictions c JOIN jurisdictions j ON starts_with(j.path, c.path)
    WHERE {selector} AND starts_with(c.path, $root)
)"""

def _period_condition(ind: Indicator) -> str:
    if ind.period in ("reported_at", "resolved_at"):
        return f"i.{ind.period} >= $start AND i.{ind.period} < $end"
    return "TRUE"


# the incident columns the definitions use (``f`` may be materialised: keep it narrow)
_FACT_COLUMNS = ("i.id, i.status, i.jurisdiction_code, i.department_code, i.reported_at,"
                 " i.claim_due, i.resolve_due, i.claimed_at, i.resolved_at, i.rating,"
                 " i.first_dispatched_at, i.first_claimed_at, i.returned_count,"
                 " i.reopened_count, i.supervised_count")


def _incident_base(ind: Indicator, scope: Scope, selector: str,
                   columns: str = _FACT_COLUMNS) -> tuple[str, str]:
    """(WITH … clauses, FROM clause) of the members of an incident indicator."""
    dept, _ = scope.department_filter("i.department_code")
    with_sql = (
        "WITH " + _KIDS.format(selector=selector)
        + f""", f AS (
    SELECT k.child, {columns} FROM incidents i JOIN kids k ON k.leaf = i.jurisdiction_code
    WHERE {_period_condition(ind)} AND {dept.replace("?", "$depts")}
)"""
    )
    return with_sql, "f"


def _incident_sql(ind: Indicator, scope: Scope, selector: str, bucket: str | None) -> str:
    with_sql, from_sql = _incident_base(ind, scope, selector)
    member, count = f"coalesce({ind.member_if}, false)", f"coalesce({ind.count_if}, false)"
    if bucket:  # a condition on the period's end means the end of the row's own bucket
        bucket_end = (f"($start + to_microseconds(CAST((floor((epoch(f.{ind.period})"
                      " - epoch($start)) / $step) + 1) * $step * 1000000 AS BIGINT)))")
        member, count = member.replace("$end", bucket_end), count.replace("$end", bucket_end)
    if ind.aggregate == "ratio":
        num = f"count(*) FILTER (WHERE {member} AND {count})"
        den = f"count(*) FILTER (WHERE {member})"
    elif ind.aggregate == "mean":
        num = f"sum({ind.sum_expr}) FILTER (WHERE {member})"
        den = f"count(*) FILTER (WHERE {member})"
    else:  # count, per_population
        num = f"count(*) FILTER (WHERE {member})"
        den = "NULL"
    group = f", {bucket.replace('$col', 'f.' + ind.period)} AS bucket" if bucket else ""
    return f"{with_sql}\nSELECT f.child{group}, {num} AS num, {den} AS den FROM {from_sql} GROUP BY ALL"


def _rollup_sql(ind: Indicator, scope: Scope, selector: str, bucket: str | None) -> str:
    agg = {"mean": "sum(r.total)", "max": "max(r.max_value)", "sum": "sum(r.warn_n)"}
    dept = ("TRUE" if scope.departments is None else
            "r.kind IN (SELECT kind FROM sensor_kinds WHERE department_code IN "
            "(SELECT unnest($depts::VARCHAR[])))")
    group = f", {bucket.replace('$col', 'r.hour')} AS bucket" if bucket else ""
    return f"""SELECT r.jurisdiction_code AS child{group}, {agg[ind.aggregate]} AS num,
       sum(r.n) AS den
FROM readings_hourly r JOIN jurisdictions c ON c.code = r.jurisdiction_code
WHERE {selector} AND starts_with(c.path, $root) AND r.kind = $kind
  AND r.hour >= $start AND r.hour < $end AND {dept}
GROUP BY ALL"""


def _sensor_sql(ind: Indicator, scope: Scope, selector: str, bucket: str | None) -> str:
    dept, _ = scope.department_filter("s.department_code")
    kind = "s.kind = $kind" if ind.sensor_kind else "TRUE"
    return ("WITH " + _KIDS.format(selector=selector) + f"""
SELECT k.child, count(*) FILTER (WHERE s.state <> 'offline') AS num, count(*) AS den
FROM sensor_status s JOIN kids k ON k.leaf = s.jurisdiction_code
WHERE {kind} AND {dept.replace("?", "$depts")}
GROUP BY ALL""")


_BUILDERS = {"incidents": _incident_sql, "rollups": _rollup_sql, "sensors": _sensor_sql}


def _run(store: Store, sql: str, values: dict[str, Any]) -> list[tuple]:
    used = set(_PARAM.findall(sql))
    return store.query(sql, {k: v for k, v in values.items() if k in used})


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _value(ind: Indicator, num: float | None, den: float | None,
           population: float | None = None) -> tuple[float | None, float | None, float | None]:
    """(value, numerator, denominator) of one group; None when the denominator is 0."""
    if ind.aggregate == "count":
        return float(num or 0), float(num or 0), None
    if ind.aggregate == "per_population":
        num = float(num or 0)
        if not population:
            return None, num, float(population or 0)
        return ind.scale * num / population, num, float(population)
    den = float(den or 0)
    if not den:
        return None, float(num or 0), den
    num = float(num or 0)
    # ratio, mean: scaled quotient; max, sum: the numerator, when anything is behind it
    value = ind.scale * num / den if ind.aggregate in ("ratio", "mean") else num
    if ind.transform is not None:
        value = ind.transform(value)
    return value, num, den


def _indicator(indicator_id: str) -> Indicator:
    try:
        return INDICATORS[indicator_id]
    except KeyError:
        raise KeyError(f"unknown indicator {indicator_id!r}; one of "
                       f"{', '.join(INDICATORS)}") from None


def _check_period(start: datetime, end: datetime) -> None:
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise TypeError("start and end must be datetimes (naive UTC)")
    if end <= start:
        raise ValueError(f"the period must end after it starts: {start} … {end}")


def _deny(store: Store, scope: Scope, indicator_id: str, code: Any, why: str) -> None:
    record(store, scope.username, "indicators.denied", target=str(code)[:200],
           detail=json.dumps({"indicator": indicator_id, "reason": why}, ensure_ascii=False))


def _allowed(store: Store, scope: Scope, indicator_id: str, code: Any) -> bool:
    """Is ``code`` a jurisdiction inside the scope, for a role that sees business data?
    Refusals are audited."""
    if not scope.business_data:
        _deny(store, scope, indicator_id, code, "platform role sees no business data")
        return False
    if not isinstance(code, str) or not scope.contains(store, code):
        _deny(store, scope, indicator_id, code, "outside the user's scope")
        return False
    return True


def _params(ind: Indicator, scope: Scope, start: datetime, end: datetime,
            now: datetime | None, code: str) -> dict[str, Any]:
    return {"root": scope.root_path, "start": start, "end": end, "now": now or _now(),
            "code": code, "kind": ind.sensor_kind,
            "depts": sorted(scope.departments or ())}


def evaluate(store: Store, scope: Scope, indicator_id: str, *, parent_code: str,
             start: datetime, end: datetime, now: datetime | None = None
             ) -> list[IndicatorValue]:
    """One value per child jurisdiction of ``parent_code``, in code order.

    Empty when ``parent_code`` is outside the scope (audited), when it has no children or
    when the children's level is not one the indicator supports.

    >>> [v.code for v in evaluate(store, scope, "overdue", parent_code="C",
    ...                           start=t0, end=t1)]              # doctest: +SKIP
    ['D1', 'D2']
    """
    ind = _indicator(indicator_id)
    _check_period(start, end)
    if not _allowed(store, scope, indicator_id, parent_code):
        return []
    kids = store.query_dicts(
        "SELECT code, name_zh, name_en, level, population FROM jurisdictions"
        " WHERE parent_code = ? AND starts_with(path, ?) ORDER BY code",
        [parent_code, scope.root_path])
    kids = [k for k in kids if k["level"] in ind.levels]
    if not kids:
        return []
    sql = _BUILDERS[ind.source](ind, scope, "c.parent_code = $code", None)
    found = {row[0]: row[1:] for row in _run(store, sql, _params(ind, scope, start, end, now,
                                                                   parent_code))}
    return [_make_value(ind, k, *found.get(k["code"], (None, None))) for k in kids]


def evaluate_one(store: Store, scope: Scope, indicator_id: str, *, code: str,
                 start: datetime, end: datetime, now: datetime | None = None
                 ) -> IndicatorValue | None:
    """One jurisdiction's value; None when ``code`` is outside the scope (audited) or its
    level is not supported by the indicator.

    >>> evaluate_one(store, scope, "satisfaction", code="D1", start=t0, end=t1).value  # doctest: +SKIP
    92.3
    """
    ind = _indicator(indicator_id)
    _check_period(start, end)
    if not _allowed(store, scope, indicator_id, code):
        return None
    row = store.query_dicts(
        "SELECT code, name_zh, name_en, level, population FROM jurisdictions WHERE code = ?",
        [code])[0]
    if row["level"] not in ind.levels:
        return None
    sql = _BUILDERS[ind.source](ind, scope, "c.code = $code", None)
    found = _run(store, sql, _params(ind, scope, start, end, now, code))
    num, den = found[0][1:] if found else (None, None)
    return _make_value(ind, row, num, den)


def _make_value(ind: Indicator, row: dict, num: Any, den: Any) -> IndicatorValue:
    value, num, den = _value(ind, num, den, row.get("population"))
    return IndicatorValue(row["code"], row["name_zh"], row.get("name_en"), value, num, den,
                          ind.level_of(value))


def trend(store: Store, scope: Scope, indicator_id: str, *, code: str, start: datetime,
          end: datetime, step: timedelta = timedelta(days=1)) -> list[TrendPoint]:
    """The indicator of one jurisdiction per bucket ``[start + k·step, start + (k+1)·step)``.

    Each point equals ``evaluate_one`` over its bucket. Empty for snapshot indicators
    (``Indicator.snapshot``) and when ``code`` is outside the scope (audited).

    >>> [p.value for p in trend(store, scope, "overdue", code="C", start=t0, end=t1)]  # doctest: +SKIP
    []
    """
    ind = _indicator(indicator_id)
    _check_period(start, end)
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    if not _allowed(store, scope, indicator_id, code) or ind.snapshot:
        return []
    row = store.query_dicts(
        "SELECT code, level, population FROM jurisdictions WHERE code = ?", [code])[0]
    if row["level"] not in ind.levels:
        return []
    bucket = "floor((epoch($col) - epoch($start)) / $step)::BIGINT"
    sql = _BUILDERS[ind.source](ind, scope, "c.code = $code", bucket)
    values = _params(ind, scope, start, end, None, code) | {"step": step.total_seconds()}
    found = {r[1]: r[2:] for r in _run(store, sql, values)}
    points = []
    k, t = 0, start
    while t < end:
        value, num, den = _value(ind, *found.get(k, (None, None)), row.get("population"))
        points.append(TrendPoint(t, value, num, den))
        k, t = k + 1, t + step
    return points


_MEMBER_COLUMNS = ("f.id, f.tracking_code, f.category, f.priority, f.status, f.source, f.title,"
                   " f.jurisdiction_code, f.department_code, f.reported_at, f.claim_due,"
                   " f.resolve_due, f.claimed_at, f.resolved_at, f.rating")


def members(store: Store, scope: Scope, indicator_id: str, *, code: str, start: datetime,
            end: datetime, now: datetime | None = None, limit: int = 10_000) -> list[dict]:
    """The rows behind a number, with the same filters: the incidents of the denominator
    (``counted`` True for those in the numerator) or the sensors (sensor indicators, with
    their current state). Empty outside the scope (audited).

    >>> rows = members(store, scope, "overdue", code="D1", start=t0, end=t1)  # doctest: +SKIP
    >>> len(rows) == evaluate_one(store, scope, "overdue", code="D1",
    ...                           start=t0, end=t1).numerator               # doctest: +SKIP
    True
    """
    ind = _indicator(indicator_id)
    _check_period(start, end)
    if not _allowed(store, scope, indicator_id, code):
        return []
    values = _params(ind, scope, start, end, now, code) | {"limit": int(limit)}
    if ind.source == "incidents":
        with_sql, from_sql = _incident_base(ind, scope, "c.code = $code", "i.*")
        counted = (f"coalesce({ind.count_if}, false)" if ind.aggregate == "ratio" else "true")
        sql = (f"{with_sql}\nSELECT {_MEMBER_COLUMNS}, {counted} AS counted FROM {from_sql}"
               f" WHERE coalesce({ind.member_if}, false)"
               " ORDER BY counted, f.reported_at DESC, f.id LIMIT $limit")
    else:
        dept, _ = scope.department_filter("s.department_code")
        kind = "s.kind = $kind" if ind.sensor_kind else "TRUE"
        sql = ("WITH " + _KIDS.format(selector="c.code = $code") + f"""
SELECT s.sensor_id, s.code, s.kind, s.name, s.jurisdiction_code, s.department_code, s.ts,
       s.value, s.state, s.lon, s.lat
FROM sensor_status s JOIN kids k ON k.leaf = s.jurisdiction_code
WHERE {kind} AND {dept.replace("?", "$depts")}
ORDER BY s.state = 'offline' DESC, s.value DESC NULLS LAST, s.code LIMIT $limit""")
    return store.query_dicts(sql, {k: v for k, v in values.items()
                                   if k in set(_PARAM.findall(sql))})
