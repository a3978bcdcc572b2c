"""Asset geometry checks: well-formed GeoJSON, valid, of the class's type, inside the service area."""

from __future__ import annotations

from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from common.errors import InvalidInput
from gis.area import ServiceArea
from registry.classes import ALLOWED_GEOMETRIES
from registry.limits import MAX_VERTICES
from registry.models import ComponentClass


def parse_geojson(geojson: dict[str, Any], field: str = "geometry") -> BaseGeometry:
    """A shapely geometry from a GeoJSON geometry object, or ``InvalidInput`` naming the problem."""
    if not isinstance(geojson, dict) or "type" not in geojson:
        raise InvalidInput("geometry must be a GeoJSON geometry object with a 'type'", field=field)
    if geojson.get("type") == "Feature":
        geojson = geojson.get("geometry") or {}
    try:
        geom = shape(geojson)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, shapely.errors.GEOSException) as exc:
        raise InvalidInput(f"geometry is not valid GeoJSON: {exc}", field=field) from exc
    return geom


def single_point(geom: BaseGeometry) -> BaseGeometry:
    """A MultiPoint of one point as that Point (shapefiles often store points so); others unchanged."""
    if geom.geom_type == "MultiPoint" and shapely.get_num_geometries(geom) == 1:
        return shapely.get_geometry(geom, 0)
    return geom


def check_asset_geometry(
    geom: BaseGeometry, asset_class: ComponentClass, area: ServiceArea, field: str = "geometry"
) -> BaseGeometry:
    """Return ``geom`` if it suits ``asset_class`` and lies in the area, else raise ``InvalidInput``.

    A point class takes one Point (a MultiPoint of one point is taken as it); a geometry has at most
    ``MAX_VERTICES`` coordinates.
    """
    if geom.is_empty:
        raise InvalidInput("geometry is empty", field=field)
    if shapely.get_coordinate_dimension(geom) > 2:
        geom = shapely.force_2d(geom)
    vertices = shapely.get_num_coordinates(geom)
    if vertices > MAX_VERTICES:
        raise InvalidInput(
            f"geometry has {vertices:,} vertices; an asset's geometry may have at most {MAX_VERTICES:,} "
            "(几何顶点过多: simplify it, or register the parts as separate assets)",
            field=field,
        )
    geom = single_point(geom)
    allowed = ALLOWED_GEOMETRIES[asset_class.geometry_type]
    if geom.geom_type not in allowed:
        raise InvalidInput(
            f"class {asset_class.code} {asset_class.name} expects a {asset_class.geometry_type} "
            f"geometry ({' or '.join(allowed)}), got {geom.geom_type}",
            field=field,
        )
    if not geom.is_valid:
        raise InvalidInput(f"geometry is invalid: {shapely.is_valid_reason(geom)}", field=field)
    area.check_geometry(geom)
    return geom
