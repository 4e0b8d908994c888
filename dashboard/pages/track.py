"""Tracking a report on the public site (``/public/track``): the status timeline in public
words and, after closure, the satisfaction rating (a bad one reopens the incident).

Part of the citizens' Dash app mounted by ``dashboard.pages.report.mount_public``; this
module is not a page of the staff app. Everything shown comes from ``core.public.public_view``:
no staff names, no internal notes, no contact. Text is rendered as text (React escapes it).

>>> track_layout("YW2026112800001", None)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from core import public
from dashboard.context import current_store
from dashboard.i18n import _, format_datetime, get_locale
from dashboard.open311 import limit_value, rate_gate

__all__ = ["TRACK", "register_track_callbacks", "track_layout"]


class TRACK:  # noqa: N801 - a namespace of component ids
    CODE = "track-code"
    KEY = "track-key"
    GO = "track-go"
    VIEW = "track-view"
    STARS = "track-stars"
    COMMENT = "track-comment"
    RATE = "track-rate"
    RATED = "track-rated"


def track_layout(code: str | None, key: str | None) -> html.Div:
    return html.Div([
        html.H1(_("Track a report"), className="pub-title"),
        html.Div([
            dcc.Input(id=TRACK.CODE, value=code or "", type="text", maxLength=32,
                      placeholder=_("Tracking code, e.g. YW2026112800001"),
                      className="pub-input"),
            dcc.Input(id=TRACK.KEY, value=key or "", type="text", maxLength=20,
                      placeholder=_("Secret key (only to rate)"), className="pub-input"),
            html.Button(_("Show"), id=TRACK.GO, className="pub-btn", type="button"),
        ], className="pub-track-form"),
        html.Div(_view(code, key) if code else None, id=TRACK.VIEW),
    ])


def _view(code: str | None, key: str | None) -> Any:
    view = public.public_view(current_store(), code or "", key=key or None)
    if view is None:
        return html.Div(_("No report with this tracking code."), className="pub-error")
    locale = get_locale()
    steps = [html.Li([
        html.Span(format_datetime(s.ts, "short"), className="pub-step-time"),
        html.Span(s.text(locale), className="pub-step-text"),
    ], className="pub-step-item") for s in reversed(view.steps)]
    parts: list[Any] = [
        html.Div([
            html.Span(view.tracking_code, className="pub-code-small"),
            html.Span(view.status_text(locale),
                      className="pub-status " + ("open" if view.is_open else "closed")),
        ], className="pub-card-head"),
        html.Div(view.service_en if locale == "en" else view.service_zh, className="pub-label"),
        html.P(view.description, className="pub-desc"),
        html.Div([_("Place"), ": ", view.place_en if locale == "en" else view.place_zh],
                 className="pub-hint"),
    ]
    if view.department_zh:
        parts.append(html.Div([_("Handled by"), ": ",
                               view.department_en if locale == "en" else view.department_zh],
                              className="pub-hint"))
    if view.expected_at:
        parts.append(html.Div([_("Expected by"), ": ", format_datetime(view.expected_at, "short")],
                              className="pub-hint"))
    if view.merged_into:
        parts.append(html.A(_("Merged: follow the earlier report"),
                            href=f"/public/track?code={view.merged_into}",
                            className="pub-follow"))
    parts.append(html.H2(_("Progress"), className="pub-step"))
    parts.append(html.Ol(steps, className="pub-timeline"))
    if view.rateable:
        parts.append(_rating_form())
    elif view.rating is not None:
        parts.append(html.Div([_("Your rating"), ": ", "★" * view.rating + "☆" * (5 - view.rating)],
                              className="pub-rated"))
    elif not view.is_open and not key:
        parts.append(html.Div(_("Closed. Enter your secret key above to rate how it was "
                                "handled."), className="pub-hint"))
    return html.Div(parts, className="pub-card")


def _rating_form() -> html.Div:
    return html.Div([
        html.H2(_("How satisfied are you?"), className="pub-step"),
        dcc.RadioItems(id=TRACK.STARS, className="pub-stars", inputClassName="pub-star-input",
                       labelClassName="pub-star-label",
                       options=[{"label": f"{n}★", "value": n} for n in range(1, 6)]),
        dcc.Textarea(id=TRACK.COMMENT, maxLength=500, className="pub-text",
                     placeholder=_("Anything to add? (optional)")),
        html.Button(_("Send rating"), id=TRACK.RATE, className="pub-btn", type="button"),
        html.Div(id=TRACK.RATED, role="status"),
    ], className="pub-rating")


def register_track_callbacks(app: dash.Dash) -> None:
    def show(_n, code, key):
        if not code:
            raise PreventUpdate
        if not rate_gate().hit(limit_value("OPEN311_IP_LIMIT"), "public-track",
                               _client()):
            return html.Div(_("Too many requests; please wait a minute."), className="pub-error")
        return _view(code.strip(), (key or "").strip() or None)

    app.callback(Output(TRACK.VIEW, "children"),
                 Input(TRACK.GO, "n_clicks"), State(TRACK.CODE, "value"),
                 State(TRACK.KEY, "value"), prevent_initial_call=True)(show)

    def send_rating(_n, stars, comment, code, key):
        if not stars:
            return html.Div(_("Choose 1 to 5 stars."), className="pub-error")
        if not rate_gate().hit(limit_value("PUBLIC_REPORT_LIMIT"), "public-rate", _client()):
            return html.Div(_("Too many requests; please wait a minute."), className="pub-error")
        try:
            result = public.rate(current_store(), code or "", key or "", int(stars), comment)
        except (public.PublicError, ValueError) as exc:
            return html.Div(_("Not sent: ") + getattr(exc, "message", str(exc)),
                            className="pub-error")
        if result.reopened:
            text = _("Thank you. We are sorry it was not solved well: it has been reopened "
                     "for a second follow-up.")
        elif result.follow_up_pending:
            text = _("Thank you. Your rating asks for a second follow-up; the command centre "
                     "will reopen it.")
        else:
            text = _("Thank you for your rating.")
        return html.Div(text, className="pub-ok")

    app.callback(Output(TRACK.RATED, "children"),
                 Input(TRACK.RATE, "n_clicks"), State(TRACK.STARS, "value"),
                 State(TRACK.COMMENT, "value"), State(TRACK.CODE, "value"),
                 State(TRACK.KEY, "value"), prevent_initial_call=True)(send_rating)


def _client() -> str:
    import flask

    return flask.request.remote_addr or "-"
