"""What the indicators page (驾驶舱) shows for one state: the state in the URL, the period,
the children's values and colours, the trend, the table and its exports.

Kept out of the page module: Dash executes page files before registering them in
``sys.modules``, which dataclasses need. Every number comes from ``core.indicators`` with the
user's scope; a state naming a jurisdiction outside the scope gives no view (and core audits
the refusal).

>>> state = parse_state({"ind": "overdue", "code": "D1", "period": "30d"})
>>> state.indicator, state.code, state.period
('overdue', 'D1', '30d')
>>> state_search(state)
'?ind=overdue&code=D1&period=30d&cmp=1'
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from core.indicators import (
    INDICATORS,
    Indicator,
    IndicatorValue,
    TrendPoint,
    evaluate,
    evaluate_one,
    members,
    trend,
)
from core.jurisdictions import get_jurisdiction, jurisdictions_geojson
from core.lookups import jurisdiction_centroid
from core.scope import Scope
from core.store import Store

__all__ = [
    "DEFAULT_INDICATOR",
    "PERIODS",
    "DrillView",
    "Period",
    "ViewState",
    "build_view",
    "colour_for",
    "detail_rows",
    "export_bytes",
    "local_offset_hours",
    "parse_state",
    "period_bounds",
    "state_search",
    "table_rows",
    "worst_first",
]

DEFAULT_INDICATOR = "resolve_on_time"
PERIODS = ("today", "7d", "30d", "custom")
COLOUR_MODES = ("rank", "target")
MAX_CUSTOM_DAYS = 366
GOOD, WARN, BAD, NODATA = "#2fd08a", "#f5b83d", "#ff5d73", "#3a4a63"
# from good to bad, for indicators without absolute thresholds (coloured by rank)
RAMP = ("#2fd08a", "#9bd84f", "#f5d13d", "#f59a3d", "#ff5d73")
_SIMPLIFY_FRACTION = 1 / 1500
VIEW_THREADS = 3  # reads of one drill view run side by side


@dataclass(frozen=True)
class ViewState:
    """Everything a link must carry to reopen the same view (within the opener's scope)."""

    indicator: str = DEFAULT_INDICATOR
    code: str | None = None          # the jurisdiction whose children are compared
    period: str = "7d"
    start: date | None = None        # custom period: local dates, both included
    end: date | None = None
    compare: bool = True
    detail: str | None = None        # the jurisdiction whose rows behind the number are listed
    colour: str = "rank"             # 'rank' among siblings or 'target' (the thresholds)

    def to_dict(self) -> dict[str, Any]:
        return {"ind": self.indicator, "code": self.code, "period": self.period,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
                "cmp": self.compare, "detail": self.detail, "colour": self.colour}


def _date(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10]) if text else None
    except ValueError:
        return None


def parse_state(query: dict[str, Any]) -> ViewState:
    """A state from URL query parameters (or ``ViewState.to_dict``); bad values fall back
    to defaults instead of failing.

    >>> parse_state({"ind": "nope", "period": "custom", "start": "2026-11-01", "end": "x"})
    ViewState(indicator='resolve_on_time', code=None, period='7d', start=None, end=None, compare=True, detail=None, colour='rank')
    """
    ind = query.get("ind")
    ind = ind if ind in INDICATORS else DEFAULT_INDICATOR
    period = query.get("period") if query.get("period") in PERIODS else "7d"
    start, end = _date(query.get("start")), _date(query.get("end"))
    if period == "custom" and (start is None or end is None or end < start
                               or (end - start).days >= MAX_CUSTOM_DAYS):
        period, start, end = "7d", None, None
    if period != "custom":
        start = end = None
    cmp = query.get("cmp", True)
    compare = cmp not in ("0", "false", False, 0)
    code = query.get("code")
    detail = query.get("detail")
    colour = query.get("colour") if query.get("colour") in COLOUR_MODES else "rank"
    return ViewState(ind, code if isinstance(code, str) and code else None, period, start, end,
                     compare, detail if isinstance(detail, str) and detail else None, colour)


def state_search(state: ViewState) -> str:
    """The URL query string of a state (only what differs from nothing)."""
    params: dict[str, str] = {"ind": state.indicator}
    if state.code:
        params["code"] = state.code
    params["period"] = state.period
    if state.period == "custom" and state.start and state.end:
        params["start"], params["end"] = state.start.isoformat(), state.end.isoformat()
    params["cmp"] = "1" if state.compare else "0"
    if state.detail:
        params["detail"] = state.detail
    if state.colour != "rank":
        params["colour"] = state.colour
    return "?" + urlencode(params)


@dataclass(frozen=True)
class Period:
    """The period in naive UTC, the one before it (same length) and the trend's step."""

    start: datetime
    end: datetime
    prev_start: datetime
    prev_end: datetime
    step: timedelta
    offset_hours: int

    def local(self, moment: datetime) -> datetime:
        return moment + timedelta(hours=self.offset_hours)


def local_offset_hours(store: Store, scope: Scope) -> int:
    """Hours east of UTC of the city (from the scope root's longitude: 120.3° → 8).

    China keeps one time zone; the rule also serves a demo city anywhere.
    """
    centroid = jurisdiction_centroid(store, scope.root_code)
    return int(round((centroid[0] or 0.0) / 15.0)) if centroid else 0


def period_bounds(state: ViewState, now: datetime, offset_hours: int) -> Period:
    """Whole local days: today, the last 7 or 30 days (today included), or custom dates.

    >>> p = period_bounds(ViewState(period="7d"), datetime(2026, 11, 28, 13, 0), 8)
    >>> p.start, p.end, p.prev_start, p.step
    (datetime.datetime(2026, 11, 21, 16, 0), datetime.datetime(2026, 11, 28, 16, 0), datetime.datetime(2026, 11, 14, 16, 0), datetime.timedelta(days=1))
    """
    offset = timedelta(hours=offset_hours)
    today = (now + offset).date()
    if state.period == "custom" and state.start and state.end:
        first, last = state.start, state.end
    else:
        days = {"today": 1, "7d": 7, "30d": 30}.get(state.period, 7)
        first, last = today - timedelta(days=days - 1), today
    start = datetime.combine(first, datetime.min.time()) - offset
    end = datetime.combine(last + timedelta(days=1), datetime.min.time()) - offset
    length = end - start
    step = timedelta(hours=1) if length <= timedelta(days=1) else timedelta(days=1)
    return Period(start, end, start - length, start, step, offset_hours)


def colour_for(ind: Indicator, value: float | None, values: list[float | None],
               mode: str = "rank") -> str:
    """The fill of one value: by rank among ``values`` (its siblings), green for the best
    and red for the worst; or, in 'target' mode for an indicator with thresholds, the
    threshold's colour (good / warn / bad).

    >>> colour_for(INDICATORS["overdue"], 9, [1, 5, 9]) == RAMP[-1]
    True
    >>> colour_for(INDICATORS["resolve_on_time"], 91, [91, 95], "target") == GOOD
    True
    """
    if value is None:
        return NODATA
    level = ind.level_of(value) if mode == "target" else None
    if level is not None:
        return {"good": GOOD, "warn": WARN, "bad": BAD}[level]
    present = [v for v in values if v is not None]
    lo, hi = min(present), max(present)
    if hi == lo:
        return RAMP[0]
    t = (value - lo) / (hi - lo)
    if ind.good == "up":
        t = 1 - t
    return RAMP[min(len(RAMP) - 1, int(t * len(RAMP)))]


def worst_first(ind: Indicator, values: list[IndicatorValue]) -> list[IndicatorValue]:
    """Values ordered worst first (no value last).

    >>> [v.code for v in worst_first(INDICATORS["overdue"], [
    ...     IndicatorValue("a", "", "", 1, 1, None), IndicatorValue("b", "", "", 5, 5, None)])]
    ['b', 'a']
    """
    sign = -1 if ind.good == "down" else 1
    return sorted(values, key=lambda v: (v.value is None, sign * (v.value or 0), v.code))


@dataclass(frozen=True)
class DrillView:
    """One rendered state: the focus, its children's values now and before, the map, trend."""

    state: ViewState
    indicator: Indicator
    period: Period
    focus: dict[str, Any]
    crumbs: list[dict[str, Any]]
    values: list[IndicatorValue]
    previous: dict[str, float | None]
    focus_value: IndicatorValue | None
    focus_previous: IndicatorValue | None
    trend: list[TrendPoint]
    trend_previous: list[TrendPoint]
    geojson: dict[str, Any]
    colours: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return self.focus["code"]

    @property
    def bounds(self) -> list[list[float]]:
        f = self.focus
        return [[f["min_lat"], f["min_lon"]], [f["max_lat"], f["max_lon"]]]

    @property
    def drillable(self) -> bool:
        """Can the children be drilled into (do they have supported children)?"""
        return self.focus["level"] in self.indicator.levels[:-1]


def build_view(store: Store, scope: Scope, state: ViewState, now: datetime) -> DrillView | None:
    """The view of ``state`` for a user; None when its jurisdiction is outside the scope."""
    code = state.code or scope.root_code
    ind = INDICATORS[state.indicator]
    period = period_bounds(state, now, local_offset_hours(store, scope))
    focus = get_jurisdiction(store, scope, code)
    if focus is None:
        # outside the scope: core refuses (and audits) the evaluation, as for any crafted code
        evaluate(store, scope, ind.id, parent_code=code, start=period.start, end=period.end,
                 now=now)
        return None
    extent = max(focus["max_lon"] - focus["min_lon"], focus["max_lat"] - focus["min_lat"])
    compare = state.compare and not ind.snapshot
    # the reads are independent: side by side, each on its thread's own cursor (DuckDB
    # releases the GIL); the threads end with the call and close their cursors with them
    with ThreadPoolExecutor(VIEW_THREADS, thread_name_prefix="yiwang-view") as pool:
        values_f = pool.submit(evaluate, store, scope, ind.id, parent_code=code,
                               start=period.start, end=period.end, now=now)
        focus_f = pool.submit(evaluate_one, store, scope, ind.id, code=code,
                              start=period.start, end=period.end, now=now)
        geojson_f = pool.submit(jurisdictions_geojson, store, scope, code,
                                simplify=extent * _SIMPLIFY_FRACTION)
        previous_f = focus_previous_f = trend_f = None
        if compare:
            previous_f = pool.submit(evaluate, store, scope, ind.id, parent_code=code,
                                     start=period.prev_start, end=period.prev_end, now=now)
            focus_previous_f = pool.submit(evaluate_one, store, scope, ind.id, code=code,
                                           start=period.prev_start, end=period.prev_end,
                                           now=now)
            trend_f = pool.submit(trend, store, scope, ind.id, code=code,
                                  start=period.prev_start, end=period.end, step=period.step)
        elif not ind.snapshot:
            trend_f = pool.submit(trend, store, scope, ind.id, code=code, start=period.start,
                                  end=period.end, step=period.step)
        values = values_f.result()
        focus_value = focus_f.result()
        geojson = geojson_f.result()
        previous: dict[str, float | None] = {}
        focus_previous = None
        points: list[TrendPoint] = []
        before: list[TrendPoint] = []
        if compare:
            previous = {v.code: v.value for v in previous_f.result()}
            focus_previous = focus_previous_f.result()
            both = trend_f.result()
            half = len(both) // 2
            before, points = both[:half], both[half:]
        elif trend_f is not None:
            points = trend_f.result()
    present = [v.value for v in values]
    colours = {v.code: colour_for(ind, v.value, present, state.colour) for v in values}
    by_code = {v.code: v for v in values}
    for feature in geojson["features"]:
        props = feature["properties"]
        v = by_code.get(props["code"])
        props["value"] = None if v is None else v.value
        props["fill"] = colours.get(props["code"], NODATA)
        props["label"] = format_value(ind, props["value"])
    trail = focus["path"].strip("/").split("/")
    trail = trail[trail.index(scope.root_code):] if scope.root_code in trail else [code]
    crumbs = [j for c in trail if (j := get_jurisdiction(store, scope, c)) is not None]
    return DrillView(replace(state, code=code), ind, period, focus, crumbs, values, previous,
                     focus_value, focus_previous, points, before, geojson, colours)


def format_value(ind: Indicator, value: float | None) -> str:
    """A value with the indicator's digits, '—' when there is none.

    >>> format_value(INDICATORS["resolve_on_time"], 93.456)
    '93.5%'
    """
    if value is None:
        return "—"
    text = f"{value:,.{ind.digits}f}"
    return text + "%" if ind.unit == "%" else text


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def table_rows(view: DrillView, locale: str) -> list[dict[str, Any]]:
    """The table (and its exports): one row per child, worst first, with the change."""
    ind, rows = view.indicator, []
    for rank, v in enumerate(worst_first(ind, view.values), 1):
        before = view.previous.get(v.code)
        change = None if v.value is None or before is None else v.value - before
        name = (v.name_en or v.name_zh) if locale == "en" else v.name_zh
        rows.append({"id": v.code, "rank": rank, "code": v.code, "name": name,
                     "value": _round(v.value, ind.digits + 1),
                     "numerator": _round(v.numerator, 2), "denominator": _round(v.denominator, 2),
                     "previous": _round(before, ind.digits + 1),
                     "change": _round(change, ind.digits + 1)})
    return rows


def detail_rows(store: Store, scope: Scope, view: DrillView, code: str,
                limit: int = 5000) -> list[dict[str, Any]]:
    """The rows behind the number of ``code`` (scoped again), with times as text."""
    p = view.period
    rows = members(store, scope, view.indicator.id, code=code, start=p.start, end=p.end,
                   limit=limit)
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = p.local(value).strftime("%Y-%m-%d %H:%M")
    return rows


def export_bytes(rows: list[dict[str, Any]], columns: list[tuple[str, str]], fmt: str,
                 sheet: str = "indicators") -> bytes:
    """The rows as CSV (UTF-8 with BOM, so spreadsheet programs read Chinese) or XLSX.

    ``columns`` is (key, header) in order.

    >>> export_bytes([{"a": 1}], [("a", "A")], "csv")
    b'\\xef\\xbb\\xbfA\\r\\n1\\r\\n'
    """
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([header for _, header in columns])
        for row in rows:
            writer.writerow(["" if row.get(k) is None else row.get(k) for k, _ in columns])
        return buffer.getvalue().encode("utf-8-sig")
    if fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        ws = book.active
        ws.title = sheet[:31]
        ws.append([header for _, header in columns])
        for row in rows:
            ws.append([row.get(k) for k, _ in columns])
        ws.freeze_panes = "A2"
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()
    raise ValueError(f"unknown export format {fmt!r}; csv or xlsx")
