"""Guessing the CRS of an inventory that does not declare one, from its coordinates.

Surveyed inventories around Shenzhen come as lon/lat degrees (WGS84, or GCJ-02 when digitised on
AMap/Tencent, BD-09 from Baidu) or as CGCS2000 Gauss-Kruger metres, with or without the zone
prefix, and sometimes with the columns swapped (Chinese surveying writes X = northing). Every
guess is verified by converting to WGS84 and checking the points land in the service area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from common.bilingual import Bilingual
from common.errors import InvalidInput
from gis.area import ServiceArea
from gis.crs import BD09, GCJ02, WGS84, Crs, FloatArray, crs_from_epsg, to_wgs84_arrays

# Points examined: enough for robust medians, cheap for million-row files.
_SAMPLE_SIZE = 5000
# Share of sampled points that must land in the service area for a guess to be accepted: a few
# stray rows (typos, placeholder zeros) must not sink an otherwise clear file.
_MIN_INSIDE_SHARE = 0.8
# With a reference, a reading of the file is supported by the points it puts on a registered asset:
# within this distance (the same lamp surveyed twice, or GCJ-02 converted back, lands within metres).
_MATCH_M = 10.0
# A candidate is chosen only when it puts at least this share of the points (and this many) on
# registered assets, and clearly more than any other reading and than chance: by _SIGMAS standard
# deviations of the count chance alone gives (estimated from control shifts), plus one.
# Comparing with the nearest asset alone let a wrong offset system win by chance where assets are
# dense (every reading lands within ~100 m of something); counting landings on an asset, against
# the landings that shifting the points by unrelated offsets also gives, does not.
_MIN_MATCH_SHARE = 0.05
_SIGMAS = 4.0
# Control shifts (metres) of the wgs84 reading, of the size of the offsets between candidates, in
# eight directions: how often points land on an asset by chance in this file's neighbourhood.
_CONTROL_OFFSETS_M = tuple(
    (r * float(np.cos(a)), r * float(np.sin(a)))
    for r in (350.0, 900.0)
    for a in np.linspace(0.0, 2.0 * np.pi, 8, endpoint=False).tolist()
)
# Reference points farther than this from every point of the file say nothing about it.
_NEAR_M = 3000.0


@dataclass(frozen=True)
class CrsGuess:
    """The guessed CRS, a readable sentence saying why, and whether x and y were swapped.

    ``strength`` says how strong the evidence was: "strong" (registered assets confirm the reading,
    or metres matching a known projection in the service area) or "assumed" (lon/lat degrees with
    nothing to tell WGS84 from an offset system: none is near). ``evidence`` holds the numbers.
    """

    crs: Crs
    reason: str
    swapped: bool
    strength: str = "strong"
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)


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
        raise InvalidInput(
            Bilingual(
                f"x 列和 y 列长度不同（{x.size} 对 {y.size}）",
                f"x and y columns differ in length ({x.size} vs {y.size})",
            )
        )
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size == 0:
        raise InvalidInput(
            Bilingual(
                "没有可用于判断坐标系的坐标（全部为空或不是数字）",
                "no usable coordinates to guess the coordinate system from (all empty or not numbers)",
            )
        )
    if x.size > _SAMPLE_SIZE:
        pick = np.unique(np.linspace(0, x.size - 1, _SAMPLE_SIZE).astype(np.int64))
        x, y = x[pick], y[pick]
    return x, y


def _share_inside(area: ServiceArea, lons: FloatArray, lats: FloatArray) -> float:
    return float(area.inside_mask(lons, lats).mean())


def _centre(lons: FloatArray, lats: FloatArray) -> Bilingual:
    """'around (lon .., lat ..)' at the median point, for messages."""
    lon, lat = float(np.median(lons)), float(np.median(lats))
    return Bilingual(f"位于（经度 {lon:.4f}，纬度 {lat:.4f}）附近", f"around (lon {lon:.4f}, lat {lat:.4f})")


def _where(area: ServiceArea, lons: FloatArray, lats: FloatArray) -> Bilingual:
    """'around (lon, lat), N km from the service area' for messages."""
    lon, lat = float(np.median(lons)), float(np.median(lats))
    if not (np.isfinite(lon) and np.isfinite(lat)) or abs(lon) > 180 or abs(lat) > 90:
        return Bilingual("不在地球上任何有效位置", "nowhere valid on Earth")
    km = area.distance_outside_m(lon, lat) / 1000.0
    centre = _centre(lons, lats)
    return Bilingual(
        f"{centre.zh}，距服务区 {km:.0f} 公里", f"{centre.en}, {km:.0f} km from the service area"
    )


def _nearest_m(tree: shapely.STRtree, x: FloatArray, y: FloatArray) -> FloatArray:
    """Distance in metres from each (projected) point to its nearest reference point (inf if none)."""
    out = np.full(x.size, np.inf)
    finite = np.isfinite(x) & np.isfinite(y)
    if finite.any():
        _, distances = tree.query_nearest(
            shapely.points(x[finite], y[finite]), return_distance=True, all_matches=False
        )
        out[finite] = distances
    return out


def _choose_with_reference(
    area: ServiceArea,
    x: FloatArray,
    y: FloatArray,
    reference: tuple[npt.ArrayLike, npt.ArrayLike],
    where: Bilingual,
    swapped: bool,
) -> CrsGuess:
    """wgs84 / gcj02 / bd09 only when registered assets confirm the reading; refuse when they cannot."""
    ref_lon, ref_lat = _sample(*reference)
    ref_x, ref_y = area.metric.project_arrays(ref_lon, ref_lat)
    finite = np.isfinite(ref_x) & np.isfinite(ref_y)
    tree = shapely.STRtree(shapely.points(ref_x[finite], ref_y[finite]))
    projected = {crs: area.metric.project_arrays(*to_wgs84_arrays(x, y, crs)) for crs in (WGS84, GCJ02, BD09)}
    distances = {crs: _nearest_m(tree, *xy) for crs, xy in projected.items()}
    matches = {crs.name: int((d <= _MATCH_M).sum()) for crs, d in distances.items()}
    wx, wy = projected[WGS84]
    controls = [int((_nearest_m(tree, wx + dx, wy + dy) <= _MATCH_M).sum()) for dx, dy in _CONTROL_OFFSETS_M]
    chance = max(controls)
    rate = float(np.mean(controls)) / max(x.size, 1)
    near = int((np.minimum.reduce(list(distances.values())) <= _NEAR_M).sum())
    evidence: dict[str, Any] = {
        "sampled_points": int(x.size),
        "reference_points": int(ref_lon.size),
        "match_radius_m": _MATCH_M,
        "points_on_a_registered_asset": matches,
        "by_chance_at_most": chance,
        "points_near_registered_assets": near,
    }
    summary = ", ".join(f"{name} {count}" for name, count in matches.items())
    if near == 0:
        return CrsGuess(
            WGS84,
            Bilingual(
                f"坐标是经纬度，{where.zh}；{ref_lon.size} 个参照点（已登记设施）无法区分各候选坐标系："
                f"文件各点 {_NEAR_M / 1000:.0f} 公里内没有参照点：推定为 wgs84"
                "（没有参照点就看不出 GCJ-02 或 BD-09 偏移）",
                f"coordinates are lon/lat degrees {where.en}; the {ref_lon.size} reference points do not "
                f"tell the candidates apart: none lies within {_NEAR_M / 1000:.0f} km of the file's "
                "points: assumed wgs84 (an offset system, GCJ-02 or BD-09, cannot be seen without them)",
            ),
            swapped,
            "assumed",
            evidence,
        )
    ranked = sorted(matches, key=lambda name: -matches[name])
    best, second = ranked[0], matches[ranked[1]]
    margin = _SIGMAS * float(np.sqrt(x.size * rate * (1.0 - rate))) + 1.0
    above_chance = max(chance, x.size * rate) + margin
    needed = max(_MIN_MATCH_SHARE * x.size, max(second, chance, x.size * rate) + margin)
    evidence["needed"] = round(needed, 1)
    if matches[best] >= needed:
        crs = {c.name: c for c in (WGS84, GCJ02, BD09)}[best]
        return CrsGuess(
            crs,
            Bilingual(
                f"坐标是经纬度，{where.zh}；{x.size} 个点按各候选坐标系读取，落在 {ref_lon.size} 个"
                f"参照点（已登记设施）{_MATCH_M:.0f} 米内的个数：{summary}（随机偏移最多 {chance} 个）："
                f"选定 {crs.name}",
                f"coordinates are lon/lat degrees {where.en}; of {x.size} points, read as each candidate, "
                f"these land within {_MATCH_M:.0f} m of one of {ref_lon.size} reference points (registered "
                f"assets): {summary} (by chance at most {chance}): chose {crs.name}",
            ),
            swapped,
            "strong",
            evidence,
        )
    if matches[best] < above_chance:
        # No reading lands points on registered assets more than chance does: new assets, with
        # nothing to compare. Not evidence for an offset system, so the plain reading stands,
        # said to be an assumption.
        return CrsGuess(
            WGS84,
            Bilingual(
                f"坐标是经纬度，{where.zh}；{x.size} 个点无论按哪种坐标系读取，落在已登记设施上的都不比"
                f"随机偏移多（{summary}；随机最多 {chance} 个）：推定为 wgs84"
                "（如文件来自高德/腾讯或百度，请用 --crs gcj02 或 bd09）",
                f"coordinates are lon/lat degrees {where.en}; no reading lands more of the {x.size} points "
                f"on registered assets than chance does ({summary}; by chance up to {chance}): assumed "
                "wgs84 (if the file comes from AMap/Tencent or Baidu, pass --crs gcj02 or bd09)",
            ),
            swapped,
            "assumed",
            evidence,
        )
    raise InvalidInput(
        Bilingual(
            f"坐标是经纬度，{where.zh}，但无法判断是 wgs84、gcj02（高德/腾讯）还是 bd09（百度）："
            f"{x.size} 个点按各坐标系读取，落在已登记设施 {_MATCH_M:.0f} 米内的个数：{summary}，"
            f"随机偏移也可有 {chance} 个。请用 --crs 指定（wgs84、gcj02 或 bd09）",
            f"the coordinates are lon/lat degrees {where.en} but the registry cannot tell whether they "
            f"are wgs84, gcj02 (AMap/Tencent) or bd09 (Baidu): of {x.size} points, read as each, these "
            f"land within {_MATCH_M:.0f} m of a registered asset: {summary}, and shifting them at random "
            f"puts up to {chance} on one by chance. Pass --crs (wgs84, gcj02 or bd09)",
        ),
        evidence=evidence,
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
        place = _where(area, x, y)
        raise InvalidInput(
            Bilingual(
                f"坐标像是经纬度，{place.zh}；只有 {direct:.0%} 的抽样点（交换 x、y 后 {swapped_share:.0%}）"
                "落在服务区内。请检查坐标列或声明坐标系。",
                f"the coordinates look like lon/lat degrees {place.en}; only {direct:.0%} of the "
                f"sampled points (or {swapped_share:.0%} with x and y swapped) fall in the service area. "
                "Check the columns or declare the coordinate system.",
            )
        )
    centre = _centre(lons, lats)
    where = Bilingual(
        f"{centre.zh}（{share:.0%} 的抽样点在服务区内）"
        + ("，x 列是纬度、y 列是经度（颠倒）" if swapped else ""),
        f"{centre.en} ({share:.0%} of sampled points in the service area)"
        + (" with x holding latitudes and y longitudes (swapped)" if swapped else ""),
    )
    if reference is not None and np.asarray(reference[0]).size > 0:
        return _choose_with_reference(area, lons, lats, reference, where, swapped)
    return CrsGuess(
        WGS84,
        Bilingual(
            f"坐标是经纬度，{where.zh}：推定为 wgs84"
            "（没有参照点，无法分辨 0.6-1.2 公里的 GCJ-02/BD-09 偏移）",
            f"coordinates are lon/lat degrees {where.en}: assumed wgs84 "
            "(without reference points GCJ-02/BD-09 offsets of 0.6-1.2 km cannot be told apart)",
        ),
        swapped,
        "assumed",
        {"sampled_points": int(x.size), "reference_points": 0},
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
                place = _where(area, lons, lats)
                raise InvalidInput(
                    Bilingual(
                        f"坐标像是 {pattern.label} 的米制坐标（东坐标约 {e_med:.0f}，北坐标约 {n_med:.0f}），"
                        f"但按 EPSG:{pattern.epsg} 读取只有 {share:.0%} 落在服务区内，落点{place.zh}。"
                        "可能是其他坐标系（如没有 EPSG 代码的深圳独立坐标系）：请声明坐标系。",
                        f"the coordinates look like {pattern.label} metres (easting ~{e_med:.0f}, northing "
                        f"~{n_med:.0f}) but read as EPSG:{pattern.epsg} only {share:.0%} fall in the service "
                        f"area; they land {place.en}. They may be in another system "
                        "(e.g. 深圳独立坐标系, which has no EPSG code): declare the coordinate system.",
                    )
                )
            swap_zh = "（x、y 颠倒：x 是北坐标，按测绘习惯 X=北）" if swapped else ""
            swap_en = " (x and y swapped: x holds northings, as in the surveying convention X=north)"
            return CrsGuess(
                crs,
                Bilingual(
                    f"坐标是米制，东坐标约 {e_med:.0f}、北坐标约 {n_med:.0f}{swap_zh}："
                    f"推定为 EPSG:{pattern.epsg} {pattern.label}（{share:.0%} 的抽样点在服务区内）",
                    f"coordinates are metres with easting ~{e_med:.0f} and northing ~{n_med:.0f}"
                    f"{swap_en if swapped else ''}: assumed EPSG:{pattern.epsg} {pattern.label} "
                    f"({share:.0%} of sampled points in the service area)",
                ),
                swapped,
                "strong",
                {"sampled_points": int(x.size), "share_in_service_area": round(share, 3)},
            )
    x_med, y_med = float(np.median(x)), float(np.median(y))
    raise InvalidInput(
        Bilingual(
            f"坐标像是投影米制坐标（x 约 {x_med:.0f}，y 约 {y_med:.0f}），但与本地区已知的坐标系都不符"
            "（CGCS2000 高斯投影中央经线 114°E 东坐标 200000-800000，或带号前缀 38xxxxxx 或 20xxxxxx，"
            "北坐标 2000000-3000000）；深圳独立坐标系等地方坐标系没有 EPSG 代码：请声明坐标系。",
            f"the coordinates look like projected metres (x ~{x_med:.0f}, y ~{y_med:.0f}) but match no "
            "known system for this area (CGCS2000 GK eastings 200000-800000 for CM 114E, or zone-prefixed "
            "38xxxxxx / 20xxxxxx, with northings 2000000-3000000); local grids such as 深圳独立坐标系 have "
            "no EPSG code: declare the coordinate system.",
        )
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
        Bilingual(
            f"坐标既不主要是经纬度，也不主要是米制（x 从 {x.min():g} 到 {x.max():g}，y 从 {y.min():g} 到 "
            f"{y.max():g}）；请检查是否有混杂或错位的列，或声明坐标系。",
            f"the coordinates are neither mostly degrees nor mostly metres (x from {x.min():g} to "
            f"{x.max():g}, y from {y.min():g} to {y.max():g}); check for mixed or shifted columns, or "
            "declare the coordinate system.",
        )
    )
