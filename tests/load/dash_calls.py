"""What a browser sends to a Dash app, reduced to plain HTTP: shared by the load test's
Locust users (``locustfile.py``) and the cluster benchmark's wall screens
(``tests/benchmarks/bench_cluster.py``).

>>> split_outputs("..a.children...b.data..")
[{'id': 'a', 'property': 'children'}, {'id': 'b', 'property': 'data'}]
>>> find({"props": {"children": [{"props": {"id": "x", "value": 1}}]}}, "x")
{'id': 'x', 'value': 1}
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.request
from typing import Any
from urllib.parse import urlencode

DASH = "/_dash-update-component"
ROUTER_OUTPUT = "_pages_content.children"


def split_outputs(output: str) -> list[dict[str, str]]:
    """Dash's ``..a.children...b.data..`` output string → the ``outputs`` list it posts."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    result = []
    for part in parts:
        ident, _dot, prop = part.rpartition(".")
        result.append({"id": ident, "property": prop})
    return result


def find(node: Any, component_id: str) -> dict | None:
    """The props of the component with ``component_id`` in a Dash layout tree."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            props = item.get("props")
            if isinstance(props, dict) and props.get("id") == component_id:
                return props
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def index_dependencies(deps: list[dict]) -> dict[str, dict]:
    """``/_dash-dependencies`` by each output ``id.property`` (the first callback wins)."""
    by_output: dict[str, dict] = {}
    for dep in deps:
        for out in split_outputs(dep["output"]):
            by_output.setdefault(f"{out['id']}.{out['property'].split('@')[0]}", dep)
    return by_output


def callback_body(dep: dict, inputs: list, state: list | None = None,
                  changed: list[str] | None = None) -> dict:
    """The JSON a browser posts to run callback ``dep``."""
    outputs = split_outputs(dep["output"])
    return {"output": dep["output"],
            "outputs": outputs if dep["output"].startswith("..") else outputs[0],
            "inputs": inputs, "state": state or [],
            "changedPropIds": changed or [f"{inputs[0]['id']}.{inputs[0]['property']}"]}


def router_inputs(path: str, search: str = "") -> tuple[list, list[str]]:
    """Inputs and changed ids of the pages-router callback (a click on a dcc.Link)."""
    return ([{"id": "_pages_location", "property": "pathname", "value": path},
             {"id": "_pages_location", "property": "search", "value": search}],
            ["_pages_location.pathname", "_pages_location.search"])


def wall_refresh_inputs(trigger: int, view: str, viewport: Any, toggles: list,
                        seq: int) -> tuple[list, list, list[str]]:
    """Inputs, state and changed ids of the wall's refresh callback (its dcc.Interval tick)."""
    return ([{"id": "wall-trigger", "property": "data", "value": trigger},
             {"id": "wall-view", "property": "data", "value": view},
             {"id": "wall-viewport", "property": "data", "value": viewport},
             {"id": "wall-toggles", "property": "value", "value": toggles}],
            [{"id": "wall-seq", "property": "data", "value": seq}],
            ["wall-trigger.data"])


class WallScreen:
    """One wall screen over urllib (no browser): log in, open /wall, refresh it like its
    ``dcc.Interval`` does, rotating views every third refresh as the playlist does."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self._get("/login").decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        form = urlencode({"username": username, "password": password, "next": "/",
                          "csrf_token": token.group(1) if token else ""}).encode()
        self.opener.open(urllib.request.Request(self.base + "/login", data=form), timeout=60)
        self.deps = index_dependencies(json.loads(self._get("/_dash-dependencies")))
        inputs, changed = router_inputs("/wall")
        layout = self.post(ROUTER_OUTPUT, inputs, changed=changed)["response"][
            "_pages_content"]["children"]
        if find(layout, "wall-kpis") is None:
            raise RuntimeError(f"{username} got no wall (login refused?)")
        self.viewport = (find(layout, "wall-viewport") or {}).get("data")
        self.views = ((find(layout, "wall-config") or {}).get("data") or {}).get("views") or [
            "city"]
        self.toggles = (find(layout, "wall-toggles") or {}).get("value") or []
        self.ticks = self.seq = 0

    def _get(self, path: str) -> bytes:
        with self.opener.open(self.base + path, timeout=60) as resp:
            return resp.read()

    def post(self, key: str, inputs: list, state: list | None = None,
             changed: list[str] | None = None) -> dict:
        body = json.dumps(callback_body(self.deps[key], inputs, state, changed)).encode()
        request = urllib.request.Request(self.base + DASH, data=body, headers={
            "Content-Type": "application/json", "Origin": self.base})
        with self.opener.open(request, timeout=60) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{key}: HTTP {resp.status}")
            return json.loads(resp.read())

    def refresh(self) -> dict:
        """One refresh tick: every KPI, layer and ticker of the current view."""
        self.ticks += 1
        view = self.views[(self.ticks // 3) % len(self.views)]
        inputs, state, changed = wall_refresh_inputs(self.ticks, view, self.viewport,
                                                     self.toggles, self.seq)
        answer = self.post("wall-kpis.children", inputs, state, changed=changed)
        self.seq = answer["response"].get("wall-seq", {}).get("data", self.seq)
        return answer
