"""What the public may read of an incident (issue 8): its status and timeline in public words
(no staff names, no internal notes, no contact; the description with personal data masked),
looked up by tracking code, and the Open311 GeoReport search over the reports the public made.
``core.public`` re-exports the names; Open311 and the track page call them from there.

>>> public_status("in_progress", "en")
'Being handled'
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.audit import mask_personal
from core.sla import utcnow
from core.store import Store

__all__ = ["LISTED_SOURCES", "TRACKABLE_SOURCES", "PublicError", "PublicIncident", "PublicStep",
           "public_status", "public_view", "request_for_token", "search_requests"]

class PublicError(ValueError):
    """A public request was refused; ``status`` is the HTTP code, ``field`` the input at fault.

    Nothing was changed when this is raised.
    """

    def __init__(self, message: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


# Sources whose incidents a citizen may look up by tracking code, and those listed in
# Open311's GET requests (reports the public made itself).
TRACKABLE_SOURCES = ("hotline", "citizen_app", "grid_patrol", "open311")
LISTED_SOURCES = ("citizen_app", "open311")
_TRACKING = re.compile(r"^[A-Z]{2}\d{8,20}$")

# Public words for statuses and timeline steps: (zh, en). Staff names and notes never appear.
_STATUS_WORDS: dict[str, tuple[str, str]] = {
    "reported": ("已受理", "Received"),
    "dispatched": ("已派发至责任单位", "Sent to the responsible department"),
    "claimed": ("责任单位已接单", "Accepted by the department"),
    "in_progress": ("正在处理", "Being handled"),
    "resolved": ("已处理，待核查", "Handled, being checked"),
    "verified": ("已核查", "Checked on site"),
    "closed": ("已办结", "Closed"),
    "returned": ("重新分派中", "Being reassigned"),
    "reopened": ("重新办理中", "Reopened for a second follow-up"),
}
_STEP_WORDS: dict[str, tuple[str, str]] = {
    "report": ("已受理您的反映", "Your report was received"),
    "dispatch": ("已派发至 {dept}", "Sent to {dept}"),
    "transfer": ("已转交 {dept}", "Passed on to {dept}"),
    "claim": ("{dept} 已接单", "{dept} accepted it"),
    "return": ("重新分派中", "Being reassigned to the right department"),
    "start": ("开始处理", "Work started"),
    "resolve": ("处理完毕，待核查", "Work done, being checked"),
    "verify": ("现场核查通过", "Checked on site"),
    "verify_failed": ("核查未通过，继续处理", "Check found more to do; work continues"),
    "approve_extension": ("处理期限已延长", "Deadline extended"),
    "close": ("已办结", "Closed"),
    "rate": ("已评价：{rating} 星", "Rated {rating} of 5"),
    "reopen": ("回访不满意，重新办理", "Reopened after an unsatisfied rating"),
    "merge": ("与他人反映的同一问题合并办理", "Merged with an earlier report of the same problem"),
}
_DEPT_STEPS = frozenset({"dispatch", "transfer", "claim"})


def _key_hash(incident_id: int, key: str) -> str:
    return hashlib.sha256(f"yiwang-public:{incident_id}:{key.strip().upper()}".encode()
                          ).hexdigest()


def _jurisdiction_path(store: Store, code: str | None) -> str | None:
    if code is None:
        return None
    row = store.query_one("SELECT path FROM jurisdictions WHERE code = ?", [code])
    if row is None:
        raise PublicError(f"unknown jurisdiction_id {code!r}", status=404,
                          field="jurisdiction_id")
    return row[0]


# -- the public view ---------------------------------------------------------------------

def public_status(status: str, locale: str = "zh_CN") -> str:
    """A status in public words."""
    zh, en = _STATUS_WORDS.get(status, (status, status))
    return en if locale == "en" else zh


@dataclass(frozen=True)
class PublicStep:
    ts: datetime
    action: str
    text_zh: str
    text_en: str

    def text(self, locale: str) -> str:
        return self.text_en if locale == "en" else self.text_zh


@dataclass(frozen=True)
class PublicIncident:
    """An incident as its reporter (and anyone with the tracking code) may see it."""

    tracking_code: str
    service_code: str
    service_zh: str
    service_en: str
    status: str
    is_open: bool
    description: str
    lon: float
    lat: float
    place_zh: str
    place_en: str
    department_zh: str | None
    department_en: str | None
    reported_at: datetime
    updated_at: datetime
    expected_at: datetime | None
    closed_at: datetime | None
    rating: int | None
    steps: tuple[PublicStep, ...]
    merged_into: str | None
    token: str | None
    rateable: bool
    photos: int

    def status_text(self, locale: str) -> str:
        return public_status(self.status, locale)


def _steps_of(store: Store, ids: list[int], ratings: dict[int, int | None]
              ) -> dict[int, tuple[PublicStep, ...]]:
    """The public timeline of each incident in ``ids`` (one query for all)."""
    rows = store.query(
        "SELECT e.incident_id, e.ts, e.action, d.name_zh, d.name_en FROM incident_events e"
        " LEFT JOIN departments d ON d.code = e.department_code"
        " WHERE e.incident_id IN (SELECT unnest(?::BIGINT[])) ORDER BY e.incident_id, e.seq",
        [ids])
    out: dict[int, list[PublicStep]] = {i: [] for i in ids}
    for incident_id, ts, action, dept_zh, dept_en in rows:
        words = _STEP_WORDS.get(action)
        if words is None:
            continue  # internal steps (supervision, escalation, co-handling) stay internal
        zh, en = words
        rating = ratings.get(incident_id) or ""
        if action in _DEPT_STEPS and "," in (dept_zh or ""):
            dept_zh = dept_en = None
        values_zh = {"dept": dept_zh or "责任单位", "rating": rating}
        values_en = {"dept": dept_en or "the department", "rating": rating}
        out[incident_id].append(PublicStep(ts, action, zh.format(**values_zh),
                                           en.format(**values_en)))
    return {k: tuple(v) for k, v in out.items()}


_VIEW_SQL = (
    "SELECT i.id, i.tracking_code, i.category, c.name_zh, c.name_en, i.status,"
    " i.description, i.lon, i.lat, j.name_zh, j.name_en, d.name_zh, d.name_en,"
    " i.reported_at, i.resolve_due, i.closed_at, i.rating, m.tracking_code,"
    " p.token, p.key_hash"
    " FROM incidents i JOIN incident_categories c ON c.code = i.category"
    " JOIN jurisdictions j ON j.code = i.jurisdiction_code"
    " LEFT JOIN departments d ON d.code = i.department_code"
    " LEFT JOIN incidents m ON m.id = i.merged_into"
    " LEFT JOIN public_reports p ON p.incident_id = i.id"
    " WHERE i.source IN (SELECT unnest(?::VARCHAR[])) AND ")


def _views(store: Store, where: str, params: list, *, key: str | None = None,
           sources: tuple[str, ...] = TRACKABLE_SOURCES, order: str = "",
           limit: int = 1000) -> list[PublicIncident]:
    rows = store.query(_VIEW_SQL + where + order + " LIMIT ?",
                       [list(sources), *params, limit])
    ids = [r[0] for r in rows]
    steps = _steps_of(store, ids, {r[0]: r[16] for r in rows})
    photo_counts = dict(store.query(
        "SELECT incident_id, count(*) FROM public_photos WHERE incident_id IN"
        " (SELECT unnest(?::BIGINT[])) GROUP BY incident_id", [ids])) if ids else {}
    rated = {(r[0], r[1]) for r in store.query(
        "SELECT incident_id, closed_at FROM public_ratings WHERE incident_id IN"
        " (SELECT unnest(?::BIGINT[]))", [ids])} if ids else set()
    views = []
    for row in rows:
        (incident_id, tcode, cat, cat_zh, cat_en, status, description, lon, lat, place_zh,
         place_en, dept_zh, dept_en, reported, due, closed, rating, merged, token,
         key_hash) = row
        updated = steps[incident_id][-1].ts if steps[incident_id] else reported
        photos = photo_counts.get(incident_id, 0)
        rated_now = (incident_id, closed) in rated
        good_key = bool(key and key_hash and hmac.compare_digest(
            key_hash, _key_hash(incident_id, key)))
        rateable = (good_key and status == "closed" and rating is None and not rated_now
                    and merged is None)
        text = mask_personal(description or "").split("\n地址：")[0]
        hidden = status == "reported"  # suggested by routing, not yet sent anywhere
        views.append(PublicIncident(
            tcode, cat, cat_zh, cat_en, status, status != "closed", text, round(lon, 5),
            round(lat, 5), place_zh, place_en or place_zh, None if hidden else dept_zh,
            None if hidden else dept_en, reported, updated or reported,
            due if status != "closed" else None, closed, rating, steps[incident_id], merged,
            token, rateable, int(photos)))
    return views


def public_view(store: Store, tracking_code: str, *, key: str | None = None
                ) -> PublicIncident | None:
    """The public-safe view of one incident by tracking code, or None (also for codes of
    internal sources: sensor alerts and department reports are not public).

    ``rateable`` is True only with the right ``key`` on a closed, not yet rated incident.
    """
    code = (tracking_code or "").strip().upper()
    if not _TRACKING.match(code):
        return None
    found = _views(store, "i.tracking_code = ?", [code], key=key, limit=1)
    return found[0] if found else None


# -- Open311 search ------------------------------------------------------------------------

def search_requests(store: Store, *, codes: list[str] | None = None,
                    services: list[str] | None = None, start: datetime | None = None,
                    end: datetime | None = None, statuses: list[str] | None = None,
                    jurisdiction: str | None = None, limit: int = 1000
                    ) -> list[PublicIncident]:
    """Public reports for Open311's GET requests. With ``codes`` any trackable incident by
    tracking code; otherwise reports the public made, newest first, within 90 days of
    ``end`` by default (the spec's window)."""
    path = _jurisdiction_path(store, jurisdiction)
    where, params = ["TRUE"], []
    if codes:
        where.append("i.tracking_code IN (SELECT unnest(?::VARCHAR[]))")
        params.append([c.strip().upper() for c in codes][:200])
        sources = TRACKABLE_SOURCES
    else:
        sources = LISTED_SOURCES
        if services:
            where.append("i.category IN (SELECT unnest(?::VARCHAR[]))")
            params.append(services)
        if end is None:
            end = utcnow()
        if start is None:
            start = end - timedelta(days=90)
        where.append("i.reported_at BETWEEN ? AND ?")
        params += [start, end]
        if statuses:
            wanted = set(statuses)
            if wanted == {"open"}:
                where.append("i.status <> 'closed'")
            elif wanted == {"closed"}:
                where.append("i.status = 'closed'")
    if path is not None:
        where.append("i.jurisdiction_code IN (SELECT code FROM jurisdictions"
                     " WHERE starts_with(path, ?))")
        params.append(path)
    return _views(store, " AND ".join(where), params, sources=sources,
                  order=" ORDER BY i.reported_at DESC, i.id DESC", limit=limit)


def request_for_token(store: Store, token: str) -> str | None:
    """The tracking code of the request created with an Open311 ``token``."""
    if not re.fullmatch(r"[0-9a-f]{24}", token or ""):
        return None
    row = store.query_one("SELECT i.tracking_code FROM public_reports p JOIN incidents i"
                          " ON i.id = p.incident_id WHERE p.token = ?", [token])
    return row[0] if row else None
