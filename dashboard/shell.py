"""The frame around every page: header with product name, navigation, user, language, clock.

The navigation is built from ``dash.page_registry``: a page adds itself with
``dash.register_page(__name__, name=N_("Incidents"), order=20, roles=[Role.COMMANDER, …])``
and appears for the roles it names (every role when ``roles`` is omitted). A page whose
roles exclude the user is refused on the server too (``guard_pages``), not only hidden.

>>> app.layout = shell_layout        # doctest: +SKIP  (done by dashboard.app.create_app)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html

from core.jurisdictions import get_jurisdiction
from core.roles import ROLE_NAMES, Role
from core.scope import ScopeError
from core.users import User
from dashboard.context import current_scope, current_store, maybe_current_user
from dashboard.i18n import _, get_locale, localized_name

__all__ = ["guard_pages", "ids", "page_allowed", "register_shell_callbacks", "shell_layout",
           "visible_pages"]


class ids:  # noqa: N801 - a namespace of component ids, used like a module
    LOCALE = "yw-locale"
    TICK = "yw-tick"
    CLOCK = "yw-clock"
    NAV = "yw-nav"
    LOCATION = "_pages_location"  # dash.page_container's dcc.Location


def page_allowed(page: dict[str, Any], user: User) -> bool:
    """May ``user`` open ``page`` (a ``dash.page_registry`` entry)?"""
    roles = page.get("roles")
    return roles is None or user.role in {Role(r) for r in roles}


def visible_pages(user: User) -> list[dict[str, Any]]:
    """The registered pages the user may open, in their declared order."""
    return [p for p in dash.page_registry.values() if page_allowed(p, user)]


def guard_pages() -> None:
    """Make every registered page refuse users whose role it does not name.

    Idempotent: a layout wrapped once is not wrapped again.
    """
    for page in dash.page_registry.values():
        layout = page.get("layout")
        if callable(layout) and not getattr(layout, "_yiwang_guarded", False):
            page["layout"] = _guarded(page, layout)


def _guarded(page: dict[str, Any], layout: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(layout)
    def guarded(**kwargs: Any) -> Any:
        user = maybe_current_user()
        if user is None or not page_allowed(page, user):
            return html.Div(_("You do not have access to this page."), className="yw-denied")
        return layout(**kwargs)

    guarded._yiwang_guarded = True  # type: ignore[attr-defined]
    return guarded


def shell_layout() -> html.Div:
    """The app layout, built per request for the logged-in user."""
    user = maybe_current_user()
    if user is None:
        # Dash builds the layout once at its first request, possibly before anyone logs in.
        return html.Div(dash.page_container)
    return html.Div(
        [
            dcc.Store(id=ids.LOCALE, data=get_locale()),
            dcc.Interval(id=ids.TICK, interval=1000),
            _header(user),
            html.Main(dash.page_container, className="yw-main"),
        ],
        className="yw-app",
    )


def _header(user: User) -> html.Header:
    zh = get_locale() == "zh_CN"
    role_name = ROLE_NAMES[user.role][0 if zh else 1]
    try:
        scope = current_scope()
    except ScopeError:  # the page says what is wrong; the header just shows no place
        root = None
    else:
        root = get_jurisdiction(current_store(), scope, scope.root_code)
    place = localized_name(root) if root else ""
    nav = [
        dcc.Link(_(page["name"]), href=page["relative_path"], className="yw-nav-link",
                 id={"type": ids.NAV, "path": page["relative_path"]})
        for page in visible_pages(user)
    ]
    return html.Header(
        [
            html.A(
                [
                    html.Img(src="/assets/favicon.svg", className="yw-brand-logo", alt=""),
                    html.Span("一网统管", className="yw-brand-zh"),
                    html.Span("YIWANG", className="yw-brand-en"),
                ],
                href="/", className="yw-brand",
            ),
            html.Nav(nav, className="yw-nav"),
            html.Div(className="yw-header-spacer"),
            html.Div(id=ids.CLOCK, className="yw-clock"),
            html.Div(
                [
                    html.Span(user.display_name, className="yw-user-name"),
                    html.Span(f"{role_name} · {place}", className="yw-user-role"),
                ],
                className="yw-user",
            ),
            html.Div(
                [
                    html.A("中文", href="/lang/zh_CN", lang="zh-CN",
                           className="yw-lang" + (" active" if zh else "")),
                    html.A("EN", href="/lang/en", lang="en",
                           className="yw-lang" + ("" if zh else " active")),
                ],
                className="yw-langs",
            ),
            html.A(_("Log out"), href="/logout", className="yw-logout"),
        ],
        className="yw-header",
    )


def register_shell_callbacks(app: dash.Dash) -> None:
    """The clock and the active navigation link, both in the browser (no server round trip)."""
    app.clientside_callback(
        ClientsideFunction(namespace="yiwang", function_name="clock"),
        Output(ids.CLOCK, "children"),
        Input(ids.TICK, "n_intervals"),
        State(ids.LOCALE, "data"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="yiwang", function_name="activeNav"),
        Output({"type": ids.NAV, "path": ALL}, "className"),
        Input(ids.LOCATION, "pathname"),
    )
