"""The incident pages server-side: who may open them, what they show, and that their
callbacks act through core with the logged-in user (a tampered id is refused)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dash
import flask_login
import pytest
import test_incident_machine as machine
from test_incident_machine import T0, user

from core.incidents import report_incident, transition
from core.settings import load_settings
from core.store import Store
from dashboard.app import create_app
from dashboard.auth import SessionUser

incident_city_template = machine.incident_city_template
city = machine.city


@pytest.fixture
def app(city: Store, tmp_path: Path) -> dash.Dash:
    return create_app(city, load_settings(data_dir=tmp_path, totp_required=False))


@contextmanager
def logged_in(app: dash.Dash, store: Store, username: str, path: str = "/") -> Iterator[None]:
    with app.server.test_request_context(path, headers={"Cookie": "lang=en"}):
        flask_login.login_user(SessionUser(user(store, username)))
        yield


def page(path: str) -> dict:
    return next(p for p in dash.page_registry.values() if p["path"] == path)


def module(path: str):
    return sys.modules[page(path)["module"]]


def text(component) -> str:
    if isinstance(component, list):
        return " ".join(text(c) for c in component)
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json()
                      if hasattr(o, "to_plotly_json") else str(o), ensure_ascii=False)


@pytest.mark.parametrize(("username", "path", "allowed"), [
    ("commander", "/dispatch", True), ("cg_staff", "/dispatch", False),
    ("cg_staff", "/inbox", True), ("commander", "/inbox", False),
    ("sysadmin", "/incident", False), ("auditor", "/inbox", False),
    ("grid_1", "/incident", True), ("vendor_1", "/incident", False),
])
def test_pages_are_refused_to_roles_they_do_not_name(app, city, username, path, allowed):
    with logged_in(app, city, username):
        shown = text(page(path)["layout"]())
    assert ("You do not have access to this page." in shown) is not allowed


def test_inbox_board_and_incident_show_the_work(app, city) -> None:
    inc = report_incident(city, None, category="garbage_overflow", title="垃圾满溢测试",
                          lon=0.3, lat=0.2, source="hotline", contact="13812345678", now=T0)
    with logged_in(app, city, "commander"):
        board = text(page("/dispatch")["layout"]())
        assert "垃圾满溢测试" in board and "To dispatch" in board
    transition(city, user(city, "commander"), inc.id, "dispatch")
    with logged_in(app, city, "cg_staff"):
        inbox = text(page("/inbox")["layout"]())
        assert inc.tracking_code in inbox and "New assignment" in inbox and "To claim" in inbox
        detail = text(page("/incident")["layout"](id=str(inc.id)))
        assert "Claim" in detail and "13812345678" in detail and "Timeline" in detail
    with logged_in(app, city, "sw_staff"):
        assert "No such incident in your scope." in text(
            page("/incident")["layout"](id=str(inc.id)))
        assert "No such incident in your scope." in text(
            page("/incident")["layout"](id="1 OR 1=1"))
    with logged_in(app, city, "leader"):
        assert "138****5678" in text(page("/incident")["layout"](id=str(inc.id)))


def test_confirm_acts_as_the_user_and_refuses_a_tampered_id(app, city) -> None:
    inc = report_incident(city, None, category="garbage_overflow", title="t", lon=0.3, lat=0.2,
                          source="hotline", now=T0)
    transition(city, user(city, "commander"), inc.id, "dispatch")
    confirm = module("/incident").confirm
    with logged_in(app, city, "sw_staff"):  # not sw's incident: refused with the reason
        message, body, *_ = confirm(1, "claim", inc.id, None, None, None, None, None)
        assert "Refused" in text(message) and body is dash.no_update
    with logged_in(app, city, "cg_staff"):
        message, body, *_ = confirm(1, "claim", inc.id, None, None, None, None, None)
        assert "Done" in text(message)
    assert city.query_one("SELECT status FROM incidents WHERE id = ?", [inc.id])[0] == "claimed"


def test_bulk_dispatch_reports_each_refusal(app, city) -> None:
    ok = report_incident(city, None, category="garbage_overflow", title="a", lon=0.3, lat=0.2,
                         source="hotline", now=T0)
    other = report_incident(city, None, category="road_waterlogging", title="b", lon=0.3,
                            lat=0.2, source="hotline", now=T0)
    dispatch = module("/dispatch").dispatch_selected
    with logged_in(app, city, "commander"):
        message, *_ = dispatch(1, [ok.id, other.id], "cg", None)
    shown = text(message)
    assert "1 dispatched" in shown and "needs a reason" in shown
    assert city.query_one("SELECT status FROM incidents WHERE id = ?", [ok.id])[0] == "dispatched"
    assert city.query_one("SELECT status FROM incidents WHERE id = ?", [other.id])[0] == "reported"
