"""Public participation (issue 8): what citizens and third-party apps may see and do.

Everything here is safe to answer to anyone on the internet:

- ``list_services`` — the incident categories citizens may report (Open311 "services");
- ``submit_report`` — validate (pydantic), clean the photo, then enter the ONE incident entry
  point ``core.incidents.report_incident``; returns the tracking code and a secret key;
- ``public_view`` (in ``core.public_view``, re-exported) — an incident by tracking code in public words: status, a timeline of
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
import io
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
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
from core.public_view import (
    PublicError,
    PublicIncident,
    PublicStep,
    _key_hash,
    public_status,
    public_view,
    request_for_token,
    search_requests,
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
    "request_for_token",
    "search_requests",
    "submit_report",
]

MAX_DESCRIPTION = 2000
PHOTO_MAX_BYTES = 8 * 1024 * 1024
PHOTO_MAX_PIXELS = 40_000_000
PHOTO_MAX_SIDE = 2048
PHOTO_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
ASSIST_ROLES = frozenset({Role.GRID_WORKER, Role.SOCIAL_ORG, Role.GRASSROOTS})
_KEY_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{4,19}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,24}$")

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
