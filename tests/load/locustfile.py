"""Locust users for the embedded-mode load test (issue 9); run by ``tests/load/run.py``.

Two kinds of users, each a logged-in browser reduced to the HTTP requests it makes:

- ``WallScreen`` (``YIWANG_LOAD_WALLS``, default 50) as the city commander: loads ``/wall``
  (page shell, ``/_dash-dependencies``, the pages-router callback), then every 10 s the one
  server callback the wall's ``dcc.Interval`` triggers (``wall-trigger`` → KPIs, layers,
  ticker, …), rotating through the playlist every third tick (dwell 30 s, refresh 10 s) and
  sending back ``wall-seq`` as the browser does.
- ``DeptStaff`` (``YIWANG_LOAD_STAFF``, default 200) sharing the demo's department accounts
  (``YIWANG_LOAD_STAFF_ACCOUNTS``, default ``cg_staff``, the only dept_staff of the demo):
  loads ``/inbox``, then, 10–30 s apart (``YIWANG_LOAD_STAFF_WAIT``): the inbox refresh (what its 20 s interval calls),
  opening an incident of the inbox and going back, or working one: open it, choose an action
  (claim, else start, else resolve, as the page offers), confirm it, back to the inbox.
  Two users on one account may race for the same incident: the loser's confirm answers
  200 "Refused: …" (the app's documented answer); it is counted as ``incident: confirm
  (refused)``, not as an error.

Every request is also written (time, name, ms, ok) to ``YIWANG_LOAD_RECORD`` (JSON lines)
at the end, with the moment every user was spawned, for exact percentiles in run.py.
Only 127.0.0.1: the host is refused otherwise.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from itertools import count
from typing import Any
from urllib.parse import urlsplit

from dash_calls import (
    DASH,
    ROUTER_OUTPUT,
    callback_body,
    find,
    index_dependencies,
    router_inputs,
    wall_refresh_inputs,
)
from locust import FastHttpUser, between, constant_pacing, events, task

PASSWORD = os.environ.get("YIWANG_LOAD_PASSWORD", "Yiwang#2026")
WALL_ACCOUNT = os.environ.get("YIWANG_LOAD_WALL_ACCOUNT", "commander")
STAFF_ACCOUNTS = [a for a in os.environ.get("YIWANG_LOAD_STAFF_ACCOUNTS", "cg_staff").split(",")
                  if a]
WALL_REFRESH_S = float(os.environ.get("YIWANG_LOAD_WALL_REFRESH", "10"))
PREFERRED_ACTIONS = ("claim", "start", "resolve")

_records: list[tuple[float, str, float, bool, str]] = []
_marks: dict[str, float] = {}
_staff_seq = count()
_ready = count(1)


@events.init.add_listener
def _only_localhost(environment, **_kw) -> None:
    host = environment.host or ""
    if urlsplit(host).hostname != "127.0.0.1":
        raise SystemExit(f"load test runs against 127.0.0.1 only, not {host!r}")
    _marks["init"] = time.time()


@events.request.add_listener
def _record(request_type, name, response_time, response_length, exception=None, **_kw) -> None:
    _records.append((time.time(), name, float(response_time), exception is None,
                     "" if exception is None else str(exception)[:200]))


@events.spawning_complete.add_listener
def _spawned(user_count, **_kw) -> None:
    _marks.setdefault("spawned", time.time())


def _user_ready() -> None:
    """Mark when the last user has logged in and loaded its page (steady state begins)."""
    ready = next(_ready)
    _marks["ready_users"] = ready
    if ready == WallScreen.fixed_count + DeptStaff.fixed_count:
        _marks.setdefault("ready", time.time())


@events.quitting.add_listener
def _dump(environment, **_kw) -> None:
    path = os.environ.get("YIWANG_LOAD_RECORD")
    if not path:
        return
    with open(path, "w") as out:
        out.write(json.dumps({"marks": _marks}) + "\n")
        for t, name, ms, ok, error in _records:
            out.write(json.dumps([t, name, ms, ok, error]) + "\n")


class YiwangUser(FastHttpUser):
    abstract = True
    account = ""
    deps: dict[str, dict]

    def login(self, username: str) -> None:
        page = self.client.get("/login", name="login page")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        with self.client.post("/login", name="login", allow_redirects=False, catch_response=True,
                              data={"username": username, "password": PASSWORD,
                                    "csrf_token": match.group(1) if match else "",
                                    "next": "/"}) as resp:
            if resp.status_code != 302 or "/login" in resp.headers.get("Location", ""):
                resp.failure(f"login of {username} failed: {resp.status_code}")
                raise RuntimeError(f"login of {username} failed")
        self.account = username

    def load_deps(self) -> None:
        self.deps = index_dependencies(
            self.client.get("/_dash-dependencies", name="dash dependencies").json())

    def callback(self, key: str, name: str, inputs: list, state: list | None = None,
                 changed: list[str] | None = None, *, expect: int = 200):
        """POST one Dash callback (the one with output ``key``); returns its JSON or None."""
        body = callback_body(self.deps[key], inputs, state, changed)
        with self.client.post(DASH, json=body, name=name, catch_response=True,
                              headers={"Origin": self.host}) as resp:
            if resp.status_code != expect:
                resp.failure(f"{name}: HTTP {resp.status_code} {resp.text[:120]!r}")
                return None
            try:
                data = resp.json()
            except ValueError:
                resp.failure(f"{name}: not JSON")
                return None
            resp.success()
            return {"data": data, "resp": resp}

    def open_page(self, path: str, search: str = "") -> dict | None:
        """What a click on a dcc.Link does: the pages router callback (plus the nav one)."""
        inputs, changed = router_inputs(path, search)
        answer = self.callback(ROUTER_OUTPUT, f"page {path} (router)", inputs, changed=changed)
        if answer is None:
            return None
        return answer["data"]["response"]["_pages_content"]["children"]


class WallScreen(YiwangUser):
    """A wall screen: one refresh callback every 10 s (the next tick waits for the answer)."""

    weight = 1
    fixed_count = int(os.environ.get("YIWANG_LOAD_WALLS", "50"))
    wait_time = constant_pacing(WALL_REFRESH_S)

    def on_start(self) -> None:
        self.login(WALL_ACCOUNT)
        self.client.get("/wall", name="GET /wall (shell)")
        self.load_deps()
        layout = self.open_page("/wall")
        if layout is None:
            raise RuntimeError("wall layout failed")
        self.viewport = (find(layout, "wall-viewport") or {}).get("data")
        config = (find(layout, "wall-config") or {}).get("data") or {}
        self.views = config.get("views") or ["city"]
        self.view_index = 0
        self.toggles = (find(layout, "wall-toggles") or {}).get("value") or []
        self.ticks = 0
        self.trigger = 0
        self.seq = 0
        # a real screen comes up at a random point of its 10 s cycle
        time.sleep(random.uniform(0, WALL_REFRESH_S))
        self.refresh()
        _user_ready()

    def refresh(self) -> None:
        view = self.views[self.view_index % len(self.views)]
        inputs, state, changed = wall_refresh_inputs(self.trigger, view, self.viewport,
                                                     self.toggles, self.seq)
        answer = self.callback("wall-kpis.children", "wall refresh", inputs, state, changed)
        if answer is not None:
            self.seq = answer["data"]["response"].get("wall-seq", {}).get("data", self.seq)

    @task
    def tick(self) -> None:
        self.ticks += 1
        self.trigger += 1
        if self.ticks % 3 == 0:  # dwell 30 s / refresh 10 s
            self.view_index += 1
        self.refresh()


class DeptStaff(YiwangUser):
    """A department user working the inbox."""

    weight = 4
    fixed_count = int(os.environ.get("YIWANG_LOAD_STAFF", "200"))
    wait_time = between(*(float(v) for v in
                           os.environ.get("YIWANG_LOAD_STAFF_WAIT", "10,30").split(",")))

    def on_start(self) -> None:
        self.login(STAFF_ACCOUNTS[next(_staff_seq) % len(STAFF_ACCOUNTS)])
        self.client.get("/inbox", name="GET /inbox (shell)")
        self.load_deps()
        self.ticks = 0
        self.rows: list[str] = []
        self.remember(self.open_page("/inbox"))
        _user_ready()

    def remember(self, content: Any) -> None:
        if content is not None:
            self.rows = re.findall(r'"inbox-row-(\d+)"', json.dumps(content))

    @task(6)
    def inbox_refresh(self) -> None:
        self.ticks += 1
        answer = self.callback(
            "inbox-table.children", "inbox refresh",
            [{"id": "inbox-tick", "property": "n_intervals", "value": self.ticks},
             {"id": "inbox-read-all", "property": "n_clicks", "value": None}],
            changed=["inbox-tick.n_intervals"])
        if answer is not None:
            self.remember(answer["data"]["response"]["inbox-table"]["children"])

    @task(1)
    def look_at_incident(self) -> None:
        if self.rows:
            self.open_page("/incident", f"?id={random.choice(self.rows)}")
            self.remember(self.open_page("/inbox"))

    @task(3)
    def work_incident(self) -> None:
        if not self.rows:
            return
        incident_id = int(random.choice(self.rows))
        layout = self.open_page("/incident", f"?id={incident_id}")
        if layout is None:
            return
        offered = re.findall(r'"action": "(\w+)", "type": "incident-action"'
                             r'|"type": "incident-action", "action": "(\w+)"', json.dumps(layout))
        offered = [a or b for a, b in offered]
        action = next((a for a in PREFERRED_ACTIONS if a in offered), None)
        if action is not None:
            self.act(incident_id, action, offered)
        self.remember(self.open_page("/inbox"))

    def act(self, incident_id: int, action: str, offered: list[str]) -> None:
        buttons = [{"id": {"type": "incident-action", "action": a}, "property": "n_clicks",
                    "value": 1 if a == action else None} for a in offered]
        chose = self.callback(
            "incident-chosen.data", "incident: choose action",
            [buttons, {"id": "incident-cancel", "property": "n_clicks", "value": None}],
            changed=[json.dumps({"action": action, "type": "incident-action"},
                                separators=(",", ":")) + ".n_clicks"])
        if chose is None:
            return
        state = [{"id": "incident-chosen", "property": "data", "value": action},
                 {"id": "incident-id", "property": "data", "value": incident_id},
                 {"id": "incident-note", "property": "value",
                  "value": "load test" if action == "resolve" else ""},
                 {"id": "incident-dept", "property": "value", "value": None},
                 {"id": "incident-hours", "property": "value", "value": None},
                 {"id": "incident-rating", "property": "value", "value": None},
                 {"id": "incident-into", "property": "value", "value": None}]
        body = callback_body(self.deps["incident-message.children"],
                             [{"id": "incident-confirm", "property": "n_clicks", "value": 1}],
                             state)
        with self.client.post(DASH, json=body, name=f"incident: confirm {action}",
                              catch_response=True, headers={"Origin": self.host}) as resp:
            if resp.status_code != 200:
                resp.failure(f"confirm {action}: HTTP {resp.status_code} {resp.text[:120]!r}")
            elif "yw-refused" in resp.text:
                resp.request_meta["name"] = "incident: confirm (refused, raced)"
                resp.success()
            elif "yw-done" not in resp.text:
                resp.failure(f"confirm {action}: neither done nor refused")
            else:
                resp.success()
