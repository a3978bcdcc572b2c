"""Guessing the CRS of an inventory that does not declare one, from its coordinates.

Surveyed inventories around Shenzhen come as lon/lat degrees (WGS84, or GCJ-02 when digitised on
AMap/Tencent, BD-09 from Baidu) or as CGCS2000 Gauss-Kruger metres, with or without the zone
prefix, and sometimes with the columns swapped (Chinese surveying writes X = northing). Every
guess is verified by converting to WGS84 and checking the points land in the service area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from common.errors import InvalidInput
from gis.area import ServiceArea
from gis.crs import BD09, GCJ02, WGS84, Crs, FloatArray, crs_from_epsg, to_wgs84_arrays

# Points examined: enough for robust medians, cheap for million-row files.
_SAMPLE_SIZE = 5000
# Share of sampled points that must land in the service area for a guess to be accepted: a few
# stray rows (typos, placeholder zeros) must not sink an otherwise clear file.
_MIN_INSIDE_SHARE = 0.8
# With a reference, the best candidate must be clearly better than the runner-up: its median
# distance at most this fraction of the runner-up's. A true GCJ-02 shift (~600 m) against a
# reference tens of metres away gives ratios far below it.
_DECISIVE_RATIO = 0.75


@dataclass(frozen=True)
class CrsGuess:
    """The guessed CRS, a readable sentence saying why, and whether x and y were swapped."""

    crs: Crs
    reason: str
    swapped: bool


@dataclass(frozen=True)
class _MetricPattern:
    """A family of projected coordinates recognisable by the size of its eastings."""

    epsg: int
    label: str
    easting_min: float
    easting_max: float


# Northings 2e6-3e6 cover latitudes ~18-27 N: southern China around Shenzhen (Pingshan ~2.51e6).
_NORTHING_MIN, _NORTHING_MAX = 2.0e6, 3.0e6
_PATTERNS = (
    _MetricPattern(4547, "CGCS2000 3° GK CM 114E", 2.0e5, 8.0e5),
    _MetricPattern(4526, "CGCS2000 3° GK zone 38 (CM 114E, zone-prefixed)", 38.2e6, 38.8e6),
    _MetricPattern(4498, "CGCS2000 6° GK zone 20 (CM 117E, zone-prefixed)", 20.2e6, 20.8e6),
)


def _sample(xs: npt.ArrayLike, ys: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Finite pairs only, thinned evenly to at most _SAMPLE_SIZE (deterministic)."""
    x = np.asarray(xs, dtype=np.float64).ravel()
    y = np.asarray(ys, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise InvalidInput(f"x and y columns differ in length ({x.size} vs {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size == 0:
        raise InvalidInput(
            "no usable coordinates to guess the coordinate system from (all empty or not numbers)"
        )
    if x.size > _SAMPLE_SIZE:
        pick = np.unique(np.linspace(0, x.size - 1, _SAMPLE_SIZE).astype(np.int64))
        x, y = x[pick], y[pick]
    return x, y


def _share_inside(area: ServiceArea, lons: FloatArray, lats: FloatArray) -> float:
    return float(area.inside_mask(lons, lats).mean())


def _centre(lons: FloatArray, lats: FloatArray) -> str:
    """'around (lon .., lat ..)' at the median point, for messages."""
    return f"around (lon {float(np.median(lons)):.4f}, lat {float(np.median(lats)):.4f})"


def _where(area: ServiceArea, lons: FloatArray, lats: FloatArray) -> str:
    """'around (lon, lat), N km from the service area' for messages."""
    lon, lat = float(np.median(lons)), float(np.median(lats))
    if not (np.isfinite(lon) and np.isfinite(lat)) or abs(lon) > 180 or abs(lat) > 90:
        return "nowhere valid on Earth"
    km = area.distance_outside_m(lon, lat) / 1000.0
    return f"{_centre(lons, lats)}, {km:.0f} km from the service area"


def _median_nearest_m(area: ServiceArea, tree: shapely.STRtree, lons: FloatArray, lats: FloatArray) -> float:
    """Median distance in metres from each point to its nearest reference point."""
    x, y = area.metric.project_arrays(lons, lats)
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return float("inf")
    points = shapely.points(x[finite], y[finite])
    _, distances = tree.query_nearest(points, return_distance=True, all_matches=False)
    return float(np.median(distances))


def _choose_with_reference(
    area: ServiceArea,
    x: FloatArray,
    y: FloatArray,
    reference: tuple[npt.ArrayLike, npt.ArrayLike],
    where: str,
) -> tuple[Crs, str]:
    """Pick wgs84 / gcj02 / bd09 by which lands the points nearest the known WGS84 reference."""
    ref_lon, ref_lat = _sample(*reference)
    ref_x, ref_y = area.metric.project_arrays(ref_lon, ref_lat)
    finite = np.isfinite(ref_x) & np.isfinite(ref_y)
    tree = shapely.STRtree(shapely.points(ref_x[finite], ref_y[finite]))
    scores = {crs: _median_nearest_m(area, tree, *to_wgs84_arrays(x, y, crs)) for crs in (WGS84, GCJ02, BD09)}
    ranked = sorted(scores, key=lambda c: scores[c])
    best, runner_up = ranked[0], ranked[1]
    summary = ", ".join(f"{c.name} {scores[c]:,.0f} m" for c in ranked)
    if scores[best] <= _DECISIVE_RATIO * scores[runner_up]:
        return best, (
            f"coordinates are lon/lat degrees {where}; read as each candidate, the median distance to "
            f"the nearest of {ref_lon.size} reference points is {summary}: chose {best.name}"
        )
    return WGS84, (
        f"coordinates are lon/lat degrees {where}; the {ref_lon.size} reference points do not tell "
        f"the candidates apart (median nearest distance {summary}): assumed wgs84"
    )


def _guess_degrees(
    area: ServiceArea,
    x: FloatArray,
    y: FloatArray,
    reference: tuple[npt.ArrayLike, npt.ArrayLike] | None,
) -> CrsGuess:
    direct = _share_inside(area, x, y)
    swapped_share = _share_inside(area, y, x)
    if direct < _MIN_INSIDE_SHARE and swapped_share >= _MIN_INSIDE_SHARE:
        lons, lats, swapped = y, x, True
        share = swapped_share
    elif direct >= _MIN_INSIDE_SHARE:
        lons, lats, swapped = x, y, False
        share = direct
    else:
        raise InvalidInput(
            f"the coordinates look like lon/lat degrees {_where(area, x, y)}; only {direct:.0%} of the "
            f"sampled points (or {swapped_share:.0%} with x and y swapped) fall in the service area. "
            "Check the columns or declare the coordinate system."
        )
    where = f"{_centre(lons, lats)} ({share:.0%} of sampled points in the service area)"
    swap_note = " with x holding latitudes and y longitudes (swapped)" if swapped else ""
    if reference is not None and np.asarray(reference[0]).size > 0:
        crs, reason = _choose_with_reference(area, lons, lats, reference, where + swap_note)
        return CrsGuess(crs, reason, swapped)
    return CrsGuess(
        WGS84,
        f"coordinates are lon/lat degrees {where}{swap_note}: assumed wgs84 "
        "(without reference points GCJ-02/BD-09 offsets of 0.6-1.2 km cannot be told apart)",
        swapped,
    )


def _matches(pattern: _MetricPattern, eastings: FloatArray, northings: FloatArray) -> bool:
    e, n = float(np.median(eastings)), float(np.median(northings))
    return pattern.easting_min <= e <= pattern.easting_max and _NORTHING_MIN <= n <= _NORTHING_MAX


def _guess_metres(area: ServiceArea, x: FloatArray, y: FloatArray) -> CrsGuess:
    for pattern in _PATTERNS:
        for eastings, northings, swapped in ((x, y, False), (y, x, True)):
            if not _matches(pattern, eastings, northings):
                continue
            crs = crs_from_epsg(pattern.epsg)
            lons, lats = to_wgs84_arrays(eastings, northings, crs)
            share = _share_inside(area, lons, lats)
            e_med, n_med = float(np.median(eastings)), float(np.median(northings))
            if share < _MIN_INSIDE_SHARE:
                raise InvalidInput(
                    f"the coordinates look like {pattern.label} metres (easting ~{e_med:.0f}, northing "
                    f"~{n_med:.0f}) but read as EPSG:{pattern.epsg} only {share:.0%} fall in the service "
                    f"area; they land {_where(area, lons, lats)}. They may be in another system "
                    "(e.g. 深圳独立坐标系, which has no EPSG code): declare the coordinate system."
                )
            swap_note = " (x and y swapped: x holds northings, as in the surveying convention X=north)"
            return CrsGuess(
                crs,
                f"coordinates are metres with easting ~{e_med:.0f} and northing ~{n_med:.0f}"
                f"{swap_note if swapped else ''}: assumed EPSG:{pattern.epsg} {pattern.label} "
                f"({share:.0%} of sampled points in the service area)",
                swapped,
            )
    x_med, y_med = float(np.median(x)), float(np.median(y))
    raise InvalidInput(
        f"the coordinates look like projected metres (x ~{x_med:.0f}, y ~{y_med:.0f}) but match no known "
        "system for this area (CGCS2000 GK eastings 200000-800000 for CM 114E, or zone-prefixed 38xxxxxx / "
        "20xxxxxx, with northings 2000000-3000000); local grids such as 深圳独立坐标系 have no EPSG code: "
        "declare the coordinate system."
    )


def guess_crs(
    xs: npt.ArrayLike,
    ys: npt.ArrayLike,
    area: ServiceArea,
    reference: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> CrsGuess:
    """Guess the CRS of undeclared coordinates (degrees or CGCS2000 metres), verified against the area."""
    x, y = _sample(xs, ys)
    # Shares rather than "all": a few stray rows (typos, zeros) must not decide the whole file;
    # the area check that follows still has to pass.
    if float(np.mean((np.abs(x) <= 180.0) & (np.abs(y) <= 180.0))) >= _MIN_INSIDE_SHARE:
        return _guess_degrees(area, x, y, reference)
    if float(np.mean((np.abs(x) >= 1000.0) & (np.abs(y) >= 1000.0))) >= _MIN_INSIDE_SHARE:
        return _guess_metres(area, x, y)
    raise InvalidInput(
        f"the coordinates are neither mostly degrees nor mostly metres (x from {x.min():g} to {x.max():g}, "
        f"y from {y.min():g} to {y.max():g}); check for mixed or shifted columns, or declare the "
        "coordinate system."
    )
