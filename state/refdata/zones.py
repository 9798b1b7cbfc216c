"""Zones: named polygons of the city (restricted areas, authorised sites, river banks), from GeoJSON.

Point-in-zone tests run over a whole batch at once through a shapely STRtree.

>>> z = Zones.from_geojson({"type": "FeatureCollection", "features": [{"type": "Feature",
...     "properties": {"id": "z1", "name": "depot", "kind": "authorised_site"},
...     "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}}]})
>>> [z.ids[i] if i >= 0 else None for i in z.zone_index(np.array([0.5, 2.0]), np.array([0.5, 2.0]),
...                                                    "authorised_site")]
['z1', None]
>>> metres(np.array([120.0]), np.array([31.0]), np.array([120.001]), np.array([31.0])).round().tolist()
[95.0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import shapely
from shapely import STRtree
from shapely.geometry import shape

M_PER_DEG_LON, M_PER_DEG_LAT = 111_320.0, 110_540.0  # a degree of longitude at the equator, of latitude
GRID_CELLS = 256  # per side of the coarse grid over a kind's zones (see :class:`CellGrid`)


def local_xy(lon: np.ndarray, lat: np.ndarray, lat0: float) -> tuple[np.ndarray, np.ndarray]:
    """Metres east and north in a flat frame true around latitude ``lat0`` (exact enough within a city)."""
    return lon * M_PER_DEG_LON * np.cos(np.radians(lat0)), lat * M_PER_DEG_LAT


def metres(lon0: np.ndarray, lat0: np.ndarray, lon1: np.ndarray, lat1: np.ndarray) -> np.ndarray:
    """Distance in metres (equirectangular: exact enough within a city)."""
    return np.hypot(*local_xy(lon1 - lon0, lat1 - lat0, (lat0 + lat1) / 2))


class ZoneError(ValueError):
    """A zones file that cannot be used (names the file and the feature)."""


class Zones:
    """Polygons with an id, a name and a kind; vectorised "which zones contain these points"."""

    def __init__(self, ids: list[str], names: list[str], kinds: list[str], geoms: list):
        self.ids, self.names, self.kinds = ids, names, np.array(kinds, dtype=object)
        self.geoms = geoms
        self._tree = STRtree(geoms) if geoms else None
        self._grids: dict[str, CellGrid] = {}

    @classmethod
    def from_geojson(cls, doc: dict, origin: str = "<geojson>") -> Zones:
        ids, names, kinds, geoms = [], [], [], []
        for k, feature in enumerate(doc.get("features", [])):
            props = feature.get("properties") or {}
            try:
                geom = shape(feature["geometry"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ZoneError(f"{origin}: feature {k}: bad geometry ({exc})") from None
            if geom.geom_type not in ("Polygon", "MultiPolygon") or not geom.is_valid:
                raise ZoneError(f"{origin}: feature {k}: needs a valid Polygon or MultiPolygon")
            if not props.get("id") or not props.get("kind"):
                raise ZoneError(f"{origin}: feature {k}: properties need 'id' and 'kind'")
            ids.append(str(props["id"]))
            names.append(str(props.get("name", props["id"])))
            kinds.append(str(props["kind"]))
            geoms.append(geom)
        return cls(ids, names, kinds, geoms)

    @classmethod
    def load(cls, path: Path) -> Zones:
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ZoneError(f"{path}: {exc}") from None
        return cls.from_geojson(doc, str(path))

    def zone_index(self, lon: np.ndarray, lat: np.ndarray, kind: str) -> np.ndarray:
        """Per point, the index of a zone of ``kind`` containing it, or -1 (vectorised)."""
        out = np.full(len(lon), -1, dtype=np.int64)
        if self._tree is None or not len(lon):
            return out
        grid = self._grids.get(kind)
        if grid is None:
            grid = self._grids[kind] = CellGrid([g for g, k in zip(self.geoms, self.kinds) if k == kind])
        near = grid.near(lon, lat)
        pts, zone = self._tree.query(shapely.points(lon[near], lat[near]), predicate="within")
        match = self.kinds[zone] == kind
        out[near[pts[match]]] = zone[match]
        return out

    def inside(self, lon: np.ndarray, lat: np.ndarray, kind: str) -> np.ndarray:
        """Whether each point is inside any zone of ``kind``."""
        return self.zone_index(lon, lat, kind) >= 0


class CellGrid:
    """A coarse grid over some polygons' bounds, marking the cells that touch one: a point in an unmarked
    cell is in none of them, so only the few points near a zone pay for an exact test (building a
    geometry per point was most of a GPS batch's zone work).

    >>> g = CellGrid([shapely.box(0, 0, 1, 1)], cells=4)
    >>> g.near(np.array([0.5, 3.0, 1.0, np.nan]), np.array([0.5, 0.5, 1.0, 0.0])).tolist()
    [0, 2]
    """

    def __init__(self, polygons: list, cells: int = GRID_CELLS):
        if not polygons:
            self.x0 = self.y0 = self.dx = self.dy = 1.0
            self.touched = np.zeros((1, 1), dtype=bool)
            return
        x0, y0, x1, y1 = shapely.total_bounds(polygons)
        self.dx, self.dy = max(x1 - x0, 1e-9) / cells, max(y1 - y0, 1e-9) / cells
        self.x0, self.y0 = x0 - self.dx, y0 - self.dy  # a cell of margin all round: see near()
        i, j = np.meshgrid(np.arange(cells + 2), np.arange(cells + 2), indexing="ij")
        # a cell is marked when it or a neighbour touches a polygon (a point that rounding puts in the next cell
        # is still tested): when the 3x3 cells around it, one box, do
        around = shapely.box(
            self.x0 + (i - 1) * self.dx,
            self.y0 + (j - 1) * self.dy,
            self.x0 + (i + 2) * self.dx,
            self.y0 + (j + 2) * self.dy,
        ).ravel()
        touched = np.zeros(around.shape, dtype=bool)
        touched[STRtree(polygons).query(around, predicate="intersects")[0]] = True
        self.touched = touched.reshape(i.shape)

    def near(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Indexes of the points in a marked cell (NaN and far-away points are not)."""
        with np.errstate(invalid="ignore"):
            i = np.floor((x - self.x0) / self.dx)
            j = np.floor((y - self.y0) / self.dy)
            inside = (i >= 0) & (i < self.touched.shape[0]) & (j >= 0) & (j < self.touched.shape[1])
        at = np.flatnonzero(inside)
        return at[self.touched[i[at].astype(np.intp), j[at].astype(np.intp)]]
