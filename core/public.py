"""Public participation (issue 8): what citizens and third-party apps may see and do.

Everything here is safe to answer to anyone on the internet:

- ``list_services`` — the incident categories citizens may report (Open311 "services");
- ``submit_report`` — validate (pydantic), clean the photo, then enter the ONE incident entry
  point ``core.incidents.report_incident``; returns the tracking code and a secret key;
- ``public_view`` — an incident by tracking code in public words: status, a timeline of
  public steps (no staff names, no internal notes, no contact), description with personal
  data masked;
- ``rate`` — after closure, with the secret key; a bad rating (1–2) reopens the incident for
  a second follow-up (design §5) through ``core.incidents.transition``;
- assisted reporting (代办): a grid worker / social organisation reports for a resident,
  recorded as such (``channel='assisted'``, who and for whom);
- API keys for Open311 clients live in ``core.api_keys``.

>>> form = validate_report({"category": "garbage_overflow", "description": "垃圾桶满了",
...                         "lon": 120.3, "lat": 31.9})
>>> form.category
'garbage_overflow'
>>> public_status("in_progress", "en")
'Being handled'
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.audit import audit_dir, mask_personal, record
from core.incidents import (
    Incident,
    IncidentError,
    TransitionRefused,
    find_duplicates,
    report_incident,
    transition,
    write_transaction,
)
from core.roles import Role
from core.sla import utcnow
from core.store import Store
from core.users import User

__all__ = [
    "ASSIST_ROLES",
    "PHOTO_MAX_BYTES",
    "PublicError",
    "PublicIncident",
    "PublicStep",
    "RateResult",
    "Receipt",
    "ReportForm",
    "Service",
    "city_outline",
    "clean_photo",
    "get_service",
    "incident_photos",
    "photo_file",
    "list_services",
    "nearby_reports",
    "photo_dir_for",
    "public_status",
    "public_view",
    "rate",
    "root_jurisdiction",
    "search_requests",
    "submit_report",
]

MAX_DESCRIPTION = 2000
PHOTO_MAX_BYTES = 8 * 1024 * 1024
PHOTO_MAX_PIXELS = 40_000_000
PHOTO_MAX_SIDE = 2048
PHOTO_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
ASSIST_ROLES = frozenset({Role.GRID_WORKER, Role.SOCIAL_ORG, Role.GRASSROOTS})
# Sources whose incidents a citizen may look up by tracking code, and those listed in
# Open311's GET requests (reports the public made itself).
TRACKABLE_SOURCES = ("hotline", "citizen_app", "grid_patrol", "open311")
LISTED_SOURCES = ("citizen_app", "open311")
_KEY_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
_TRACKING = re.compile(r"^[A-Z]{2}\d{8,20}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{4,19}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,24}$")

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


class PublicError(ValueError):
    """A public request was refused; ``status`` is the HTTP code, ``field`` the input at fault.

    Nothing was changed when this is raised.
    """

    def __init__(self, message: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


# -- validation ---------------------------------------------------------------------------

class ReportForm(BaseModel):
    """What a citizen (or an Open311 client, or a grid worker for a resident) sends."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    category: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = Field(min_length=2, max_length=MAX_DESCRIPTION)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    address: str | None = Field(default=None, max_length=200)
    contact: str | None = Field(default=None, max_length=100)
    on_behalf_of: str | None = Field(default=None, max_length=100)

    @field_validator("contact")
    @classmethod
    def _contact(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        if _PHONE.match(v) and sum(c.isdigit() for c in v) >= 5:
            return re.sub(r"[ \-]", "", v)
        if _EMAIL.match(v):
            return v
        raise ValueError("give a phone number or an e-mail address")

    @field_validator("address", "on_behalf_of")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v if v else None


def validate_report(data: dict[str, Any] | ReportForm) -> ReportForm:
    """The validated form, or ``PublicError`` naming every bad field in plain words."""
    if isinstance(data, ReportForm):
        return data
    try:
        return ReportForm.model_validate(data)
    except ValidationError as exc:
        problems = []
        first = None
        for err in exc.errors(include_url=False):
            name = ".".join(str(p) for p in err["loc"]) or "form"
            first = first or name
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {msg}")
        raise PublicError("; ".join(problems), field=first) from None


def _check_text(text: str, name: str) -> None:
    if any(ord(c) < 32 and c not in "\n\r\t" for c in text):
        raise PublicError(f"{name}: control characters are not allowed", field=name)


# -- services ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Service:
    """An incident category as a public service (Open311 ``service``)."""

    code: str
    name_zh: str
    name_en: str
    group_zh: str
    group_en: str

    def name(self, locale: str) -> str:
        return self.name_en if locale == "en" else self.name_zh

    def group(self, locale: str) -> str:
        return self.group_en if locale == "en" else self.group_zh


_SERVICE_SQL = ("SELECT c.code, c.name_zh, c.name_en, coalesce(d.name_zh, ''),"
                " coalesce(d.name_en, '') FROM incident_categories c"
                " LEFT JOIN departments d ON d.code = c.department_code")


def list_services(store: Store) -> list[Service]:
    """Every category a citizen may report, by code."""
    return [Service(*r) for r in store.query(_SERVICE_SQL + " ORDER BY c.code")]


def get_service(store: Store, code: str) -> Service | None:
    row = store.query_one(_SERVICE_SQL + " WHERE c.code = ?", [code])
    return Service(*row) if row else None


def root_jurisdiction(store: Store) -> dict[str, Any] | None:
    """The top of the jurisdiction tree (the Open311 ``jurisdiction_id``)."""
    rows = store.query_dicts("SELECT code, name_zh, name_en, path, min_lon, min_lat, max_lon,"
                             " max_lat FROM jurisdictions ORDER BY depth, code LIMIT 1")
    return rows[0] if rows else None


def _jurisdiction_path(store: Store, code: str | None) -> str | None:
    if code is None:
        return None
    row = store.query_one("SELECT path FROM jurisdictions WHERE code = ?", [code])
    if row is None:
        raise PublicError(f"unknown jurisdiction_id {code!r}", status=404,
                          field="jurisdiction_id")
    return row[0]


# -- photos ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CleanPhoto:
    data: bytes
    width: int
    height: int
    sha256: str


def clean_photo(data: bytes) -> CleanPhoto:
    """Check type and size, apply the EXIF orientation, and re-encode as a JPEG built from the
    pixels alone: no EXIF (GPS, camera, time), no XMP, no ICC, no comments survive.

    >>> from PIL import Image; buf = io.BytesIO(); Image.new("RGB", (4, 3)).save(buf, "PNG")
    >>> clean_photo(buf.getvalue()).width
    4
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise PublicError("the photo is empty", field="photo")
    if len(data) > PHOTO_MAX_BYTES:
        raise PublicError(f"the photo is larger than {PHOTO_MAX_BYTES // (1024 * 1024)} MB",
                          status=413, field="photo")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            if kind not in PHOTO_FORMATS:
                raise PublicError(f"a photo must be JPEG, PNG or WebP (got {kind or 'unknown'})",
                                  status=415, field="photo")
            if probe.width * probe.height > PHOTO_MAX_PIXELS:
                raise PublicError("the photo has too many pixels", status=413, field="photo")
            probe.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))  # JPEG: decode at reduced scale
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("RGB", "L"):
                im = im.convert("RGBA").convert("RGB") if "A" in im.mode or im.mode == "P" \
                    else im.convert("RGB")
            im.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
            bare = Image.frombytes(im.mode, im.size, im.tobytes())  # pixels only, no info
    except PublicError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise PublicError(f"the photo cannot be read as an image ({type(exc).__name__})",
                          status=415, field="photo") from None
    out = io.BytesIO()
    bare.save(out, "JPEG", quality=85, optimize=True)
    body = out.getvalue()
    return CleanPhoto(body, bare.width, bare.height, hashlib.sha256(body).hexdigest())


def photo_dir_for(store: Store) -> Path:
    """Where photos live: ``<data_dir>/photos`` (the folder of the database file)."""
    base = audit_dir(store)
    if base is None:
        raise PublicError("photos need a database on disk", status=500)
    return base / "photos"


# -- reporting ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PublicSummary:
    """A nearby open report, as anyone may see it."""

    tracking_code: str
    status: str
    reported_at: datetime
    distance_m: float


@dataclass(frozen=True)
class Receipt:
    """What the reporter gets back. ``key`` is shown once; it is needed to rate."""

    incident_id: int
    tracking_code: str
    key: str
    token: str
    duplicates: tuple[PublicSummary, ...] = field(default=())


def _new_key() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(10))


def _key_hash(incident_id: int, key: str) -> str:
    return hashlib.sha256(f"yiwang-public:{incident_id}:{key.strip().upper()}".encode()
                          ).hexdigest()


def submit_report(store: Store, data: dict[str, Any] | ReportForm, *,
                  actor: User | None = None, channel: str = "web",
                  api_key_id: int | None = None, photo: bytes | None = None,
                  photo_dir: Path | None = None, now: datetime | None = None) -> Receipt:
    """Validate and file a public report; ``PublicError`` (and nothing written) when refused.

    ``actor`` is None for a citizen; a grid worker, social organisation or street staff
    reporting for a resident (代办) passes themselves as ``actor`` and names the resident in
    ``on_behalf_of`` — the report is recorded as assisted.

    >>> submit_report(store, {"category": "garbage_overflow", "description": "满了",
    ...                       "lon": 0.5, "lat": 0.25}).tracking_code   # doctest: +SKIP
    'YW2026112800001'
    """
    form = validate_report(data)
    _check_text(form.description, "description")
    if channel not in ("web", "open311"):
        raise PublicError(f"unknown channel {channel!r}")
    if actor is not None:
        if actor.role not in ASSIST_ROLES or not actor.active:
            raise PublicError(f"a {actor.role} account may not report for residents",
                              status=403)
        if not form.on_behalf_of:
            raise PublicError("on_behalf_of: name the resident you report for",
                              field="on_behalf_of")
        channel = "assisted"
    elif form.on_behalf_of:
        raise PublicError("on_behalf_of: only a logged-in grid worker or social organisation "
                          "reports for someone else", field="on_behalf_of")
    service = get_service(store, form.category)
    if service is None:
        raise PublicError(f"unknown service code {form.category!r}", status=404,
                          field="category")
    cleaned = clean_photo(photo) if photo is not None else None
    source = {"web": "citizen_app", "open311": "open311",
              "assisted": "grid_patrol" if actor and actor.role is Role.GRID_WORKER
              else "citizen_app"}[channel]
    summary = form.description.replace("\n", " ")
    title = f"{service.name_zh}：{summary[:40]}" + ("…" if len(summary) > 40 else "")
    description = form.description + (f"\n地址：{form.address}" if form.address else "")
    now = now or utcnow()
    key, token = _new_key(), secrets.token_hex(12)
    folder = (photo_dir or photo_dir_for(store)) if cleaned is not None else None
    written: list[Path] = []

    def file_it(cur) -> Incident:
        # the incident, its public record, its photo and their audit entries: one transaction
        incident = report_incident(store, actor, category=form.category, title=title,
                                   lon=form.lon, lat=form.lat, source=source,
                                   description=description, contact=form.contact,
                                   on_behalf_of=form.on_behalf_of, now=now, cursor=cur)
        cur.execute("INSERT INTO public_reports VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [incident.id, channel, _key_hash(incident.id, key), token, api_key_id,
                     actor.username if actor else None, form.on_behalf_of, now])
        if cleaned is not None:
            photo_id = secrets.token_hex(16)
            rel = f"{now:%Y%m}/{photo_id}.jpg"
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(path)
            path.write_bytes(cleaned.data)
            cur.execute("INSERT INTO public_photos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [photo_id, incident.id, rel, cleaned.width, cleaned.height,
                         len(cleaned.data), cleaned.sha256, now])
        record(store, actor.username if actor else "citizen", "public.report",
               target=f"incident:{incident.id}", cursor=cur,
               detail=json.dumps({"channel": channel, "tracking_code":
                                  incident.tracking_code, "api_key": api_key_id,
                                  "photo": cleaned is not None,
                                  "on_behalf_of": form.on_behalf_of}, ensure_ascii=False))
        return incident

    try:
        incident = write_transaction(store, file_it)
    except BaseException as exc:
        for path in written:  # photos of attempts that did not commit
            path.unlink(missing_ok=True)
        if isinstance(exc, TransitionRefused):
            raise PublicError(exc.reason, status=403) from None
        if isinstance(exc, IncidentError):
            message = str(exc)
            if "outside every community" in message:
                message = "the location is outside the city; place the pin inside the city"
                raise PublicError(message, status=422, field="location") from None
            raise PublicError(message) from None
        raise
    for path in written[:-1]:  # photos of attempts retried after a write conflict
        path.unlink(missing_ok=True)
    return Receipt(incident.id, incident.tracking_code, key, token,
                   tuple(nearby_reports(store, form.category, form.lon, form.lat,
                                        exclude_id=incident.id)))


def nearby_reports(store: Store, category: str, lon: float, lat: float, *,
                   exclude_id: int | None = None, limit: int = 5) -> list[PublicSummary]:
    """Open reports of the same category nearby ("already reported: follow this one")."""
    rows = find_duplicates(store, category, lon, lat, exclude_id=exclude_id, limit=limit)
    return [PublicSummary(r["tracking_code"], r["status"], r["reported_at"],
                          round(float(r["dist"]), 0)) for r in rows]


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


# -- rating --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RateResult:
    rating: int
    reopened: bool
    follow_up_pending: bool  # bad rating, but the lifecycle refused to reopen (see message)
    message: str | None = None


def rate(store: Store, tracking_code: str, key: str, rating: int, comment: str | None = None,
         *, now: datetime | None = None) -> RateResult:
    """The reporter's satisfaction rating (1–5) after closure; a rating of 1 or 2 reopens
    the incident for a second follow-up. ``PublicError`` when refused (nothing changed)."""
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise PublicError("rating: a whole number from 1 to 5", field="rating")
    if comment is not None:
        comment = comment.strip() or None
        if comment and len(comment) > 500:
            raise PublicError("comment: at most 500 characters", field="comment")
        if comment:
            _check_text(comment, "comment")
    view = public_view(store, tracking_code, key=key)
    if view is None:
        raise PublicError("no report with this tracking code", status=404,
                          field="tracking_code")
    if not view.rateable:
        if view.status != "closed":
            raise PublicError("a report can be rated once it is closed", status=409)
        raise PublicError("this report cannot be rated with this key (wrong key, or rated "
                          "already)", status=403, field="key")
    incident_id = store.query_one("SELECT id FROM incidents WHERE tracking_code = ?",
                                  [view.tracking_code])[0]
    now = now or utcnow()
    note = "市民评价" + (f"：{mask_personal(comment)}" if comment else "")

    def rate_it(cur) -> tuple[bool, str | None]:
        # the rating, the reopening it causes and the public record: one transaction
        transition(store, None, incident_id, "rate", rating=rating, note=note, now=now,
                   cursor=cur)
        reopened, message = False, None
        if rating <= 2:
            try:  # refused before it writes anything: the rating alone still stands
                transition(store, None, incident_id, "reopen", now=now, cursor=cur,
                           note=f"市民回访不满意（{rating} 星），重新办理")
                reopened = True
            except TransitionRefused as exc:
                message = exc.reason
        cur.execute("INSERT INTO public_ratings VALUES (?, ?, ?, ?, ?, ?)",
                    [incident_id, view.closed_at, rating, comment, now, reopened])
        return reopened, message

    try:
        reopened, message = write_transaction(store, rate_it)
    except TransitionRefused as exc:
        raise PublicError(exc.reason, status=409) from None
    return RateResult(rating, reopened, rating <= 2 and not reopened, message)


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


# -- the base map ----------------------------------------------------------------------------

def city_outline(store: Store, level: str = "district") -> dict[str, Any]:
    """The city's ``level`` polygons as GeoJSON (simplified): the public map's base layer,
    with its bounds [[south, west], [north, east]] under ``bbox``."""
    rows = store.query(
        "SELECT code, name_zh, name_en, ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, 0.0005)),"
        " min_lon, min_lat, max_lon, max_lat FROM jurisdictions WHERE level = ? ORDER BY code",
        [level])
    features = [{"type": "Feature", "geometry": json.loads(g),
                 "properties": {"code": c, "name_zh": zh, "name_en": en or zh}}
                for c, zh, en, g, *_ in rows]
    if rows:
        bbox = [[min(r[5] for r in rows), min(r[4] for r in rows)],
                [max(r[7] for r in rows), max(r[6] for r in rows)]]
    else:
        bbox = [[-1, -1], [1, 1]]
    return {"type": "FeatureCollection", "features": features, "bbox": bbox}


# -- photos for staff ------------------------------------------------------------------------

def incident_photos(store: Store, user: User, incident_id: int) -> list[dict[str, Any]]:
    """The photos of an incident the user may see (scoped like the incident itself)."""
    from core.incident_views import get_incident

    if get_incident(store, user, incident_id) is None:
        return []
    return store.query_dicts("SELECT id, width, height, bytes, created_at FROM public_photos"
                             " WHERE incident_id = ? ORDER BY created_at, id", [incident_id])


def photo_file(store: Store, user: User, photo_id: str) -> Path | None:
    """The file of one photo when ``user`` may see its incident, else None (also for ids
    that do not exist: no difference is shown)."""
    if not re.fullmatch(r"[0-9a-f]{32}", photo_id or ""):
        return None
    row = store.query_one("SELECT incident_id, path FROM public_photos WHERE id = ?",
                          [photo_id])
    if row is None:
        return None
    from core.incident_views import get_incident

    if get_incident(store, user, row[0]) is None:
        return None
    path = photo_dir_for(store) / row[1]
    return path if path.is_file() else None
