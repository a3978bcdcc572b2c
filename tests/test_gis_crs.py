"""Tests of gis.crs: CRS parsing, GCJ-02/BD-09 formulas and inverses, EPSG round trips."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import shapely
from pyproj import Geod

from common.errors import InvalidInput
from gis.crs import (
    BD09,
    CGCS2000,
    GCJ02,
    WGS84,
    Crs,
    FloatArray,
    crs_from_epsg,
    from_wgs84,
    from_wgs84_arrays,
    gcj02_to_bd09,
    geometry_from_wgs84,
    parse_crs,
    pyproj_transformer,
    to_wgs84,
    to_wgs84_arrays,
    transform_geometry,
    wgs84_to_gcj02,
)

GEOD = Geod(ellps="WGS84")


def geodesic_m(lon1: FloatArray, lat1: FloatArray, lon2: FloatArray, lat2: FloatArray) -> FloatArray:
    """Ellipsoidal distances in metres between paired points."""
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


@pytest.fixture(scope="module")
def pingshan_grid() -> tuple[FloatArray, FloatArray]:
    """A 50 x 50 grid of WGS84 points over 坪山区 (114.28-114.45 E, 22.63-22.78 N)."""
    lon, lat = np.meshgrid(np.linspace(114.28, 114.45, 50), np.linspace(22.63, 22.78, 50))
    return lon.ravel(), lat.ravel()


def plain_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """The public GCJ-02 formula written out term by term, as an independent check of the fast one."""
    x, y = lon - 105.0, lat - 35.0
    pi = math.pi
    d_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    d_lat += (20.0 * math.sin(6.0 * x * pi) + 20.0 * math.sin(2.0 * x * pi)) * 2.0 / 3.0
    d_lat += (20.0 * math.sin(y * pi) + 40.0 * math.sin(y / 3.0 * pi)) * 2.0 / 3.0
    d_lat += (160.0 * math.sin(y / 12.0 * pi) + 320.0 * math.sin(y * pi / 30.0)) * 2.0 / 3.0
    d_lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    d_lon += (20.0 * math.sin(6.0 * x * pi) + 20.0 * math.sin(2.0 * x * pi)) * 2.0 / 3.0
    d_lon += (20.0 * math.sin(x * pi) + 40.0 * math.sin(x / 3.0 * pi)) * 2.0 / 3.0
    d_lon += (150.0 * math.sin(x / 12.0 * pi) + 300.0 * math.sin(x / 30.0 * pi)) * 2.0 / 3.0
    a, ee = 6378245.0, 0.00669342162296594323
    rad = lat / 180.0 * pi
    magic = 1.0 - ee * math.sin(rad) ** 2
    d_lat = (d_lat * 180.0) / ((a * (1.0 - ee)) / (magic * math.sqrt(magic)) * pi)
    d_lon = (d_lon * 180.0) / (a / math.sqrt(magic) * math.cos(rad) * pi)
    return lon + d_lon, lat + d_lat


# --- parse_crs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "epsg", "kind"),
    [
        (None, "wgs84", 4326, "geographic"),
        ("", "wgs84", 4326, "geographic"),
        ("   ", "wgs84", 4326, "geographic"),
        ("wgs84", "wgs84", 4326, "geographic"),
        ("WGS-84", "wgs84", 4326, "geographic"),
        (" wgs 84 ", "wgs84", 4326, "geographic"),
        ("EPSG:4326", "wgs84", 4326, "geographic"),
        ("4326", "wgs84", 4326, "geographic"),
        ("gcj02", "gcj02", None, "gcj02"),
        ("GCJ-02", "gcj02", None, "gcj02"),
        ("gcj_02", "gcj02", None, "gcj02"),
        ("amap", "gcj02", None, "gcj02"),
        ("Gaode", "gcj02", None, "gcj02"),
        ("TENCENT", "gcj02", None, "gcj02"),
        ("bd09", "bd09", None, "bd09"),
        ("BD-09", "bd09", None, "bd09"),
        ("bd09ll", "bd09", None, "bd09"),
        ("Baidu", "bd09", None, "bd09"),
        ("cgcs2000", "EPSG:4490", 4490, "geographic"),
        ("CGCS2000", "EPSG:4490", 4490, "geographic"),
        ("EPSG:4490", "EPSG:4490", 4490, "geographic"),
        ("EPSG:4547", "EPSG:4547", 4547, "projected"),
        ("epsg:4547", "EPSG:4547", 4547, "projected"),
        (" EPSG : 4547 ", "EPSG:4547", 4547, "projected"),
        ("4526", "EPSG:4526", 4526, "projected"),
        ("urn:ogc:def:crs:EPSG::4547", "EPSG:4547", 4547, "projected"),
        ("URN:OGC:DEF:CRS:EPSG:9.8.15:4526", "EPSG:4526", 4526, "projected"),
        ("urn:ogc:def:crs:EPSG::4326", "wgs84", 4326, "geographic"),
        ("EPSG:32650", "EPSG:32650", 32650, "projected"),
    ],
)
def test_parse_crs_spellings(text: str | None, name: str, epsg: int | None, kind: str) -> None:
    crs = parse_crs(text)
    assert (crs.name, crs.epsg, crs.kind) == (name, epsg, kind)


def test_equivalent_spellings_give_equal_crs() -> None:
    assert parse_crs("cgcs2000") == parse_crs("EPSG:4490") == CGCS2000
    assert parse_crs("4326") == parse_crs("WGS-84") == WGS84
    assert parse_crs("tencent") == GCJ02 and parse_crs("baidu") == BD09
    assert str(parse_crs("epsg:4547")) == "EPSG:4547"


@pytest.mark.parametrize("text", ["foo", "wgs85", "EPSG:", "EPSG:999999", "epsg:12", "gcj03", "114.3"])
def test_unknown_crs_names_the_input_and_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_crs(text)
    assert repr(text) in caught.value.message or text in caught.value.message
    assert "gcj02" in caught.value.message and "EPSG:<code>" in caught.value.message


@pytest.mark.parametrize("text", ["EPSG:4978", "EPSG:5773"])  # geocentric, vertical
def test_non_horizontal_crs_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a horizontal"):
        parse_crs(text)


def test_baidu_mercator_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidInput, match="Baidu Mercator"):
        parse_crs("bd09mc")


def test_crs_is_frozen() -> None:
    with pytest.raises(AttributeError):
        WGS84.name = "x"  # type: ignore[misc]


def test_transformers_are_cached() -> None:
    assert pyproj_transformer(4547, 4326) is pyproj_transformer(4547, 4326)
    assert pyproj_transformer(4547, 4326) is not pyproj_transformer(4326, 4547)


# --- GCJ-02 -------------------------------------------------------------------------------------------


def test_gcj_forward_matches_the_plain_formula(pingshan_grid: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = pingshan_grid
    fast_lon, fast_lat = wgs84_to_gcj02(lon, lat)
    for i in range(0, lon.size, 97):
        ref_lon, ref_lat = plain_gcj02(float(lon[i]), float(lat[i]))
        assert fast_lon[i] == pytest.approx(ref_lon, abs=1e-12)
        assert fast_lat[i] == pytest.approx(ref_lat, abs=1e-12)


def test_gcj_shift_in_pingshan_is_about_600_m_east_and_south(
    pingshan_grid: tuple[FloatArray, FloatArray],
) -> None:
    lon, lat = pingshan_grid
    gx, gy = from_wgs84_arrays(lon, lat, GCJ02)
    distance = geodesic_m(lon, lat, gx, gy)
    assert distance.min() > 500.0 and distance.max() < 700.0
    assert np.all(gx > lon) and np.all(gy < lat)  # east and south, as domain.md says


def test_gcj_round_trip_below_a_millimetre(pingshan_grid: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = pingshan_grid
    gx, gy = from_wgs84_arrays(lon, lat, GCJ02)
    back_lon, back_lat = to_wgs84_arrays(gx, gy, GCJ02)
    assert geodesic_m(lon, lat, back_lon, back_lat).max() < 0.001


def test_iterative_inverse_beats_the_one_step_approximation(
    pingshan_grid: tuple[FloatArray, FloatArray],
) -> None:
    lon, lat = pingshan_grid
    gx, gy = wgs84_to_gcj02(lon, lat)
    # One step: subtract the offset evaluated at the GCJ point itself.
    fx, fy = wgs84_to_gcj02(gx, gy)
    one_step = geodesic_m(lon, lat, gx - (fx - gx), gy - (fy - gy))
    ours_lon, ours_lat = to_wgs84_arrays(gx, gy, GCJ02)
    ours = geodesic_m(lon, lat, ours_lon, ours_lat)
    assert one_step.max() > 0.5  # the approximation really is metres off here...
    assert ours.max() < 0.001  # ...and the iterative inverse is not


def test_gcj_has_no_offset_outside_china() -> None:
    for lon, lat in [(-74.0, 40.7), (2.35, 48.85), (151.2, -33.9)]:
        assert from_wgs84(lon, lat, GCJ02) == (lon, lat)
        assert to_wgs84(lon, lat, GCJ02) == (lon, lat)


def test_gcj_inverse_accurate_across_china() -> None:
    grid_lon, grid_lat = np.meshgrid(np.linspace(74.0, 134.0, 31), np.linspace(4.0, 53.0, 25))
    lon, lat = grid_lon.ravel(), grid_lat.ravel()
    gx, gy = wgs84_to_gcj02(lon, lat)
    back_lon, back_lat = to_wgs84_arrays(gx, gy, GCJ02)
    assert geodesic_m(lon, lat, back_lon, back_lat).max() < 0.001


def test_scalar_and_array_forms_agree() -> None:
    lon, lat = 114.35, 22.70
    gx, gy = from_wgs84(lon, lat, GCJ02)
    ax, ay = from_wgs84_arrays(np.array([lon]), np.array([lat]), GCJ02)
    assert (gx, gy) == (float(ax[0]), float(ay[0]))
    assert isinstance(to_wgs84(gx, gy, GCJ02)[0], float)


def test_arrays_keep_shape_and_propagate_nan() -> None:
    xs = np.array([[114.35, np.nan], [114.40, 114.30]])
    ys = np.array([[22.70, 22.70], [np.nan, 22.75]])
    lon, lat = to_wgs84_arrays(xs, ys, GCJ02)
    assert lon.shape == (2, 2)
    assert np.isnan(lon[0, 1]) and np.isnan(lat[1, 0])
    assert np.isfinite(lon[1, 1]) and abs(lon[1, 1] - 114.30) > 0.004


def test_mismatched_array_shapes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        to_wgs84_arrays(np.zeros(3), np.zeros(4), GCJ02)


def test_long_arrays_are_converted_like_short_ones() -> None:
    # Above the chunk size the conversion goes slice by slice; results must not depend on that.
    rng = np.random.default_rng(7)
    lon = rng.uniform(114.28, 114.45, 40_000)
    lat = rng.uniform(22.63, 22.78, 40_000)
    gx, gy = from_wgs84_arrays(lon, lat, GCJ02)
    whole_lon, whole_lat = to_wgs84_arrays(gx, gy, GCJ02)
    for i in (0, 16_383, 16_384, 39_999):
        one_lon, one_lat = to_wgs84(float(gx[i]), float(gy[i]), GCJ02)
        assert whole_lon[i] == pytest.approx(one_lon, abs=1e-11)
        assert whole_lat[i] == pytest.approx(one_lat, abs=1e-11)


def test_gcj_inverse_is_vectorised_fast() -> None:
    # A per-point Python loop would take several seconds for 200,000 points (about 25 s of CPU here);
    # the vectorised inverse takes well under a tenth of a second. CPU time of this thread, not the
    # wall clock: other processes (and threads) on a busy test machine do not count against it.
    rng = np.random.default_rng(3)
    gx, gy = wgs84_to_gcj02(rng.uniform(114.28, 114.45, 200_000), rng.uniform(22.63, 22.78, 200_000))
    started = time.thread_time()
    to_wgs84_arrays(gx, gy, GCJ02)
    assert time.thread_time() - started < 2.0


# --- BD-09 --------------------------------------------------------------------------------------------


def test_bd_shift_in_pingshan_is_about_1_2_km(pingshan_grid: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = pingshan_grid
    bx, by = from_wgs84_arrays(lon, lat, BD09)
    distance = geodesic_m(lon, lat, bx, by)
    assert distance.min() > 1100.0 and distance.max() < 1300.0


def test_bd_is_gcj_plus_baidu_offset() -> None:
    gx, gy = from_wgs84(114.35, 22.70, GCJ02)
    bx, by = gcj02_to_bd09(np.array([gx]), np.array([gy]))
    assert from_wgs84(114.35, 22.70, BD09) == (float(bx[0]), float(by[0]))


def test_bd_round_trip_below_a_millimetre(pingshan_grid: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = pingshan_grid
    bx, by = from_wgs84_arrays(lon, lat, BD09)
    back_lon, back_lat = to_wgs84_arrays(bx, by, BD09)
    assert geodesic_m(lon, lat, back_lon, back_lat).max() < 0.001


# --- EPSG systems --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [4547, 4526, 4490, 4498])
def test_epsg_round_trips(code: int, pingshan_grid: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = pingshan_grid
    crs = crs_from_epsg(code)
    x, y = from_wgs84_arrays(lon, lat, crs)
    back_lon, back_lat = to_wgs84_arrays(x, y, crs)
    assert geodesic_m(lon, lat, back_lon, back_lat).max() < 0.001


def test_gauss_kruger_false_eastings_and_axis_order() -> None:
    # On the central meridian 114E the easting is exactly the false easting.
    x, y = from_wgs84(114.0, 22.7, parse_crs("EPSG:4547"))
    assert x == pytest.approx(500_000.0, abs=0.01)
    assert 2.50e6 < y < 2.52e6  # northing, not swapped with the easting
    x, _ = from_wgs84(114.0, 22.7, parse_crs("EPSG:4526"))
    assert x == pytest.approx(38_500_000.0, abs=0.01)
    east, _ = from_wgs84(114.35, 22.7, parse_crs("EPSG:4547"))
    assert 530_000 < east < 540_000  # 0.35 degree east of the meridian is ~36 km


def test_cgcs2000_is_lon_lat_and_within_centimetres_of_wgs84() -> None:
    lon, lat = from_wgs84(114.35, 22.70, CGCS2000)
    assert geodesic_m(np.array(114.35), np.array(22.70), np.array(lon), np.array(lat)) < 0.05
    assert abs(lon - 114.35) < 1e-6 and abs(lat - 22.70) < 1e-6  # not (22.7, 114.35)


# --- geometries ---------------------------------------------------------------------------------------


def test_transform_geometry_converts_every_vertex() -> None:
    line_wgs = shapely.LineString([(114.30, 22.70), (114.35, 22.72), (114.40, 22.75)])
    line_gcj = geometry_from_wgs84(line_wgs, GCJ02)
    assert not line_gcj.equals_exact(line_wgs, 1e-4)
    back = transform_geometry(line_gcj, GCJ02)
    assert back.geom_type == "LineString"
    assert np.abs(shapely.get_coordinates(back) - shapely.get_coordinates(line_wgs)).max() < 1e-9


def test_transform_geometry_from_metres_keeps_z_and_type() -> None:
    crs = parse_crs("EPSG:4547")
    ring = [(114.30, 22.70), (114.31, 22.70), (114.31, 22.71), (114.30, 22.70)]
    polygon = shapely.Polygon([(*from_wgs84(lon, lat, crs), 12.5) for lon, lat in ring])
    back = transform_geometry(polygon, crs)
    assert back.geom_type == "Polygon" and back.has_z
    coords = shapely.get_coordinates(back, include_z=True)
    assert np.allclose(coords[:, :2], ring, atol=1e-9)
    assert np.all(coords[:, 2] == 12.5)


def test_transform_geometry_wgs84_is_identity() -> None:
    point = shapely.Point(114.3, 22.7)
    assert transform_geometry(point, WGS84) is point


def test_custom_crs_object_is_usable() -> None:
    crs = Crs("EPSG:32650", 32650, "projected")  # UTM 50N, also covers Shenzhen
    x, y = from_wgs84(114.35, 22.70, crs)
    assert to_wgs84(x, y, crs) == pytest.approx((114.35, 22.70), abs=1e-9)
