"""Map layers: scoped queries turned into GeoJSON for dash-leaflet (design §6).

>>> from layers import LayerRequest, layer_features, visible_layers
>>> [layer.id for layer in visible_layers(Role.COMMANDER)]        # doctest: +SKIP
['jurisdictions', 'sensors', 'incidents', 'alerts', 'reports']
"""

from layers.registry import (
    LAYERS,
    Layer,
    LayerAccessError,
    LayerRequest,
    LegendItem,
    empty_collection,
    get_layer,
    layer_features,
    register_layer,
    visible_layers,
)

__all__ = ["LAYERS", "Layer", "LayerAccessError", "LayerRequest", "LegendItem",
           "empty_collection", "get_layer", "layer_features", "register_layer",
           "visible_layers"]
