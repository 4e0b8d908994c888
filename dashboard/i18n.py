"""Languages of the web UI: Babel catalogs, the per-request locale, number and date formats.

Message ids are English and marked with ``_()`` (or ``N_()`` where the string is translated
later, e.g. a page name given at import time). The ``.po`` catalogs under
``dashboard/translations/<locale>/LC_MESSAGES/*.po`` (``messages.po`` for the shell, one file
per feature area beside it) are merged and compiled in memory when the app starts, so there is
no build step. The locale of a request comes from the ``lang``
cookie (set by ``/lang/<code>``), else the ``default_locale`` setting.

>>> catalogs = load_catalogs()
>>> catalogs["zh_CN"].gettext("Log in")
'登录'
"""

from __future__ import annotations

from datetime import date, datetime
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import flask
from babel.dates import format_datetime as _babel_datetime
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

__all__ = [
    "LANG_COOKIE",
    "LOCALES",
    "N_",
    "_",
    "format_datetime",
    "format_number",
    "get_locale",
    "html_lang",
    "init_i18n",
    "load_catalogs",
    "localized_name",
    "read_catalog",
]

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
LOCALES = ("zh_CN", "en")
LANG_COOKIE = "lang"
_EXTENSION = "yiwang_i18n"


def N_(msgid: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark a string for extraction without translating it now (translate with ``_`` later)."""
    return msgid


def read_catalog(locale: str, directory: Path = TRANSLATIONS_DIR) -> Catalog:
    """Merge the ``*.po`` files of one locale into one catalog.

    A message id defined in two files of one locale is an error, not a silent overwrite.
    """
    merged = Catalog(locale=locale)
    seen: dict[str, Path] = {}
    for po_path in sorted((directory / locale / "LC_MESSAGES").glob("*.po")):
        with po_path.open("rb") as fh:
            part = read_po(fh, locale=locale)
        for message in part:
            if not message.id:
                continue
            if message.id in seen:
                raise ValueError(f"message {message.id!r} is in both {seen[message.id].name} "
                                 f"and {po_path.name} ({locale})")
            seen[message.id] = po_path
            merged[message.id] = message
    return merged


def load_catalogs(directory: Path = TRANSLATIONS_DIR) -> dict[str, Translations]:
    """Read every locale's merged catalog and compile it in memory.

    >>> sorted(load_catalogs())
    ['en', 'zh_CN']
    """
    catalogs = {}
    for locale in LOCALES:
        catalog = read_catalog(locale, directory)
        buffer = BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        catalogs[locale] = Translations(fp=buffer)
    return catalogs


def init_i18n(server: flask.Flask, default_locale: str) -> None:
    """Load the catalogs onto ``server`` and add the ``/lang/<code>`` switch."""
    server.extensions[_EXTENSION] = {"catalogs": load_catalogs(), "default": default_locale}
    server.add_url_rule("/lang/<code>", "set_language", _set_language)


def _set_language(code: str) -> flask.Response:
    """Remember the language in a cookie and go back where the user came from."""
    if code not in LOCALES:
        flask.abort(404)
    target = flask.request.args.get("next") or _referrer_path() or "/"
    if not is_local_path(target):
        target = "/"
    response = flask.redirect(target)
    response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, samesite="Lax",
                        httponly=True)
    return response


def _referrer_path() -> str | None:
    """The referring page as a local path, only when it is on this server."""
    referrer = flask.request.referrer
    if not referrer:
        return None
    parts = urlsplit(referrer)
    if parts.netloc != flask.request.host:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def is_local_path(target: str) -> bool:
    """True for a path on this server ("/incidents?x=1"), never for another host.

    >>> is_local_path("/home"), is_local_path("//evil.example"), is_local_path("http://x")
    (True, False, False)
    """
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(ch in target for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def get_locale() -> str:
    """The locale of the current request ('zh_CN' or 'en'); 'zh_CN' outside a request."""
    if not flask.has_request_context():
        return LOCALES[0]
    chosen = flask.request.cookies.get(LANG_COOKIE)
    if chosen in LOCALES:
        return chosen
    state = flask.current_app.extensions.get(_EXTENSION)
    return state["default"] if state else LOCALES[0]


def html_lang() -> str:
    """The value for ``<html lang=…>``: 'zh-CN' or 'en'."""
    return get_locale().replace("_", "-")


def _(msgid: str) -> str:
    """Translate ``msgid`` into the request's language (the msgid itself when untranslated).

    >>> _("Log in")        # outside a request: no catalogs, the English msgid
    'Log in'
    """
    if not flask.has_app_context():
        return msgid
    state = flask.current_app.extensions.get(_EXTENSION)
    if state is None:
        return msgid
    return state["catalogs"][get_locale()].gettext(msgid)


def format_number(value: float | int | None, digits: int = 0) -> str:
    """A number in the request's locale, with grouping; '—' for a missing value.

    >>> format_number(1234567.891, 1)
    '1,234,567.9'
    """
    if value is None:
        return "—"
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=get_locale())


def format_datetime(value: datetime | date | None, fmt: str = "medium") -> str:
    """A date/time in the request's locale ('—' for none).

    >>> format_datetime(datetime(2026, 11, 28, 10, 42), "short")
    '2026/11/28 10:42'
    """
    if value is None:
        return "—"
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return _babel_datetime(value, format=fmt, locale=get_locale())


def localized_name(row: dict, key: str = "name") -> str:
    """The zh or en name of a row with ``name_zh``/``name_en``; Chinese when no English.

    >>> localized_name({"name_zh": "示范市", "name_en": "Demo City"})
    '示范市'
    """
    zh = row.get(f"{key}_zh") or ""
    if get_locale() == "en":
        return row.get(f"{key}_en") or zh
    return zh
