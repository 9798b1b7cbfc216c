"""Reference data: sites, vehicles, zones, routes, administrative areas, enforcement units, departments.

Loaded from a folder of GeoJSON and CSV files (``warden refdata load DIR``),
validated with the file and line of every bad row, and kept as one JSON
document (see :mod:`state.refdata.store` for Redis). Every name a file may hold:

=====================  ==========================================================
``areas.geojson``      city / county / town polygons: ``id``, ``name``, ``level``, ``parent``
``zones.geojson``      restricted areas, river banks, camera zones: ``id``, ``name``, ``kind``
``routes.geojson``     authorised routes (LineString): ``id``, ``name``, ``corridor_m``
``sites.csv``          enterprises, dwellings, stations: id, name, lon, lat, category, status,
                       licence, licence_expiry, meters (device ids, ``;``-separated)
``vehicles.csv``       entity (GPS device id), plate, hazard_class, operator, routes, sites
``units.csv``          enforcement units: id, name, department, town, lon, lat
``departments.toml``   which department handles which alert kinds (default: shipped)
``deadlines.toml``     how soon alerts must be acknowledged and resolved (default: shipped, see deadlines.py)
``holidays.toml``      public holidays and make-up working days (default: shipped, see state/holidays.py)
=====================  ==========================================================

>>> ref = RefData.from_doc({"areas": {"type": "FeatureCollection", "features": [
...     {"type": "Feature", "properties": {"id": "c", "name": "City", "level": "city"},
...      "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 1], [0, 1], [0, 0]]]}},
...     {"type": "Feature", "properties": {"id": "t1", "name": "West", "level": "town", "parent": "c"},
...      "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}}]}})
>>> ref.place(0.5, 0.5)
{'city': 'City', 'town': 'West', 'city_id': 'c', 'town_id': 't1'}
"""

from __future__ import annotations

import csv
import io
import tomllib
from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely import STRtree
from shapely.geometry import shape

from state.refdata.deadlines import DeadlineError, Deadlines
from state.refdata.holidays import HolidayError, RestDays
from state.refdata.rule_tables import rules_of
from state.refdata.zones import ZoneError, Zones, metres

LEVELS = ("city", "county", "town")
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_DEPARTMENTS = DATA_DIR / "departments.toml"
CITY_ZONES = DATA_DIR / "city_zones.geojson"


class RefDataError(ValueError):
    """Reference data that cannot be used; the message names the file, the line or feature, and the field."""


def _split(cls, value: object) -> object:
    if isinstance(value, str):
        return [v.strip() for v in value.split(";") if v.strip()]
    return value


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Site(_Row):
    """An enterprise, dwelling, camera post or monitoring station, and the devices installed there."""

    id: str = Field(min_length=1)
    name: str = ""
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    category: str = Field(min_length=1)
    status: Literal["operating", "suspended", "closed"] = "operating"
    licence: str = ""
    licence_expiry: date | None = None
    meters: list[str] = Field(default_factory=list)

    _split = field_validator("meters", mode="before")(_split)

    @field_validator("licence_expiry", mode="before")
    @classmethod
    def _blank_date(cls, value: object) -> object:
        return None if value == "" else value


class Vehicle(_Row):
    """A registered vehicle, known by its GPS device id."""

    entity: str = Field(min_length=1)
    plate: str = Field(min_length=1)
    hazard_class: str = ""  # UN class of the goods it may carry; empty: not a hazardous-goods vehicle
    operator: str = ""
    routes: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)

    _split = field_validator("routes", "sites", mode="before")(_split)

    @property
    def hazardous(self) -> bool:
        return bool(self.hazard_class)


class Unit(_Row):
    """An enforcement unit of one department, stationed in a town."""

    id: str = Field(min_length=1)
    name: str = ""
    department: str = Field(min_length=1)
    town: str = Field(min_length=1)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


class DepartmentRule(_Row):
    """Alerts whose kind and source match go to these departments (first matching rule wins)."""

    kinds: list[str] = Field(default_factory=lambda: ["*"])
    sources: list[str] = Field(default_factory=lambda: ["*"])
    departments: list[str] = Field(min_length=1)
    action: str = "inspect on site"


class Areas:
    """Administrative areas by level; vectorised "which city / county / town holds these points".

    A point on the border of two areas belongs to both; the one with the
    smaller id is chosen, so the answer is deterministic.
    """

    def __init__(self, features: list[dict]):
        self.by_level: dict[str, tuple[list[dict], STRtree | None]] = {}
        for level in LEVELS:
            items = sorted((f for f in features if f["level"] == level), key=lambda f: f["id"])
            self.by_level[level] = (items, STRtree([f["geom"] for f in items]) if items else None)

    def locate(self, lon: np.ndarray, lat: np.ndarray, level: str) -> np.ndarray:
        """Per point, the index (into this level's id-sorted areas) of the area covering it, or -1."""
        items, tree = self.by_level[level]
        out = np.full(len(lon), -1, dtype=np.int64)
        if tree is None or not len(lon):
            return out
        pts, idx = tree.query(shapely.points(lon, lat), predicate="intersects")
        best = np.full(len(lon), len(items), dtype=np.int64)
        np.minimum.at(best, pts, idx)
        found = best < len(items)
        out[found] = best[found]
        return out

    def area(self, level: str, index: int) -> dict:
        return self.by_level[level][0][index]


class RefData:
    """The city's reference data, validated, with the lookups the alert manager and detectors need."""

    def __init__(
        self,
        doc: dict,
        areas: Areas,
        zones: Zones,
        routes: dict[str, dict],
        sites: dict[str, Site],
        vehicles: dict[str, Vehicle],
        units: list[Unit],
        departments: list[DepartmentRule],
        version: int = 0,
        rest_days: RestDays | None = None,
        deadlines: Deadlines | None = None,
    ):
        self.doc, self.areas, self.zones, self.routes = doc, areas, zones, routes
        self.sites, self.vehicles, self.units, self.departments = sites, vehicles, units, departments
        self.version = version
        self.rest_days = rest_days if rest_days is not None else RestDays.shipped()
        self.deadlines = deadlines if deadlines is not None else Deadlines.from_doc(None, "deadlines.toml")
        self.device_site = {m: s for s in sites.values() for m in s.meters}  # device id -> its Site

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> RefData:
        return cls.from_doc({})

    @classmethod
    def load_dir(cls, folder: Path) -> RefData:
        """Read and validate a reference-data folder (see the module docstring for its files)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise RefDataError(f"{folder}: not a folder")
        doc: dict = {}
        for name in ("areas", "zones", "routes"):
            path = folder / f"{name}.geojson"
            if path.exists():
                doc[name] = _read_json(path)
        for name in ("sites", "vehicles", "units"):
            path = folder / f"{name}.csv"
            if path.exists():
                doc[name] = _read_csv(path)
        for name in ("departments", "holidays", "deadlines"):
            path = folder / f"{name}.toml"
            if path.exists():
                try:
                    doc[name] = tomllib.loads(path.read_text())
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                    raise RefDataError(f"{path}: {exc}") from None
        if not doc:
            raise RefDataError(f"{folder}: no reference-data files (areas.geojson, sites.csv, ...)")
        return cls.from_doc(doc, origin=folder)

    @classmethod
    def from_doc(cls, doc: dict, origin: Path | str = "", version: int = 0) -> RefData:
        """Validate a reference-data document (as stored in Redis) and build its lookups."""
        where = (lambda name: f"{Path(origin) / name}") if origin else (lambda name: name)
        areas = _areas(doc.get("areas"), where("areas.geojson"))
        try:
            zones = Zones.from_geojson(doc.get("zones") or {}, where("zones.geojson"))
        except ZoneError as exc:
            raise RefDataError(str(exc)) from None
        routes = _routes(doc.get("routes"), where("routes.geojson"))
        sites = _rows(Site, doc.get("sites"), where("sites.csv"), key="id")
        vehicles = _rows(Vehicle, doc.get("vehicles"), where("vehicles.csv"), key="entity")
        units = list(_rows(Unit, doc.get("units"), where("units.csv"), key="id").values())
        departments = _departments(doc.get("departments"), where("departments.toml"))
        try:
            rest_days = RestDays.from_doc(doc["holidays"], where("holidays.toml")) if "holidays" in doc else None
            deadlines = Deadlines.from_doc(doc.get("deadlines"), where("deadlines.toml"))
        except (HolidayError, DeadlineError) as exc:
            raise RefDataError(str(exc)) from None
        ref = cls(doc, areas, zones, routes, sites, vehicles, units, departments, version, rest_days, deadlines)
        ref._cross_check(where)
        return ref

    def _cross_check(self, where) -> None:
        seen: dict[str, str] = {}
        for site in self.sites.values():
            for m in site.meters:
                if m in seen:
                    raise RefDataError(f"{where('sites.csv')}: meter {m!r} belongs to both {seen[m]!r} and {site.id!r}")
                seen[m] = site.id
        for v in self.vehicles.values():
            for r in v.routes:
                if r not in self.routes:
                    raise RefDataError(f"{where('vehicles.csv')}: vehicle {v.entity!r}: unknown route {r!r}")
            for s in v.sites:
                if s not in self.sites:
                    raise RefDataError(f"{where('vehicles.csv')}: vehicle {v.entity!r}: unknown site {s!r}")
        towns = {a["id"] for a in self.areas.by_level["town"][0]}
        for u in self.units:
            if u.town not in towns:
                raise RefDataError(f"{where('units.csv')}: unit {u.id!r}: unknown town {u.town!r}")

    # -- lookups ------------------------------------------------------------------------------------

    def place(self, lon: float, lat: float) -> dict:
        """The names and ids of the city, county and town holding a point (levels with no area left out)."""
        names, ids = {}, {}
        for level in LEVELS:
            i = int(self.areas.locate(np.array([lon]), np.array([lat]), level)[0])
            if i >= 0:
                area = self.areas.area(level, i)
                names[level], ids[f"{level}_id"] = area["name"], area["id"]
        return {**names, **ids}

    def nearest_unit(self, department: str, town_id: str | None, lon: float, lat: float) -> Unit | None:
        """The department's unit nearest to the point, preferring units of the point's own town."""
        units = [u for u in self.units if u.department == department]
        local = [u for u in units if u.town == town_id]
        pool = local or units
        if not pool:
            return None
        d = metres(
            np.array([u.lon for u in pool]),
            np.array([u.lat for u in pool]),
            np.full(len(pool), lon),
            np.full(len(pool), lat),
        )
        return pool[int(np.argmin(d))]

    def department_names(self) -> list[str]:
        """Every department the routing rules or the enforcement units name."""
        return sorted({d for rule in self.departments for d in rule.departments} | {u.department for u in self.units})

    def department_rule(self, source: str, kind: str) -> DepartmentRule | None:
        for rule in self.departments:
            if any(fnmatchcase(kind, k) for k in rule.kinds) and any(fnmatchcase(source, s) for s in rule.sources):
                return rule
        return None

    def counts(self) -> dict[str, int]:
        return {
            "areas": sum(len(v[0]) for v in self.areas.by_level.values()),
            "zones": len(self.zones.ids),
            "routes": len(self.routes),
            "sites": len(self.sites),
            "vehicles": len(self.vehicles),
            "units": len(self.units),
            "department_rules": len(self.departments),
        }


def _read_json(path: Path) -> dict:
    import orjson

    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise RefDataError(f"{path}: {exc}") from None


def _read_csv(path: Path) -> list[dict]:
    """Rows as dicts, each with its line number under ``_line``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RefDataError(f"{path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for row in reader:
        if None in row:
            raise RefDataError(f"{path}:{reader.line_num}: more values than columns")
        rows.append({**{k: v for k, v in row.items() if v is not None}, "_line": reader.line_num})
    return rows


def _rows(model: type[_Row], rows: list[dict] | None, origin: str, key: str) -> dict:
    out: dict = {}
    for n, row in enumerate(rows or [], start=2):
        row = dict(row)
        line = row.pop("_line", n)
        try:
            item = model.model_validate(row)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "row"
            raise RefDataError(f"{origin}:{line}: {field}: {err['msg']}") from None
        ident = getattr(item, key)
        if ident in out:
            raise RefDataError(f"{origin}:{line}: duplicate {key} {ident!r}")
        out[ident] = item
    return out


def _features(doc: dict | None, origin: str, kinds: tuple[str, ...]):
    if doc is None:
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        raise RefDataError(f"{origin}: not a GeoJSON FeatureCollection")
    for k, feature in enumerate(doc["features"]):
        props = (feature or {}).get("properties") or {}
        label = f"{origin}: feature {k}" + (f" ({props['id']})" if props.get("id") else "")
        try:
            geom = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RefDataError(f"{label}: bad geometry ({exc})") from None
        if geom.geom_type not in kinds or not geom.is_valid:
            raise RefDataError(f"{label}: needs a valid {' or '.join(kinds)}")
        if not props.get("id"):
            raise RefDataError(f"{label}: properties need an 'id'")
        yield label, props, geom


def _areas(doc: dict | None, origin: str) -> Areas:
    features = []
    for label, props, geom in _features(doc, origin, ("Polygon", "MultiPolygon")):
        if props.get("level") not in LEVELS:
            raise RefDataError(f"{label}: level must be one of {', '.join(LEVELS)}")
        features.append(
            {
                "id": str(props["id"]),
                "name": str(props.get("name", props["id"])),
                "level": props["level"],
                "parent": props.get("parent") or None,
                "geom": geom,
            }
        )
    ids = {f["id"] for f in features}
    for f in features:
        if f["parent"] is not None and f["parent"] not in ids:
            raise RefDataError(f"{origin}: area {f['id']!r}: unknown parent {f['parent']!r}")
    return Areas(features)


def _routes(doc: dict | None, origin: str) -> dict[str, dict]:
    routes = {}
    for label, props, geom in _features(doc, origin, ("LineString", "MultiLineString")):
        corridor = props.get("corridor_m", 200)
        if not isinstance(corridor, (int, float)) or corridor <= 0:
            raise RefDataError(f"{label}: corridor_m must be a positive number of metres")
        routes[str(props["id"])] = {
            "name": str(props.get("name", props["id"])),
            "corridor_m": float(corridor),
            "geom": geom,
        }
    return routes


def _departments(doc: dict | None, origin: str) -> list[DepartmentRule]:
    if doc is None:
        doc = tomllib.loads(DEFAULT_DEPARTMENTS.read_text())
    try:
        return rules_of(DepartmentRule, doc, origin)
    except ValueError as exc:
        raise RefDataError(str(exc)) from None
