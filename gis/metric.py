"""Projection of WGS84 lon/lat to a local metric CRS, where distances and buffers are in metres."""

from __future__ import annotations

from functools import lru_cache

import numpy.typing as npt
from pyproj import CRS

from common.errors import InvalidInput
from gis.crs import (
    Crs,
    FloatArray,
    GeometryT,
    crs_from_epsg,
    from_wgs84,
    from_wgs84_arrays,
    geometry_from_wgs84,
    to_wgs84_arrays,
    transform_geometry,
)

_METRE_UNITS = {"metre", "meter", "m"}


class MetricProjector:
    """Projects WGS84 geometries and arrays to a projected CRS in metres (default EPSG:4547)."""

    def __init__(self, srid: int = 4547) -> None:
        crs = crs_from_epsg(srid)
        if not crs.is_projected:
            raise InvalidInput(f"metric SRID EPSG:{srid} is not a projected coordinate system")
        # A CRS in feet or degrees would make every "metre" silently wrong.
        units = {axis.unit_name.lower() for axis in CRS.from_epsg(srid).axis_info}
        if not units <= _METRE_UNITS:
            raise InvalidInput(
                f"metric SRID EPSG:{srid} is not in metres (units: {', '.join(sorted(units))})"
            )
        self._crs: Crs = crs

    @property
    def srid(self) -> int:
        """EPSG code of the metric CRS."""
        assert self._crs.epsg is not None
        return self._crs.epsg

    @property
    def crs(self) -> Crs:
        """The metric CRS as a :class:`gis.crs.Crs`."""
        return self._crs

    def project_arrays(self, lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """WGS84 lon/lat arrays -> easting/northing arrays in metres."""
        return from_wgs84_arrays(lons, lats, self._crs)

    def unproject_arrays(self, xs: npt.ArrayLike, ys: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Easting/northing arrays in metres -> WGS84 lon/lat arrays."""
        return to_wgs84_arrays(xs, ys, self._crs)

    def project_point(self, lon: float, lat: float) -> tuple[float, float]:
        """One WGS84 lon/lat pair -> (easting, northing) in metres."""
        return from_wgs84(lon, lat, self._crs)

    def project(self, geom: GeometryT) -> GeometryT:
        """A WGS84 shapely geometry -> the same geometry in metres."""
        return geometry_from_wgs84(geom, self._crs)

    def unproject(self, geom: GeometryT) -> GeometryT:
        """A shapely geometry in metres -> WGS84 lon/lat."""
        return transform_geometry(geom, self._crs)

    def __repr__(self) -> str:
        return f"MetricProjector(srid={self.srid})"


@lru_cache(maxsize=16)
def metric_projector(srid: int = 4547) -> MetricProjector:
    """A shared MetricProjector per SRID (validation and transformer lookup done once)."""
    return MetricProjector(srid)
