"""The deployment's service area: which coordinates the registry accepts, and why it refuses others."""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

from common.bilingual import Bilingual
from common.errors import InvalidInput, OutsideServiceArea
from common.settings import Settings, get_settings
from gis.metric import MetricProjector, metric_projector

# Edges of the WKT polygon are straight in lon/lat (as PostGIS geometry treats them); densifying
# before projecting keeps them so in metres. 0.005 degree is ~500 m.
_DENSIFY_DEG = 0.005
# The buffered outline is densified in metres before going back to lon/lat, so its straight
# lon/lat edges stay within a millimetre of the true metric buffer.
_DENSIFY_M = 100.0
# Beyond this distance the Gauss-Kruger projection is too distorted to measure "how far outside":
# fall back to a geodesic distance.
_METRIC_DISTANCE_LIMIT_M = 300_000.0

_GEOD = Geod(ellps="WGS84")


def _fmt(value: float) -> str:
    """Coordinates in messages: 6 decimals (~0.1 m), without trailing noise."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _km(metres: float) -> str:
    """Distances in messages; two decimals near the margin so 2.04 km does not read as "2.0"."""
    if metres < 100.0:
        return f"{metres:.0f} m"
    return f"{metres / 1000.0:.2f} km" if metres < 10_000.0 else f"{metres / 1000.0:.1f} km"


class ServiceArea:
    """A WGS84 polygon plus a margin in metres; coordinates beyond the margin are refused."""

    def __init__(self, polygon: BaseGeometry, margin_m: float = 2000.0, metric_srid: int = 4547) -> None:
        if not isinstance(polygon, shapely.Polygon | shapely.MultiPolygon) or polygon.is_empty:
            raise InvalidInput(f"service area must be a non-empty (multi)polygon, got {polygon.geom_type}")
        if not polygon.is_valid:
            raise InvalidInput(f"service area polygon is invalid: {shapely.is_valid_reason(polygon)}")
        minx, miny, maxx, maxy = polygon.bounds
        if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
            raise InvalidInput("service area must be given in WGS84 lon/lat degrees")
        if not math.isfinite(margin_m) or margin_m < 0:
            raise InvalidInput(f"service area margin must be a non-negative number of metres, got {margin_m}")
        self._polygon = polygon
        self._margin_m = float(margin_m)
        self._metric: MetricProjector = metric_projector(metric_srid)
        self._polygon_m = self._metric.project(shapely.segmentize(polygon, _DENSIFY_DEG))
        buffered_m = self._polygon_m.buffer(self._margin_m, quad_segs=16) if margin_m else self._polygon_m
        self._accepted = self._metric.unproject(shapely.segmentize(buffered_m, _DENSIFY_M))
        # Prepared once: per-row checks and million-point masks then cost microseconds per point.
        shapely.prepare(self._polygon)
        shapely.prepare(self._polygon_m)
        shapely.prepare(self._accepted)
        self._accepted_bounds = self._accepted.bounds

    @classmethod
    def from_wkt(cls, wkt: str, margin_m: float = 2000.0, metric_srid: int = 4547) -> ServiceArea:
        """Build from a WGS84 lon/lat WKT polygon."""
        try:
            polygon = shapely.from_wkt(wkt)
        except ShapelyError as exc:
            raise InvalidInput(f"service area WKT cannot be read: {exc}") from exc
        return cls(polygon, margin_m, metric_srid)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ServiceArea:
        """Build from the deployment settings (service_area_wkt, service_area_margin_m, metric_srid)."""
        s = settings if settings is not None else get_settings()
        return cls.from_wkt(s.area.service_area_wkt, s.area.service_area_margin_m, s.area.metric_srid)

    # --- properties --------------------------------------------------------------------------------

    @property
    def polygon(self) -> BaseGeometry:
        """The service area itself (WGS84), without the margin."""
        return self._polygon

    @property
    def accepted_region(self) -> BaseGeometry:
        """The service area grown by the margin (WGS84): what ``contains`` tests against."""
        return self._accepted

    @property
    def margin_m(self) -> float:
        """Tolerance around the polygon, in metres."""
        return self._margin_m

    @property
    def metric(self) -> MetricProjector:
        """The metric projection used for distances."""
        return self._metric

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) of the service area polygon (without margin)."""
        minx, miny, maxx, maxy = self._polygon.bounds
        return (minx, miny, maxx, maxy)

    @property
    def centroid(self) -> tuple[float, float]:
        """(lon, lat) of the polygon's centroid, handy for messages and samples."""
        c = self._polygon.centroid
        return (c.x, c.y)

    # --- predicates ----------------------------------------------------------------------------------

    def inside_mask(self, lons: npt.ArrayLike, lats: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Vectorised: True where (lon, lat) lies within the area plus margin; NaN/inf give False."""
        lon = np.asarray(lons, dtype=np.float64)
        lat = np.asarray(lats, dtype=np.float64)
        minx, miny, maxx, maxy = self._accepted_bounds
        # A bounding-box pass is ~100x cheaper than the polygon test and rejects far-off points
        # (and NaN, which compares False) before GEOS sees them.
        mask = (lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)
        if mask.any():
            mask[mask] = shapely.intersects_xy(self._accepted, lon[mask], lat[mask])
        return mask

    def contains(self, lon: float, lat: float) -> bool:
        """True when (lon, lat) lies within the area plus margin."""
        return bool(self.inside_mask(np.array([lon]), np.array([lat]))[0])

    def distance_outside_m(self, lon: float, lat: float) -> float:
        """Metres from (lon, lat) to the service area polygon (0 inside), ignoring the margin."""
        if shapely.intersects_xy(self._polygon, lon, lat):
            return 0.0
        x, y = self._metric.project_point(lon, lat)
        if math.isfinite(x) and math.isfinite(y):
            metric_distance = float(shapely.distance(self._polygon_m, shapely.Point(x, y)))
            if metric_distance < _METRIC_DISTANCE_LIMIT_M:
                return metric_distance
        # Far away: find the nearest boundary point in a locally scaled lon/lat frame and measure
        # the geodesic to it. Not the exact minimum, but honest to a few percent at any range.
        scale = math.cos(math.radians(self.centroid[1]))
        scaled = shapely.transform(self._polygon, lambda c: c * np.array([scale, 1.0]))
        near_x, near_y = shapely.get_coordinates(
            shapely.shortest_line(scaled, shapely.Point(lon * scale, lat))
        )[0]
        _, _, metres = _GEOD.inv(lon, lat, near_x / scale, near_y)
        return float(metres)

    # --- checks that raise -----------------------------------------------------------------------------

    def check_point(self, lon: float, lat: float) -> None:
        """Raise InvalidInput (bad/swapped numbers) or OutsideServiceArea unless (lon, lat) is accepted."""
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (lon, lat)):
            raise InvalidInput(f"coordinate must be two numbers, got lon={lon!r}, lat={lat!r}")
        lon, lat = float(lon), float(lat)
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise InvalidInput(f"coordinate ({lon}, {lat}) is not a finite number")
        if self.contains(lon, lat):
            return
        # The commonest data-entry mistake: checked before the range test, because a swapped
        # pair (22.7, 114.3) also fails it and "swapped" is the more useful message.
        if self.contains(lat, lon):
            raise InvalidInput(
                f"latitude and longitude look swapped: (lon {_fmt(lon)}, lat {_fmt(lat)}) is outside the "
                f"service area but (lon {_fmt(lat)}, lat {_fmt(lon)}) is inside; "
                f"send lon={_fmt(lat)}, lat={_fmt(lon)}",
                lon=lon,
                lat=lat,
                suggested_lon=lat,
                suggested_lat=lon,
            )
        _check_range(lon, lat)
        distance = self.distance_outside_m(lon, lat)
        raise OutsideServiceArea(
            Bilingual(
                f"位置（经度 {_fmt(lon)}，纬度 {_fmt(lat)}）在服务区域外 {_km(distance)}"
                f"（允许误差 {_km(self._margin_m)}）",
                f"location (lon {_fmt(lon)}, lat {_fmt(lat)}) is {_km(distance)} outside the service area "
                f"(allowed margin {_km(self._margin_m)})",
            ),
            lon=lon,
            lat=lat,
            distance_km=round(distance / 1000.0, 3),
        )

    def check_geometry(self, geom: BaseGeometry) -> None:
        """Raise unless every vertex of ``geom`` (WGS84) lies within the area plus margin."""
        if geom is None or not isinstance(geom, BaseGeometry):
            raise InvalidInput(f"expected a geometry, got {type(geom).__name__}")
        if geom.is_empty:
            raise InvalidInput(f"{geom.geom_type} is empty")
        coords = shapely.get_coordinates(geom)
        lon, lat = coords[:, 0], coords[:, 1]
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise InvalidInput(f"{geom.geom_type} has non-finite coordinates")
        inside = self.inside_mask(lon, lat)
        if inside.all():
            # Vertices inside but an edge leaving a concave area (or crossing a hole).
            if not shapely.covers(self._accepted, geom):
                raise OutsideServiceArea(
                    Bilingual(
                        f"{geom.geom_type} 的顶点之间有一段超出服务区域（允许误差 {_km(self._margin_m)}）",
                        f"{geom.geom_type} runs outside the service area between its vertices "
                        f"(allowed margin {_km(self._margin_m)})",
                    )
                )
            return
        if self.inside_mask(lat, lon).all():
            raise InvalidInput(
                Bilingual(
                    f"此 {geom.geom_type} 的经纬度似乎写反了：第一个顶点交换后（经度 {_fmt(lat[0])}，"
                    f"纬度 {_fmt(lon[0])}）才在服务区域内；请交换 x 和 y",
                    f"latitude and longitude look swapped in this {geom.geom_type}: its first vertex "
                    f"(lon {_fmt(lon[0])}, lat {_fmt(lat[0])}) would be inside the service area as "
                    f"(lon {_fmt(lat[0])}, lat {_fmt(lon[0])}); swap x and y",
                ),
            )
        bad = np.flatnonzero(~inside)
        for i in bad:
            _check_range(float(lon[i]), float(lat[i]))
        # Report the worst offender, so the message says how far off the data really is.
        distances = [self.distance_outside_m(float(lon[i]), float(lat[i])) for i in bad[:1000]]
        worst = int(bad[int(np.argmax(distances))])
        raise OutsideServiceArea(
            Bilingual(
                f"此 {geom.geom_type} 的 {len(lon)} 个顶点中有 {len(bad)} 个在服务区域外；最远的"
                f"（经度 {_fmt(lon[worst])}，纬度 {_fmt(lat[worst])}）在区域外 {_km(max(distances))}"
                f"（允许误差 {_km(self._margin_m)}）",
                f"{len(bad)} of {len(lon)} vertices of this {geom.geom_type} are outside the service area; "
                f"the farthest, (lon {_fmt(lon[worst])}, lat {_fmt(lat[worst])}), is {_km(max(distances))} "
                f"outside (allowed margin {_km(self._margin_m)})",
            ),
            lon=float(lon[worst]),
            lat=float(lat[worst]),
            distance_km=round(max(distances) / 1000.0, 3),
        )

    def __repr__(self) -> str:
        minx, miny, maxx, maxy = self.bounds
        return (
            f"ServiceArea(bounds=({minx:g}, {miny:g}, {maxx:g}, {maxy:g}), margin_m={self._margin_m:g}, "
            f"metric_srid={self._metric.srid})"
        )


def _check_range(lon: float, lat: float) -> None:
    """InvalidInput for lon/lat outside [-180, 180] x [-90, 90], hinting at projected metres."""
    if abs(lon) <= 180.0 and abs(lat) <= 90.0:
        return
    hint = ""
    if abs(lon) > 1000.0 or abs(lat) > 1000.0:
        hint = (
            "; values this large are usually projected metres (e.g. EPSG:4547 eastings/northings): "
            "declare the coordinate system instead of sending them as lon/lat"
        )
    raise InvalidInput(
        f"coordinate (lon {lon:g}, lat {lat:g}) is out of range: longitude must be within ±180 "
        f"and latitude within ±90{hint}",
        lon=lon,
        lat=lat,
    )
