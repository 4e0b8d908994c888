"""Points or cells: the browser never receives more than it can draw.

The engine lives in ``core.map_queries`` (every map read is a scoped core query): a point
layer sends at most ``MAX_POINTS`` points, more become at most ``MAX_CELLS`` grid cells of
about ``CELL_PX`` screen pixels. This module keeps the limits and pure helpers for layers.

>>> padded_bbox(LayerRequest(bbox=(0, 0, 1, 1), zoom=9))
(-0.1, -0.1, 1.1, 1.1)
"""

from __future__ import annotations

from core import map_queries
from core.map_queries import CELL_PX, MAX_CELLS, MAX_POINTS, point_feature
from layers.registry import LayerRequest

__all__ = ["CELL_PX", "MAX_CELLS", "MAX_POINTS", "padded_bbox", "point_feature"]


def padded_bbox(request: LayerRequest, pad: float = 0.1) -> tuple[float, float, float, float]:
    """The request's bbox grown by ``pad`` of its size on each side (panning stays filled)."""
    return map_queries.padded_bbox(request.bbox, pad)
