"""A jurisdiction seen by one user: itself, its children, their map, the way up to the root.

Kept out of the page module: Dash executes page files before registering them in
``sys.modules``, which dataclasses (and pickling) need.

>>> view = focus_view(store, scope, "D1")          # doctest: +SKIP
>>> [c["code"] for c in view.children]             # doctest: +SKIP
['D1S1', 'D1S2']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.jurisdictions import children, get_jurisdiction, jurisdictions_geojson
from core.scope import Scope
from core.store import Store

__all__ = ["FocusView", "density", "focus_view"]

# Map polygons are simplified to about 1/1500 of the focus's extent: invisible on a wall
# screen, and it keeps a district's GeoJSON small.
_SIMPLIFY_FRACTION = 1 / 1500


@dataclass(frozen=True)
class FocusView:
    """What the home page shows for one jurisdiction: itself, its children, its map."""

    focus: dict[str, Any]
    children: list[dict[str, Any]]
    geojson: dict[str, Any]
    crumbs: list[dict[str, Any]]

    @property
    def code(self) -> str:
        return self.focus["code"]

    @property
    def bounds(self) -> list[list[float]]:
        """[[south, west], [north, east]], as Leaflet wants them."""
        f = self.focus
        return [[f["min_lat"], f["min_lon"]], [f["max_lat"], f["max_lon"]]]

    @property
    def max_density(self) -> float:
        """Highest population density among the polygons on the map (1 when unknown)."""
        values = [density(f["properties"]) or 0 for f in self.geojson["features"]]
        return max(values, default=0) or 1


def density(row: dict[str, Any]) -> float | None:
    """People per km², None when population or area is missing.

    >>> density({"population": 1000, "area_km2": 4.0})
    250.0
    """
    population, area = row.get("population"), row.get("area_km2")
    if population is None or not area:
        return None
    return population / area


def focus_view(store: Store, scope: Scope, code: str) -> FocusView | None:
    """The view of ``code`` for a user with ``scope``; None when it is outside the scope."""
    focus = get_jurisdiction(store, scope, code)
    if focus is None:
        return None
    extent = max(focus["max_lon"] - focus["min_lon"], focus["max_lat"] - focus["min_lat"])
    geojson = jurisdictions_geojson(store, scope, code, simplify=extent * _SIMPLIFY_FRACTION)
    trail = focus["path"].strip("/").split("/")
    trail = trail[trail.index(scope.root_code):] if scope.root_code in trail else [code]
    crumbs = [j for c in trail if (j := get_jurisdiction(store, scope, c)) is not None]
    return FocusView(focus, children(store, scope, code), geojson, crumbs)
