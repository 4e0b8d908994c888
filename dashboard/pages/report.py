"""Reporting a problem: the citizens' public site and the assisted-reporting (代办) page.

Two apps on the one Flask server:

- the **public site** ``/public/…`` — its own small Dash app (``mount_public``), no login,
  mobile-first (360–390 px), light theme, zh-CN/en. Only citizen callbacks live there, so
  the staff app's callbacks stay behind login. ``/public/report``: category with icons,
  description, a pin on the city map (district polygons as the base map, no tiles) or the
  phone's location, optional photo, optional contact → tracking code and secret key; open
  reports of the same category nearby are shown ("already reported: follow this one").
  ``/public/track`` is in ``dashboard/pages/track.py``.
- the **assisted page** ``/assist`` in the staff app, for grid workers, street staff and
  social organisations reporting for residents who cannot use a phone (recorded as such).

``register_callbacks(app)`` also mounts the public site and the Open311 API on the server
(idempotent), so nothing else needs to know about them.

>>> mount_public(app.server)        # doctest: +SKIP  (done by register_callbacks)
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import dash
import dash_leaflet as dl
import flask
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from core import public
from core.roles import Role
from dashboard.context import current_store, maybe_current_user
from dashboard.i18n import N_, _, format_datetime, get_locale, html_lang, localized_name
from dashboard.open311 import init_open311, limit_value, rate_gate

dash.register_page(__name__, path="/assist", name=N_("Report for a resident"), order=60,
                   roles=[Role.GRID_WORKER, Role.SOCIAL_ORG, Role.GRASSROOTS])

PUBLIC_PREFIX = "/public/"
_EXT = "yiwang_public_site"
_ICONS = {
    "road_waterlogging": "water", "water_supply": "water", "manhole_cover": "manhole",
    "garbage_overflow": "garbage", "street_vending": "vending", "illegal_parking": "car",
    "traffic_signal": "car", "road_damage": "road", "air_pollution": "air",
    "enterprise_discharge": "air", "noise_nuisance": "noise", "power_outage": "power",
    "gas_leak": "fire", "fire_hazard": "fire", "illegal_construction": "building",
    "building_safety": "building", "food_safety": "food", "public_health": "food",
    "elderly_care": "people", "neighbour_dispute": "people", "greenery": "tree",
}


def icon_for(code: str) -> str:
    return f"{PUBLIC_PREFIX}assets/icons/{_ICONS.get(code, 'other')}.svg"


class ids:  # noqa: N801 - a namespace of component ids (prefix per app: pub / assist)
    @staticmethod
    def of(prefix: str) -> dict[str, str]:
        names = ("category", "description", "map", "pin", "pin_layer", "locate", "coords",
                 "photo", "photo_name", "contact", "behalf", "submit", "result", "nearby",
                 "error")
        return {n: f"{prefix}-{n.replace('_', '-')}" for n in names}


PUB = ids.of("pub")
ASSIST = ids.of("assist")


# -- the form (shared by both apps) ------------------------------------------------------------

def _outline() -> dict[str, Any]:
    return public.city_outline(current_store())


def report_form(prefix_ids: dict[str, str], *, assisted: bool) -> html.Div:
    """The report form; ``assisted`` adds the resident's name (代办)."""
    store = current_store()
    locale = get_locale()
    services = public.list_services(store)
    outline = _outline()
    options = [{"label": html.Span([html.Img(src=icon_for(s.code), alt="", className="pub-icon"),
                                    html.Span(s.name(locale), className="pub-cat-name")],
                                   className="pub-cat"),
                "value": s.code} for s in services]
    parts: list[Any] = [
        html.H2(_("1. What is the problem?"), className="pub-step"),
        dcc.RadioItems(id=prefix_ids["category"], options=options, className="pub-cats",
                       inputClassName="pub-cat-input", labelClassName="pub-cat-label"),
        html.H2(_("2. Describe it"), className="pub-step"),
        dcc.Textarea(id=prefix_ids["description"], maxLength=public.MAX_DESCRIPTION,
                     placeholder=_("What did you see? e.g. the bin by the school gate is "
                                   "overflowing"), className="pub-text"),
        html.H2(_("3. Where is it?"), className="pub-step"),
        html.Div(_("Tap the map to place the pin, or use your location."), className="pub-hint"),
        dl.MapContainer(
            [dl.GeoJSON(data=outline, interactive=False, bubblingMouseEvents=True,
                        style={"color": "#1f6feb", "weight": 1, "fillColor": "#dbe8fb",
                               "fillOpacity": 0.55}),
             dl.LayerGroup(id=prefix_ids["pin_layer"])],
            id=prefix_ids["map"], bounds=outline["bbox"], trackViewport=False,
            attributionControl=False, zoomSnap=0.25, className="pub-map"),
        html.Div([
            html.Button(_("Use my location"), id=prefix_ids["locate"], className="pub-btn-2",
                        type="button"),
            html.Span(id=prefix_ids["coords"], className="pub-coords"),
        ], className="pub-row"),
        dcc.Store(id=prefix_ids["pin"]),
        html.H2(_("4. Photo (optional)"), className="pub-step"),
        dcc.Upload(id=prefix_ids["photo"], accept="image/jpeg,image/png,image/webp",
                   max_size=public.PHOTO_MAX_BYTES, multiple=False,
                   children=html.Div(_("Add a photo (JPEG, PNG or WebP, up to 8 MB)"),
                                     className="pub-upload-inner"),
                   className="pub-upload"),
        html.Div(id=prefix_ids["photo_name"], className="pub-hint"),
        html.H2(_("5. Contact (optional)"), className="pub-step"),
        dcc.Input(id=prefix_ids["contact"], type="text", maxLength=100,
                  placeholder=_("Phone or e-mail, if you want a call back"),
                  className="pub-input"),
        html.Div(_("Only the department handling it sees your contact; it is never shown "
                   "publicly."), className="pub-hint"),
    ]
    if assisted:
        parts += [
            html.H2(_("Reporting for"), className="pub-step"),
            dcc.Input(id=prefix_ids["behalf"], type="text", maxLength=100,
                      placeholder=_("The resident's name or how to reach them"),
                      className="pub-input"),
        ]
    else:
        parts.append(dcc.Store(id=prefix_ids["behalf"]))
    parts += [
        html.Div(id=prefix_ids["nearby"], className="pub-nearby"),
        html.Div(id=prefix_ids["error"], className="pub-error", role="alert"),
        html.Button(_("Send report"), id=prefix_ids["submit"], className="pub-btn",
                    type="button"),
        html.Div(id=prefix_ids["result"], className="pub-result"),
    ]
    return html.Div(parts, className="pub-form")


def _pin_from_click(click: dict[str, Any] | None) -> list[float] | None:
    latlng = (click or {}).get("latlng") or {}
    lat, lng = latlng.get("lat"), latlng.get("lng")
    if isinstance(lat, int | float) and isinstance(lng, int | float):
        return [round(float(lat), 6), round(float(lng), 6)]
    return None


def _pin_layer(pin: list[float] | None) -> list[Any]:
    if not pin:
        return []
    return [dl.CircleMarker(center=pin, radius=11, color="#d1242f", weight=3,
                            fillColor="#ff6b6b", fillOpacity=0.9)]


def _nearby(category: str | None, pin: list[float] | None, track_href: str) -> Any:
    if not category or not pin:
        return None
    found = public.nearby_reports(current_store(), category, pin[1], pin[0])
    if not found:
        return None
    locale = get_locale()
    items = [html.Li([
        html.A(f.tracking_code, href=f"{track_href}?code={f.tracking_code}",
               className="pub-follow"),
        html.Span(f" · {public.public_status(f.status, locale)} · "
                  f"{format_datetime(f.reported_at, 'short')} · {f.distance_m:.0f} m"),
    ]) for f in found]
    return html.Div([
        html.Div(_("Already reported nearby: follow one of these instead of reporting again"),
                 className="pub-nearby-title"),
        html.Ul(items),
    ])


def _decode_upload(contents: str | None) -> bytes | None:
    if not contents:
        return None
    try:
        _header, data = contents.split(",", 1)
        return base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        raise public.PublicError(_("The photo could not be read."), field="photo") from None


def _client_key() -> str:
    return flask.request.remote_addr or "-"


def _submit(prefix: str, assisted: bool, category, description, pin, photo, contact, behalf
            ) -> tuple[Any, Any]:
    actor = maybe_current_user() if assisted else None
    if assisted and actor is None:
        raise PreventUpdate
    if not rate_gate().hit(limit_value("PUBLIC_REPORT_LIMIT"), "public-report", _client_key()):
        return None, _("Too many reports from this connection; please wait a minute.")
    if not category:
        return None, _("Choose what the problem is.")
    if not pin:
        return None, _("Place the pin on the map (or use your location).")
    data = {"category": category, "description": description or "", "lat": pin[0],
            "lon": pin[1], "contact": contact or None,
            "on_behalf_of": (behalf or None) if assisted else None}
    try:
        receipt = public.submit_report(current_store(), data, actor=actor,
                                       photo=_decode_upload(photo))
    except public.PublicError as exc:
        return None, _("Not sent: ") + exc.message
    track = f"{PUBLIC_PREFIX}track?code={receipt.tracking_code}&key={receipt.key}"
    return html.Div([
        html.Div(_("Thank you! Your report was received."), className="pub-ok"),
        html.Div(_("Tracking code"), className="pub-label"),
        html.Div(receipt.tracking_code, className="pub-code", id=f"{prefix}-code"),
        html.Div(_("Secret key (keep it to rate the result)"), className="pub-label"),
        html.Div(receipt.key, className="pub-key", id=f"{prefix}-key"),
        html.A(_("Follow it"), href=track, className="pub-btn pub-link", id=f"{prefix}-track"),
    ]), None


def register_form_callbacks(app: dash.Dash, prefix_ids: dict[str, str], *, assisted: bool,
                            track_href: str) -> None:
    """The form's callbacks on ``app`` (one set per app)."""
    prefix = prefix_ids["submit"].split("-")[0]

    def set_pin(click, located):
        trigger = dash.ctx.triggered_id
        if trigger == prefix_ids["map"]:
            pin = _pin_from_click(click)
        else:
            pin = located if isinstance(located, list) and len(located) == 2 else None
        if pin is None:
            raise PreventUpdate
        return pin

    app.callback(Output(prefix_ids["pin"], "data"),
                 Input(prefix_ids["map"], "clickData"),
                 Input(prefix_ids["coords"], "title"),
                 prevent_initial_call=True)(set_pin)

    def show_pin(pin, category):
        label = f"{pin[0]:.5f}, {pin[1]:.5f}" if pin else ""
        return _pin_layer(pin), label, _nearby(category, pin, track_href)

    app.callback(Output(prefix_ids["pin_layer"], "children"),
                 Output(prefix_ids["coords"], "children"),
                 Output(prefix_ids["nearby"], "children"),
                 Input(prefix_ids["pin"], "data"),
                 Input(prefix_ids["category"], "value"),
                 prevent_initial_call=True)(show_pin)

    # The phone's location, in the browser: the result lands in the coords' title.
    app.clientside_callback(
        """function (n) {
            if (!n || !navigator.geolocation) { return window.dash_clientside.no_update; }
            return new Promise(function (resolve) {
                navigator.geolocation.getCurrentPosition(
                    function (p) { resolve([p.coords.latitude, p.coords.longitude]); },
                    function () { resolve(window.dash_clientside.no_update); },
                    {enableHighAccuracy: true, timeout: 10000});
            });
        }""",
        Output(prefix_ids["coords"], "title"),
        Input(prefix_ids["locate"], "n_clicks"),
        prevent_initial_call=True,
    )

    def photo_name(filename):
        return filename or ""

    app.callback(Output(prefix_ids["photo_name"], "children"),
                 Input(prefix_ids["photo"], "filename"),
                 prevent_initial_call=True)(photo_name)

    def submit(_n, category, description, pin, photo, contact, behalf):
        return _submit(prefix, assisted, category, description, pin, photo, contact, behalf)

    app.callback(Output(prefix_ids["result"], "children"),
                 Output(prefix_ids["error"], "children"),
                 Input(prefix_ids["submit"], "n_clicks"),
                 State(prefix_ids["category"], "value"),
                 State(prefix_ids["description"], "value"),
                 State(prefix_ids["pin"], "data"),
                 State(prefix_ids["photo"], "contents"),
                 State(prefix_ids["contact"], "value"),
                 State(prefix_ids["behalf"], "value" if assisted else "data"),
                 prevent_initial_call=True)(submit)


# -- the assisted page in the staff app --------------------------------------------------------

def layout(**_query: str) -> html.Div:
    """代办: the report form with the resident's name, for the logged-in helper."""
    return html.Div([
        html.H1(_("Report for a resident"), className="pub-title"),
        html.Div(_("For residents who cannot use a phone: the report is recorded as made by "
                   "you on their behalf."), className="pub-hint"),
        report_form(ASSIST, assisted=True),
    ], className="pub pub-assist")


def register_callbacks(app: dash.Dash) -> None:
    """The assisted page's callbacks; also mounts the public site and the Open311 API."""
    register_form_callbacks(app, ASSIST, assisted=True, track_href=f"{PUBLIC_PREFIX}track")
    init_open311(app.server)
    mount_public(app.server)


# -- the public site ---------------------------------------------------------------------------

_INDEX = """<!DOCTYPE html>
<html lang="{%lang%}">
<head>
{%metas%}
<title>{%title%}</title>
<link rel="icon" type="image/svg+xml" href="/assets/favicon.svg">
{%css%}
</head>
<body class="pub-body">
{%app_entry%}
<footer>
{%config%}
{%scripts%}
{%renderer%}
</footer>
</body>
</html>"""


class _PublicDash(dash.Dash):
    def interpolate_index(self, **kwargs: Any) -> str:
        return super().interpolate_index(**kwargs).replace("{%lang%}", html_lang())


def mount_public(server: flask.Flask) -> dash.Dash:
    """The citizens' Dash app at ``/public/`` on ``server`` (once per server)."""
    existing = server.extensions.get(_EXT)
    if existing is not None:
        return existing
    from dashboard.app import ASSETS_DIR  # the one assets folder (no import cycle at load)
    from dashboard.pages import track

    app = _PublicDash(
        name="yiwang_public",
        server=server,
        url_base_pathname=PUBLIC_PREFIX,
        assets_folder=str(ASSETS_DIR),
        assets_ignore=r"^(?!public\.)",  # load public.css only, not the staff theme
        serve_locally=True,
        suppress_callback_exceptions=True,
        index_string=_INDEX,
        title="一网统管 · 随手拍 / Report a problem",
        update_title=None,
        meta_tags=[{"name": "viewport",
                    "content": "width=device-width, initial-scale=1, viewport-fit=cover"}],
    )
    app.enable_dev_tools(debug=False, dev_tools_ui=False, dev_tools_hot_reload=False,
                         dev_tools_disable_version_check=True)
    app.layout = html.Div([
        dcc.Location(id="pub-url"),
        html.Div(id="pub-head", className="pub-head"),
        html.Main(id="pub-page", className="pub-main"),
    ], className="pub")

    def route(pathname: str | None, search: str | None):
        from urllib.parse import parse_qs

        query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
        path = (pathname or "").rstrip("/")
        if path == f"{PUBLIC_PREFIX}track".rstrip("/"):
            body = track.track_layout(query.get("code"), query.get("key"))
        else:
            body = html.Div([
                html.H1(_("Report a problem"), className="pub-title"),
                html.Div(_("Takes a minute. No account needed."), className="pub-hint"),
                report_form(PUB, assisted=False),
                html.A(_("Already reported? Track it"), href=f"{PUBLIC_PREFIX}track",
                       className="pub-aside-link"),
            ])
        return _public_header(pathname or PUBLIC_PREFIX, search or ""), body

    app.callback(Output("pub-head", "children"), Output("pub-page", "children"),
                 Input("pub-url", "pathname"), State("pub-url", "search"))(route)
    register_form_callbacks(app, PUB, assisted=False, track_href=f"{PUBLIC_PREFIX}track")
    track.register_track_callbacks(app)
    server.before_request(_limit_public_callbacks)
    server.extensions[_EXT] = app
    return app


def _limit_public_callbacks() -> flask.Response | None:
    """Every public callback counts against the address's read limit (map clicks, nearby
    look-ups, tracking); submissions and ratings have their own, lower limits."""
    if not flask.request.path.startswith(f"{PUBLIC_PREFIX}_dash-update-component"):
        return None
    if rate_gate().hit(limit_value("OPEN311_IP_LIMIT"), "public-callback", _client_key()):
        return None
    response = flask.jsonify({"error": "too many requests; please wait a minute"})
    response.status_code = 429
    response.headers["Retry-After"] = "60"
    return response


def _public_header(pathname: str, search: str) -> list[Any]:
    zh = get_locale() == "zh_CN"
    here = pathname + search
    root = public.root_jurisdiction(current_store())
    city = localized_name(root) if root else ""
    return [
        html.A([html.Img(src="/assets/favicon.svg", alt="", className="pub-logo"),
                html.Span(city or "一网统管", className="pub-brand")],
               href=f"{PUBLIC_PREFIX}report", className="pub-home"),
        html.Nav([
            html.A(_("Report"), href=f"{PUBLIC_PREFIX}report", className="pub-nav"),
            html.A(_("Track"), href=f"{PUBLIC_PREFIX}track", className="pub-nav"),
            html.A("中文", href=f"/lang/zh_CN?next={_quote(here)}", lang="zh-CN",
                   className="pub-lang" + (" active" if zh else "")),
            html.A("EN", href=f"/lang/en?next={_quote(here)}", lang="en",
                   className="pub-lang" + ("" if zh else " active")),
        ], className="pub-navs"),
    ]


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
