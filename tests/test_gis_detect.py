"""Tests of gis.detect.guess_crs."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import InvalidInput
from common.settings import DEFAULT_SERVICE_AREA_WKT
from gis.area import ServiceArea
from gis.crs import BD09, GCJ02, WGS84, Crs, FloatArray, crs_from_epsg, from_wgs84_arrays, to_wgs84_arrays
from gis.detect import CrsGuess, guess_crs


@pytest.fixture(scope="module")
def area() -> ServiceArea:
    """The default Pingshan rectangle with a 2 km margin."""
    return ServiceArea.from_wkt(DEFAULT_SERVICE_AREA_WKT, margin_m=2000.0, metric_srid=4547)


@pytest.fixture(scope="module")
def assets() -> tuple[FloatArray, FloatArray]:
    """300 true WGS84 asset positions inside 坪山区."""
    rng = np.random.default_rng(2024)
    return rng.uniform(114.30, 114.45, 300), rng.uniform(22.65, 22.78, 300)


@pytest.fixture(scope="module")
def reference(assets: tuple[FloatArray, FloatArray]) -> tuple[FloatArray, FloatArray]:
    """Known WGS84 points near the assets (e.g. already-registered neighbours), ~20 m scatter."""
    rng = np.random.default_rng(99)
    lon, lat = assets
    return lon + rng.normal(0, 0.0002, lon.size), lat + rng.normal(0, 0.0002, lat.size)


def test_wgs84_degrees_without_reference(area: ServiceArea, assets: tuple[FloatArray, FloatArray]) -> None:
    guess = guess_crs(*assets, area=area)
    assert guess == CrsGuess(WGS84, guess.reason, swapped=False, strength="assumed")
    assert "degrees" in guess.reason and "wgs84" in guess.reason


def test_swapped_degrees(area: ServiceArea, assets: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = assets
    guess = guess_crs(lat, lon, area=area)
    assert guess.crs == WGS84 and guess.swapped
    assert "swapped" in guess.reason


@pytest.mark.parametrize("crs", [WGS84, GCJ02, BD09])
def test_reference_tells_wgs84_gcj02_and_bd09_apart(
    area: ServiceArea,
    assets: tuple[FloatArray, FloatArray],
    reference: tuple[FloatArray, FloatArray],
    crs: Crs,
) -> None:
    xs, ys = from_wgs84_arrays(*assets, crs)
    guess = guess_crs(xs, ys, area=area, reference=reference)
    assert guess.crs == crs and not guess.swapped
    assert f"chose {guess.crs.name}" in guess.reason and "reference points" in guess.reason


def test_gcj02_is_not_guessed_without_reference(
    area: ServiceArea, assets: tuple[FloatArray, FloatArray]
) -> None:
    # The 600 m offset is invisible at service-area scale: without a reference, wgs84 is assumed.
    guess = guess_crs(*from_wgs84_arrays(*assets, GCJ02), area=area)
    assert guess.crs == WGS84 and "cannot be told apart" in guess.reason


def test_swapped_gcj02_with_reference(
    area: ServiceArea, assets: tuple[FloatArray, FloatArray], reference: tuple[FloatArray, FloatArray]
) -> None:
    gx, gy = from_wgs84_arrays(*assets, GCJ02)
    guess = guess_crs(gy, gx, area=area, reference=reference)
    assert guess.crs == GCJ02 and guess.swapped


def test_inconclusive_reference_falls_back_to_wgs84(
    area: ServiceArea, assets: tuple[FloatArray, FloatArray]
) -> None:
    # Two reference points kilometres from everything: all readings are about equally far.
    far_reference = (np.array([114.26, 114.49]), np.array([22.61, 22.81]))
    guess = guess_crs(*from_wgs84_arrays(*assets, GCJ02), area=area, reference=far_reference)
    assert guess.crs == WGS84 and "do not tell" in guess.reason


@pytest.mark.parametrize(
    ("code", "easting_text"),
    [(4547, "easting ~5"), (4526, "easting ~385"), (4498, "easting ~20")],
)
def test_gauss_kruger_metres(
    area: ServiceArea, assets: tuple[FloatArray, FloatArray], code: int, easting_text: str
) -> None:
    eastings, northings = from_wgs84_arrays(*assets, crs_from_epsg(code))
    guess = guess_crs(eastings, northings, area=area)
    assert guess.crs.epsg == code and not guess.swapped
    assert f"EPSG:{code}" in guess.reason and easting_text in guess.reason and "metres" in guess.reason


@pytest.mark.parametrize("code", [4547, 4526])
def test_gauss_kruger_metres_with_x_as_northing(
    area: ServiceArea, assets: tuple[FloatArray, FloatArray], code: int
) -> None:
    eastings, northings = from_wgs84_arrays(*assets, crs_from_epsg(code))
    guess = guess_crs(northings, eastings, area=area)
    assert guess.crs.epsg == code and guess.swapped
    assert "X=north" in guess.reason


def test_stray_rows_do_not_spoil_the_guess(area: ServiceArea, assets: tuple[FloatArray, FloatArray]) -> None:
    eastings, northings = from_wgs84_arrays(*assets, crs_from_epsg(4547))
    eastings[:10] = 0.0  # placeholder rows
    northings[10:15] = np.nan
    assert guess_crs(eastings, northings, area=area).crs.epsg == 4547


def test_gk_pattern_landing_elsewhere_is_refused(area: ServiceArea) -> None:
    # Right shape for EPSG:4547 but ~200 km north of Pingshan (e.g. a local grid with offsets).
    eastings = np.full(20, 535_000.0) + np.arange(20)
    northings = np.full(20, 2_700_000.0)
    with pytest.raises(InvalidInput, match="深圳独立坐标系") as caught:
        guess_crs(eastings, northings, area=area)
    assert "EPSG:4547" in caught.value.message and "0%" in caught.value.message


def test_unrecognised_metres_are_refused(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput, match="match no known system"):
        guess_crs(np.full(5, 120_000.0), np.full(5, 30_000.0), area=area)


def test_degrees_elsewhere_are_refused(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput, match="lon/lat degrees") as caught:
        guess_crs(np.array([116.40, 116.41]), np.array([39.90, 39.91]), area=area)  # Beijing
    assert "km from the service area" in caught.value.message


def test_mixed_units_are_refused(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput, match="neither mostly degrees nor mostly metres"):
        guess_crs(np.array([114.3, 535_000.0]), np.array([22.7, 2_511_000.0]), area=area)


def test_no_usable_values_are_refused(area: ServiceArea) -> None:
    with pytest.raises(InvalidInput, match="no usable coordinates"):
        guess_crs(np.array([np.nan, np.inf]), np.array([1.0, 2.0]), area=area)


def _dense_registry_near(lons: FloatArray, lats: FloatArray, crs: Crs) -> tuple[FloatArray, FloatArray]:
    """A dense registry (an asset every ~150 m) with, beside it, assets ~25 m from where the file's
    points land when read as ``crs``: close enough that the nearest-asset median favoured ``crs``."""
    rng = np.random.default_rng(5)
    grid_lon, grid_lat = np.meshgrid(np.arange(114.32, 114.38, 0.0015), np.arange(22.67, 22.73, 0.0014))
    wrong_lon, wrong_lat = to_wgs84_arrays(lons, lats, crs)
    angle = rng.uniform(0, 2 * np.pi, lons.size)
    near_lon = wrong_lon + 0.00025 * np.cos(angle)  # ~25 m away, never on the point
    near_lat = wrong_lat + 0.00023 * np.sin(angle)
    return np.concatenate([grid_lon.ravel(), near_lon]), np.concatenate([grid_lat.ravel(), near_lat])


def test_chance_proximity_in_a_dense_registry_is_not_evidence(area: ServiceArea) -> None:
    # A WGS84 file of new lamps; the registry is dense and, by chance, has assets ~25 m from where
    # a BD-09 reading would put them. Nearest-distance medians chose BD-09 (a 1 km error); now no
    # reading lands points on registered assets more than chance does: no offset system is
    # committed, and the plain reading is reported as an assumption.
    rng = np.random.default_rng(11)
    lons, lats = 114.335 + rng.random(60) * 0.03, 22.685 + rng.random(60) * 0.03
    reference = _dense_registry_near(lons, lats, BD09)
    guess = guess_crs(lons, lats, area=area, reference=reference)
    assert guess.crs == WGS84 and guess.strength == "assumed"
    assert "--crs gcj02 or bd09" in guess.reason and "by chance" in guess.reason


def test_conflicting_evidence_is_refused_with_the_evidence(area: ServiceArea) -> None:
    # Half the points repeat registered assets read as WGS84, half read as GCJ-02 (two sources
    # merged into one file): neither reading is decisive, so the import must be told with --crs.
    rng = np.random.default_rng(13)
    lons, lats = 114.335 + rng.random(40) * 0.03, 22.685 + rng.random(40) * 0.03
    gx, gy = from_wgs84_arrays(lons[20:], lats[20:], GCJ02)
    xs, ys = np.concatenate([lons[:20], gx]), np.concatenate([lats[:20], gy])
    with pytest.raises(InvalidInput) as refused:
        guess_crs(xs, ys, area=area, reference=(lons, lats))
    assert "--crs" in refused.value.message and "wgs84 20, gcj02 20" in refused.value.message


def test_a_gcj02_file_among_dense_assets_is_recognised_by_its_duplicates(area: ServiceArea) -> None:
    # Half the file's points are registered lamps (a re-survey on AMap); the registry is dense and
    # also has assets near where the wrong readings land: only GCJ-02 puts points on assets.
    rng = np.random.default_rng(12)
    true_lon, true_lat = 114.335 + rng.random(80) * 0.03, 22.685 + rng.random(80) * 0.03
    gx, gy = from_wgs84_arrays(true_lon, true_lat, GCJ02)
    grid_lon, grid_lat = _dense_registry_near(gx, gy, BD09)
    reference = (np.concatenate([grid_lon, true_lon[:40]]), np.concatenate([grid_lat, true_lat[:40]]))
    guess = guess_crs(gx, gy, area=area, reference=reference)
    assert guess.crs == GCJ02 and guess.strength == "strong"
    assert guess.evidence["points_on_a_registered_asset"]["gcj02"] >= 40
