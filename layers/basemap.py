"""The offline base map: jurisdiction polygons by default, optional raster tiles from a local
MBTiles file served by Yiwang itself, or from an intranet XYZ URL (the ``tile_url`` setting).
Nothing is ever fetched from another host.

An MBTiles file is SQLite with a ``tiles(zoom_level, tile_column, tile_row, tile_data)``
table in TMS order (row 0 at the south) and a ``metadata(name, value)`` table.

>>> tiles = MBTiles("/srv/yiwang/basemap.mbtiles")             # doctest: +SKIP
>>> tiles.tile(12, 3418, 1663)[:4]                            # doctest: +SKIP
b'\\x89PNG'
>>> base_map(settings).kind                                   # doctest: +SKIP
'mbtiles'
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MBTILES_NAME", "TILE_ROUTE", "BaseMap", "MBTiles", "MBTilesError", "base_map",
           "mbtiles_path"]

MBTILES_NAME = "basemap.mbtiles"
TILE_ROUTE = "/tiles/<int:z>/<int:x>/<int:y>"
_MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                "webp": "image/webp"}


class MBTilesError(ValueError):
    """The file is not a raster MBTiles file Yiwang can serve; the message says why."""


class MBTiles:
    """A read-only raster MBTiles file (opened per call: SQLite opens in microseconds and a
    connection is then never shared between the server's threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MBTilesError(f"{self.path} does not exist")
        meta = self.metadata()
        fmt = meta.get("format", "png").lower()
        if fmt not in _MEDIA_TYPES:
            raise MBTilesError(f"{self.path}: tile format {fmt!r} is not a raster format "
                               f"({', '.join(sorted(_MEDIA_TYPES))})")
        self.format = fmt
        self.media_type = _MEDIA_TYPES[fmt]
        self.min_zoom = int(meta.get("minzoom", 0))
        self.max_zoom = int(meta.get("maxzoom", 18))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def metadata(self) -> dict[str, str]:
        try:
            with self._connect() as con:
                return dict(con.execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.DatabaseError as exc:
            raise MBTilesError(f"{self.path} is not an MBTiles file: {exc}") from exc

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile at XYZ (Leaflet's scheme, row 0 at the north), None when absent."""
        if not (0 <= z <= 30 and 0 <= x < 2**z and 0 <= y < 2**z):
            return None
        con = self._connect()
        try:
            row = con.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ?"
                " AND tile_row = ?", (z, x, (2**z - 1) - y)).fetchone()
        finally:
            con.close()
        return bytes(row[0]) if row else None


@dataclass(frozen=True)
class BaseMap:
    """What lies under the layers: ``polygons`` only, ``mbtiles`` (served at ``url`` by
    Yiwang) or ``xyz`` (the intranet ``tile_url``)."""

    kind: str
    url: str | None = None
    min_zoom: int = 0
    max_zoom: int = 18


def mbtiles_path(data_dir: str | Path) -> Path:
    """Where Yiwang looks for its MBTiles base map: ``<data_dir>/basemap.mbtiles``."""
    return Path(data_dir) / MBTILES_NAME


def base_map(data_dir: str | Path, tile_url: str = "") -> BaseMap:
    """The base map for these settings: a local MBTiles file wins over ``tile_url``; with
    neither, the jurisdiction polygons alone.

    >>> base_map("/nonexistent").kind
    'polygons'
    >>> base_map("/nonexistent", "http://tiles.intranet/{z}/{x}/{y}.png").kind
    'xyz'
    """
    path = mbtiles_path(data_dir)
    if path.is_file():
        tiles = MBTiles(path)
        return BaseMap("mbtiles", "/tiles/{z}/{x}/{y}", tiles.min_zoom, tiles.max_zoom)
    if tile_url:
        return BaseMap("xyz", tile_url)
    return BaseMap("polygons")
