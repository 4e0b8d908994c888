"""Catalogs are complete, the locale follows the cookie, numbers and dates follow the locale."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import flask
import pytest
from babel.messages.extract import extract_from_dir

from dashboard.i18n import (
    LANG_COOKIE,
    LOCALES,
    _,
    format_datetime,
    format_number,
    get_locale,
    init_i18n,
    is_local_path,
    localized_name,
    read_catalog,
)

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


def _used_msgids() -> dict[str, list[str]]:
    """Every msgid marked with _() or N_() in the dashboard package, with where it is used."""
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(DASHBOARD)):
        if isinstance(message, tuple):  # plural forms: check the singular
            message = message[0]
        found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


def _catalog(locale: str):
    return read_catalog(locale)


@pytest.fixture
def app() -> flask.Flask:
    server = flask.Flask(__name__)
    init_i18n(server, "zh_CN")
    return server


def test_extraction_finds_the_ui_strings() -> None:
    used = _used_msgids()
    assert "Log in" in used and "Overview" in used and len(used) > 20


def test_every_msgid_has_a_chinese_translation() -> None:
    catalog = _catalog("zh_CN")
    missing = [f"{msgid!r} ({', '.join(where)})" for msgid, where in _used_msgids().items()
               if not (catalog.get(msgid) and catalog.get(msgid).string)
               or catalog.get(msgid).fuzzy]
    assert not missing, (
        "untranslated UI strings; run `pybabel extract -o /tmp/m.pot dashboard && "
        "pybabel update -i /tmp/m.pot -d dashboard/translations` and translate:\n"
        + "\n".join(missing)
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_catalogs_hold_no_stale_entries(locale: str) -> None:
    used = set(_used_msgids())
    stale = sorted(m.id for m in _catalog(locale) if m.id and m.id not in used)
    assert not stale, f"{locale} catalog has msgids no longer used: {stale}"


def test_locale_follows_the_cookie(app: flask.Flask) -> None:
    with app.test_request_context("/"):
        assert get_locale() == "zh_CN" and _("Log in") == "登录"
    with app.test_request_context("/", headers={"Cookie": f"{LANG_COOKIE}=en"}):
        assert get_locale() == "en" and _("Log in") == "Log in"
    with app.test_request_context("/", headers={"Cookie": f"{LANG_COOKIE}=xx"}):
        assert get_locale() == "zh_CN"


def test_default_locale_comes_from_settings() -> None:
    server = flask.Flask(__name__)
    init_i18n(server, "en")
    with server.test_request_context("/"):
        assert get_locale() == "en" and _("Log out") == "Log out"


def test_lang_route_sets_the_cookie(app: flask.Flask) -> None:
    response = app.test_client().get("/lang/en?next=/incidents")
    assert response.status_code == 302 and response.headers["Location"] == "/incidents"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{LANG_COOKIE}=en") and "SameSite=Lax" in cookie


def test_outside_a_request_the_msgid_is_returned() -> None:
    assert _("Log in") == "Log in"


def test_numbers_and_dates_follow_the_locale(app: flask.Flask) -> None:
    moment = datetime(2026, 11, 28, 10, 42)
    with app.test_request_context("/"):
        assert format_number(1234567.891, 1) == "1,234,567.9"
        assert format_datetime(moment, "short") == "2026/11/28 10:42"
        assert format_datetime(moment, "long").startswith("2026年11月28日")
        assert localized_name({"name_zh": "示范市", "name_en": "Demo City"}) == "示范市"
        assert format_number(None) == "—"
    with app.test_request_context("/", headers={"Cookie": f"{LANG_COOKIE}=en"}):
        assert format_datetime(moment, "short") == "11/28/26, 10:42\u202fAM"
        assert localized_name({"name_zh": "示范市", "name_en": "Demo City"}) == "Demo City"
        assert localized_name({"name_zh": "示范市", "name_en": None}) == "示范市"


@pytest.mark.parametrize(("target", "ok"), [
    ("/", True), ("/incidents?x=1", True), ("//evil.example", False),
    ("http://evil.example", False), ("/\\evil.example", False), ("evil", False),
    ("/a\r\nLocation: x", False), ("https:evil.example", False),
])
def test_is_local_path(target: str, ok: bool) -> None:
    assert is_local_path(target) is ok


def test_a_msgid_in_two_catalog_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    entry = 'msgid ""\nmsgstr ""\n\nmsgid "Map"\nmsgstr "地图"\n'
    (folder / "messages.po").write_text(entry)
    (folder / "layers.po").write_text(entry)
    with pytest.raises(ValueError, match="'Map' is in both layers.po and messages.po"):
        read_catalog("zh_CN", tmp_path)
