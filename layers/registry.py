"""The layer registry: every map layer is declared once (design §6).

A layer has an id, zh/en names, a kind, a scoped query by bbox/zoom/time, the name of its
style function in ``assets/layers.js``, a legend and the roles that may see it. Pages never
query map data themselves: they ask ``layer_features(store, scope, layer_id, request)``, which
refuses roles the layer does not name and runs the layer's ``fetch`` with the user's scope (a
scoped query in ``core.map_queries``).

>>> request = LayerRequest(bbox=(120.0, 31.6, 120.6, 32.2), zoom=11)
>>> fc = layer_features(store, scope, "sensors", request)      # doctest: +SKIP
>>> fc["meta"]["mode"]                                          # doctest: +SKIP
'points'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.map_queries import cell_degrees
from core.roles import Role
from core.scope import Scope
from core.store import Store

__all__ = [
    "LAYERS",
    "Layer",
    "LayerAccessError",
    "LayerRequest",
    "LegendItem",
    "empty_collection",
    "get_layer",
    "layer_features",
    "register_layer",
    "visible_layers",
]


class LayerAccessError(PermissionError):
    """The user's role may not see this layer (or the layer does not exist)."""


@dataclass(frozen=True)
class LegendItem:
    """One row of a legend: a colour swatch and its label (English msgid + Chinese)."""

    colour: str
    label_en: str
    label_zh: str
    shape: str = "circle"  # circle | square | ring


@dataclass(frozen=True)
class LayerRequest:
    """What the map is looking at: bbox (west, south, east, north) in WGS84, the zoom level,
    the time the layer is drawn for (UTC, naive) and layer-specific options.

    >>> LayerRequest(bbox=(0, 0, 1, 1), zoom=9).cell_degrees(64)
    0.17578125
    """

    bbox: tuple[float, float, float, float]
    zoom: float
    at: datetime | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        west, south, east, north = (float(v) for v in self.bbox)
        if not (west <= east and south <= north):
            raise ValueError(f"bbox must be (west, south, east, north), got {self.bbox}")
        if not 0 <= float(self.zoom) <= 24:
            raise ValueError(f"zoom must be between 0 and 24, got {self.zoom}")
        object.__setattr__(self, "bbox", (west, south, east, north))
        object.__setattr__(self, "zoom", float(self.zoom))

    @property
    def when(self) -> datetime:
        """``at``, or now (UTC, naive like every timestamp in the store)."""
        return self.at or datetime.now(UTC).replace(tzinfo=None)

    def cell_degrees(self, cell_px: int = 64) -> float:
        """Side of an aggregation cell in degrees: ``cell_px`` screen pixels at this zoom."""
        return cell_degrees(self.zoom, cell_px)


LayerFetch = Callable[[Store, Scope, LayerRequest], dict[str, Any]]


@dataclass(frozen=True)
class Layer:
    """A map layer, declared once.

    ``fetch(store, scope, request)`` returns a GeoJSON FeatureCollection with a ``meta`` dict
    (mode ``points``/``cells``/``polygons``, ``count`` of things in view, ``cap``).
    ``style`` / ``point_to_layer`` / ``cluster_to_layer`` / ``on_each_feature`` name functions
    in ``window.yiwang.layers`` (assets/layers.js).
    """

    id: str
    name_zh: str
    name_en: str
    kind: str  # polygons | points | cells
    fetch: LayerFetch
    style: str
    legend: tuple[LegendItem, ...]
    roles: frozenset[Role]
    point_to_layer: str | None = None
    cluster_to_layer: str | None = None
    on_each_feature: str | None = None
    order: int = 0

    def allows(self, role: Role) -> bool:
        return role in self.roles

    def js(self, name: str | None) -> dict[str, str] | None:
        """A dash-leaflet functional prop: ``{"variable": "yiwang.layers.<name>"}``."""
        return {"variable": f"yiwang.layers.{name}"} if name else None


LAYERS: dict[str, Layer] = {}


def register_layer(layer: Layer) -> Layer:
    """Add a layer to the registry (a second layer with the same id is a mistake)."""
    if layer.id in LAYERS and LAYERS[layer.id] is not layer:
        raise ValueError(f"layer {layer.id!r} is already registered")
    LAYERS[layer.id] = layer
    return layer


def get_layer(layer_id: str) -> Layer:
    _load_builtin()
    try:
        return LAYERS[layer_id]
    except KeyError:
        raise LayerAccessError(f"no layer {layer_id!r}") from None


def visible_layers(role: Role) -> list[Layer]:
    """The layers a role may see, in their declared order."""
    _load_builtin()
    return sorted((lay for lay in LAYERS.values() if lay.allows(role)), key=lambda x: x.order)


def layer_features(store: Store, scope: Scope, layer_id: str,
                   request: LayerRequest) -> dict[str, Any]:
    """The layer's features for ``request``, scoped to the user; refuses other roles."""
    layer = get_layer(layer_id)
    if not layer.allows(scope.role):
        raise LayerAccessError(f"role {scope.role} may not see layer {layer_id!r}")
    return layer.fetch(store, scope, request)


def empty_collection(mode: str = "points", cap: int = 0) -> dict[str, Any]:
    """An empty FeatureCollection with its ``meta``."""
    return {"type": "FeatureCollection", "features": [],
            "meta": {"mode": mode, "count": 0, "cap": cap}}


def _load_builtin() -> None:
    import layers.builtin  # noqa: F401 - registers the built-in layers on first use
