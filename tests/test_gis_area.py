"""Tests of gis.area (service area checks) and gis.metric (metric projection)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod

from common.errors import InvalidInput, OutsideServiceArea
from common.settings import DEFAULT_SERVICE_AREA_WKT, AreaSettings, Settings
from gis.area import ServiceArea
from gis.metric import MetricProjector, metric_projector

GEOD = Geod(ellps="WGS84")
CENTRE = (114.35, 22.70)


@pytest.fixture(scope="module")
def area() -> ServiceArea:
    """The default Pingshan rectangle with a 2 km margin, independent of the environment."""
    settings = Settings(
        area=AreaSettings(
            service_area_wkt=DEFAULT_SERVICE_AREA_WKT, service_area_margin_m=2000.0, metric_srid=4547
        )
    )
    return ServiceArea.from_settings(settings)


def east_of(lon: float, lat: float, metres: float) -> tuple[float, float]:
    """The point ``metres`` due east of (lon, lat)."""
    new_lon, new_lat, _ = GEOD.fwd(lon, lat, 90.0, metres)
    return new_lon, new_lat


# --- construction ----------------------------------------------------------------------------------


def test_from_settings_reads_polygon_margin_and_srid(area: ServiceArea) -> None:
    assert area.bounds == (114.25, 22.60, 114.50, 22.82)
    assert area.margin_m == 2000.0
    assert area.metric.srid == 4547


def test_margin_grows_the_accepted_region(area: ServiceArea) -> None:
    minx, miny, maxx, maxy = area.accepted_region.bounds
    # 2 km is ~0.0195 degree of longitude at 22.7 N and ~0.018 degree of latitude, on every side.
    assert 114.25 - minx == pytest.approx(0.0195, abs=0.001)
    assert maxx - 114.50 == pytest.approx(0.0195, abs=0.001)
    assert 22.60 - miny == pytest.approx(0.018, abs=0.001)
    assert maxy - 22.82 == pytest.approx(0.018, abs=0.001)


@pytest.mark.parametrize(
    "wkt",
    ["not wkt", "POINT (114.3 22.7)", "POLYGON EMPTY", "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"],
)
def test_bad_service_area_is_refused(wkt: str) -> None:
    with pytest.raises(InvalidInput):
        ServiceArea.from_wkt(wkt)


def test_projected_service_area_is_refused() -> None:
    with pytest.raises(InvalidInput, match="WGS84"):
        ServiceArea.from_wkt("POLYGON((500000 2500000, 510000 2500000, 510000 2510000, 500000 2500000))")


def test_negative_margin_is_refused() -> None:
    with pytest.raises(InvalidInput, match="margin"):
        ServiceArea.from_wkt(DEFAULT_SERVICE_AREA_WKT, margin_m=-1.0)


# --- check_point -------------------------------------------------------------------------------------


def test_points_inside_pass(area: ServiceArea) -> None:
    area.check_point(*CENTRE)
    area.check_point(114.25, 22.60)  # a corner
    assert area.contains(*CENTRE)


def test_margin_is_measured_in_metres(area: ServiceArea) -> None:
    area.check_point(*east_of(114.50, 22.70, 1950.0))
    assert area.contains(*east_of(114.50, 22.70, 1950.0))
    assert not area.contains(*east_of(114.50, 22.70, 2050.0))
    with pytest.raises(OutsideServiceArea):
        area.check_point(*east_of(114.50, 22.70, 2050.0))


def test_outside_message_gives_coordinate_and_distance(area: ServiceArea) -> None:
    _, _, expected = GEOD.inv(114.50, 22.70, 114.60, 22.70)  # ~10.3 km due east of the edge
    with pytest.raises(OutsideServiceArea) as caught:
        area.check_point(114.60, 22.70)
    message = caught.value.message
    assert "(lon 114.6, lat 22.7)" in message
    assert f"{expected / 1000:.1f} km outside" in message and "margin 2.00 km" in message
    assert caught.value.details["distance_km"] == pytest.approx(expected / 1000, abs=0.02)


def test_far_away_distance_is_geodesic_scale(area: ServiceArea) -> None:
    with pytest.raises(OutsideServiceArea) as caught:
        area.check_point(116.40, 39.90)  # Beijing
    # The nearest corner (114.5, 22.82) is ~1,900 km from Beijing.
    assert 1850 < caught.value.details["distance_km"] < 1950


def test_swapped_lat_lon_is_reported_before_outside(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput) as caught:
        area.check_point(22.70, 114.35)
    assert not isinstance(caught.value, OutsideServiceArea)
    assert "swapped" in caught.value.message
    assert "lon=114.35, lat=22.7" in caught.value.message
    assert caught.value.details["suggested_lon"] == 114.35
    assert caught.value.details["suggested_lat"] == 22.70


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(float("nan"), 22.7), (114.3, float("inf")), (200.0, 22.7), (114.3, -95.0), (535961.0, 2511357.0)],
)
def test_bad_numbers_are_invalid_input_not_outside(area: ServiceArea, lon: float, lat: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        area.check_point(lon, lat)
    assert not isinstance(caught.value, OutsideServiceArea)


def test_projected_metres_sent_as_degrees_get_a_hint(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput, match="projected metres"):
        area.check_point(535961.0, 2511357.0)


@pytest.mark.parametrize("value", [True, "114.3", None])
def test_non_numbers_are_refused(area: ServiceArea, value: object) -> None:
    with pytest.raises(InvalidInput):
        area.check_point(value, 22.7)  # type: ignore[arg-type]


def test_distance_outside(area: ServiceArea) -> None:
    assert area.distance_outside_m(*CENTRE) == 0.0
    assert area.distance_outside_m(*east_of(114.50, 22.70, 5000.0)) == pytest.approx(5000.0, rel=0.002)


# --- vectorised mask ---------------------------------------------------------------------------------


def test_inside_mask_agrees_with_contains(area: ServiceArea) -> None:
    rng = np.random.default_rng(11)
    lons = rng.uniform(114.15, 114.60, 2000)
    lats = rng.uniform(22.50, 22.92, 2000)
    mask = area.inside_mask(lons, lats)
    assert mask.dtype == np.bool_ and mask.shape == (2000,)
    assert 0 < mask.sum() < 2000  # the sample straddles the boundary
    assert all(mask[i] == area.contains(float(lons[i]), float(lats[i])) for i in range(0, 2000, 7))


def test_inside_mask_rejects_nan_and_far_points(area: ServiceArea) -> None:
    mask = area.inside_mask(
        np.array([114.35, np.nan, 114.35, 0.0, 114.35]), np.array([22.7, 22.7, np.inf, 0.0, 22.7])
    )
    assert mask.tolist() == [True, False, False, False, True]


# --- check_geometry ----------------------------------------------------------------------------------


def test_geometry_inside_passes(area: ServiceArea) -> None:
    area.check_geometry(shapely.LineString([(114.30, 22.70), (114.40, 22.75)]))
    area.check_geometry(shapely.box(114.30, 22.70, 114.31, 22.71))


def test_geometry_with_a_vertex_outside_is_refused(area: ServiceArea) -> None:
    line = shapely.LineString([(114.30, 22.70), (114.40, 22.75), (114.70, 22.75)])
    with pytest.raises(OutsideServiceArea) as caught:
        area.check_geometry(line)
    assert "1 of 3 vertices" in caught.value.message
    assert "114.7" in caught.value.message
    assert 18 < caught.value.details["distance_km"] < 23


def test_swapped_geometry_is_reported(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput, match="swapped") as caught:
        area.check_geometry(shapely.LineString([(22.70, 114.30), (22.75, 114.40)]))
    assert not isinstance(caught.value, OutsideServiceArea)


def test_empty_geometry_is_invalid(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        area.check_geometry(shapely.LineString())


def test_edge_leaving_a_concave_area_is_refused() -> None:
    # An L-shaped area: both ends of the line are inside, its middle crosses the notch.
    l_shape = (
        "POLYGON((114.30 22.60, 114.50 22.60, 114.50 22.65, 114.35 22.65, "
        "114.35 22.80, 114.30 22.80, 114.30 22.60))"
    )
    concave = ServiceArea.from_wkt(l_shape, margin_m=0.0)
    concave.check_point(114.32, 22.78)
    with pytest.raises(OutsideServiceArea, match="between its vertices"):
        concave.check_geometry(shapely.LineString([(114.32, 22.78), (114.48, 22.62)]))


# --- metric projection -------------------------------------------------------------------------------


def test_metric_projection_round_trip_and_distances() -> None:
    projector = metric_projector(4547)
    assert projector is metric_projector(4547)
    a = projector.project(shapely.Point(114.30, 22.70))
    b = projector.project(shapely.Point(114.40, 22.75))
    _, _, geodesic = GEOD.inv(114.30, 22.70, 114.40, 22.75)
    assert a.distance(b) == pytest.approx(geodesic, rel=1e-3)
    back = projector.unproject(b)
    assert (back.x, back.y) == pytest.approx((114.40, 22.75), abs=1e-9)
    xs, ys = projector.project_arrays([114.0], [22.7])
    assert xs[0] == pytest.approx(500_000.0, abs=0.01)
    lons, lats = projector.unproject_arrays(xs, ys)
    assert (lons[0], lats[0]) == pytest.approx((114.0, 22.7), abs=1e-9)


@pytest.mark.parametrize(("srid", "why"), [(4326, "not a projected"), (2263, "not in metres")])
def test_metric_projector_refuses_non_metric_systems(srid: int, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        MetricProjector(srid)
