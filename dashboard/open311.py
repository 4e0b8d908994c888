"""Open311 GeoReport v2 on the web server: ``/open311/v2/…`` in JSON and XML.

Routes (``{f}`` is ``json`` or ``xml``; every one takes ``jurisdiction_id``):
``GET services.{f}``, ``GET services/{code}.{f}``, ``GET requests.{f}`` (filters
``service_request_id``, ``service_code``, ``start_date``, ``end_date``, ``status``),
``POST requests.{f}`` (needs ``api_key``; form, JSON or XML body; optional ``media`` photo),
``GET requests/{id}.{f}``, ``GET tokens/{token}.{f}``, and ``GET openapi.json`` (the OpenAPI
description the fuzz test runs against).

Abuse resistance: per-IP limits on every route and on POST (flask-limiter), a per-API-key
limit (the key's ``per_minute``, with the ``limits`` library), body size limits, validation
in ``core.public`` with clear messages, errors always as the spec's error list with a 4xx
code — never a stack trace. Requests enter the same incident lifecycle and routing
(``core.public.submit_report`` → ``core.incidents.report_incident``).

>>> init_open311(app.server)         # doctest: +SKIP  (done once per app)
>>> client.get("/open311/v2/services.json").json[0]["service_code"]   # doctest: +SKIP
'air_pollution'
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse as parse_limit
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import HTTPException

from core import api_keys, public
from core.lookups import jurisdiction_exists
from dashboard.context import current_store

__all__ = ["PREFIX", "RateGate", "init_open311", "openapi_spec", "rate_gate"]

log = logging.getLogger("yiwang.open311")

PREFIX = "/open311/v2"
_EXT = "yiwang_open311"
# Defaults; override per app in server.config (read at each request).
DEFAULT_LIMITS = {
    "OPEN311_IP_LIMIT": "300/minute",      # every route, per client address
    "OPEN311_POST_LIMIT": "20/minute",     # POST requests, per client address
    "PUBLIC_REPORT_LIMIT": "10/minute",    # the public report page, per client address
}
MAX_BODY = 64 * 1024                        # a request without media
MAX_MEDIA_BODY = public.PHOTO_MAX_BYTES + 256 * 1024
_FORMATS = ("json", "xml")
_POST_FIELDS = frozenset({
    "api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string",
    "address_id", "email", "device_id", "account_id", "first_name", "last_name", "phone",
    "description", "media_url",
})

bp = flask.Blueprint("open311", __name__, url_prefix=PREFIX)


class RateGate:
    """Moving-window limits by name and key, in this process (flask-limiter's own engine)."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, limit: str, *keys: str) -> bool:
        """Count one hit; False when ``limit`` (e.g. "10/minute") is exceeded for ``keys``."""
        return self._limiter.hit(parse_limit(limit), *keys)


def rate_gate() -> RateGate:
    """This app's gate (also used by the public report page)."""
    return flask.current_app.extensions[_EXT]["gate"]


def limit_value(name: str) -> str:
    return str(flask.current_app.config.get(name, DEFAULT_LIMITS[name]))


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def init_open311(server: flask.Flask) -> Limiter:
    """Mount the API on ``server`` with its rate limits and error handlers (once)."""
    state = server.extensions.get(_EXT)
    if state is not None:
        return state["limiter"]
    limiter = Limiter(get_remote_address, app=server, storage_uri="memory://",
                      strategy="moving-window", headers_enabled=True,
                      key_prefix="yiwang")
    limiter.limit(lambda: limit_value("OPEN311_IP_LIMIT"))(bp)
    server.extensions[_EXT] = {"limiter": limiter, "gate": RateGate()}
    server.register_blueprint(bp)
    server.add_url_rule("/open311/<path:_rest>", "open311_unknown", _unknown,
                        methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    server.register_error_handler(HTTPException, _http_error)
    # staff only: not a public path, so login is required before this runs; scope inside
    server.add_url_rule("/photos/<photo_id>.jpg", "incident_photo", _photo)
    return limiter


def _photo(photo_id: str) -> flask.Response:
    """A report's photo (metadata already stripped) for staff who may see the incident."""
    from dashboard.context import maybe_current_user

    user = maybe_current_user()
    path = public.photo_file(current_store(), user, photo_id) if user else None
    if path is None:
        flask.abort(404)
    response = flask.send_file(path, mimetype="image/jpeg", max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


# -- formats -------------------------------------------------------------------------------

def _xml(root: str, item: str | None, rows: list[dict[str, Any]] | dict[str, Any]) -> str:
    top = ET.Element(root)

    def fill(parent: ET.Element, data: dict[str, Any]) -> None:
        for key, value in data.items():
            child = ET.SubElement(parent, key)
            if isinstance(value, list):
                for v in value:
                    fill(ET.SubElement(child, key.rstrip("s") or "item"), v)
            elif value is not None:
                child.text = str(value).lower() if isinstance(value, bool) else str(value)

    if item is None:
        fill(top, rows)  # type: ignore[arg-type]
    else:
        for row in rows:  # type: ignore[union-attr]
            fill(ET.SubElement(top, item), row)
    return ET.tostring(top, encoding="unicode", xml_declaration=False)


def _respond(fmt: str, data: Any, *, root: str, item: str | None, status: int = 200
             ) -> flask.Response:
    if fmt == "xml":
        body = '<?xml version="1.0" encoding="utf-8"?>' + _xml(root, item, data)
        return flask.Response(body, status=status, mimetype="application/xml")
    response = flask.jsonify(data)
    response.status_code = status
    return response


def _error_response(fmt: str, status: int, message: str) -> flask.Response:
    rows = [{"code": status, "description": message}]
    return _respond(fmt, rows, root="errors", item="error", status=status)


def _fmt_of(path: str) -> str:
    return "xml" if path.rsplit("?", 1)[0].endswith(".xml") else "json"


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> flask.Response:
    return _error_response(_fmt_of(flask.request.path), exc.status, exc.message)


@bp.errorhandler(public.PublicError)
def _public_error(exc: public.PublicError) -> flask.Response:
    status = exc.status if 400 <= exc.status < 500 else 400
    return _error_response(_fmt_of(flask.request.path), status, exc.message)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> flask.Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("open311: unexpected error on %s", flask.request.path)
    return _error_response(_fmt_of(flask.request.path), 500,
                           "the server could not answer this request; it has been logged")


def _http_error(exc: HTTPException):
    """Spec errors for anything under /open311/ (404 of unknown paths, 405, 413, 429…)."""
    if not flask.request.path.startswith("/open311/"):
        return exc
    message = {404: "not found: see " + PREFIX + "/services.json",
               405: "method not allowed",
               413: f"request body too large (at most {MAX_BODY // 1024} KB without media, "
                    f"{MAX_MEDIA_BODY // (1024 * 1024)} MB with media)",
               429: "too many requests; slow down and retry later"}.get(
        exc.code or 400, exc.description or "bad request")
    response = _error_response(_fmt_of(flask.request.path), exc.code or 400, message)
    if exc.code == 429:
        retry = getattr(exc, "retry_after", None)
        response.headers["Retry-After"] = str(retry or 60)
    return response


@bp.before_request
def _limit_body() -> None:
    request = flask.request
    is_multipart = (request.mimetype or "") == "multipart/form-data"
    limit = MAX_MEDIA_BODY if is_multipart else MAX_BODY
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        flask.abort(413)


def _check_format(fmt: str) -> str:
    if fmt not in _FORMATS:
        raise ApiError(404, "format must be .json or .xml")
    return fmt


def _jurisdiction() -> str | None:
    value = flask.request.values.get("jurisdiction_id")
    if value is None or value == "":
        return None
    if len(value) > 64:
        raise ApiError(400, "jurisdiction_id is too long")
    store = current_store()
    if not jurisdiction_exists(store, value):
        raise ApiError(404, f"unknown jurisdiction_id {value!r}")
    return value


def _locale() -> str:
    best = flask.request.accept_languages.best_match(["zh", "zh-CN", "en"], default="zh")
    return "en" if best == "en" else "zh_CN"


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.replace(microsecond=0).isoformat() + "Z"


def _parse_date(name: str) -> datetime | None:
    value = flask.request.args.get(name)
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} must be a W3C date-time like 2026-11-28T08:00:00Z") \
            from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def _csv(name: str, *, max_items: int = 50, max_len: int = 64) -> list[str] | None:
    value = flask.request.args.get(name)
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if len(items) > max_items or any(len(v) > max_len for v in items):
        raise ApiError(400, f"{name}: at most {max_items} values of {max_len} characters")
    return items


# -- services ------------------------------------------------------------------------------

def _service_row(s: public.Service, locale: str) -> dict[str, Any]:
    return {"service_code": s.code, "service_name": s.name(locale),
            "description": f"{s.name_zh} / {s.name_en}", "metadata": False, "type": "realtime",
            "keywords": f"{s.name_zh},{s.name_en}", "group": s.group(locale)}


@bp.get("/services.<fmt>")
def services(fmt: str) -> flask.Response:
    fmt = _check_format(fmt)
    _jurisdiction()
    rows = [_service_row(s, _locale()) for s in public.list_services(current_store())]
    return _respond(fmt, rows, root="services", item="service")


@bp.get("/services/<code>.<fmt>")
def service_definition(code: str, fmt: str) -> flask.Response:
    fmt = _check_format(fmt)
    _jurisdiction()
    service = public.get_service(current_store(), code)
    if service is None:
        raise ApiError(404, f"unknown service_code {code!r}")
    return _respond(fmt, {"service_code": service.code, "attributes": []},
                    root="service_definition", item=None)


# -- requests ------------------------------------------------------------------------------

def _request_row(v: public.PublicIncident, locale: str) -> dict[str, Any]:
    notes = v.steps[-1].text(locale) if v.steps else None
    if v.merged_into:
        notes = f"{notes}: {v.merged_into}"
    return {
        "service_request_id": v.tracking_code,
        "status": "open" if v.is_open else "closed",
        "status_notes": notes,
        "service_name": v.service_en if locale == "en" else v.service_zh,
        "service_code": v.service_code,
        "description": v.description,
        "agency_responsible": (v.department_en if locale == "en" else v.department_zh),
        "service_notice": v.status_text(locale),
        "requested_datetime": _iso(v.reported_at),
        "updated_datetime": _iso(v.updated_at),
        "expected_datetime": _iso(v.expected_at),
        "address": v.place_en if locale == "en" else v.place_zh,
        "address_id": None,
        "zipcode": None,
        "lat": v.lat,
        "long": v.lon,
        "media_url": None,
    }


@bp.get("/requests.<fmt>")
def get_requests(fmt: str) -> flask.Response:
    fmt = _check_format(fmt)
    jurisdiction = _jurisdiction()
    statuses = _csv("status")
    if statuses and not set(statuses) <= {"open", "closed"}:
        raise ApiError(400, "status must be open, closed or both (comma separated)")
    start, end = _parse_date("start_date"), _parse_date("end_date")
    if start and end and start > end:
        raise ApiError(400, "start_date is after end_date")
    if start and end and (end - start).days > 90:
        raise ApiError(400, "start_date to end_date may span at most 90 days")
    if start and not end:
        end = start + timedelta(days=90)
    views = public.search_requests(
        current_store(), codes=_csv("service_request_id", max_items=200, max_len=32),
        services=_csv("service_code"), start=start, end=end, statuses=statuses,
        jurisdiction=jurisdiction)
    locale = _locale()
    return _respond(fmt, [_request_row(v, locale) for v in views], root="service_requests",
                    item="request")


@bp.get("/requests/<request_id>.<fmt>")
def get_request(request_id: str, fmt: str) -> flask.Response:
    fmt = _check_format(fmt)
    jurisdiction = _jurisdiction()
    views = public.search_requests(current_store(), codes=[request_id[:32]],
                                   jurisdiction=jurisdiction)
    if not views:
        raise ApiError(404, f"no service request {request_id[:32]!r}")
    return _respond(fmt, [_request_row(views[0], _locale())], root="service_requests",
                    item="request")


@bp.get("/tokens/<token>.<fmt>")
def get_token(token: str, fmt: str) -> flask.Response:
    fmt = _check_format(fmt)
    _jurisdiction()
    code = public.request_for_token(current_store(), token)
    if code is None:
        raise ApiError(404, "unknown token")
    return _respond(fmt, [{"service_request_id": code, "token": token}],
                    root="service_requests", item="request")


def _body_fields() -> dict[str, str]:
    """The POST fields from a form, a JSON object or an XML document (flat elements)."""
    request = flask.request
    mimetype = request.mimetype or ""
    if mimetype == "application/json":
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "the body is not a JSON object")
        raw = data
    elif mimetype in ("application/xml", "text/xml"):
        try:
            root = SafeET.fromstring(request.get_data(cache=True))
        except (ET.ParseError, DefusedXmlException, ValueError) as exc:
            raise ApiError(400, f"the body is not well-formed XML ({type(exc).__name__})") \
                from None
        raw = {child.tag: (child.text or "") for child in root}
    elif mimetype in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        raw = request.form.to_dict()
    else:
        raise ApiError(415, f"unsupported body type {mimetype!r}; send a form, JSON or XML")
    fields: dict[str, str] = {}
    for key, value in raw.items():
        if key.startswith("attribute["):
            continue
        if key not in _POST_FIELDS:
            raise ApiError(400, f"unknown field {key!r}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ApiError(400, f"{key} must be a text or a number")
        fields[key] = str(value)
    # the API key may also come as a query parameter (spec examples do so)
    if "api_key" not in fields and request.args.get("api_key"):
        fields["api_key"] = request.args["api_key"]
    if "jurisdiction_id" not in fields and request.args.get("jurisdiction_id"):
        fields["jurisdiction_id"] = request.args["jurisdiction_id"]
    return fields


def _number(fields: dict[str, str], name: str) -> float:
    value = fields.get(name)
    if value is None or value == "":
        raise ApiError(400, f"{name} is required (this server locates requests by lat/long)")
    try:
        return float(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a number in WGS84 degrees") from None


@bp.post("/requests.<fmt>")
def post_request(fmt: str) -> flask.Response:
    fmt = _check_format(fmt)
    if not rate_gate().hit(limit_value("OPEN311_POST_LIMIT"), "open311-post",
                           get_remote_address() or "-"):
        raise ApiError(429, "too many requests from this address; slow down and retry later")
    fields = _body_fields()
    store = current_store()
    key = api_keys.verify_api_key(store, fields.get("api_key"))
    if key is None:
        raise ApiError(401 if not fields.get("api_key") else 403,
                       "a valid api_key is required to submit requests")
    if not rate_gate().hit(f"{key.per_minute}/minute", "open311-key", str(key.id)):
        raise ApiError(429, f"this API key may submit {key.per_minute} requests per minute")
    jurisdiction = fields.get("jurisdiction_id") or None
    if jurisdiction and not jurisdiction_exists(store, jurisdiction[:64]):
        raise ApiError(404, f"unknown jurisdiction_id {jurisdiction[:64]!r}")
    if not fields.get("service_code"):
        raise ApiError(400, "service_code is required")
    if public.get_service(store, fields["service_code"][:64]) is None:
        raise ApiError(404, f"unknown service_code {fields['service_code'][:64]!r}")
    media = flask.request.files.get("media")
    photo = media.read(public.PHOTO_MAX_BYTES + 1) if media else None
    form = {
        "category": fields["service_code"],
        "description": fields.get("description", ""),
        "lat": _number(fields, "lat"),
        "lon": _number(fields, "long"),
        "address": fields.get("address_string") or None,
        "contact": fields.get("phone") or fields.get("email") or None,
    }
    receipt = public.submit_report(store, form, channel="open311", api_key_id=key.id,
                                   photo=photo)
    row = {"service_request_id": receipt.tracking_code, "token": receipt.token,
           "service_notice": "受理成功 / received", "account_id": None}
    return _respond(fmt, [row], root="service_requests", item="request", status=201)


@bp.route("/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def _unknown(_rest: str = "") -> flask.Response:
    """Anything else under /open311/: the spec's 404, not the web app's page."""
    return _error_response(_fmt_of(flask.request.path), 404,
                           f"not found: see {PREFIX}/services.json")


@bp.get("/openapi.json")
def openapi() -> flask.Response:
    return flask.jsonify(openapi_spec())


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.0 description of this API (what schemathesis fuzzes)."""
    fmt = {"name": "format", "in": "path", "required": True,
           "schema": {"type": "string", "enum": list(_FORMATS)}}
    jur = {"name": "jurisdiction_id", "in": "query", "required": False,
           "schema": {"type": "string", "maxLength": 64}}
    error = {"type": "array", "items": {"type": "object", "required": ["code", "description"],
                                        "properties": {"code": {"type": "integer"},
                                                       "description": {"type": "string"}}}}
    nullable_str = {"type": "string", "nullable": True}
    request_row = {"type": "object", "required": ["service_request_id", "status"],
                   "properties": {
                       "service_request_id": {"type": "string"},
                       "status": {"type": "string", "enum": ["open", "closed"]},
                       "status_notes": nullable_str, "service_name": nullable_str,
                       "service_code": {"type": "string"}, "description": nullable_str,
                       "agency_responsible": nullable_str, "service_notice": nullable_str,
                       "requested_datetime": nullable_str, "updated_datetime": nullable_str,
                       "expected_datetime": nullable_str, "address": nullable_str,
                       "lat": {"type": "number"}, "long": {"type": "number"}}}
    service_row = {"type": "object", "required": ["service_code", "service_name"],
                   "properties": {"service_code": {"type": "string"},
                                  "service_name": {"type": "string"},
                                  "metadata": {"type": "boolean"},
                                  "type": {"type": "string"}}}

    def answers(ok_schema: dict[str, Any], ok: str = "200", *codes: str) -> dict[str, Any]:
        out: dict[str, Any] = {ok: {"description": "OK", "content": {
            "application/json": {"schema": ok_schema}, "application/xml": {}}}}
        for code in ("400", "404", "413", "429", *codes):
            out[code] = {"description": "error list", "content": {
                "application/json": {"schema": error}, "application/xml": {}}}
        return out

    post_body = {"type": "object", "required": ["api_key", "service_code", "lat", "long"],
                 "properties": {
                     "api_key": {"type": "string"}, "jurisdiction_id": {"type": "string"},
                     "service_code": {"type": "string"}, "lat": {"type": "number"},
                     "long": {"type": "number"}, "address_string": {"type": "string"},
                     "email": {"type": "string"}, "phone": {"type": "string"},
                     "description": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Yiwang Open311 GeoReport v2", "version": "2.0"},
        "paths": {
            "/services.{format}": {"get": {
                "parameters": [fmt, jur], "responses": answers({"type": "array",
                                                                "items": service_row})}},
            "/services/{service_code}.{format}": {"get": {
                "parameters": [{"name": "service_code", "in": "path", "required": True,
                                "schema": {"type": "string"}}, fmt, jur],
                "responses": answers({"type": "object"})}},
            "/requests.{format}": {
                "get": {"parameters": [
                    fmt, jur,
                    {"name": "service_request_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "service_code", "in": "query", "schema": {"type": "string"}},
                    {"name": "start_date", "in": "query", "schema": {"type": "string"}},
                    {"name": "end_date", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string"}}],
                    "responses": answers({"type": "array", "items": request_row})},
                "post": {"parameters": [fmt],
                         "requestBody": {"required": True, "content": {
                             "application/x-www-form-urlencoded": {"schema": post_body},
                             "application/json": {"schema": post_body}}},
                         "responses": answers({"type": "array"}, "201", "401", "403", "415",
                                              "422")}},
            "/requests/{service_request_id}.{format}": {"get": {
                "parameters": [{"name": "service_request_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}, fmt, jur],
                "responses": answers({"type": "array", "items": request_row})}},
            "/tokens/{token}.{format}": {"get": {
                "parameters": [{"name": "token", "in": "path", "required": True,
                                "schema": {"type": "string"}}, fmt, jur],
                "responses": answers({"type": "array"})}},
        },
        "servers": [{"url": PREFIX}],
    }
