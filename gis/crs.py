"""Coordinate reference systems met in practice, and conversion of coordinates to and from WGS84.

Axis convention everywhere in this project: x = longitude/easting, y = latitude/northing, whatever
axis order the EPSG registry declares (EPSG:4326 and EPSG:4490 are lat,lon there).

GCJ-02 ("Mars coordinates": AMap/Gaode, Tencent, WeChat ``gcj02``) and BD-09 (Baidu) are
obfuscations, not datums, so PROJ knows nothing about them: they are computed here with the
publicly documented formulas, and inverted iteratively to sub-millimetre accuracy.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from common.errors import InvalidInput

CrsKind = Literal["geographic", "projected", "gcj02", "bd09"]
FloatArray = npt.NDArray[np.float64]
GeometryT = TypeVar("GeometryT", bound=shapely.Geometry)
# A function mapping x/y arrays to converted x/y arrays.
_Forward = Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]]


@dataclass(frozen=True)
class Crs:
    """A coordinate reference system as this project understands it (canonical name, EPSG, kind)."""

    name: str
    epsg: int | None
    kind: CrsKind

    @property
    def is_projected(self) -> bool:
        """True when coordinates are easting/northing (metres or feet) rather than lon/lat degrees."""
        return self.kind == "projected"

    def __str__(self) -> str:
        return self.name


WGS84 = Crs("wgs84", 4326, "geographic")
GCJ02 = Crs("gcj02", None, "gcj02")
BD09 = Crs("bd09", None, "bd09")
CGCS2000 = Crs("EPSG:4490", 4490, "geographic")

# Spellings seen in the field, after lower-casing and dropping blanks, '-' and '_'.
_ALIASES: dict[str, Crs] = {
    "wgs84": WGS84,
    "wgs1984": WGS84,
    "gps": WGS84,
    "gcj02": GCJ02,
    "gcj": GCJ02,
    "amap": GCJ02,
    "gaode": GCJ02,
    "autonavi": GCJ02,
    "tencent": GCJ02,
    "qq": GCJ02,
    "mars": GCJ02,
    "高德": GCJ02,
    "腾讯": GCJ02,
    "火星坐标": GCJ02,
    "bd09": BD09,
    "bd09ll": BD09,
    "baidu": BD09,
    "百度": BD09,
    "cgcs2000": CGCS2000,
}

_EPSG_RE = re.compile(r"^(?:epsg:?:?|urn:ogc:def:crs:epsg:[0-9.]*:)?([0-9]{4,6})$")

ACCEPTED_FORMS = (
    "wgs84 (= EPSG:4326), gcj02 (amap, gaode, tencent), bd09 (bd09ll, baidu), cgcs2000 (= EPSG:4490), "
    "EPSG:<code>, <code> or urn:ogc:def:crs:EPSG::<code>"
)


def parse_crs(text: str | None) -> Crs:
    """Read a CRS name as users write it; None or blank means WGS84."""
    if text is None:
        return WGS84
    if not isinstance(text, str):
        raise InvalidInput(f"coordinate system must be text, got {text!r}; accepted: {ACCEPTED_FORMS}")
    compact = re.sub(r"\s+", "", text).lower()
    if not compact:
        return WGS84
    alias = _ALIASES.get(compact.replace("-", "").replace("_", ""))
    if alias is not None:
        return alias
    if compact.replace("-", "").replace("_", "") in {"bd09mc", "baidumercator"}:
        # Baidu's own Mercator metres are a different, rarer format: refuse clearly rather than guess.
        raise InvalidInput(
            f"coordinate system {text!r} (Baidu Mercator metres) is not supported; "
            f"export Baidu coordinates as bd09 lon/lat. Accepted: {ACCEPTED_FORMS}",
            given=text,
        )
    match = _EPSG_RE.match(compact)
    if match is None:
        raise InvalidInput(
            f"unknown coordinate system {text!r}; accepted: {ACCEPTED_FORMS}",
            given=text,
        )
    return crs_from_epsg(int(match.group(1)), given=text)


@lru_cache(maxsize=256)
def _crs_from_epsg_cached(code: int) -> Crs:
    if code == 4326:
        return WGS84
    if code == 4490:
        return CGCS2000
    try:
        definition = CRS.from_epsg(code)
    except CRSError as exc:
        raise InvalidInput(
            f"EPSG:{code} is not a coordinate system known to PROJ; accepted: {ACCEPTED_FORMS}",
            given=f"EPSG:{code}",
        ) from exc
    # Only horizontal 2D systems make sense for a point on a map; geocentric, vertical and
    # engineering systems would silently produce nonsense.
    if definition.is_projected:
        return Crs(f"EPSG:{code}", code, "projected")
    if definition.is_geographic and not definition.is_compound:
        return Crs(f"EPSG:{code}", code, "geographic")
    raise InvalidInput(
        f"EPSG:{code} ({definition.name}, {definition.type_name}) is not a horizontal geographic or "
        "projected coordinate system",
        given=f"EPSG:{code}",
    )


def crs_from_epsg(code: int, given: str | None = None) -> Crs:
    """The Crs for an EPSG code; InvalidInput when PROJ does not know it or it is not horizontal 2D."""
    try:
        return _crs_from_epsg_cached(code)
    except InvalidInput as exc:
        if given is not None and given != f"EPSG:{code}":
            raise InvalidInput(f"{given!r}: {exc.message}", given=given) from exc
        raise


@lru_cache(maxsize=64)
def pyproj_transformer(src_epsg: int, dst_epsg: int) -> Transformer:
    """A cached lon/lat-ordered pyproj Transformer (building one costs milliseconds; they are thread-safe)."""
    return Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)


# --------------------------------------------------------------------------------------------------
# GCJ-02 / BD-09 formulas
# --------------------------------------------------------------------------------------------------

# GCJ-02 is defined on the Krasovsky 1940 ellipsoid.
_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_BD_X_PI = math.pi * 3000.0 / 180.0

# Stopping rule of the iterative inverses. Each update multiplies the error by at most k, the
# norm of the offset's Jacobian: measured over China, k < 0.01 for GCJ-02 (rising to ~0.03 within
# 1e-9 degree of lon 105, where a sqrt term is steep) and k ~ 0.02 for BD-09. So stopping once
# the residual BEFORE the last update is below the tolerance leaves an error below k * tolerance:
# < 0.01 mm for GCJ-02 with 1e-7 degree (~1 cm), < 0.002 mm for BD-09 with 1e-8 degree.
# In Pingshan that is 3 evaluations of the GCJ formula per inverse, 4 of BD-09.
_GCJ_TOLERANCE_DEG = 1e-7
_BD_TOLERANCE_DEG = 1e-8
_INVERSE_MAX_ITERATIONS = 30

# Long arrays are processed in slices of this many points: the formulas create a dozen
# temporaries, and keeping them cache-sized is ~25% faster than whole-array passes.
_CHUNK = 16384


def _as_float_arrays(xs: npt.ArrayLike, ys: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x and y arrays differ in shape: {x.shape} vs {y.shape}")
    return x, y


def in_china_mask(lons: npt.ArrayLike, lats: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Rough China bounding box used by the GCJ-02 formula: outside it no offset is applied."""
    lon, lat = _as_float_arrays(lons, lats)
    return (lon >= 72.004) & (lon <= 137.8347) & (lat >= 0.8293) & (lat <= 55.8271)


def _gcj_offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The GCJ-02 shift (dlon, dlat) in degrees at WGS84 (lon, lat), without the China test."""
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    root_abs_x = np.sqrt(np.abs(x))
    # sin() dominates the cost (importers push millions of points through here, several times
    # in the inverse), so sin(3a) = 3 sin(a) - 4 sin(a)^3 derives three of the terms from others.
    s_2x = np.sin((2.0 * pi) * x)
    s_x3 = np.sin((pi / 3.0) * x)
    s_y3 = np.sin((pi / 3.0) * y)
    s_6x = s_2x * (3.0 - 4.0 * s_2x * s_2x)
    s_x = s_x3 * (3.0 - 4.0 * s_x3 * s_x3)
    s_y = s_y3 * (3.0 - 4.0 * s_y3 * s_y3)
    # The same high-frequency term in x enters both components.
    wiggle = (20.0 * s_6x + 20.0 * s_2x) * (2.0 / 3.0)
    north = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * root_abs_x + wiggle
    north += (20.0 * s_y + 40.0 * s_y3) * (2.0 / 3.0)
    north += (160.0 * np.sin((pi / 12.0) * y) + 320.0 * np.sin((pi / 30.0) * y)) * (2.0 / 3.0)
    east = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * root_abs_x + wiggle
    east += (20.0 * s_x + 40.0 * s_x3) * (2.0 / 3.0)
    east += (150.0 * np.sin((pi / 12.0) * x) + 300.0 * np.sin((pi / 30.0) * x)) * (2.0 / 3.0)
    # The offsets above are in metre-like units; turn them into degrees with the Krasovsky radii
    # of curvature at this latitude (|lat| <= 90 so cos(phi) = sqrt(1 - sin^2) >= 0).
    sin2_phi = np.sin(np.radians(lat)) ** 2
    cos_phi = np.sqrt(1.0 - sin2_phi)
    w = 1.0 - _KRASOVSKY_EE * sin2_phi
    root_w = np.sqrt(w)
    meridian_radius = _KRASOVSKY_A * (1.0 - _KRASOVSKY_EE) / (w * root_w)
    normal_radius = _KRASOVSKY_A / root_w
    dlat = north * (180.0 / pi) / meridian_radius
    dlon = east * (180.0 / pi) / (normal_radius * cos_phi)
    return dlon, dlat


def _in_chunks(func: _Forward) -> _Forward:
    """Wrap an array conversion so long inputs are processed slice by slice (any shape kept)."""

    @functools.wraps(func)
    def wrapper(lons: FloatArray, lats: FloatArray) -> tuple[FloatArray, FloatArray]:
        lon, lat = _as_float_arrays(lons, lats)
        if lon.size <= _CHUNK:
            return func(lon, lat)
        flat_lon, flat_lat = lon.ravel(), lat.ravel()
        out_lon = np.empty_like(flat_lon)
        out_lat = np.empty_like(flat_lat)
        for first in range(0, flat_lon.size, _CHUNK):
            part = slice(first, first + _CHUNK)
            out_lon[part], out_lat[part] = func(flat_lon[part], flat_lat[part])
        return out_lon.reshape(lon.shape), out_lat.reshape(lat.shape)

    return wrapper


def wgs84_to_gcj02(lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Forward GCJ-02 obfuscation of WGS84 lon/lat arrays (unchanged outside China)."""
    lon, lat = _as_float_arrays(lons, lats)
    dlon, dlat = _gcj_offset(lon, lat)
    inside = in_china_mask(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def _fixed_point_inverse(
    forward: _Forward,
    target_lon: FloatArray,
    target_lat: FloatArray,
    start: tuple[FloatArray, FloatArray],
    tolerance: float,
) -> tuple[FloatArray, FloatArray]:
    """Solve forward(p) = target by p <- p - (forward(p) - target).

    The offsets vary slowly (their derivative is ~1e-3 per degree), so the map is a strong
    contraction: each round gains 2-3 decimal digits (see the stopping rule above).
    """
    lon, lat = start
    for _ in range(_INVERSE_MAX_ITERATIONS):
        f_lon, f_lat = forward(lon, lat)
        r_lon = f_lon - target_lon
        r_lat = f_lat - target_lat
        lon = lon - r_lon
        lat = lat - r_lat
        # NaN residuals compare False, so missing inputs do not keep the loop going.
        if not np.any((np.abs(r_lon) > tolerance) | (np.abs(r_lat) > tolerance)):
            break
    return lon, lat


def _gcj_forward_unmasked(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    dlon, dlat = _gcj_offset(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Iterative inverse of the GCJ-02 obfuscation, accurate to well under a millimetre."""
    lon, lat = _as_float_arrays(lons, lats)
    # Decide "in China" once on the input, so a point near the box edge cannot flip-flop between
    # iterations.
    inside = in_china_mask(lon, lat)
    dlon, dlat = _gcj_offset(lon, lat)
    start = (lon - dlon, lat - dlat)  # the usual one-step approximation (1-2 m off)
    w_lon, w_lat = _fixed_point_inverse(_gcj_forward_unmasked, lon, lat, start, _GCJ_TOLERANCE_DEG)
    return np.where(inside, w_lon, lon), np.where(inside, w_lat, lat)


def gcj02_to_bd09(lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Baidu's BD-09 offset applied on top of GCJ-02 lon/lat arrays."""
    lon, lat = _as_float_arrays(lons, lats)
    radius = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _BD_X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _BD_X_PI)
    return radius * np.cos(theta) + 0.0065, radius * np.sin(theta) + 0.006


def bd09_to_gcj02(lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Iterative inverse of the BD-09 offset (BD-09 lon/lat -> GCJ-02 lon/lat), sub-millimetre."""
    lon, lat = _as_float_arrays(lons, lats)
    # The closed-form approximation (accurate to about a metre) is a good starting point.
    x = lon - 0.0065
    y = lat - 0.006
    radius = np.hypot(x, y) - 0.00002 * np.sin(y * _BD_X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _BD_X_PI)
    start = (radius * np.cos(theta), radius * np.sin(theta))
    return _fixed_point_inverse(gcj02_to_bd09, lon, lat, start, _BD_TOLERANCE_DEG)


def _bd09_to_wgs84(lons: FloatArray, lats: FloatArray) -> tuple[FloatArray, FloatArray]:
    return gcj02_to_wgs84(*bd09_to_gcj02(lons, lats))


def _wgs84_to_bd09(lons: FloatArray, lats: FloatArray) -> tuple[FloatArray, FloatArray]:
    return gcj02_to_bd09(*wgs84_to_gcj02(lons, lats))


_CHUNKED_TO_WGS84: dict[str, _Forward] = {
    "gcj02": _in_chunks(gcj02_to_wgs84),
    "bd09": _in_chunks(_bd09_to_wgs84),
}
_CHUNKED_FROM_WGS84: dict[str, _Forward] = {
    "gcj02": _in_chunks(wgs84_to_gcj02),
    "bd09": _in_chunks(_wgs84_to_bd09),
}

# --------------------------------------------------------------------------------------------------
# Public conversions
# --------------------------------------------------------------------------------------------------


def to_wgs84_arrays(xs: npt.ArrayLike, ys: npt.ArrayLike, crs: Crs) -> tuple[FloatArray, FloatArray]:
    """Vectorised conversion of x/y arrays in ``crs`` to WGS84 lon/lat (non-convertible -> inf/NaN)."""
    x, y = _as_float_arrays(xs, ys)
    offset_inverse = _CHUNKED_TO_WGS84.get(crs.kind)
    if offset_inverse is not None:
        return offset_inverse(x, y)
    if crs.epsg is None:  # pragma: no cover - every non-GCJ/BD Crs carries an EPSG code
        raise InvalidInput(f"coordinate system {crs.name} has no EPSG code")
    if crs.epsg == 4326:
        return x.copy(), y.copy()
    lon, lat = pyproj_transformer(crs.epsg, 4326).transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def from_wgs84_arrays(lons: npt.ArrayLike, lats: npt.ArrayLike, crs: Crs) -> tuple[FloatArray, FloatArray]:
    """Vectorised conversion of WGS84 lon/lat arrays to x/y in ``crs``."""
    lon, lat = _as_float_arrays(lons, lats)
    offset_forward = _CHUNKED_FROM_WGS84.get(crs.kind)
    if offset_forward is not None:
        return offset_forward(lon, lat)
    if crs.epsg is None:  # pragma: no cover - every non-GCJ/BD Crs carries an EPSG code
        raise InvalidInput(f"coordinate system {crs.name} has no EPSG code")
    if crs.epsg == 4326:
        return lon.copy(), lat.copy()
    x, y = pyproj_transformer(4326, crs.epsg).transform(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def to_wgs84(x: float, y: float, crs: Crs) -> tuple[float, float]:
    """Convert one x/y pair in ``crs`` to WGS84 (lon, lat)."""
    lon, lat = to_wgs84_arrays(np.array([x], dtype=np.float64), np.array([y], dtype=np.float64), crs)
    return float(lon[0]), float(lat[0])


def from_wgs84(lon: float, lat: float, crs: Crs) -> tuple[float, float]:
    """Convert one WGS84 (lon, lat) pair to x/y in ``crs``."""
    x, y = from_wgs84_arrays(np.array([lon], dtype=np.float64), np.array([lat], dtype=np.float64), crs)
    return float(x[0]), float(y[0])


def _apply_xy(geom: GeometryT, convert: _Forward) -> GeometryT:
    def on_coordinates(coords: FloatArray) -> FloatArray:
        out = coords.copy()
        out[:, 0], out[:, 1] = convert(coords[:, 0], coords[:, 1])
        return out

    # include_z=True hands us (N, 3) and keeps each geometry's own dimensionality, so Z values
    # (pipe depths, pole heights) survive untouched.
    result: GeometryT = shapely.transform(geom, on_coordinates, include_z=True)
    return result


def transform_geometry(geom: GeometryT, crs: Crs) -> GeometryT:
    """Convert a shapely geometry whose coordinates are in ``crs`` to WGS84 lon/lat."""
    if crs == WGS84:
        return geom
    return _apply_xy(geom, lambda x, y: to_wgs84_arrays(x, y, crs))


def geometry_from_wgs84(geom: GeometryT, crs: Crs) -> GeometryT:
    """Convert a WGS84 shapely geometry to coordinates in ``crs`` (for outputs and tests)."""
    if crs == WGS84:
        return geom
    return _apply_xy(geom, lambda x, y: from_wgs84_arrays(x, y, crs))
